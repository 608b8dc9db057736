/**
 * Resolving a mapping's user virtual range to host memory, the simulator's stand-in for
 * pin_user_pages(): every byte must be mapped in the process with the access the IOMMU
 * mapping needs (write access for IOMMU_WRITE, as FOLL_WRITE demands), else EFAULT. A range
 * may span several adjacent user segments (VMAs); each becomes one DmaPiece.
 */
import { IOMMU_WRITE } from '../../iommu/domain.js';
import { PROT_READ, PROT_WRITE } from '../../mem/user-space.js';
import type { UserAddressSpace } from '../../mem/user-space.js';
import type { DmaPiece } from './dma.js';

/** The user protection a pin of a mapping with IOMMU permission `prot` requires. */
export function userProtFor(prot: number): number {
  return prot & IOMMU_WRITE ? PROT_WRITE : PROT_READ;
}

export function resolveUserRange(user: UserAddressSpace, vaddr: number, size: number, prot: number): DmaPiece[] {
  user.checkAccess(vaddr, size, userProtFor(prot));
  const segs = user.segments();
  let lo = 0;
  let hi = segs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (segs[mid]!.start <= vaddr) lo = mid + 1;
    else hi = mid;
  }
  const pieces: DmaPiece[] = [];
  const end = vaddr + size;
  let a = vaddr;
  // checkAccess proved the segments from lo-1 on cover [vaddr, end) without gaps
  for (let i = lo - 1; a < end; i++) {
    const s = segs[i]!;
    const n = Math.min(end, s.start + s.len) - a;
    pieces.push({ off: a - vaddr, len: n, mem: s.mem, memOffset: s.memOffset + (a - s.start) });
    a += n;
  }
  return pieces;
}
