/**
 * The summary level of Bitmap (`{ summary: true }`): every scan that uses it must give exactly
 * what a naive bit-by-bit scan of a plain model gives, after any mix of set/clear/range
 * operations, direct word writes announced with noteWordsWritten, and read-and-clear passes
 * (which drop summary marks lazily). Sizes reach past one level-2 word (32768 words) and
 * ranges are long enough to make the dense path (a 1024-word region with >= 16 marked words,
 * streamed whole) kick in.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Bitmap } from '../src/mem/bitmap.js';

type Op =
  | { k: 'set' | 'clear'; i: number }
  | { k: 'setRange' | 'clearRange'; start: number; count: number }
  | { k: 'direct'; word: number; value: number }
  | { k: 'orWords'; word: number; values: number[] }
  | { k: 'scatter'; words: number[]; values: number[] }
  | { k: 'harvest'; start: number; count: number; dst: number; keep: boolean; odd?: boolean };

/** The reference: one byte per bit. */
class Model {
  readonly bits: Uint8Array;
  constructor(readonly nbits: number) {
    this.bits = new Uint8Array(nbits);
  }
  setWord(k: number, v: number): void {
    for (let b = 0; b < 32; b++) if ((v >>> b) & 1 && k * 32 + b < this.nbits) this.bits[k * 32 + b] = 1;
  }
}

/** Expected u64-LE bytes after ORing model bits [start, start+count) at bit dst into `pre`. */
function expectedOr(m: Model, pre: Uint8Array, start: number, count: number, dst: number): Uint8Array {
  const out = pre.slice();
  for (let i = 0; i < count; i++) if (m.bits[start + i]) out[(dst + i) >> 3]! |= 1 << ((dst + i) & 7);
  return out;
}

function opArb(nbits: number): fc.Arbitrary<Op> {
  const nwords = Math.ceil(nbits / 64) * 2;
  const idx = fc.integer({ min: 0, max: nbits - 1 });
  const range = fc
    .tuple(fc.integer({ min: 0, max: nbits }), fc.integer({ min: 0, max: nbits }))
    .map(([a, b]) => ({ start: Math.min(a, b), count: Math.abs(a - b) }));
  const word = fc.integer({ min: 0, max: nwords - 1 });
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  return fc.oneof(
    { weight: 3, arbitrary: idx.map((i) => ({ k: 'set' as const, i })) },
    { weight: 1, arbitrary: idx.map((i) => ({ k: 'clear' as const, i })) },
    { weight: 2, arbitrary: range.map((r) => ({ k: 'setRange' as const, ...r })) },
    { weight: 1, arbitrary: range.map((r) => ({ k: 'clearRange' as const, ...r })) },
    { weight: 1, arbitrary: fc.record({ word, value: u32 }).map((r) => ({ k: 'direct' as const, ...r })) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(word, fc.array(u32, { minLength: 1, maxLength: 40 }))
        .map(([w, vals]) => {
          const values = vals.slice(0, nwords);
          return { k: 'orWords' as const, word: Math.min(w, nwords - values.length), values };
        }),
    },
    {
      weight: 1,
      arbitrary: fc
        .array(fc.tuple(word, u32), { maxLength: 30 })
        .map((pairs) => ({ k: 'scatter' as const, words: pairs.map((p) => p[0]), values: pairs.map((p) => p[1]) })),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({
          r: range,
          // word-aligned offsets (0, 32, 64) take the dense-run path; others the shifting one
          dst: fc.oneof(fc.constantFrom(0, 32, 64), fc.integer({ min: 0, max: 200 })),
          keep: fc.boolean(),
          odd: fc.boolean(),
        })
        .map(({ r, dst, keep, odd }) => ({ k: 'harvest' as const, ...r, dst, keep, odd })),
    },
  );
}

/** Applies op to both; a harvest also checks its output against the model there and then. */
function apply(bm: Bitmap, m: Model, op: Op): void {
  switch (op.k) {
    case 'set':
      bm.set(op.i);
      m.bits[op.i] = 1;
      break;
    case 'clear':
      bm.clear(op.i);
      m.bits[op.i] = 0;
      break;
    case 'setRange':
      bm.setRange(op.start, op.count);
      m.bits.fill(1, op.start, op.start + op.count);
      break;
    case 'clearRange':
      bm.clearRange(op.start, op.count);
      m.bits.fill(0, op.start, op.start + op.count);
      break;
    case 'direct': {
      // a writer bypassing the methods, then announcing it
      const v = op.word * 32 + 32 > bm.nbits ? op.value & (2 ** Math.max(0, bm.nbits - op.word * 32) - 1) : op.value;
      bm.words[op.word]! |= v;
      bm.noteWordsWritten(op.word, op.word + 1);
      m.setWord(op.word, v);
      break;
    }
    case 'orWords':
      bm.orWords(op.word, Uint32Array.from(op.values));
      op.values.forEach((v, j) => m.setWord(op.word + j, v));
      break;
    case 'scatter':
      bm.orScattered(Uint32Array.from(op.words), Uint32Array.from(op.values));
      op.words.forEach((k, j) => m.setWord(k, op.values[j]!));
      break;
    case 'harvest': {
      const len = Math.ceil((op.dst + op.count) / 64) * 8 + 8;
      // odd: a destination that is not 4-byte aligned (user bitmaps can be anywhere)
      const out = op.odd ? new Uint8Array(len + 1).subarray(1) : new Uint8Array(len);
      for (let i = 0; i < out.length; i += 7) out[i] = 0x11; // prior bits that must survive
      const want = expectedOr(m, out, op.start, op.count, op.dst);
      if (op.keep) bm.orInto(out, op.dst, op.start, op.count);
      else bm.readAndClearInto(out, op.dst, op.start, op.count);
      expectSameBytes(out, want);
      if (!op.keep) m.bits.fill(0, op.start, op.start + op.count);
      break;
    }
  }
}

function checkScans(bm: Bitmap, m: Model, probe: number): void {
  const set: number[] = [];
  for (let i = 0; i < m.nbits; i++) if (m.bits[i]) set.push(i);
  const seen: number[] = [];
  bm.forEachSet((i) => seen.push(i));
  expect(seen.length).toBe(set.length);
  expect(seen.findIndex((v, i) => v !== set[i])).toBe(-1);
  expect(bm.popcount()).toBe(set.length);
  expect(bm.isEmpty()).toBe(set.length === 0);
  const from = probe % (m.nbits + 1);
  expect(bm.nextSet(from)).toBe(set.find((i) => i >= from) ?? -1);
  const cnt = Math.min(m.nbits - from, (probe * 7919) % (m.nbits + 1));
  let inRange = 0;
  for (const i of set) if (i >= from && i < from + cnt) inRange++;
  expect(bm.popcountRange(from, cnt)).toBe(inRange);
  // the byte format is untouched by the summary: bytes equal the model's u64-LE encoding
  const bytes = new Uint8Array(bm.bytes.length);
  for (const i of set) bytes[i >> 3]! |= 1 << (i & 7);
  expectSameBytes(bm.bytes, bytes);
}

/** Byte equality without a deep-equal walk of large arrays; names the first differing byte. */
function expectSameBytes(got: Uint8Array, want: Uint8Array): void {
  expect(got.length).toBe(want.length);
  const at = got.findIndex((b, i) => b !== want[i]);
  expect(at === -1 ? 'equal' : `byte ${at}: ${got[at]} != ${want[at]}`).toBe('equal');
}

const scenario = fc
  .oneof(fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 33_000, max: 140_000 }))
  .chain((nbits) => fc.record({ nbits: fc.constant(nbits), ops: fc.array(opArb(nbits), { maxLength: 25 }) }));

describe('Bitmap summary level against a naive reference scan', () => {
  it('scans and harvests equal the reference after random set/clear/range/direct/harvest operations', () => {
    fc.assert(
      fc.property(scenario, fc.nat(), ({ nbits, ops }, probe) => {
        const bm = new Bitmap(nbits, undefined, { summary: true });
        const m = new Model(nbits);
        for (const op of ops) apply(bm, m, op);
        checkScans(bm, m, probe);
        // a full harvest leaves an empty bitmap whose scans agree (every stale mark dropped)
        apply(bm, m, { k: 'harvest', start: 0, count: nbits, dst: (probe % 3) * 32 + (probe % 5 === 0 ? 7 : 0), keep: false });
        checkScans(bm, m, probe + 1);
      }),
      { numRuns: 60 },
    );
  });

  it('a plain and a summarized bitmap give byte-identical harvests of the same dense+sparse pattern', () => {
    const nbits = 3 * 32768 * 32 + 77; // spans several level-2 words
    const plain = new Bitmap(nbits);
    const sum = new Bitmap(nbits, undefined, { summary: true });
    for (const b of [plain, sum]) {
      b.setRange(1000, 400_000); // dense run: many fully marked level-1 words
      for (let i = 500_000; i < nbits; i += 9973) b.set(i); // sparse tail
    }
    for (const [dst, start] of [[0, 0], [13, 5], [64, 1000], [5, 499_999]] as const) {
      const a = new Uint8Array(Math.ceil((dst + nbits) / 64) * 8);
      const b = new Uint8Array(a.length);
      plain.orInto(a, dst, start, nbits - start);
      sum.orInto(b, dst, start, nbits - start);
      expectSameBytes(b, a);
    }
    const a = new Uint8Array(plain.bytes.length);
    const b = new Uint8Array(plain.bytes.length);
    plain.readAndClearInto(a, 0);
    sum.readAndClearInto(b, 0);
    expectSameBytes(b, a);
    expect(a[1000 >> 3]).toBe(0xff);
    expect([sum.popcount(), sum.isEmpty(), sum.nextSet(0)]).toEqual([0, true, -1]);
  });

  it('storage handed to the constructor is summarized from its contents', () => {
    const words = new Uint32Array(2 * 600);
    words[1100] = 0x80000001;
    const bm = new Bitmap(64 * 600, words, { summary: true });
    expect(bm.summarized).toBe(true);
    const seen: number[] = [];
    bm.forEachSet((i) => seen.push(i));
    expect(seen).toEqual([1100 * 32, 1100 * 32 + 31]);
    expect(new Bitmap(64).summarized).toBe(false);
  });

  it('orWords keeps the padding bits above nbits zero and rejects ranges outside either side', () => {
    const bm = new Bitmap(40, undefined, { summary: true });
    bm.orWords(0, Uint32Array.of(0x1, 0xffffffff));
    expect(bm.popcount()).toBe(1 + 8);
    expect(bm.words[1]).toBe(0xff);
    expect(() => bm.orWords(1, Uint32Array.of(1, 2))).toThrow(/outside bitmap/);
    expect(() => bm.orWords(0, Uint32Array.of(1), 1, 1)).toThrow(/outside the source/);
  });

  it('orScattered keeps padding zero and refuses a bad index before writing anything', () => {
    const bm = new Bitmap(40, undefined, { summary: true });
    bm.orScattered(Uint32Array.of(1, 0), Uint32Array.of(0xffffffff, 0x4));
    expect([bm.words[0], bm.words[1], bm.popcount()]).toEqual([4, 0xff, 9]);
    expect(() => bm.orScattered(Uint32Array.of(0, 2), Uint32Array.of(1, 1))).toThrow(/outside bitmap/);
    expect(() => bm.orScattered(Uint32Array.of(0), Uint32Array.of())).toThrow(/differ in length/);
    expect(bm.popcount()).toBe(9);
  });
});
