/**
 * Engine data buffers: either one flat DMA region or a hardware scatter-gather list
 * (`hisi_acc_hw_sgl`, qm-hardware.md 6). Both engines that move bulk data (ZIP, SEC) see a
 * buffer as one logical byte stream addressed by offset, so the SGL is resolved once per
 * request into parallel typed arrays of (address, length) and then read or written in place.
 *
 * SGL layout (little-endian):
 *   header, 64 B: u64 next_dma @0, u16 entry_sum_in_chain @8, u16 entry_sum_in_sgl @10,
 *                 u16 entry_length_in_sgl @12, rest reserved
 *   entries follow the header, 32 B each: u64 buf @0, u32 len @16, rest reserved
 *
 * Walk rules of this model:
 * - entry_sum_in_chain of the FIRST header is the number of entries in the whole chain; it
 *   must be non-zero. Later headers' chain sums are ignored.
 * - each SGL contributes min(entry_sum_in_sgl, entries still wanted); entry_sum_in_sgl may not
 *   exceed entry_length_in_sgl (the table's capacity).
 * - when entries are still wanted after an SGL, next_dma must be non-zero; the walk visits at
 *   most SGL_MAX_HEADERS headers, so a next_dma loop ends as a malformed SGL, never a hang.
 * The offsets in SQEs (ZIP in/out_sge offset, SEC cipher/auth offsets) index the logical
 * stream, i.e. the concatenation of all entries in chain order.
 */
import type { DmaPort } from '../dma.js';
import * as Bytes from './bytes.js';

// Imported values bound to module-local constants: under the tsx/vitest module transforms
// every access to an imported binding is a getter call, too slow for the per-SQE paths.
const { rd16, rd32, rd64 } = Bytes;

export const SGL_HEADER_SIZE = 64;
export const SGL_NEXT_DMA = 0;
export const SGL_ENTRY_SUM_IN_CHAIN = 8;
export const SGL_ENTRY_SUM_IN_SGL = 10;
export const SGL_ENTRY_LENGTH_IN_SGL = 12;
export const SGE_SIZE = 32;
export const SGE_BUF = 0;
export const SGE_LEN = 16;
/** Upper bound on SGL headers visited in one chain (loop guard). */
export const SGL_MAX_HEADERS = 1024;

/** Outcome of resolving a buffer description. */
export const BufferStatus = {
  OK: 0,
  /** A header or entry table could not be read. */
  DMA_FAULT: 1,
  /** Zero entries, sum above capacity, chain shorter than declared, or a loop. */
  MALFORMED: 2,
} as const;

const FLAT_CAPACITY = Number.MAX_SAFE_INTEGER;

export class DataBuffer {
  private addrs = new Float64Array(16);
  private lens = new Float64Array(16);
  private count = 0;
  private flatBase = 0;
  private flat = true;
  private readonly header = new Uint8Array(SGL_HEADER_SIZE);
  private table = new Uint8Array(SGE_SIZE * 16);
  /** Bytes addressable through this buffer: the SGL total, or unbounded for a flat buffer. */
  capacity = FLAT_CAPACITY;

  setFlat(addr: number): void {
    this.flat = true;
    this.flatBase = addr;
    this.count = 0;
    this.capacity = FLAT_CAPACITY;
  }

  /** Resolves the SGL chain at `addr`. Returns a BufferStatus code. */
  loadSgl(dma: DmaPort, addr: number): number {
    this.flat = false;
    this.count = 0;
    this.capacity = 0;
    const header = this.header;
    if (!dma.read(addr, header)) return BufferStatus.DMA_FAULT;
    let remaining = rd16(header, SGL_ENTRY_SUM_IN_CHAIN);
    if (remaining === 0) return BufferStatus.MALFORMED;
    let cur = addr;
    for (let visited = 1; ; visited++) {
      const inSgl = rd16(header, SGL_ENTRY_SUM_IN_SGL);
      if (inSgl > rd16(header, SGL_ENTRY_LENGTH_IN_SGL)) return BufferStatus.MALFORMED;
      const take = inSgl < remaining ? inSgl : remaining;
      if (take > 0) {
        const bytes = take * SGE_SIZE;
        if (this.table.length < bytes) this.table = new Uint8Array(bytes);
        const table = this.table.subarray(0, bytes);
        if (!dma.read(cur + SGL_HEADER_SIZE, table)) return BufferStatus.DMA_FAULT;
        this.reserve(this.count + take);
        for (let i = 0; i < take; i++) {
          const o = i * SGE_SIZE;
          const len = rd32(table, o + SGE_LEN);
          this.addrs[this.count] = rd64(table, o + SGE_BUF);
          this.lens[this.count] = len;
          this.count++;
          this.capacity += len;
        }
        remaining -= take;
      }
      if (remaining === 0) return BufferStatus.OK;
      const next = rd64(header, SGL_NEXT_DMA);
      if (next === 0 || visited >= SGL_MAX_HEADERS) return BufferStatus.MALFORMED;
      cur = next;
      if (!dma.read(cur, header)) return BufferStatus.DMA_FAULT;
    }
  }

  /** Copies dst.length bytes starting at logical `offset`. Caller checks capacity first. */
  read(dma: DmaPort, offset: number, dst: Uint8Array): boolean {
    if (dst.length === 0) return true;
    if (this.flat) return dma.read(this.flatBase + offset, dst);
    return this.transfer(dma, offset, dst, false);
  }

  /**
   * `len` bytes at logical `offset` as a live view of memory, when the port offers one and
   * the bytes are one flat piece; null otherwise (read a copy). Caller checks capacity first.
   */
  view(dma: DmaPort, offset: number, len: number): Uint8Array | null {
    if (!this.flat || len === 0 || dma.readView === undefined) return null;
    return dma.readView(this.flatBase + offset, len);
  }

  /** Copies src to logical `offset`. Caller checks capacity first. */
  write(dma: DmaPort, offset: number, src: Uint8Array): boolean {
    if (src.length === 0) return true;
    if (this.flat) return dma.write(this.flatBase + offset, src);
    return this.transfer(dma, offset, src, true);
  }

  private transfer(dma: DmaPort, offset: number, data: Uint8Array, toDevice: boolean): boolean {
    let done = 0;
    let skip = offset;
    for (let i = 0; i < this.count && done < data.length; i++) {
      const len = this.lens[i];
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const n = Math.min(len - skip, data.length - done);
      const piece = data.subarray(done, done + n);
      const at = this.addrs[i] + skip;
      if (!(toDevice ? dma.write(at, piece) : dma.read(at, piece))) return false;
      done += n;
      skip = 0;
    }
    return done === data.length;
  }

  private reserve(n: number): void {
    if (n <= this.addrs.length) return;
    let size = this.addrs.length;
    while (size < n) size *= 2;
    const a = new Float64Array(size);
    a.set(this.addrs.subarray(0, this.count));
    const l = new Float64Array(size);
    l.set(this.lens.subarray(0, this.count));
    this.addrs = a;
    this.lens = l;
  }
}

/**
 * A grow-only staging buffer for request data, so steady traffic does not allocate a fresh
 * input buffer per SQE. Requests above KEEP_LIMIT get a one-off buffer instead, so one huge
 * request does not pin its size for the engine's lifetime.
 */
export class Scratch {
  private static readonly KEEP_LIMIT = 1024 * 1024;
  private buf = Buffer.allocUnsafe(0);
  /** The last view handed out; steady traffic of one size reuses it instead of a new object. */
  private view = this.buf;

  /** A buffer of exactly `size` bytes whose contents are undefined, valid until the next take. */
  take(size: number): Buffer {
    if (size > Scratch.KEEP_LIMIT) return Buffer.allocUnsafe(size);
    if (this.buf.length < size) {
      this.buf = Buffer.allocUnsafe(Math.max(size, this.buf.length * 2, 4096));
      this.view = this.buf.subarray(0, size);
    } else if (this.view.length !== size) {
      this.view = this.buf.subarray(0, size);
    }
    return this.view;
  }
}

/** Points `buf` at a flat region or resolves an SGL there; returns a BufferStatus code. */
export function describeBuffer(buf: DataBuffer, dma: DmaPort, addr: number, sgl: boolean): number {
  if (!sgl) {
    buf.setFlat(addr);
    return BufferStatus.OK;
  }
  return buf.loadSgl(dma, addr);
}
