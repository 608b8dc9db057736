/**
 * Writing one mapping's dirty bits into the user's bitmap (update_user_bitmap in the merged
 * kernel). The mapping's first page lands at bit (dma.iova - base)/PAGE_SIZE of the user
 * buffer; exactly the u64 words those bits touch are accessed, so a buffer that is only
 * partly writable faults for the mappings that reach the bad part and not for the others
 * (spec section 2 step 7: the copy error stops the loop with EFAULT).
 *
 * Bits are OR-ed into the user's words. Full-scope reports (every page dirty) write 0xFF
 * bytes with a native fill instead of going through the mapping's bitmap, which is what
 * keeps an 8 TiB report close to the cost of a memset of its 256 MiB.
 */
import { dirtyBitmapBytes } from '../../mem/bitmap.js';
import type { UserAddressSpace } from '../../mem/user-space.js';
import { PAGE_SIZE } from './constants.js';
import type { VfioDma } from './dma.js';

/** Sets bits [start, start+count) of a u64-LE (equivalently u8-LSB-first) byte bitmap. */
export function setBitsInBytes(bytes: Uint8Array, start: number, count: number): void {
  if (count <= 0) return;
  const end = start + count;
  const firstByte = Math.floor(start / 8);
  const lastByte = Math.floor((end - 1) / 8);
  const lo = start - firstByte * 8;
  const hi = end - lastByte * 8; // 1..8
  if (firstByte === lastByte) {
    bytes[firstByte]! |= ((1 << hi) - 1) & ~((1 << lo) - 1) & 0xff;
    return;
  }
  bytes[firstByte]! |= (0xff << lo) & 0xff;
  if (lastByte > firstByte + 1) bytes.fill(0xff, firstByte + 1, lastByte);
  bytes[lastByte]! |= (1 << hi) - 1;
}

export interface ReportOptions {
  /** Report every page of the mapping dirty (container in full scope, mapping IOMMU-mapped). */
  full: boolean;
  /** Clear the mapping's internal bits after copying them (GET_BITMAP; UNMAP drops the bitmap anyway). */
  clear: boolean;
}

/**
 * ORs the dirty bits of `dma` into the user bitmap at `data`, whose bit 0 is the page at
 * `base`. EFAULT (nothing copied, internal bits untouched) when the words it needs are not
 * writable user memory.
 */
export function reportDmaToUser(
  user: UserAddressSpace,
  data: number,
  dma: VfioDma,
  base: number,
  opts: ReportOptions,
): void {
  const bitOffset = (dma.iova - base) / PAGE_SIZE;
  const word = Math.floor(bitOffset / 64);
  const shift = bitOffset - word * 64;
  const nbits = dma.npages;
  user.updateUser(data + word * 8, dirtyBitmapBytes(nbits + shift), (bytes) => {
    if (opts.full) {
      setBitsInBytes(bytes, shift, nbits);
      return;
    }
    const bm = dma.bitmap;
    if (bm === null || !dma.bitmapMaybeDirty) return;
    if (opts.clear) bm.readAndClearInto(bytes, shift, 0, nbits);
    else bm.orInto(bytes, shift, 0, nbits);
  });
  if (opts.clear && dma.bitmap !== null && dma.bitmapMaybeDirty) {
    // the full-scope path did not read the bits; the other path already cleared them
    if (opts.full) dma.bitmap.clearAll();
    dma.bitmapMaybeDirty = false;
  }
}
