/**
 * The type1 ioctls on a container fd: argument copying and validation in the kernel's order,
 * then the Type1Iommu operation. `arg` is the user's struct bytes (Linux layout, written back
 * in place); a buffer shorter than what the kernel copies in is EFAULT, like an unreadable
 * user pointer. Spec: vfio-type1-dirty.md sections 1-3.
 */
import { readU32, readU64, writeU64 } from '../../uapi/codec.js';
import { buildInfoWithCaps, writeInfoReply } from '../../uapi/capchain.js';
import { fail } from '../../uapi/errno.js';
import {
  VFIO_IOMMU_TYPE1_DIRTY_BITMAP_GET_MINSZ,
  VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ,
  VFIO_IOMMU_TYPE1_DMA_MAP_MINSZ,
  VFIO_IOMMU_TYPE1_DMA_UNMAP_BITMAP_MINSZ,
  VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ,
  VFIO_IOMMU_TYPE1_INFO_MINSZ,
  vfio_bitmap,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
  vfio_iommu_type1_dirty_bitmap_get,
  vfio_iommu_type1_info,
  vfio_iommu_type1_info_cap_iova_range,
  vfio_iommu_type1_info_cap_migration,
  vfio_iommu_type1_info_dma_avail,
  vfio_iova_range,
} from '../../uapi/structs.js';
import {
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR,
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  VFIO_UPDATE_VADDR,
} from '../../uapi/vfio.js';
import { DIRTY_BITMAP_SIZE_MAX, U64_MAX, accessOk, ffs64, verifyBitmapSize } from './constants.js';
import type { Type1Iommu, UnmapBitmap } from './iommu.js';

/** The user struct of an ioctl; EFAULT when the kernel's first copy of `minsz` bytes would fault. */
export function structArg(arg: unknown, minsz: number): Uint8Array {
  if (!(arg instanceof Uint8Array) || arg.length < minsz) fail('EFAULT', `ioctl argument shorter than ${minsz} bytes`);
  return arg;
}

/** An integer ioctl argument (`unsigned long arg`); anything else matches no value. */
export function intArg(arg: unknown): number {
  return typeof arg === 'number' && Number.isInteger(arg) ? arg : Number.NaN;
}

/**
 * vfio_iommu_type1_check_extension, with `iommu` null before SET_IOMMU (the container polls
 * the driver that way). 1 for TYPE1, TYPE1v2 and UNMAP_ALL; UPDATE_VADDR only on a set-up
 * container without emulated groups (Linux 6.2+: emulated devices cannot pin while vaddrs
 * move). 0 for everything else: DMA_CC_IOMMU (SMMUv3 cannot enforce cache coherency),
 * TYPE1_NESTING (no nested translation in this SMMU model, as in kernels that dropped it),
 * NOIOMMU (no unsafe no-IOMMU mode), the SPAPR and EEH ids.
 */
export function type1CheckExtension(iommu: Type1Iommu | null, ext: number): number {
  switch (ext) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    case VFIO_UPDATE_VADDR:
      return iommu !== null && !iommu.hasEmulatedGroups ? 1 : 0;
    default:
      return 0;
  }
}

/** Container ioctls served by the type1 driver once it is set; ENOTTY for the rest. */
export function type1Ioctl(iommu: Type1Iommu, request: number, arg: unknown): number {
  switch (request) {
    case VFIO_CHECK_EXTENSION:
      return type1CheckExtension(iommu, intArg(arg));
    case VFIO_IOMMU_GET_INFO:
      return getInfo(iommu, arg);
    case VFIO_IOMMU_MAP_DMA:
      return mapDma(iommu, arg);
    case VFIO_IOMMU_UNMAP_DMA:
      return unmapDma(iommu, arg);
    case VFIO_IOMMU_DIRTY_PAGES:
      return dirtyPages(iommu, arg);
    default:
      fail('ENOTTY', `ioctl 0x${request.toString(16)} is not a type1 ioctl`);
  }
}

/** The capability chain in kernel order: MIGRATION, DMA_AVAIL, then IOVA_RANGE when there is a list. */
function infoCaps(iommu: Type1Iommu): Uint8Array[] {
  const pg = iommu.pgsizeBitmap;
  const mig = vfio_iommu_type1_info_cap_migration.encode({
    header: { id: VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, version: 1 },
    flags: 0,
    pgsize_bitmap: 1n << BigInt(ffs64(pg)),
    max_dirty_bitmap_size: DIRTY_BITMAP_SIZE_MAX,
  });
  const avail = vfio_iommu_type1_info_dma_avail.encode({
    header: { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1 },
    avail: iommu.dmaAvail,
  });
  const caps = [mig, avail];
  const ranges = iommu.iovaRanges;
  if (ranges.length > 0) {
    const base = vfio_iommu_type1_info_cap_iova_range.size;
    const cap = new Uint8Array(base + ranges.length * vfio_iova_range.size);
    vfio_iommu_type1_info_cap_iova_range.encode(
      { header: { id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version: 1 }, nr_iovas: ranges.length },
      cap,
    );
    ranges.forEach((r, i) => vfio_iova_range.encode({ start: r.start, end: r.end }, cap, base + i * vfio_iova_range.size));
    caps.push(cap);
  }
  return caps;
}

/**
 * VFIO_IOMMU_GET_INFO: argsz < 16 EINVAL; flags PGSIZES|CAPS; when argsz cannot hold the
 * chain it is raised to the size needed and no chain is copied; min(argsz, 24) bytes of the
 * struct go back.
 */
function getInfo(iommu: Type1Iommu, arg: unknown): number {
  const buf = structArg(arg, VFIO_IOMMU_TYPE1_INFO_MINSZ);
  const argsz = readU32(buf, 0);
  if (argsz < VFIO_IOMMU_TYPE1_INFO_MINSZ) fail('EINVAL', `argsz ${argsz}`);
  const reply = buildInfoWithCaps(
    vfio_iommu_type1_info,
    { flags: VFIO_IOMMU_INFO_PGSIZES, iova_pgsizes: iommu.pgsizeBitmap },
    infoCaps(iommu),
    argsz,
    { minsz: VFIO_IOMMU_TYPE1_INFO_MINSZ, capsFlag: VFIO_IOMMU_INFO_CAPS, copyLen: Math.min(argsz, vfio_iommu_type1_info.size) },
  );
  writeInfoReply(reply, buf);
  return 0;
}

const MAP_FLAGS = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR;

/** VFIO_IOMMU_MAP_DMA: argsz < 32 or unknown flags EINVAL, then vfio_dma_do_map. */
function mapDma(iommu: Type1Iommu, arg: unknown): number {
  const buf = structArg(arg, VFIO_IOMMU_TYPE1_DMA_MAP_MINSZ);
  const argsz = readU32(buf, 0);
  const flags = readU32(buf, 4);
  if (argsz < VFIO_IOMMU_TYPE1_DMA_MAP_MINSZ || (flags & ~MAP_FLAGS) !== 0) fail('EINVAL', 'MAP_DMA argsz or flags');
  iommu.map(readU64(buf, MAP_VADDR), readU64(buf, MAP_IOVA), readU64(buf, MAP_SIZE), flags);
  return 0;
}

/*
 * Field offsets from the codecs, read with the scalar accessors: these ioctls run once per
 * migration iteration and the generic decode costs more than the rest of a small report.
 */
const MAP_VADDR = vfio_iommu_type1_dma_map.offsetOf('vaddr');
const MAP_IOVA = vfio_iommu_type1_dma_map.offsetOf('iova');
const MAP_SIZE = vfio_iommu_type1_dma_map.offsetOf('size');
const UNMAP_IOVA = vfio_iommu_type1_dma_unmap.offsetOf('iova');
const UNMAP_SIZE = vfio_iommu_type1_dma_unmap.offsetOf('size');
const BM_PGSIZE = vfio_bitmap.offsetOf('pgsize');
const BM_SIZE = vfio_bitmap.offsetOf('size');
const BM_DATA = vfio_bitmap.offsetOf('data');
const GET_IOVA = VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ + vfio_iommu_type1_dirty_bitmap_get.offsetOf('iova');
const GET_SIZE = VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ + vfio_iommu_type1_dirty_bitmap_get.offsetOf('size');
const GET_BITMAP = VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ + vfio_iommu_type1_dirty_bitmap_get.offsetOf('bitmap');

function readBitmap(buf: Uint8Array, at: number): UnmapBitmap {
  return { pgsize: readU64(buf, at + BM_PGSIZE), size: readU64(buf, at + BM_SIZE), data: readU64(buf, at + BM_DATA) };
}

const UNMAP_FLAGS = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR;

/**
 * VFIO_IOMMU_UNMAP_DMA, spec section 2: argsz < 24 or unknown flags, GET_DIRTY_BITMAP with
 * ALL or VADDR (EINVAL); with the bitmap flag argsz < 48 (EINVAL), the vfio_bitmap copy
 * (EFAULT), a bitmap outside user space, a bitmap too small or too large for the range
 * (EINVAL); then vfio_dma_do_unmap, which compares pgsize with the smallest page size in the
 * same step that uses it (review finding 5). On success the bytes unmapped are written back
 * into `size`.
 */
function unmapDma(iommu: Type1Iommu, arg: unknown): number {
  const buf = structArg(arg, VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ);
  const argsz = readU32(buf, 0);
  const flags = readU32(buf, 4);
  if (argsz < VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ || (flags & ~UNMAP_FLAGS) !== 0) fail('EINVAL', 'UNMAP_DMA argsz or flags');
  if (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP && flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)) {
    fail('EINVAL', 'GET_DIRTY_BITMAP cannot be combined with ALL or VADDR');
  }
  const iova = readU64(buf, UNMAP_IOVA);
  const size = readU64(buf, UNMAP_SIZE);
  let bitmap: UnmapBitmap | null = null;
  if (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) {
    if (argsz < VFIO_IOMMU_TYPE1_DMA_UNMAP_BITMAP_MINSZ) fail('EINVAL', `argsz ${argsz} leaves no room for vfio_bitmap`);
    structArg(buf, VFIO_IOMMU_TYPE1_DMA_UNMAP_BITMAP_MINSZ);
    bitmap = readBitmap(buf, VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ);
    if (!accessOk(bitmap.data, bitmap.size)) fail('EINVAL', 'bitmap outside user space');
    verifyBitmapSize(size, bitmap.pgsize, bitmap.size);
  }
  const unmapped = iommu.unmap(iova, size, flags, bitmap);
  writeU64(buf, UNMAP_SIZE, unmapped);
  return 0;
}

const DIRTY_FLAGS =
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP | VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;

/**
 * VFIO_IOMMU_DIRTY_PAGES, spec section 3: EACCES unless type1v2 (before the struct is even
 * read); argsz < 8, unknown flags, not exactly one flag (EINVAL). GET_BITMAP: argsz-8 < 40
 * (EINVAL), range copy (EFAULT), iova+size wraps, bitmap outside user space, bitmap size
 * wrong for the range (EINVAL), then the Type1Iommu checks and report.
 */
function dirtyPages(iommu: Type1Iommu, arg: unknown): number {
  if (!iommu.v2) fail('EACCES', 'dirty page tracking needs type1v2');
  const buf = structArg(arg, VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ);
  const argsz = readU32(buf, 0);
  const flags = readU32(buf, 4);
  if (argsz < VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ || (flags & ~DIRTY_FLAGS) !== 0) fail('EINVAL', 'DIRTY_PAGES argsz or flags');
  switch (flags) {
    case VFIO_IOMMU_DIRTY_PAGES_FLAG_START:
      iommu.dirtyStart();
      return 0;
    case VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP:
      iommu.dirtyStop();
      return 0;
    case VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP: {
      if (argsz - VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ < vfio_iommu_type1_dirty_bitmap_get.size) {
        fail('EINVAL', `argsz ${argsz} leaves no room for the range`);
      }
      structArg(buf, VFIO_IOMMU_TYPE1_DIRTY_BITMAP_GET_MINSZ);
      const iova = readU64(buf, GET_IOVA);
      const size = readU64(buf, GET_SIZE);
      const bitmap = readBitmap(buf, GET_BITMAP);
      if (iova + size > U64_MAX) fail('EINVAL', 'GET_BITMAP range wraps');
      if (!accessOk(bitmap.data, bitmap.size)) fail('EINVAL', 'bitmap outside user space');
      verifyBitmapSize(size, bitmap.pgsize, bitmap.size);
      iommu.getDirtyBitmap(iova, size, bitmap.pgsize, bitmap.data);
      return 0;
    }
    default:
      fail('EINVAL', `DIRTY_PAGES needs exactly one flag (got 0x${flags.toString(16)})`);
  }
}
