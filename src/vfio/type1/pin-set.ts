/**
 * The set of pinned pages of one mapping as bits, so that refilling a dirty bitmap with
 * "every pinned page is dirty" (after GET_BITMAP, and at START) costs what the pins cost: a
 * few word ORs per 1024-page block that holds pins, not a walk over pin records or over the
 * whole mapping. Blocks are allocated on first pin and dropped when their last pin goes, so
 * memory follows the pins too (a 4 TiB mapping with one pinned page holds one 128-byte block).
 */
import type { Bitmap } from '../../mem/bitmap.js';

/** Pages per block: 32 u32 words, one level-1 summary word of the dirty bitmap. */
const BLOCK_PAGES = 1024;
const BLOCK_WORDS = BLOCK_PAGES / 32;

export class PinSet {
  /** Block index -> its 32 words of bits. */
  private readonly blocks = new Map<number, Uint32Array>();
  /** Pinned pages per block, to know when a block empties. */
  private readonly counts = new Map<number, number>();
  private total = 0;

  get size(): number {
    return this.total;
  }

  /** Adds a page; false when it was already in the set. */
  add(page: number): boolean {
    const b = Math.floor(page / BLOCK_PAGES);
    const bit = page - b * BLOCK_PAGES;
    let w = this.blocks.get(b);
    if (w === undefined) {
      w = new Uint32Array(BLOCK_WORDS);
      this.blocks.set(b, w);
    }
    const mask = 1 << (bit & 31);
    if ((w[bit >>> 5]! & mask) !== 0) return false;
    w[bit >>> 5]! |= mask;
    this.counts.set(b, (this.counts.get(b) ?? 0) + 1);
    this.total++;
    return true;
  }

  /** Removes a page; false when it was not in the set. */
  delete(page: number): boolean {
    const b = Math.floor(page / BLOCK_PAGES);
    const w = this.blocks.get(b);
    if (w === undefined) return false;
    const bit = page - b * BLOCK_PAGES;
    const mask = 1 << (bit & 31);
    if ((w[bit >>> 5]! & mask) === 0) return false;
    w[bit >>> 5]! &= ~mask;
    this.total--;
    const n = this.counts.get(b)! - 1;
    if (n === 0) {
      this.blocks.delete(b);
      this.counts.delete(b);
    } else {
      this.counts.set(b, n);
    }
    return true;
  }

  has(page: number): boolean {
    const b = Math.floor(page / BLOCK_PAGES);
    const w = this.blocks.get(b);
    const bit = page - b * BLOCK_PAGES;
    return w !== undefined && ((w[bit >>> 5]! >>> (bit & 31)) & 1) === 1;
  }

  clear(): void {
    this.blocks.clear();
    this.counts.clear();
    this.total = 0;
  }

  /** ORs every pinned page into `bm` (bit = page index); pages past bm.nbits are a caller bug. */
  orInto(bm: Bitmap): void {
    const nwords = bm.words.length;
    for (const [b, w] of this.blocks) {
      const at = b * BLOCK_WORDS;
      bm.orWords(at, w, 0, Math.min(BLOCK_WORDS, nwords - at));
    }
  }
}
