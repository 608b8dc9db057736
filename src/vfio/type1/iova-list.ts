/**
 * The container's list of usable IOVA ranges (iommu->iova_list): the IOMMU domain's
 * aperture minus the reserved regions of every IOMMU-backed group. MAP_DMA only accepts a
 * mapping that lies inside one range, and GET_INFO reports them in CAP_IOVA_RANGE.
 *
 * An empty list means "no IOMMU-backed group has ever been attached" (a container with only
 * emulated groups): everything is allowed and the capability is omitted, as in Linux. When
 * the last IOMMU-backed group leaves, the aperture expands back to [0, U64_MAX].
 */
import type { IovaRange } from './constants.js';
import { U64_MAX } from './constants.js';

/** [apertureStart, apertureEnd] with each reserved region cut out; sorted, non-empty pieces only. */
export function computeIovaList(apertureStart: bigint, apertureEnd: bigint, reserved: readonly IovaRange[]): IovaRange[] {
  let list: IovaRange[] = [{ start: apertureStart, end: apertureEnd }];
  for (const r of reserved) {
    const next: IovaRange[] = [];
    for (const n of list) {
      if (r.end < n.start || r.start > n.end) {
        next.push(n);
        continue;
      }
      if (r.start > n.start) next.push({ start: n.start, end: r.start - 1n });
      if (r.end < n.end) next.push({ start: r.end + 1n, end: n.end });
    }
    list = next;
  }
  return list;
}

/** vfio_iommu_iova_dma_valid: [start, end] inside one range (always true for an empty list). */
export function iovaRangeValid(list: readonly IovaRange[], start: bigint, end: bigint): boolean {
  if (list.length === 0) return true;
  for (const n of list) if (start >= n.start && end <= n.end) return true;
  return false;
}

/** The whole 64-bit space, what the list becomes once no IOMMU domain constrains it. */
export function fullIovaList(): IovaRange[] {
  return [{ start: 0n, end: U64_MAX }];
}
