/**
 * Limits and helpers of the type1 IOMMU backend (drivers/vfio/vfio_iommu_type1.c), under the
 * kernel's names. Spec: vfio-type1-dirty.md section 1.
 *
 * u64 values that may exceed 2^53 (user-controlled iova/size/pgsize fields) are bigints.
 * Anything already checked to be a multiple of 4096 and below 2^64 is exact as a JS number
 * (it is k * 2^12 with k < 2^52), which is why validated addresses are plain numbers.
 */
import { fail } from '../../uapi/errno.js';
import { USER_TOP } from '../../mem/user-space.js';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
export const U64_MAX = (1n << 64n) - 1n;
/** Linux PAGE_MASK as a u64: every page size from 4 KiB up. */
export const PAGE_MASK_U64 = U64_MAX & ~0xfffn;
/**
 * Page sizes of the SMMUv3 stage-1 domain with a 4 KiB granule (4K, 2M, 1G): what
 * iova_pgsizes reports once an IOMMU-backed group sits in the container.
 */
export const SMMU_PGSIZE_BITMAP = 0x40201000n;

/** DIRTY_BITMAP_PAGES_MAX = INT_MAX: the largest mapping START can give a bitmap. */
export const DIRTY_BITMAP_PAGES_MAX = 0x7fffffff;
/** DIRTY_BITMAP_SIZE_MAX: 2^28 bytes of user bitmap, 8 TiB of 4 KiB pages per query. */
export const DIRTY_BITMAP_SIZE_MAX = 2 ** 28;
/** VFIO_PIN_PAGES_MAX_ENTRIES = PAGE_SIZE / sizeof(unsigned long). */
export const VFIO_PIN_PAGES_MAX_ENTRIES = 512;
/** Default of the dma_entry_limit module parameter (U16_MAX). */
export const DMA_ENTRY_LIMIT_DEFAULT = 65535;
/** How often UNMAP re-notifies a vendor that keeps pages pinned before giving up. */
export const UNMAP_NOTIFY_RETRIES = 10;

/** An inclusive IOVA range [start, end], as in vfio_iova_range and iommu_resv_region. */
export interface IovaRange {
  readonly start: bigint;
  readonly end: bigint;
}

/**
 * The SMMUv3 software-managed MSI window (MSI_IOVA_BASE 0x8000000, MSI_IOVA_LENGTH
 * 0x100000), reserved in every IOMMU group on an arm64 host and therefore cut out of the
 * IOVA ranges type1 reports and accepts.
 */
export const SMMU_SW_MSI_REGION: IovaRange = { start: 0x8000000n, end: 0x80fffffn };

/** DIRTY_BITMAP_BYTES(n) = ALIGN(n, 64) / 8 on a bigint page count. */
export function dirtyBitmapBytesBig(npages: bigint): bigint {
  return ((npages + 63n) / 64n) * 8n;
}

/** __ffs of a non-zero u64 (index of the lowest set bit); 64 for 0. */
export function ffs64(v: bigint): number {
  const lo = Number(v & 0xffffffffn);
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  const hi = Number((v >> 32n) & 0xffffffffn);
  return hi !== 0 ? 63 - Math.clz32(hi & -hi) : 64;
}

const SIZE_MAX_BIG = BigInt(DIRTY_BITMAP_SIZE_MAX);

/**
 * verify_bitmap_size(size >> __ffs(pgsize), bytes): EINVAL when there are no pages, no
 * buffer, a buffer above DIRTY_BITMAP_SIZE_MAX, or fewer bytes than the pages need.
 * A pgsize of 0 (where the kernel's __ffs is undefined) is EINVAL as well.
 */
export function verifyBitmapSize(size: bigint, pgsize: bigint, bytes: bigint): void {
  if (pgsize === 0n) fail('EINVAL', 'bitmap pgsize 0');
  const npages = size >> BigInt(ffs64(pgsize));
  if (npages === 0n || bytes === 0n || bytes > SIZE_MAX_BIG) fail('EINVAL', `bitmap of ${bytes} bytes for ${npages} pages`);
  if (bytes < dirtyBitmapBytesBig(npages)) fail('EINVAL', `bitmap of ${bytes} bytes is too small for ${npages} pages`);
}

const USER_TOP_BIG = BigInt(USER_TOP);

/** access_ok(addr, size): the range lies in the user half of the address space. */
export function accessOk(addr: bigint, size: bigint): boolean {
  return size <= USER_TOP_BIG && addr <= USER_TOP_BIG - size;
}
