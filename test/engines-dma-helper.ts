/**
 * Test-side memory for engine tests: a memcpy DmaPort over one Uint8Array (IOVA = offset)
 * with optional faulting ranges, a bump allocator, and an independent builder for hardware
 * SGLs written straight from the spec layout (qm-hardware.md 6), not from src constants.
 */
import type { DmaPort } from '../src/hw/dma.js';

export class FlatDma implements DmaPort {
  readonly mem: Uint8Array;
  /** [start, end) IOVA ranges whose reads fail. */
  readFaults: Array<[number, number]> = [];
  /** [start, end) IOVA ranges whose writes fail. */
  writeFaults: Array<[number, number]> = [];
  reads = 0;
  writes = 0;
  private next: number;

  constructor(size: number, base = 0x1000) {
    this.mem = new Uint8Array(size);
    this.next = base;
  }

  read(iova: number, dst: Uint8Array): boolean {
    this.reads++;
    if (!this.ok(iova, dst.length, this.readFaults)) return false;
    dst.set(this.mem.subarray(iova, iova + dst.length));
    return true;
  }

  write(iova: number, src: Uint8Array): boolean {
    this.writes++;
    if (!this.ok(iova, src.length, this.writeFaults)) return false;
    this.mem.set(src, iova);
    return true;
  }

  /** Reserves `size` bytes aligned to `align` and returns the IOVA. */
  alloc(size: number, align = 64): number {
    const at = Math.ceil(this.next / align) * align;
    if (at + size > this.mem.length) throw new Error('test arena exhausted');
    this.next = at + Math.max(size, 1);
    return at;
  }

  /** Allocates and fills. */
  put(data: Uint8Array, align = 64): number {
    const at = this.alloc(data.length, align);
    this.mem.set(data, at);
    return at;
  }

  get(iova: number, len: number): Uint8Array {
    return this.mem.slice(iova, iova + len);
  }

  private ok(iova: number, len: number, faults: Array<[number, number]>): boolean {
    if (!Number.isInteger(iova) || iova < 0 || iova + len > this.mem.length) return false;
    for (const [s, e] of faults) if (iova < e && iova + len > s) return false;
    return true;
  }
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

function put32(b: Uint8Array, o: number, v: number): void {
  put16(b, o, v & 0xffff);
  put16(b, o + 2, (v >>> 16) & 0xffff);
}

function put64(b: Uint8Array, o: number, v: number): void {
  put32(b, o, v >>> 0);
  put32(b, o + 4, Math.floor(v / 2 ** 32));
}

export interface SglOptions {
  /** Entries per SGL table before chaining to the next (default: all in one). */
  perSgl?: number;
  /** Table capacity written to entry_length_in_sgl (default: perSgl). */
  capacity?: number;
  /** Override of entry_sum_in_chain in the first header. */
  chainSum?: number;
}

/**
 * Writes `segments` (each a buffer region) as a chain of hardware SGLs: 64-byte header
 * {u64 next_dma@0, u16 entry_sum_in_chain@8, u16 entry_sum_in_sgl@10,
 * u16 entry_length_in_sgl@12} followed by 32-byte entries {u64 buf@0, u32 len@16}.
 * Returns the first header's IOVA.
 */
export function buildSgl(dma: FlatDma, segments: Array<{ addr: number; len: number }>, opts: SglOptions = {}): number {
  const per = Math.max(1, opts.perSgl ?? segments.length);
  const cap = opts.capacity ?? per;
  const tables: number[] = [];
  for (let i = 0; i < Math.max(1, Math.ceil(segments.length / per)); i++) tables.push(dma.alloc(64 + 32 * cap));
  for (let t = 0; t < tables.length; t++) {
    const chunk = segments.slice(t * per, (t + 1) * per);
    const hdr = new Uint8Array(64 + 32 * chunk.length);
    put64(hdr, 0, t + 1 < tables.length ? tables[t + 1] : 0);
    put16(hdr, 8, t === 0 ? (opts.chainSum ?? segments.length) : 0);
    put16(hdr, 10, chunk.length);
    put16(hdr, 12, cap);
    chunk.forEach((s, i) => {
      put64(hdr, 64 + 32 * i, s.addr);
      put32(hdr, 64 + 32 * i + 16, s.len);
    });
    dma.mem.set(hdr, tables[t]);
  }
  return tables[0];
}

/** Splits `total` bytes into segments at the given cut points and allocates each. */
export function scatterRegions(dma: FlatDma, total: number, cuts: number[]): Array<{ addr: number; len: number }> {
  const points = [...new Set(cuts.map((c) => Math.min(Math.max(0, c), total)))].sort((a, b) => a - b);
  const bounds = [0, ...points.filter((p) => p > 0 && p < total), total];
  const segs: Array<{ addr: number; len: number }> = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const len = bounds[i + 1] - bounds[i];
    segs.push({ addr: dma.alloc(len, 16), len });
  }
  if (segs.length === 0) segs.push({ addr: dma.alloc(0, 16), len: 0 });
  return segs;
}

/** Copies `data` into the segments in order (test-side scatter). */
export function fillSegments(dma: FlatDma, segs: Array<{ addr: number; len: number }>, data: Uint8Array): void {
  let o = 0;
  for (const s of segs) {
    dma.mem.set(data.subarray(o, o + s.len), s.addr);
    o += s.len;
  }
}

/** Reads `len` bytes back from the segments in order (test-side gather). */
export function gatherSegments(dma: FlatDma, segs: Array<{ addr: number; len: number }>, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let o = 0;
  for (const s of segs) {
    if (o >= len) break;
    const n = Math.min(s.len, len - o);
    out.set(dma.mem.subarray(s.addr, s.addr + n), o);
    o += n;
  }
  return out;
}

export { put16, put32, put64 };

export function get32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

export function get16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}
