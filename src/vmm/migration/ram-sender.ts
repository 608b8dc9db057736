/**
 * Sends the pending pages of guest RAM as RAM sections of the stream, `pagesPerSection` at
 * a time, reading and clearing the pending bitmap a word at a time. Pages are copied from
 * guest RAM straight into the section being built (StreamWriter.ramFrom): one copy per page
 * on the way out.
 *
 * The destination's RAM starts all zero, so a page that is zero here and was never sent
 * non-zero needs no entry at all (`destMayHold` tracks which pages the destination may hold
 * non-zero data for). That is what keeps the bulk pass over a large, mostly untouched guest
 * cheap, and keeps type1 passes (every page "dirty") from shipping zero pages.
 */
import { Bitmap } from '../../mem/bitmap.js';
import type { SparseMemory } from '../../mem/sparse-memory.js';
import type { RamPageSource, StreamWriter } from '../stream/writer.js';

export interface SendStats {
  pages: number;
  zeroPages: number;
  bytes: number;
}

export class RamSender implements RamPageSource {
  private readonly destMayHold: Bitmap;
  /** Bitmap scan position of the pass in progress. */
  private words: Uint32Array = new Uint32Array(0);
  private k = 0;
  private w = 0;
  /** Whether the destination could hold data for the page next() returned last. */
  private held = false;
  /** Pages and bytes over the whole migration. */
  totalPages = 0;
  totalBytes = 0;

  constructor(
    private readonly ram: SparseMemory,
    private readonly pages: number,
    private readonly writer: StreamWriter,
    private readonly pagesPerSection: number,
  ) {
    this.destMayHold = new Bitmap(pages);
  }

  /** RamPageSource: the next pending page, copied into dst; its bit is cleared. */
  next(dst: Uint8Array): number {
    const words = this.words;
    for (;;) {
      while (this.w === 0) {
        if (this.k >= words.length) return -1;
        this.w = words[this.k]!;
        words[this.k] = 0;
        this.k++;
      }
      const low = this.w & -this.w;
      this.w ^= low;
      const pfn = (this.k - 1) * 32 + 31 - Math.clz32(low);
      if (pfn >= this.pages) continue;
      this.ram.copyPage(pfn, dst);
      // it goes out with data unless it reads as zero (keepZero then decides)
      const dest = this.destMayHold.words;
      const bit = 1 << (pfn & 31);
      this.held = (dest[pfn >>> 5]! & bit) !== 0;
      dest[pfn >>> 5] = dest[pfn >>> 5]! | bit;
      return pfn;
    }
  }

  /** RamPageSource: a zero page goes out only if the destination may hold data there. */
  keepZero(pfn: number): boolean {
    const dest = this.destMayHold.words;
    dest[pfn >>> 5] = dest[pfn >>> 5]! & ~(1 << (pfn & 31));
    // a zero page where the destination has zeros already needs no entry
    return this.held;
  }

  /**
   * Sends and clears every page set in `pending` as part of `iteration`. After each section
   * `afterSection(bytes)` runs (pre-copy lets the guest run for the section's link time).
   */
  async send(pending: Bitmap, iteration: number, afterSection?: (bytes: number) => void): Promise<SendStats> {
    const stats: SendStats = { pages: 0, zeroPages: 0, bytes: 0 };
    this.words = pending.words;
    this.k = 0;
    this.w = 0;
    try {
      for (;;) {
        const r = this.writer.ramFrom(iteration, this.pagesPerSection, this);
        if (r.pages === 0) {
          await r.sent;
          break;
        }
        stats.pages += r.pages;
        stats.zeroPages += r.zeroPages;
        stats.bytes += r.bytes;
        await r.sent;
        afterSection?.(r.bytes);
        if (r.pages < this.pagesPerSection) break;
      }
    } finally {
      this.words = new Uint32Array(0);
    }
    this.totalPages += stats.pages;
    this.totalBytes += stats.bytes;
    return stats;
  }
}
