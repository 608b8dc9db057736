/**
 * A bit array whose bytes are exactly the Linux dirty-bitmap format: an array of u64
 * little-endian words, bit i at byte i>>3 with mask 1<<(i&7). On a little-endian host a
 * Uint32Array over the same bytes holds u64 word k in u32 words 2k (low) and 2k+1 (high), so
 * all work here is done 32 bits at a time and the bytes can be handed to user space as they
 * are. Bits at or above `nbits` in the last u64 word are kept zero.
 *
 * A bitmap built with `{ summary: true }` also keeps a two-level summary so scans cost what
 * the set bits cost rather than what the whole bitmap costs: level 1 has one bit per u32
 * word ("this word may be non-zero"), level 2 one bit per level-1 word (a block of 32 words,
 * 128 bytes). Every method that sets bits marks both levels; clears drop level-1 bits of words
 * they empty, and scans drop the stale bits they run into. The summary is a superset, never a
 * subset, of the non-zero words — so code writing `words` directly must call
 * `noteWordsWritten` afterwards. Bitmaps shared with other writers (wrap(), the dirty ring)
 * are built without one.
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

/** Sets bits [a, b) of a raw word array. */
function setBitsRaw(w: Uint32Array, a: number, b: number): void {
  if (b <= a) return;
  const x = a >>> 5;
  const y = (b - 1) >>> 5;
  if (x === y) {
    w[x]! |= wordMask(a & 31, ((b - 1) & 31) + 1);
    return;
  }
  w[x]! |= wordMask(a & 31, 32);
  if (y > x + 1) w.fill(0xffffffff, x + 1, y);
  w[y]! |= wordMask(0, ((b - 1) & 31) + 1);
}

/** Clears bits [a, b) of a raw word array. */
function clearBitsRaw(w: Uint32Array, a: number, b: number): void {
  if (b <= a) return;
  const x = a >>> 5;
  const y = (b - 1) >>> 5;
  if (x === y) {
    w[x]! &= ~wordMask(a & 31, ((b - 1) & 31) + 1);
    return;
  }
  w[x]! &= ~wordMask(a & 31, 32);
  if (y > x + 1) w.fill(0, x + 1, y);
  w[y]! &= ~wordMask(0, ((b - 1) & 31) + 1);
}

export interface BitmapOptions {
  /** Keep the two-level summary that lets scans skip clean words (see the file comment). */
  summary?: boolean;
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
  /** Level 1: bit k set when word k may be non-zero (null without a summary). */
  private readonly l1: Uint32Array | null = null;
  /** Level 2: bit j set when level-1 word j may be non-zero. */
  private readonly l2: Uint32Array | null = null;

  constructor(nbits: number, storage?: Uint32Array, opts: BitmapOptions = {}) {
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
    if (opts.summary === true) {
      const n1 = Math.ceil(nwords / 32);
      try {
        this.l1 = new Uint32Array(n1);
        this.l2 = new Uint32Array(Math.ceil(n1 / 32));
      } catch {
        fail('ENOMEM', `cannot allocate the summary of a ${nbits}-bit bitmap`);
      }
      if (storage) this.noteWordsWritten(0, nwords);
    }
  }

  /** True when the bitmap keeps a summary level. */
  get summarized(): boolean {
    return this.l1 !== null;
  }

  /**
   * Tells a summarized bitmap that words [fromWord, toWord) were written through `words`
   * directly and may now hold bits. A no-op without a summary.
   */
  noteWordsWritten(fromWord: number, toWord: number): void {
    const l1 = this.l1;
    if (l1 === null) return;
    checkCount(fromWord, 'fromWord');
    checkCount(toWord, 'toWord');
    const b = Math.min(toWord, this.words.length);
    if (fromWord >= b) return;
    setBitsRaw(l1, fromWord, b);
    setBitsRaw(this.l2!, fromWord >>> 5, ((b - 1) >>> 5) + 1);
  }

  /**
   * ORs `count` words of `src` (from srcStart) into words [atWord, atWord+count), keeping the
   * summary: the bulk path for callers that hold bits word by word (pin sets, benchmarks).
   */
  orWords(atWord: number, src: Uint32Array, srcStart = 0, count = src.length - srcStart): void {
    checkCount(atWord, 'atWord');
    checkCount(srcStart, 'srcStart');
    checkCount(count, 'count');
    if (srcStart + count > src.length) fail('EINVAL', 'orWords: source range outside the source');
    if (atWord + count > this.words.length) fail('EINVAL', 'orWords: target range outside bitmap');
    const w = this.words;
    const l1 = this.l1;
    for (let j = 0; j < count; j++) {
      const v = src[srcStart + j]!;
      if (v === 0) continue;
      const k = atWord + j;
      w[k]! |= v;
      if (l1 !== null) {
        l1[k >>> 5]! |= 1 << (k & 31);
        this.l2![k >>> 10]! |= 1 << ((k >>> 5) & 31);
      }
    }
    // the padding invariant: nothing at or above nbits
    if (atWord + count > this.nbits >>> 5) this.clearPadding();
  }

  /**
   * ORs values[i] into word wordIndex[i] for every i, keeping the summary: a scatter for
   * callers holding a sparse set of words (benchmarks restoring a dirty pattern). EINVAL for
   * mismatched lengths or an index outside the bitmap (nothing written then).
   */
  orScattered(wordIndex: Uint32Array, values: Uint32Array): void {
    if (wordIndex.length !== values.length) fail('EINVAL', 'orScattered: index and value arrays differ in length');
    const w = this.words;
    for (let i = 0; i < wordIndex.length; i++) {
      if (wordIndex[i]! >= w.length) fail('EINVAL', `orScattered: word ${wordIndex[i]} outside bitmap`);
    }
    const l1 = this.l1;
    const l2 = this.l2;
    for (let i = 0; i < wordIndex.length; i++) {
      const k = wordIndex[i]!;
      const v = values[i]!;
      if (v === 0) continue;
      w[k]! |= v;
      if (l1 !== null) {
        l1[k >>> 5]! |= 1 << (k & 31);
        l2![k >>> 10]! |= 1 << ((k >>> 5) & 31);
      }
    }
    if (wordIndex.length > 0) this.clearPadding();
  }

  private markWord(k: number): void {
    this.l1![k >>> 5]! |= 1 << (k & 31);
    this.l2![k >>> 10]! |= 1 << ((k >>> 5) & 31);
  }

  /** Drops the level-1 bit of word k when the word is zero. */
  private unmarkIfZero(k: number): void {
    if (this.words[k] === 0) this.l1![k >>> 5]! &= ~(1 << (k & 31));
  }

  /** Smallest level-1 index in [j, jEnd) whose level-2 bit is set, else jEnd. */
  private nextL1(j: number, jEnd: number): number {
    if (j >= jEnd) return jEnd;
    const l2 = this.l2!;
    let i = j >>> 5;
    let m = l2[i]! & (0xffffffff << (j & 31));
    while (m === 0) {
      i++;
      if (i * 32 >= jEnd) return jEnd;
      m = l2[i]!;
    }
    const r = i * 32 + ctz32(m);
    return r < jEnd ? r : jEnd;
  }

  /**
   * Calls fn(k, v) for the non-zero words k in [k0, k1), ascending; fn returns true to stop.
   * With a summary only marked words are read, and stale marks found on the way are dropped.
   */
  private scanWords(k0: number, k1: number, fn: (k: number, v: number) => boolean | void): void {
    if (k1 <= k0) return;
    const w = this.words;
    const l1 = this.l1;
    if (l1 === null) {
      for (let k = k0; k < k1; k++) {
        const v = w[k]!;
        if (v !== 0 && fn(k, v) === true) return;
      }
      return;
    }
    const l2 = this.l2!;
    const jEnd = ((k1 - 1) >>> 5) + 1;
    for (let j = this.nextL1(k0 >>> 5, jEnd); j < jEnd; j = this.nextL1(j + 1, jEnd)) {
      let m = l1[j]!;
      if (m === 0) {
        l2[j >>> 5]! &= ~(1 << (j & 31));
        continue;
      }
      const base = j * 32;
      if (base < k0) m &= ~((1 << (k0 - base)) - 1);
      if (base + 32 > k1) m &= (1 << (k1 - base)) - 1;
      while (m !== 0) {
        const low = m & -m;
        m ^= low;
        const k = base + 31 - Math.clz32(low);
        const v = w[k]!;
        if (v === 0) l1[j]! &= ~low;
        else if (fn(k, v) === true) return;
      }
    }
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
    if (this.l1 !== null) this.markWord(i >>> 5);
  }

  clear(i: number): void {
    this.checkIndex(i);
    this.words[i >>> 5]! &= ~(1 << (i & 31));
    if (this.l1 !== null) this.unmarkIfZero(i >>> 5);
  }

  setRange(start: number, count: number): void {
    this.checkRange(start, count);
    if (count === 0) return;
    const w = this.words;
    const end = start + count;
    const a = start >>> 5;
    const b = (end - 1) >>> 5;
    if (this.l1 !== null) this.noteWordsWritten(a, b + 1);
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
      if (this.l1 !== null) this.unmarkIfZero(a);
      return;
    }
    w[a]! &= ~wordMask(start & 31, 32);
    if (b > a + 1) w.fill(0, a + 1, b);
    w[b]! &= ~wordMask(0, ((end - 1) & 31) + 1);
    if (this.l1 !== null) {
      // level 2 is left to the next scan: it cannot tell whether the rest of a block is empty
      clearBitsRaw(this.l1, a + 1, b);
      this.unmarkIfZero(a);
      this.unmarkIfZero(b);
    }
  }

  clearAll(): void {
    this.words.fill(0);
    this.l1?.fill(0);
    this.l2?.fill(0);
  }

  popcount(): number {
    const w = this.words;
    let n = 0;
    if (this.l1 !== null) {
      this.scanWords(0, w.length, (_k, v) => void (n += popcount32(v)));
      return n;
    }
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
    this.scanWords(a + 1, b, (_k, v) => void (n += popcount32(v)));
    return n + popcount32(w[b]! & wordMask(0, ((end - 1) & 31) + 1));
  }

  isEmpty(): boolean {
    let empty = true;
    this.scanWords(0, this.words.length, () => !(empty = false));
    return empty;
  }

  /** Lowest set bit >= from, or -1. */
  nextSet(from: number): number {
    checkCount(from, 'from');
    if (from >= this.nbits) return -1;
    const w = this.words;
    const k = from >>> 5;
    const v = w[k]! & ~((1 << (from & 31)) - 1);
    if (v !== 0) return k * 32 + ctz32(v);
    let found = -1;
    this.scanWords(k + 1, w.length, (j, x) => {
      found = j * 32 + ctz32(x);
      return true;
    });
    return found;
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
    this.scanWords(0, this.words.length, (k, x) => {
      let v = x;
      while (v !== 0) {
        const low = v & -v;
        cb(k * 32 + 31 - Math.clz32(low));
        v ^= low;
      }
    });
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
    // conservative: the next scan drops the marks of words that stayed zero
    if (this.l1 !== null && count > 0) this.noteWordsWritten(dstBitOffset >>> 5, ((dstBitOffset + count - 1) >>> 5) + 1);
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
    if (this.l1 !== null) {
      this.middleSummary(dst, q0, q1, s0, clear);
      return;
    }
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
    this.nativeMove(dst, d, 0, q0, k0, n, clear);
  }

  /**
   * Word-aligned on both sides: source words [k, k+n) into dst words [q, q+n), which are
   * d[dj..dj+n). Native code skips zero source blocks and copies into zero destination blocks
   * (the usual case: user space passes a zeroed buffer); only blocks where both sides hold
   * bits need a JS OR loop.
   */
  private nativeMove(dst: Uint8Array, d: Uint32Array, dj: number, q: number, k: number, n: number, clear: boolean): void {
    const s = this.words;
    const src = this.nativeBytes();
    for (let j = 0; j < n; j += BLOCK_WORDS) {
      const m = Math.min(BLOCK_WORDS, n - j);
      const len = m * 4;
      const sb = (k + j) * 4;
      if (ZERO_BLOCK.compare(src, sb, sb + len, 0, len) === 0) continue;
      const db = (q + j) * 4;
      if (ZERO_BLOCK.compare(dst, db, db + len, 0, len) === 0) {
        src.copy(dst, db, sb, sb + len);
        if (clear) src.fill(0, sb, sb + len);
      } else {
        orWords(s, k + j, d, dj + j, m, clear);
      }
    }
  }

  /**
   * `middle` for a summarized bitmap, one level-2 region (1024 source words, 4 KiB) at a
   * time. A region with few marked words has only those words visited; a region with many
   * (the bits spread over most cache lines anyway) is streamed whole: by native block moves
   * when both sides are word-aligned, else by a plain word loop. That keeps dense and
   * uniformly busy bitmaps at the speed of the plain path while sparse ones cost what their
   * dirty words cost.
   */
  private middleSummary(dst: Uint8Array, q0: number, q1: number, s0: number, clear: boolean): void {
    const s = this.words;
    const l1 = this.l1!;
    const l2 = this.l2!;
    const n = q1 - q0;
    const sh = s0 & 31;
    const k0 = s0 >>> 5;
    // source words touched: [k0, kEnd); with a shift the last one is partial
    const kEnd = sh === 0 ? k0 + n : k0 + n + 1;
    const d = dst.byteOffset % 4 === 0 ? new Uint32Array(dst.buffer, dst.byteOffset + q0 * 4, n) : null;
    const native = d !== null && sh === 0;
    let runA = -1;
    let runB = -1;
    const rEnd = ((kEnd - 1) >>> 10) + 1;
    for (let r = k0 >>> 10; r < rEnd; r++) {
      let m2 = l2[r]!;
      if (m2 === 0) continue;
      const a = Math.max(r * 1024, k0);
      const b = Math.min(r * 1024 + 1024, kEnd);
      // level-1 words of the region inside [a, b): bits (a>>5)-32r .. ((b-1)>>5)-32r of m2
      const lo = (a >>> 5) - r * 32;
      const hi = ((b - 1) >>> 5) - r * 32 + 1;
      m2 &= wordMask(lo, hi);
      let marked = 0;
      for (let t = m2; t !== 0; ) {
        const low = t & -t;
        t ^= low;
        const j = r * 32 + 31 - Math.clz32(low);
        const m = l1[j]!;
        if (m === 0) {
          l2[r]! &= ~low;
          m2 &= ~low;
        } else {
          marked += popcount32(m);
        }
      }
      if (m2 === 0) continue;
      if (marked >= DENSE_REGION_MARKED) {
        if (native) {
          if (runA >= 0 && runB === a) {
            runB = b;
          } else {
            this.flushRun(dst, d!, q0, k0, runA, runB, clear);
            runA = a;
            runB = b;
          }
        } else {
          for (let k = a; k < b; k++) if (s[k] !== 0) this.moveWord(dst, d, q0, n, k0, kEnd, sh, k, clear);
          if (clear) this.resummarize(a, b);
        }
        continue;
      }
      while (m2 !== 0) {
        const low2 = m2 & -m2;
        m2 ^= low2;
        const j = r * 32 + 31 - Math.clz32(low2);
        let m = l1[j]!;
        const base = j * 32;
        if (base < a) m &= ~((1 << (a - base)) - 1);
        if (base + 32 > b) m &= (1 << (b - base)) - 1;
        while (m !== 0) {
          const low = m & -m;
          m ^= low;
          const k = base + 31 - Math.clz32(low);
          if (s[k] !== 0) this.moveWord(dst, d, q0, n, k0, kEnd, sh, k, clear);
          if (s[k] === 0) l1[j]! &= ~low;
        }
      }
    }
    this.flushRun(dst, d!, q0, k0, runA, runB, clear);
  }

  /** Word-aligned source words [a, b) into d (d[0] = source word k0), then their marks go. */
  private flushRun(dst: Uint8Array, d: Uint32Array, q0: number, k0: number, a: number, b: number, clear: boolean): void {
    if (a < 0 || b <= a) return;
    const m = b - a;
    if (m >= NATIVE_MIN_WORDS) this.nativeMove(dst, d, a - k0, q0 + (a - k0), a, m, clear);
    else orWords(this.words, a, d, a - k0, m, clear);
    if (clear) clearBitsRaw(this.l1!, a, b);
  }

  /** After a clearing pass over words [a, b): level-1 marks only for words still non-zero. */
  private resummarize(a: number, b: number): void {
    clearBitsRaw(this.l1!, a, b);
    const s = this.words;
    if (s[a] !== 0) this.markWord(a);
    if (b - 1 > a && s[b - 1] !== 0) this.markWord(b - 1);
  }

  /**
   * Moves source word k (non-zero) into the destination: with shift sh its bits sh..31 land
   * in destination word k-k0 and bits 0..sh-1 in word k-k0-1 (words outside [0, n) are the
   * edges' business). Clearing keeps the bits of the shared first and last words that belong
   * to the edges.
   */
  private moveWord(dst: Uint8Array, d: Uint32Array | null, q0: number, n: number, k0: number, kEnd: number, sh: number, k: number, clear: boolean): void {
    const s = this.words;
    let v = s[k]!;
    const q = k - k0;
    if (sh === 0) {
      if (d !== null) d[q]! |= v;
      else orWordBytes(dst, q0 + q, v);
      if (clear) s[k] = 0;
      return;
    }
    if (q < n) {
      const x = v >>> sh;
      if (x !== 0) {
        if (d !== null) d[q]! |= x;
        else orWordBytes(dst, q0 + q, x);
      }
    }
    if (q >= 1) {
      const x = (v << (32 - sh)) >>> 0;
      if (x !== 0) {
        if (d !== null) d[q - 1]! |= x;
        else orWordBytes(dst, q0 + q - 1, x);
      }
    }
    if (clear) {
      const lowMask = (1 << sh) - 1;
      if (k === k0) v &= lowMask;
      else if (k === kEnd - 1) v &= ~lowMask;
      else v = 0;
      s[k] = v;
    }
  }

  private native: Buffer | null = null;
  private nativeBytes(): Buffer {
    return (this.native ??= Buffer.from(this.words.buffer, this.words.byteOffset, this.words.byteLength));
  }
}

/**
 * A level-2 region (1024 words) with at least this many marked words is streamed whole: past
 * about one word in 64 the visited words share most cache lines with their neighbours and a
 * per-word visit costs more than a sequential pass.
 */
const DENSE_REGION_MARKED = 16;
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
