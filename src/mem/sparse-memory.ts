/**
 * Byte-addressable memory that can describe terabytes without allocating them: storage is
 * a map of 64 KiB chunks created on first write, and never-written space reads as zeros.
 * Guest RAM, BAR backing and VMM buffers all use it. A `contiguous` memory is the same
 * interface over one ArrayBuffer allocated up front, so a flat slice of it can be handed out
 * as a Uint8Array view (user-space buffers that ioctls read and write in place).
 *
 * Addresses are plain numbers (sizes up to 2^52 stay exact). Any access outside [0, size)
 * throws KernelError EFAULT before touching anything.
 */
import { createHash } from 'node:crypto';
import { Buffer } from 'node:buffer';
import { fail } from '../uapi/errno.js';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
export const MEM_CHUNK_SHIFT = 16;
export const MEM_CHUNK_SIZE = 1 << MEM_CHUNK_SHIFT;
/** Largest memory: the widest IOMMU aperture this project models. */
export const MEM_MAX_SIZE = 2 ** 52;

const PAGES_PER_CHUNK = MEM_CHUNK_SIZE / PAGE_SIZE;
const ZERO_CHUNK = Buffer.alloc(MEM_CHUNK_SIZE);
const scratch = new Uint8Array(8);
/**
 * Reads up to this many bytes are copied by a loop: cheaper than the view object `set`
 * needs for CQE fields, IVs and keys. Not for whole SQEs: a 128-byte byte loop over the
 * several array types that reach here (Uint8Array, Buffer staging) measured ~4x slower
 * than one view plus `set`, twice per job (SQE fetch, driver read-back).
 */
const SMALL_COPY = 32;

export interface SparseMemoryOptions {
  /** Allocate all storage now as one buffer (enables flatView). */
  contiguous?: boolean;
}

function isZero(b: Uint8Array, lo: number, hi: number): boolean {
  return ZERO_CHUNK.compare(b, lo, hi, 0, hi - lo) === 0;
}

export class SparseMemory {
  readonly size: number;
  readonly contiguous: boolean;
  private readonly chunks = new Map<number, Uint8Array>();
  private flat: Uint8Array | null = null;
  private sorted: number[] | null = null;
  private lastIdx = -1;
  private lastChunk: Uint8Array | null = null;
  private backed = 0;

  constructor(size: number, opts: SparseMemoryOptions = {}) {
    if (!Number.isInteger(size) || size < 0 || size > MEM_MAX_SIZE) fail('EINVAL', `memory size ${size} out of range`);
    this.size = size;
    this.contiguous = opts.contiguous === true;
    if (this.contiguous) {
      let flat: Uint8Array;
      try {
        flat = new Uint8Array(size);
      } catch {
        fail('ENOMEM', `cannot allocate ${size} contiguous bytes`);
      }
      this.flat = flat;
      for (let idx = 0; idx * MEM_CHUNK_SIZE < size; idx++) {
        const base = idx * MEM_CHUNK_SIZE;
        this.chunks.set(idx, flat.subarray(base, Math.min(size, base + MEM_CHUNK_SIZE)));
      }
      this.backed = size;
    }
  }

  /** Bytes of real storage behind this memory. */
  get backedBytes(): number {
    return this.backed;
  }

  private check(addr: number, len: number): void {
    if (!Number.isInteger(addr) || !Number.isInteger(len) || addr < 0 || len < 0 || addr + len > this.size) {
      fail('EFAULT', `access [${addr}, +${len}) outside memory of ${this.size} bytes`);
    }
  }

  private chunkIfBacked(idx: number): Uint8Array | undefined {
    if (idx === this.lastIdx) return this.lastChunk!;
    const c = this.chunks.get(idx);
    if (c !== undefined) {
      this.lastIdx = idx;
      this.lastChunk = c;
    }
    return c;
  }

  private chunkForWrite(idx: number): Uint8Array {
    const have = this.chunkIfBacked(idx);
    if (have !== undefined) return have;
    const len = Math.min(MEM_CHUNK_SIZE, this.size - idx * MEM_CHUNK_SIZE);
    let c: Uint8Array;
    try {
      c = new Uint8Array(len);
    } catch {
      fail('ENOMEM', 'cannot back memory chunk');
    }
    this.chunks.set(idx, c);
    this.backed += len;
    this.sorted = null;
    this.lastIdx = idx;
    this.lastChunk = c;
    return c;
  }

  private dropChunk(idx: number): void {
    const c = this.chunks.get(idx);
    if (c === undefined) return;
    this.chunks.delete(idx);
    this.backed -= c.length;
    this.sorted = null;
    if (this.lastIdx === idx) {
      this.lastIdx = -1;
      this.lastChunk = null;
    }
  }

  /** Backed chunk indices in ascending order. */
  private chunkOrder(): number[] {
    return (this.sorted ??= [...this.chunks.keys()].sort((a, b) => a - b));
  }

  read(addr: number, dst: Uint8Array): void {
    this.check(addr, dst.length);
    let a = addr;
    let o = 0;
    let left = dst.length;
    while (left > 0) {
      const idx = Math.floor(a / MEM_CHUNK_SIZE);
      const off = a - idx * MEM_CHUNK_SIZE;
      const n = Math.min(left, MEM_CHUNK_SIZE - off);
      const c = this.chunkIfBacked(idx);
      if (c === undefined) dst.fill(0, o, o + n);
      else if (n <= SMALL_COPY) for (let i = 0; i < n; i++) dst[o + i] = c[off + i]!;
      else dst.set(c.subarray(off, off + n), o);
      a += n;
      o += n;
      left -= n;
    }
  }

  write(addr: number, src: Uint8Array): void {
    this.check(addr, src.length);
    let a = addr;
    let o = 0;
    let left = src.length;
    while (left > 0) {
      const idx = Math.floor(a / MEM_CHUNK_SIZE);
      const off = a - idx * MEM_CHUNK_SIZE;
      const n = Math.min(left, MEM_CHUNK_SIZE - off);
      const c = this.chunkForWrite(idx);
      c.set(n === src.length ? src : src.subarray(o, o + n), off);
      a += n;
      o += n;
      left -= n;
    }
  }

  readBytes(addr: number, len: number): Uint8Array {
    this.check(addr, len);
    const b = new Uint8Array(len);
    this.read(addr, b);
    return b;
  }

  /** Sets len bytes to `byte`. Zero-filling whole chunks of a sparse memory releases them. */
  fill(addr: number, len: number, byte: number): void {
    this.check(addr, len);
    const v = byte & 0xff;
    if (v === 0) {
      // only backed chunks can hold non-zero bytes, so visit just those
      for (const idx of this.backedChunksIn(addr, len)) {
        const c = this.chunks.get(idx)!;
        const base = idx * MEM_CHUNK_SIZE;
        const lo = Math.max(addr, base) - base;
        const hi = Math.min(addr + len, base + c.length) - base;
        if (!this.contiguous && lo === 0 && hi === c.length) this.dropChunk(idx);
        else c.fill(0, lo, hi);
      }
      return;
    }
    let a = addr;
    let left = len;
    while (left > 0) {
      const idx = Math.floor(a / MEM_CHUNK_SIZE);
      const off = a - idx * MEM_CHUNK_SIZE;
      const n = Math.min(left, MEM_CHUNK_SIZE - off);
      this.chunkForWrite(idx).fill(v, off, off + n);
      a += n;
      left -= n;
    }
  }

  /** True when [addr, addr+len) holds only zero bytes. */
  isZero(addr: number, len: number): boolean {
    this.check(addr, len);
    for (const idx of this.backedChunksIn(addr, len)) {
      const c = this.chunks.get(idx)!;
      const base = idx * MEM_CHUNK_SIZE;
      const lo = Math.max(addr, base) - base;
      const hi = Math.min(addr + len, base + c.length) - base;
      if (!isZero(c, lo, hi)) return false;
    }
    return true;
  }

  /** Indices of backed chunks overlapping [addr, addr+len), ascending (a snapshot). */
  private backedChunksIn(addr: number, len: number): number[] {
    if (len === 0) return [];
    const first = Math.floor(addr / MEM_CHUNK_SIZE);
    const last = Math.floor((addr + len - 1) / MEM_CHUNK_SIZE);
    const out: number[] = [];
    if (last - first < 64) {
      for (let idx = first; idx <= last; idx++) if (this.chunks.has(idx)) out.push(idx);
      return out;
    }
    const order = this.chunkOrder();
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (order[mid]! < first) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < order.length && order[i]! <= last; i++) out.push(order[i]!);
    return out;
  }

  getU8(addr: number): number {
    this.check(addr, 1);
    const idx = Math.floor(addr / MEM_CHUNK_SIZE);
    const c = this.chunkIfBacked(idx);
    return c === undefined ? 0 : c[addr - idx * MEM_CHUNK_SIZE]!;
  }

  setU8(addr: number, v: number): void {
    this.check(addr, 1);
    const idx = Math.floor(addr / MEM_CHUNK_SIZE);
    this.chunkForWrite(idx)[addr - idx * MEM_CHUNK_SIZE] = v & 0xff;
  }

  getU16(addr: number): number {
    this.load(addr, 2);
    const b = this.ldBuf;
    const o = this.ldOff;
    return b[o]! | (b[o + 1]! << 8);
  }

  setU16(addr: number, v: number): void {
    this.check(addr, 2);
    scratch[0] = v & 0xff;
    scratch[1] = (v >>> 8) & 0xff;
    this.write(addr, scratch.subarray(0, 2));
  }

  getU32(addr: number): number {
    this.load(addr, 4);
    return getU32At(this.ldBuf, this.ldOff);
  }

  setU32(addr: number, v: number): void {
    this.check(addr, 4);
    putU32(scratch, 0, v >>> 0);
    this.write(addr, scratch.subarray(0, 4));
  }

  getU64(addr: number): bigint {
    this.load(addr, 8);
    const lo = getU32At(this.ldBuf, this.ldOff);
    const hi = getU32At(this.ldBuf, this.ldOff + 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  setU64(addr: number, v: bigint): void {
    this.check(addr, 8);
    const u = BigInt.asUintN(64, v);
    putU32(scratch, 0, Number(u & 0xffffffffn));
    putU32(scratch, 4, Number(u >> 32n));
    this.write(addr, scratch);
  }

  private ldBuf: Uint8Array = scratch;
  private ldOff = 0;

  /** Points ldBuf/ldOff at n <= 8 bytes at addr without allocating (scratch only across chunks). */
  private load(addr: number, n: number): void {
    this.check(addr, n);
    const idx = Math.floor(addr / MEM_CHUNK_SIZE);
    const off = addr - idx * MEM_CHUNK_SIZE;
    if (off + n <= MEM_CHUNK_SIZE) {
      this.ldBuf = this.chunkIfBacked(idx) ?? ZERO_CHUNK;
      this.ldOff = off;
      return;
    }
    this.read(addr, scratch.subarray(0, n));
    this.ldBuf = scratch;
    this.ldOff = 0;
  }

  /**
   * sha256 (hex) of the contents of [start, start+len). Depends only on the bytes: the range
   * is cut into 64 KiB blocks relative to `start`; all-zero blocks are skipped and every other
   * block is hashed with its block number, so equal contents hash equal whatever is backed.
   */
  hash(start = 0, len = this.size - start): string {
    this.check(start, len);
    const h = createHash('sha256');
    const header = new Uint8Array(8);
    const block = new Uint8Array(MEM_CHUNK_SIZE);
    let lastBlock = -1;
    const end = start + len;
    const visit = (idx: number) => {
      const cLo = Math.max(start, idx * MEM_CHUNK_SIZE);
      const cHi = Math.min(end, (idx + 1) * MEM_CHUNK_SIZE);
      if (cLo >= cHi) return;
      // a chunk overlaps at most two relative blocks
      for (let b = Math.floor((cLo - start) / MEM_CHUNK_SIZE); b * MEM_CHUNK_SIZE + start < cHi; b++) {
        if (b <= lastBlock) continue;
        lastBlock = b;
        const bLo = start + b * MEM_CHUNK_SIZE;
        const bLen = Math.min(MEM_CHUNK_SIZE, end - bLo);
        const bytes = block.subarray(0, bLen);
        this.read(bLo, bytes);
        if (isZero(bytes, 0, bLen)) continue;
        putU32(header, 0, b >>> 0);
        putU32(header, 4, Math.floor(b / 2 ** 32));
        h.update(header);
        h.update(bytes);
      }
    };
    if (this.contiguous) {
      for (let idx = Math.floor(start / MEM_CHUNK_SIZE); idx * MEM_CHUNK_SIZE < end; idx++) visit(idx);
    } else {
      for (const idx of this.chunkOrder()) visit(idx);
    }
    return h.digest('hex');
  }

  /** Calls cb(pfn) for each 4 KiB page that has storage behind it, in ascending order. */
  forEachBackedPage(cb: (pfn: number) => void): void {
    const order = this.contiguous ? null : this.chunkOrder();
    const nChunks = order ? order.length : Math.ceil(this.size / MEM_CHUNK_SIZE);
    for (let i = 0; i < nChunks; i++) {
      const idx = order ? order[i]! : i;
      const first = idx * PAGES_PER_CHUNK;
      const last = Math.min(first + PAGES_PER_CHUNK, Math.ceil(this.size / PAGE_SIZE));
      for (let pfn = first; pfn < last; pfn++) cb(pfn);
    }
  }

  /** Copies page `pfn` into dst[0, 4096) (zeros if never written; a short last page is zero-padded). */
  copyPage(pfn: number, dst: Uint8Array): void {
    if (dst.length < PAGE_SIZE) fail('EINVAL', 'copyPage needs a 4096-byte destination');
    const addr = pfn * PAGE_SIZE;
    if (!Number.isInteger(pfn) || pfn < 0 || addr >= this.size) fail('EFAULT', `page ${pfn} outside memory`);
    const n = Math.min(PAGE_SIZE, this.size - addr);
    this.read(addr, dst.subarray(0, n));
    if (n < PAGE_SIZE) dst.fill(0, n, PAGE_SIZE);
  }

  /**
   * A live view of [addr, addr+len) when the range lies in storage that is one piece (a
   * contiguous memory, or a single backed chunk), else null: the caller then copies with
   * `read`. For a device's zero-copy reads: the view must not be kept past the access, and
   * writes must still go through `write` so dirty tracking sees them.
   */
  view(addr: number, len: number): Uint8Array | null {
    this.check(addr, len);
    if (this.flat !== null) return this.flat.subarray(addr, addr + len);
    const idx = Math.floor(addr / MEM_CHUNK_SIZE);
    const off = addr - idx * MEM_CHUNK_SIZE;
    if (off + len > MEM_CHUNK_SIZE) return null;
    const c = this.chunkIfBacked(idx);
    return c === undefined ? null : c.subarray(off, off + len);
  }

  /** A live view of [addr, addr+len) of a contiguous memory. */
  flatView(addr: number, len: number): Uint8Array {
    if (this.flat === null) fail('EINVAL', 'flatView needs a contiguous memory');
    this.check(addr, len);
    return this.flat.subarray(addr, addr + len);
  }
}

function getU32At(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}
