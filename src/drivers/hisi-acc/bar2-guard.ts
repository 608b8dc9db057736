/**
 * Keeping the migration-control half of the VF BAR2 away from the user (hisi-acc-vfio-pci.md
 * section 2) on every path of the device fd, not just in GET_REGION_INFO: region info,
 * read/write, mmap and ioeventfds. `end` is the visible size (0x8000, or the whole BAR in
 * PF-control mode, where nothing is hidden).
 *
 * Host page size matters for mmap: with 64 KiB pages the 32 KiB functional half is smaller
 * than one page, and mapping a page would expose the hidden half, so BAR2 mmap is refused
 * outright (accesses go through read/write). Mappings of other regions must then be 64 KiB
 * aligned and are rounded up to whole 64 KiB pages, as mmap does.
 */
import { readU32, readU64 } from '../../uapi/codec.js';
import { fail } from '../../uapi/errno.js';
import { VFIO_DEVICE_IOEVENTFD_MINSZ } from '../../uapi/structs.js';
import {
  VFIO_DEVICE_IOEVENTFD,
  VFIO_DEVICE_IOEVENTFD_SIZE_MASK,
  VFIO_PCI_BAR2_REGION_INDEX,
  VFIO_PCI_INDEX_TO_OFFSET,
  VFIO_PCI_OFFSET_TO_INDEX,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  vfioPciOffsetInRegion,
} from '../../uapi/vfio.js';
import type { IoctlArg, VfioMapping, VfioRegionInfo } from '../../vfio/pci-core/ops.js';

export interface Bar2View {
  /** Whether the upper half is hidden. */
  readonly hide: boolean;
  /** Visible bytes of BAR2. */
  readonly end: number;
  readonly hostPageSize: number;
}

const SMALL_PAGE = 4096;

export function guardRegionInfo(v: Bar2View, index: number, next: (index: number) => VfioRegionInfo): VfioRegionInfo {
  if (index !== VFIO_PCI_BAR2_REGION_INDEX || !v.hide) return next(index);
  return {
    index,
    flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
    size: v.end,
    offset: VFIO_PCI_INDEX_TO_OFFSET(index),
    caps: [],
  };
}

/** hisi_acc_pci_rw_access_check: EINVAL at or past `end`, counts clipped to `end`. */
export function guardRw(v: Bar2View, buf: Uint8Array, pos: number, next: (buf: Uint8Array, pos: number) => number): number {
  if (!v.hide || !Number.isSafeInteger(pos) || pos < 0 || VFIO_PCI_OFFSET_TO_INDEX(pos) !== VFIO_PCI_BAR2_REGION_INDEX) {
    return next(buf, pos);
  }
  const off = vfioPciOffsetInRegion(pos);
  if (off >= v.end) fail('EINVAL', `BAR2 offset 0x${off.toString(16)} is migration control space`);
  const n = Math.min(buf.length, v.end - off);
  return next(n === buf.length ? buf : buf.subarray(0, n), pos);
}

export function guardMmap(
  v: Bar2View,
  index: number,
  offset: number,
  length: number,
  next: (index: number, offset: number, length: number) => VfioMapping,
): VfioMapping {
  const page = v.hostPageSize;
  if (index === VFIO_PCI_BAR2_REGION_INDEX && v.hide) {
    if (page > v.end) fail('EINVAL', `BAR2 cannot be mapped with ${page}-byte pages without exposing migration control space`);
    const reqLen = Math.ceil(length / SMALL_PAGE) * SMALL_PAGE;
    if (offset + reqLen > v.end) fail('EINVAL', `mmap [0x${offset.toString(16)}, +0x${reqLen.toString(16)}) reaches migration control space`);
    return next(index, offset, length);
  }
  if (page > SMALL_PAGE) {
    if (offset % page !== 0) fail('EINVAL', `offset 0x${offset.toString(16)} is not ${page}-byte aligned`);
    return next(index, offset, Math.ceil(length / page) * page);
  }
  return next(index, offset, length);
}

/** VFIO_DEVICE_IOEVENTFD aimed at the hidden half: EINVAL. Everything else goes to the core. */
export function guardIoctl(
  v: Bar2View,
  request: number,
  arg: IoctlArg,
  next: (request: number, arg: IoctlArg) => number | void,
): number | void {
  if (request === VFIO_DEVICE_IOEVENTFD && v.hide && arg instanceof Uint8Array && arg.length >= VFIO_DEVICE_IOEVENTFD_MINSZ
    && readU32(arg, 0) >= VFIO_DEVICE_IOEVENTFD_MINSZ) {
    const offset = readU64(arg, 8);
    const size = readU32(arg, 4) & VFIO_DEVICE_IOEVENTFD_SIZE_MASK;
    const index = offset >> 40n;
    if (index === BigInt(VFIO_PCI_BAR2_REGION_INDEX)) {
      const off = Number(offset & ((1n << 40n) - 1n));
      if (off >= v.end || off + size > v.end) fail('EINVAL', `ioeventfd at BAR2 offset 0x${off.toString(16)} is migration control space`);
    }
  }
  return next(request, arg);
}
