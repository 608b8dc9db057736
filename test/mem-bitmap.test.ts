import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Bitmap, dirtyBitmapBytes, popcount32 } from '../src/mem/bitmap.js';
import { KernelError } from '../src/uapi/errno.js';

/** errno name thrown by fn, or 'none'. */
function errOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return 'none';
}

/** Bit i of a u64-LE byte buffer, read per vfio-type1-dirty.md section 1: byte i>>3, mask 1<<(i&7). */
function bitOf(bytes: Uint8Array, i: number): boolean {
  return ((bytes[i >> 3]! >> (i & 7)) & 1) === 1;
}

type Op =
  | { k: 'set' | 'clear'; i: number }
  | { k: 'setRange' | 'clearRange'; start: number; count: number };

function opArb(nbits: number): fc.Arbitrary<Op> {
  const idx = fc.integer({ min: 0, max: nbits - 1 });
  const range = fc
    .tuple(fc.integer({ min: 0, max: nbits }), fc.integer({ min: 0, max: nbits }))
    .map(([a, b]) => ({ start: Math.min(a, b), count: Math.abs(a - b) }));
  return fc.oneof(
    idx.map((i) => ({ k: 'set' as const, i })),
    idx.map((i) => ({ k: 'clear' as const, i })),
    range.map((r) => ({ k: 'setRange' as const, ...r })),
    range.map((r) => ({ k: 'clearRange' as const, ...r })),
  );
}

function apply(bm: Bitmap, model: boolean[], op: Op): void {
  switch (op.k) {
    case 'set': bm.set(op.i); model[op.i] = true; break;
    case 'clear': bm.clear(op.i); model[op.i] = false; break;
    case 'setRange': bm.setRange(op.start, op.count); for (let j = 0; j < op.count; j++) model[op.start + j] = true; break;
    case 'clearRange': bm.clearRange(op.start, op.count); for (let j = 0; j < op.count; j++) model[op.start + j] = false; break;
  }
}

const scenario = fc.integer({ min: 1, max: 700 }).chain((nbits) =>
  fc.record({ nbits: fc.constant(nbits), ops: fc.array(opArb(nbits), { maxLength: 40 }) }),
);

describe('dirtyBitmapBytes (vfio-type1-dirty.md §1: DIRTY_BITMAP_BYTES = ALIGN(n,64)/8)', () => {
  it('rounds up to whole u64 words', () => {
    expect(dirtyBitmapBytes(0)).toBe(0);
    expect(dirtyBitmapBytes(1)).toBe(8);
    expect(dirtyBitmapBytes(64)).toBe(8);
    expect(dirtyBitmapBytes(65)).toBe(16);
    // §6: a 65-page mapping needs 16 bytes; 8 TiB of 4 KiB pages is 2^28 bytes
    expect(dirtyBitmapBytes(2 ** 31)).toBe(2 ** 28);
  });
});

describe('popcount32', () => {
  it('matches a bit-by-bit count', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (v) => {
      let n = 0;
      for (let b = 0; b < 32; b++) if (Math.floor(v / 2 ** b) % 2 === 1) n++;
      expect(popcount32(v)).toBe(n);
    }));
  });
});

describe('Bitmap against a boolean-array model', () => {
  it('every query agrees after random set/clear/range operations', () => {
    fc.assert(fc.property(scenario, fc.integer({ min: 0, max: 1000 }), ({ nbits, ops }, probe) => {
      const bm = new Bitmap(nbits);
      const model: boolean[] = new Array(nbits).fill(false);
      for (const op of ops) apply(bm, model, op);

      expect(bm.bytes.length).toBe(Math.ceil(nbits / 64) * 8);
      // u64-LE byte format, bit by bit, and zero padding past nbits
      const fromBytes: boolean[] = [];
      for (let i = 0; i < bm.bytes.length * 8; i++) fromBytes.push(bitOf(bm.bytes, i));
      expect(fromBytes).toEqual([...model, ...new Array(bm.bytes.length * 8 - nbits).fill(false)]);
      const viaGet: boolean[] = [];
      for (let i = 0; i < nbits; i++) viaGet.push(bm.get(i));
      expect(viaGet).toEqual(model);

      const set = model.flatMap((b, i) => (b ? [i] : []));
      expect(bm.popcount()).toBe(set.length);
      expect(bm.isEmpty()).toBe(set.length === 0);
      const seen: number[] = [];
      bm.forEachSet((i) => seen.push(i));
      expect(seen).toEqual(set);

      const from = probe % (nbits + 1);
      expect(bm.nextSet(from)).toBe(set.find((i) => i >= from) ?? -1);
      const clearIdx = model.findIndex((b, i) => i >= from && !b);
      expect(bm.nextClear(from)).toBe(clearIdx);
      const cnt = Math.min(probe % 97, nbits - from);
      expect(bm.popcountRange(from, cnt)).toBe(set.filter((i) => i >= from && i < from + cnt).length);
    }), { numRuns: 150 });
  });

  it('clearAll empties it', () => {
    const bm = new Bitmap(100);
    bm.setRange(3, 90);
    bm.clearAll();
    expect(bm.isEmpty()).toBe(true);
    expect(bm.nextSet(0)).toBe(-1);
  });
});

/** Expected result of OR-ing model bits [srcStart, +count) into dst at dstBit, computed bit by bit. */
function expectedOr(dst: Uint8Array, model: boolean[], dstBit: number, srcStart: number, count: number): Uint8Array {
  const out = dst.slice();
  for (let j = 0; j < count; j++) {
    if (model[srcStart + j]) {
      const i = dstBit + j;
      out[i >> 3] = out[i >> 3]! | (1 << (i & 7));
    }
  }
  return out;
}

const transferCase = fc
  .record({
    nbits: fc.integer({ min: 1, max: 900 }),
    seedBits: fc.array(fc.boolean(), { minLength: 900, maxLength: 900 }),
    extraBytes: fc.integer({ min: 0, max: 40 }),
    byteShift: fc.integer({ min: 0, max: 7 }),
    a: fc.nat(),
    b: fc.nat(),
    c: fc.nat(),
    dstFill: fc.uint8Array({ minLength: 200, maxLength: 200 }),
  })
  .map((r) => {
    const srcStart = r.a % (r.nbits + 1);
    const count = r.b % (r.nbits - srcStart + 1);
    const dstBytes = Math.ceil(count / 8) + r.extraBytes;
    const dstBit = r.c % (dstBytes * 8 - count + 1);
    return { ...r, srcStart, count, dstBytes, dstBit };
  });

function makeDst(len: number, byteShift: number, fill: Uint8Array): Uint8Array {
  // place dst at an arbitrary byte offset inside a larger buffer to exercise unaligned paths
  const backing = new Uint8Array(len + 16);
  const dst = backing.subarray(byteShift, byteShift + len);
  for (let i = 0; i < len; i++) dst[i] = fill[i % fill.length]!;
  return dst;
}

describe('Bitmap.orInto / readAndClearInto at arbitrary bit offsets', () => {
  it('orInto ORs exactly the requested bits into a pre-filled buffer', () => {
    fc.assert(fc.property(transferCase, (t) => {
      const bm = new Bitmap(t.nbits);
      const model = t.seedBits.slice(0, t.nbits);
      model.forEach((b, i) => b && bm.set(i));
      const dst = makeDst(t.dstBytes, t.byteShift, t.dstFill);
      const want = expectedOr(dst, model, t.dstBit, t.srcStart, t.count);
      const before = bm.bytes.slice();
      bm.orInto(dst, t.dstBit, t.srcStart, t.count);
      expect(Array.from(dst)).toEqual(Array.from(want));
      expect(Array.from(bm.bytes)).toEqual(Array.from(before));
    }), { numRuns: 300 });
  });

  it('readAndClearInto also clears exactly the source range', () => {
    fc.assert(fc.property(transferCase, (t) => {
      const bm = new Bitmap(t.nbits);
      const model = t.seedBits.slice(0, t.nbits);
      model.forEach((b, i) => b && bm.set(i));
      const dst = makeDst(t.dstBytes, t.byteShift, t.dstFill);
      const want = expectedOr(dst, model, t.dstBit, t.srcStart, t.count);
      bm.readAndClearInto(dst, t.dstBit, t.srcStart, t.count);
      expect(Array.from(dst)).toEqual(Array.from(want));
      const got: boolean[] = [];
      const want2: boolean[] = [];
      for (let i = 0; i < t.nbits; i++) {
        const inRange = i >= t.srcStart && i < t.srcStart + t.count;
        got.push(bm.get(i));
        want2.push(inRange ? false : model[i]!);
      }
      expect(got).toEqual(want2);
    }), { numRuns: 300 });
  });

  it('large aligned transfers: zero source blocks, zero destination blocks and mixed blocks all OR correctly', () => {
    // 1.5 M bits spans several 64 KiB native blocks
    const nbits = 1_500_000;
    const bm = new Bitmap(nbits);
    const model = new Uint8Array(nbits);
    let x = 12345;
    const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
    for (let i = 0; i < nbits; i++) {
      // region A dense, region B empty, region C random 1%, region D random 50%
      const on = i < 300_000 ? true : i < 800_000 ? false : i < 1_100_000 ? rnd() < 0.01 : rnd() < 0.5;
      if (on) {
        model[i] = 1;
        bm.set(i);
      }
    }
    for (const dstBit of [0, 64, 96, 5]) {
      for (const srcStart of [0, 32, 7]) {
        const count = nbits - Math.max(srcStart, 7);
        const len = Math.ceil((dstBit + count) / 8) + 8;
        const dst = new Uint8Array(len);
        // a non-zero stripe in the middle of dst forces the per-word OR path there
        for (let i = 700_000 >> 3; i < 760_000 >> 3; i++) dst[i] = 0x81;
        const ref = dst.slice();
        for (let j = 0; j < count; j++) {
          if (model[srcStart + j]) {
            const i = dstBit + j;
            ref[i >> 3] = ref[i >> 3]! | (1 << (i & 7));
          }
        }
        const copy = new Bitmap(nbits);
        copy.words.set(bm.words);
        copy.readAndClearInto(dst, dstBit, srcStart, count);
        expect(Buffer.compare(dst, ref)).toBe(0);
        expect(copy.popcountRange(srcStart, count)).toBe(0);
        let outside = 0;
        for (let i = 0; i < srcStart; i++) outside += model[i]!;
        for (let i = srcStart + count; i < nbits; i++) outside += model[i]!;
        expect(copy.popcount()).toBe(outside);
      }
    }
  });

  it('a lone bit at any block edge survives the zero-block skip', () => {
    const block = 16384 * 32; // bits per 64 KiB block
    const nbits = 3 * block;
    for (const bit of [0, 31, 32, block - 32, block - 1, block, block + 31, 2 * block - 1, nbits - 1]) {
      for (const dstFill of [0, 0x10]) {
        const bm = new Bitmap(nbits);
        bm.set(bit);
        const dst = new Uint8Array(nbits / 8).fill(dstFill);
        bm.readAndClearInto(dst, 0);
        const want = new Uint8Array(nbits / 8).fill(dstFill);
        want[bit >> 3] = want[bit >> 3]! | (1 << (bit & 7));
        expect(Buffer.compare(dst, want)).toBe(0);
        expect(bm.isEmpty()).toBe(true);
      }
    }
  });

  it('orFrom merges another bitmap at an offset', () => {
    const a = new Bitmap(200);
    const b = new Bitmap(50);
    b.set(0);
    b.set(49);
    b.set(20);
    a.set(1);
    a.orFrom(b, 100, 10, 40);
    const seen: number[] = [];
    a.forEachSet((i) => seen.push(i));
    expect(seen).toEqual([1, 110, 139]);
    expect(errOf(() => a.orFrom(b, 180))).toBe('EINVAL');
  });

  it('an overrunning destination is EFAULT and leaves it untouched', () => {
    const bm = new Bitmap(64);
    bm.setRange(0, 64);
    const dst = new Uint8Array(8);
    expect(errOf(() => bm.orInto(dst, 1))).toBe('EFAULT');
    expect(dst.every((v) => v === 0)).toBe(true);
    expect(bm.popcount()).toBe(64);
  });
});

describe('Bitmap.wrap and argument checks', () => {
  it('wraps user bytes in place and clears padding bits', () => {
    const bytes = new Uint8Array(16).fill(0xff);
    const bm = Bitmap.wrap(bytes, 70);
    expect(bm.popcount()).toBe(70);
    expect(bytes[8]).toBe(0x3f);
    expect(Array.from(bytes.subarray(9))).toEqual([0, 0, 0, 0, 0, 0, 0]);
    bm.clear(3);
    expect(bytes[0]).toBe(0xf7);
  });

  it('rejects a short or unaligned buffer', () => {
    expect(errOf(() => Bitmap.wrap(new Uint8Array(8), 65))).toBe('EINVAL');
    expect(errOf(() => Bitmap.wrap(new Uint8Array(20).subarray(1, 17), 64))).toBe('EINVAL');
  });

  it('rejects out-of-range indices and bad sizes with EINVAL', () => {
    const bm = new Bitmap(10);
    expect(errOf(() => bm.set(10))).toBe('EINVAL');
    expect(errOf(() => bm.get(-1))).toBe('EINVAL');
    expect(errOf(() => bm.setRange(5, 6))).toBe('EINVAL');
    expect(errOf(() => bm.clear(1.5))).toBe('EINVAL');
    expect(errOf(() => new Bitmap(-1))).toBe('EINVAL');
    expect(errOf(() => new Bitmap(2 ** 32 + 1))).toBe('EINVAL');
    expect(bm.isEmpty()).toBe(true);
  });
});
