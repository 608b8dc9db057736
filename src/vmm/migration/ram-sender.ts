/**
 * Sends the pending pages of guest RAM as RAM sections of the stream, `pagesPerSection` at
 * a time, reading and clearing the pending bitmap a word at a time.
 *
 * The destination's RAM starts all zero, so a page that is zero here and was never sent
 * non-zero needs no entry at all (`destMayHold` tracks which pages the destination may hold
 * non-zero data for). That is what keeps the bulk pass over a large, mostly untouched guest
 * cheap, and keeps type1 passes (every page "dirty") from shipping zero pages.
 */
import { Buffer } from 'node:buffer';
import { Bitmap } from '../../mem/bitmap.js';
import { PAGE_SIZE } from '../../mem/sparse-memory.js';
import type { SparseMemory } from '../../mem/sparse-memory.js';
import type { StreamWriter } from '../stream/writer.js';

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

export interface SendStats {
  pages: number;
  zeroPages: number;
  bytes: number;
}

export class RamSender {
  private readonly buf: Uint8Array;
  private readonly pfns: Float64Array;
  private readonly destMayHold: Bitmap;
  /** Pages and bytes over the whole migration. */
  totalPages = 0;
  totalBytes = 0;

  constructor(
    private readonly ram: SparseMemory,
    private readonly pages: number,
    private readonly writer: StreamWriter,
    private readonly pagesPerSection: number,
  ) {
    this.buf = new Uint8Array(pagesPerSection * PAGE_SIZE);
    this.pfns = new Float64Array(pagesPerSection);
    this.destMayHold = new Bitmap(pages);
  }

  /**
   * Sends and clears every page set in `pending` as part of `iteration`. After each section
   * `afterSection(bytes)` runs (pre-copy lets the guest run for the section's link time).
   */
  async send(pending: Bitmap, iteration: number, afterSection?: (bytes: number) => void): Promise<SendStats> {
    const words = pending.words;
    const dest = this.destMayHold.words;
    const stats: SendStats = { pages: 0, zeroPages: 0, bytes: 0 };
    let n = 0;
    const flush = async () => {
      if (n === 0) return;
      const before = this.writer.bytesWritten;
      const p = this.writer.ram(iteration, this.pfns.subarray(0, n), this.buf.subarray(0, n * PAGE_SIZE));
      const bytes = this.writer.bytesWritten - before;
      stats.bytes += bytes;
      stats.pages += n;
      n = 0;
      await p;
      afterSection?.(bytes);
    };
    for (let k = 0; k < words.length; k++) {
      let w = words[k]!;
      if (w === 0) continue;
      words[k] = 0;
      while (w !== 0) {
        const low = w & -w;
        w ^= low;
        const pfn = k * 32 + 31 - Math.clz32(low);
        if (pfn >= this.pages) continue;
        const page = this.buf.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE);
        this.ram.copyPage(pfn, page);
        const bit = 1 << (pfn & 31);
        const di = pfn >>> 5;
        if (ZERO_PAGE.compare(page) === 0) {
          if ((dest[di]! & bit) === 0) continue; // the destination has zeros there already
          dest[di] = dest[di]! & ~bit;
          stats.zeroPages++;
        } else {
          dest[di] = dest[di]! | bit;
        }
        this.pfns[n++] = pfn;
        if (n === this.pagesPerSection) await flush();
      }
    }
    await flush();
    this.totalPages += stats.pages;
    this.totalBytes += stats.bytes;
    return stats;
  }
}
