/**
 * A bit array whose bytes are exactly the Linux dirty-bitmap format: an array of u64
 * little-endian words, bit i at byte i>>3 with mask 1<<(i&7). On a little-endian host a
 * Uint32Array over the same bytes holds u64 word k in u32 words 2k (low) and 2k+1 (high), so
 * all work here is done 32 bits at a time and the bytes can be handed to user space as they
 * are. Bits at or above `nbits` in the last u64 word are kept zero.
 */
import { Buffer } from 'node:buffer';
import { fail } from '../uapi/errno.js';

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  // The byte format above relies on it; every supported Node platform is little-endian.
  throw new Error('hisi-acc-sim bitmaps require a little-endian host');
}

/** Largest bitmap this class builds: 2^32 bits (512 MiB), enough for 16 TiB of 4 KiB pages. */
export const BITMAP_MAX_BITS = 2 ** 32;

/** DIRTY_BITMAP_BYTES(n) = ALIGN(n, 64) / 8: whole u64 words covering n bits. */
export function dirtyBitmapBytes(npages: number): number {
  return Math.ceil(npages / 64) * 8;
}

/** Population count of one 32-bit word (SWAR). */
export function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

/** Index of the lowest set bit of a non-zero word. */
function ctz32(v: number): number {
  return 31 - Math.clz32(v & -v);
}

/** Mask of bits [lo, hi) within one word, 0 <= lo < hi <= 32. */
function wordMask(lo: number, hi: number): number {
  const upper = hi === 32 ? 0xffffffff : (1 << hi) - 1;
  return (upper & ~((1 << lo) - 1)) >>> 0;
}

function checkCount(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0) fail('EINVAL', `${what} must be a non-negative integer (got ${n})`);
}

export class Bitmap {
  readonly nbits: number;
  /** u32 view; length is always even (whole u64 words). */
  readonly words: Uint32Array;
  /** The same storage as bytes, length dirtyBitmapBytes(nbits). */
  readonly bytes: Uint8Array;

  constructor(nbits: number, storage?: Uint32Array) {
    checkCount(nbits, 'nbits');
    if (nbits > BITMAP_MAX_BITS) fail('EINVAL', `bitmap of ${nbits} bits exceeds ${BITMAP_MAX_BITS}`);
    const nwords = Math.ceil(nbits / 64) * 2;
    if (storage) {
      if (storage.length < nwords) fail('EINVAL', 'bitmap storage too small');
      this.words = storage.length === nwords ? storage : storage.subarray(0, nwords);
    } else {
      try {
        this.words = new Uint32Array(nwords);
      } catch {
        fail('ENOMEM', `cannot allocate a bitmap of ${nbits} bits`);
      }
    }
    this.nbits = nbits;
    this.bytes = new Uint8Array(this.words.buffer, this.words.byteOffset, nwords * 4);
  }

  /**
   * A bitmap sharing `bytes` (which must be 4-byte aligned and hold dirtyBitmapBytes(nbits)
   * bytes). Padding bits above nbits in the buffer are cleared so the invariant holds.
   */
  static wrap(bytes: Uint8Array, nbits: number): Bitmap {
    checkCount(nbits, 'nbits');
    const need = dirtyBitmapBytes(nbits);
    if (bytes.length < need) fail('EINVAL', `wrap: ${bytes.length} bytes < ${need} needed for ${nbits} bits`);
    if (bytes.byteOffset % 4 !== 0) fail('EINVAL', 'wrap: buffer not 4-byte aligned');
    const bm = new Bitmap(nbits, new Uint32Array(bytes.buffer, bytes.byteOffset, need / 4));
    bm.clearPadding();
    return bm;
  }

  private clearPadding(): void {
    const w = this.words;
    if (w.length === 0) return;
    const first = this.nbits >>> 5;
    const bit = this.nbits & 31;
    if (first < w.length) {
      if (bit) w[first]! &= (1 << bit) - 1;
      else w[first] = 0;
      for (let k = first + 1; k < w.length; k++) w[k] = 0;
    }
  }

  private checkIndex(i: number): void {
    if (!(i >= 0 && i < this.nbits) || !Number.isInteger(i)) fail('EINVAL', `bit ${i} outside bitmap of ${this.nbits}`);
  }

  private checkRange(start: number, count: number): void {
    checkCount(start, 'start');
    checkCount(count, 'count');
    if (start + count > this.nbits) fail('EINVAL', `range [${start}, +${count}) outside bitmap of ${this.nbits}`);
  }

  get(i: number): boolean {
    this.checkIndex(i);
    return ((this.words[i >>> 5]! >>> (i & 31)) & 1) === 1;
  }

  set(i: number): void {
    this.checkIndex(i);
    this.words[i >>> 5]! |= 1 << (i & 31);
  }

  clear(i: number): void {
    this.checkIndex(i);
    this.words[i >>> 5]! &= ~(1 << (i & 31));
  }

  setRange(start: number, count: number): void {
    this.checkRange(start, count);
    if (count === 0) return;
    const w = this.words;
    const end = start + count;
    const a = start >>> 5;
    const b = (end - 1) >>> 5;
    if (a === b) {
      w[a]! |= wordMask(start & 31, ((end - 1) & 31) + 1);
      return;
    }
    w[a]! |= wordMask(start & 31, 32);
    if (b > a + 1) w.fill(0xffffffff, a + 1, b);
    w[b]! |= wordMask(0, ((end - 1) & 31) + 1);
  }

  clearRange(start: number, count: number): void {
    this.checkRange(start, count);
    if (count === 0) return;
    const w = this.words;
    const end = start + count;
    const a = start >>> 5;
    const b = (end - 1) >>> 5;
    if (a === b) {
      w[a]! &= ~wordMask(start & 31, ((end - 1) & 31) + 1);
      return;
    }
    w[a]! &= ~wordMask(start & 31, 32);
    if (b > a + 1) w.fill(0, a + 1, b);
    w[b]! &= ~wordMask(0, ((end - 1) & 31) + 1);
  }

  clearAll(): void {
    this.words.fill(0);
  }

  popcount(): number {
    const w = this.words;
    let n = 0;
    for (let k = 0; k < w.length; k++) {
      const v = w[k]!;
      if (v !== 0) n += popcount32(v);
    }
    return n;
  }

  popcountRange(start: number, count: number): number {
    this.checkRange(start, count);
    if (count === 0) return 0;
    const w = this.words;
    const end = start + count;
    const a = start >>> 5;
    const b = (end - 1) >>> 5;
    if (a === b) return popcount32(w[a]! & wordMask(start & 31, ((end - 1) & 31) + 1));
    let n = popcount32(w[a]! & wordMask(start & 31, 32));
    for (let k = a + 1; k < b; k++) {
      const v = w[k]!;
      if (v !== 0) n += popcount32(v);
    }
    return n + popcount32(w[b]! & wordMask(0, ((end - 1) & 31) + 1));
  }

  isEmpty(): boolean {
    const w = this.words;
    for (let k = 0; k < w.length; k++) if (w[k] !== 0) return false;
    return true;
  }

  /** Lowest set bit >= from, or -1. */
  nextSet(from: number): number {
    checkCount(from, 'from');
    if (from >= this.nbits) return -1;
    const w = this.words;
    let k = from >>> 5;
    let v = w[k]! & ~((1 << (from & 31)) - 1);
    while (v === 0) {
      if (++k >= w.length) return -1;
      v = w[k]!;
    }
    return k * 32 + ctz32(v);
  }

  /** Lowest clear bit >= from, or -1 when every bit from there to nbits is set. */
  nextClear(from: number): number {
    checkCount(from, 'from');
    if (from >= this.nbits) return -1;
    const w = this.words;
    let k = from >>> 5;
    let v = ~w[k]! & ~((1 << (from & 31)) - 1);
    while (v === 0) {
      if (++k >= w.length) return -1;
      v = ~w[k]!;
    }
    const i = k * 32 + ctz32(v);
    return i < this.nbits ? i : -1;
  }

  /** Calls cb for every set bit in ascending order. */
  forEachSet(cb: (i: number) => void): void {
    const w = this.words;
    for (let k = 0; k < w.length; k++) {
      let v = w[k]!;
      while (v !== 0) {
        const low = v & -v;
        cb(k * 32 + 31 - Math.clz32(low));
        v ^= low;
      }
    }
  }

  /**
   * ORs bits [srcStart, srcStart+count) into the u64-LE bitmap `dst` starting at bit
   * `dstBitOffset`. Bits of dst outside the target range are untouched. EFAULT when dst is
   * too short for the target range.
   */
  orInto(dst: Uint8Array, dstBitOffset: number, srcStart = 0, count = this.nbits - srcStart): void {
    this.transfer(dst, dstBitOffset, srcStart, count, false);
  }

  /** Like orInto, then clears the source range: the GET_BITMAP read-and-clear step in one pass. */
  readAndClearInto(dst: Uint8Array, dstBitOffset: number, srcStart = 0, count = this.nbits - srcStart): void {
    this.transfer(dst, dstBitOffset, srcStart, count, true);
  }

  /** ORs bits [srcStart, srcStart+count) of another bitmap into this one at bit `dstBitOffset`. */
  orFrom(src: Bitmap, dstBitOffset: number, srcStart = 0, count = src.nbits - srcStart): void {
    if (src === this || src.words.buffer === this.words.buffer) fail('EINVAL', 'orFrom: source shares storage with the target');
    checkCount(dstBitOffset, 'dstBitOffset');
    checkCount(count, 'count');
    if (dstBitOffset + count > this.nbits) fail('EINVAL', 'orFrom: target range outside bitmap');
    src.transfer(this.bytes, dstBitOffset, srcStart, count, false);
  }

  private transfer(dst: Uint8Array, dstBit: number, srcStart: number, count: number, clear: boolean): void {
    this.checkRange(srcStart, count);
    checkCount(dstBit, 'dstBitOffset');
    if (dstBit + count > dst.length * 8) {
      fail('EFAULT', `bitmap copy of ${count} bits at bit ${dstBit} overruns a ${dst.length}-byte buffer`);
    }
    if (count === 0) return;
    // Split the destination into a partial first word, whole middle words and a partial last
    // word; only the middle needs to be fast.
    const end = dstBit + count;
    const qFirst = Math.floor(dstBit / 32);
    const qLast = Math.floor((end - 1) / 32);
    const delta = srcStart - dstBit;
    this.edge(dst, dstBit, srcStart, Math.min(count, (qFirst + 1) * 32 - dstBit), clear);
    if (qLast === qFirst) return;
    if (qLast > qFirst + 1) this.middle(dst, qFirst + 1, qLast, (qFirst + 1) * 32 + delta, clear);
    this.edge(dst, qLast * 32, qLast * 32 + delta, end - qLast * 32, clear);
  }

  /** Moves n <= 32 bits that land in one destination word. */
  private edge(dst: Uint8Array, dBit: number, sBit: number, n: number, clear: boolean): void {
    const w = this.words;
    const k = sBit >>> 5;
    const sh = sBit & 31;
    let v = w[k]! >>> sh;
    if (sh !== 0 && sh + n > 32) v |= w[k + 1]! << (32 - sh);
    v = n === 32 ? v >>> 0 : (v & ((1 << n) - 1)) >>> 0;
    if (v === 0) return;
    if (clear) this.clearRange(sBit, n);
    const q = Math.floor(dBit / 32);
    orWordBytes(dst, q, (v << (dBit - q * 32)) >>> 0);
  }

  /** Destination words [q0, q1), all fully inside dst, fed from source bit s0. */
  private middle(dst: Uint8Array, q0: number, q1: number, s0: number, clear: boolean): void {
    const s = this.words;
    const n = q1 - q0;
    const sh = s0 & 31;
    const k0 = s0 >>> 5;
    if (dst.byteOffset % 4 !== 0) {
      for (let j = 0; j < n; j++) {
        const k = k0 + j;
        const v = sh === 0 ? s[k]! : ((s[k]! >>> sh) | (s[k + 1]! << (32 - sh))) >>> 0;
        if (v !== 0) orWordBytes(dst, q0 + j, v);
      }
      if (clear) this.clearRange(s0, n * 32);
      return;
    }
    const d = new Uint32Array(dst.buffer, dst.byteOffset + q0 * 4, n);
    if (sh !== 0) {
      orShifted(s, k0, sh, d, n);
      if (clear) this.clearRange(s0, n * 32);
      return;
    }
    if (n < NATIVE_MIN_WORDS) {
      orWords(s, k0, d, 0, n, clear);
      return;
    }
    // Word-aligned on both sides: let native code skip zero source blocks and copy into
    // zero destination blocks (the usual case: user space passes a zeroed buffer); only
    // blocks where both sides hold bits need a JS OR loop.
    const src = this.nativeBytes();
    for (let j = 0; j < n; j += BLOCK_WORDS) {
      const m = Math.min(BLOCK_WORDS, n - j);
      const len = m * 4;
      const sb = (k0 + j) * 4;
      if (ZERO_BLOCK.compare(src, sb, sb + len, 0, len) === 0) continue;
      const db = (q0 + j) * 4;
      if (ZERO_BLOCK.compare(dst, db, db + len, 0, len) === 0) {
        src.copy(dst, db, sb, sb + len);
        if (clear) src.fill(0, sb, sb + len);
      } else {
        orWords(s, k0 + j, d, j, m, clear);
      }
    }
  }

  private native: Buffer | null = null;
  private nativeBytes(): Buffer {
    return (this.native ??= Buffer.from(this.words.buffer, this.words.byteOffset, this.words.byteLength));
  }
}

/** Below this many words the native block calls cost more than a plain loop. */
const NATIVE_MIN_WORDS = 256;
/** 64 KiB blocks: large enough that native-call overhead vanishes, small enough to skip zeros. */
const BLOCK_WORDS = 16384;
const ZERO_BLOCK = Buffer.alloc(BLOCK_WORDS * 4);

function orWords(s: Uint32Array, sk: number, d: Uint32Array, dk: number, n: number, clear: boolean): void {
  if (clear) orWordsClear(s, sk, d, dk, n);
  else orWordsKeep(s, sk, d, dk, n);
}

function orWordsClear(s: Uint32Array, sk: number, d: Uint32Array, dk: number, n: number): void {
  for (let j = 0; j < n; j++) {
    const v = s[sk + j]!;
    if (v !== 0) {
      d[dk + j]! |= v;
      s[sk + j] = 0;
    }
  }
}

function orWordsKeep(s: Uint32Array, sk: number, d: Uint32Array, dk: number, n: number): void {
  for (let j = 0; j < n; j++) {
    const v = s[sk + j]!;
    if (v !== 0) d[dk + j]! |= v;
  }
}

/** d[j] |= the 32 source bits starting at bit sh of word k0+j (0 < sh < 32). */
function orShifted(s: Uint32Array, k0: number, sh: number, d: Uint32Array, n: number): void {
  const back = 32 - sh;
  let cur = s[k0]!;
  for (let j = 0; j < n; j++) {
    const next = s[k0 + j + 1]!;
    const v = (cur >>> sh) | (next << back);
    if (v !== 0) d[j]! |= v;
    cur = next;
  }
}

/** ORs a 32-bit value into dst bytes 4q..4q+3; bytes past the end only ever receive zero bits. */
function orWordBytes(dst: Uint8Array, q: number, v: number): void {
  const b = q * 4;
  for (let j = 0; j < 4; j++) {
    const byte = (v >>> (8 * j)) & 0xff;
    if (byte !== 0) dst[b + j]! |= byte;
  }
}
