/**
 * Builders for the region-info capabilities a variant may attach (GET_REGION_INFO caps chain).
 * They return the capability bytes with a zero `next`; the core links the chain.
 */
import { encodeArray } from '../../uapi/codec.js';
import {
  vfio_region_info_cap_sparse_mmap,
  vfio_region_info_cap_type,
  vfio_region_sparse_mmap_area,
} from '../../uapi/structs.js';
import { VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_CAP_TYPE } from '../../uapi/vfio.js';

/** VFIO_REGION_INFO_CAP_TYPE, version 1. */
export function regionTypeCap(type: number, subtype: number): Uint8Array {
  return vfio_region_info_cap_type.encode({
    header: { id: VFIO_REGION_INFO_CAP_TYPE, version: 1, next: 0 },
    type: type >>> 0,
    subtype: subtype >>> 0,
  });
}

/** VFIO_REGION_INFO_CAP_SPARSE_MMAP, version 1: the mmappable windows of a region. */
export function sparseMmapCap(areas: readonly { offset: number; size: number }[]): Uint8Array {
  const head = vfio_region_info_cap_sparse_mmap.size;
  const out = new Uint8Array(head + areas.length * vfio_region_sparse_mmap_area.size);
  vfio_region_info_cap_sparse_mmap.encode(
    { header: { id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1, next: 0 }, nr_areas: areas.length, reserved: 0 },
    out,
  );
  encodeArray(vfio_region_sparse_mmap_area, areas, out, head);
  return out;
}
