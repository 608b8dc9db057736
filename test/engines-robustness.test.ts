/**
 * Hostile-guest robustness (issue 3 item 3 applied to engines): arbitrary SQE bytes pointing
 * at arbitrary (often unmapped) memory never throw, never touch tag bytes or anything but
 * the result fields, and the boolean result agrees with the status written into the SQE.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createEngine } from '../src/hw/engines/engine.js';
import type { HwVersion } from '../src/hw/profile.js';
import { FlatDma, get16, get32, put16, put32, put64 } from './engines-dma-helper.js';

const ARENA = 1 << 16;

/** An address: mostly inside the arena (random content), sometimes far outside it. */
const address = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: ARENA - 1 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 ** 53 - 1 }) },
);
const hw = fc.constantFrom<HwVersion>('v2', 'v3', 'v4');

function arena(fill: Uint8Array): FlatDma {
  const dma = new FlatDma(ARENA);
  for (let i = 0; i < ARENA; i += fill.length) dma.mem.set(fill.subarray(0, Math.min(fill.length, ARENA - i)), i);
  return dma;
}

const fillArb = fc.uint8Array({ minLength: 1, maxLength: 512 });

function changedOutside(before: Uint8Array, after: Uint8Array, allowed: Set<number>): number[] {
  const bad: number[] = [];
  for (let i = 0; i < before.length; i++) if (!allowed.has(i) && before[i] !== after[i]) bad.push(i);
  return bad;
}

describe('engines survive garbage SQEs', () => {
  it('ZIP: only dw0, dw1 and dw3[7:0] change; result iff status 0', () => {
    const eng = createEngine('zip');
    const allowed = new Set([0, 1, 2, 3, 4, 5, 6, 7, 12]);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 128, maxLength: 128 }),
        fc.record({
          req: fc.integer({ min: 0, max: 4 }), buf: fc.integer({ min: 0, max: 2 }), inLen: fc.integer({ min: 0, max: 5000 }),
          avail: fc.integer({ min: 0, max: 20000 }), src: address, dst: address, sqeType: fc.constantFrom(0, 3, 7),
          inOff: fc.integer({ min: 0, max: 300 }), alg: fc.integer({ min: 0, max: 2 }), raw: fc.boolean(),
        }),
        fillArb,
        hw,
        (bytes, f, fill, hwVersion) => {
          const sqe = bytes.slice();
          if (!f.raw) {
            put32(sqe, 16, f.inLen);
            put32(sqe, 28, f.inOff | (f.sqeType << 28));
            put32(sqe, 36, f.req | (f.buf << 8));
            put32(sqe, 56, f.avail);
            put64(sqe, 72, f.src);
            put64(sqe, 80, f.dst);
          }
          const before = sqe.slice();
          const tag = eng.tagOf(sqe);
          const ok = eng.process(sqe, { dma: arena(fill), algType: f.alg, hwVersion });
          expect(changedOutside(before, sqe, allowed)).toEqual([]);
          expect(eng.tagOf(sqe)).toBe(tag);
          expect(ok).toBe(sqe[12] === 0);
          if (!ok) expect([get32(sqe, 0), get32(sqe, 4)]).toEqual([0, 0]);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('SEC: only done_flag and error_type change; done = 1; result iff no error and icv ok', () => {
    const eng = createEngine('sec');
    const allowed = new Set([112, 113, 114]);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 128, maxLength: 128 }),
        fc.record({
          type: fc.constantFrom(2, 3, 2, 3, 1), len: fc.integer({ min: 0, max: 3000 }),
          addrs: fc.array(address, { minLength: 7, maxLength: 7 }), raw: fc.boolean(),
        }),
        fillArb,
        hw,
        (bytes, f, fill, hwVersion) => {
          const sqe = bytes.slice();
          sqe[0] = (sqe[0] & 0xf0) | f.type;
          if (!f.raw) {
            // plausible lengths and addresses in whichever layout the type selects
            if (f.type === 3) {
              put32(sqe, 68, f.len);
              put32(sqe, 72, f.len & ~15);
              [16, 24, 48, 76, 84, 92, 32].forEach((o, i) => put64(sqe, o, f.addrs[i]));
            } else {
              put32(sqe, 16, f.len);
              put32(sqe, 20, f.len & ~15);
              [56, 64, 72, 80, 88, 96, 104].forEach((o, i) => put64(sqe, o, f.addrs[i]));
              put16(sqe, 24, f.len % 64);
            }
          }
          const before = sqe.slice();
          const tag = eng.tagOf(sqe);
          const ok = eng.process(sqe, { dma: arena(fill), algType: 0, hwVersion });
          expect(changedOutside(before, sqe, allowed)).toEqual([]);
          expect(eng.tagOf(sqe)).toBe(tag);
          expect(get16(sqe, 112) & 1).toBe(1);
          expect(ok).toBe(sqe[114] === 0 && ((get16(sqe, 112) >> 1) & 7) === 0);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('HPRE: only dw0 etype/done change; done = 3; result iff etype 0', () => {
    const eng = createEngine('hpre');
    const allowed = new Set([0, 1, 2, 3]);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        fc.record({
          alg: fc.constantFrom(0, 1, 4, 5, 2, 0xd, 0x1f), taskLen: fc.constantFrom(11, 15, 23, 31, 7, 255),
          key: address, input: address, out: address, raw: fc.boolean(),
        }),
        fillArb,
        (bytes, f, fill) => {
          const sqe = bytes.slice();
          if (!f.raw) {
            put32(sqe, 0, (get32(sqe, 0) & ~0x1f) | f.alg);
            sqe[4] = f.taskLen;
            put64(sqe, 8, f.key);
            put64(sqe, 16, f.input);
            put64(sqe, 24, f.out);
          }
          const before = sqe.slice();
          const tag = eng.tagOf(sqe);
          const ok = eng.process(sqe, { dma: arena(fill), algType: 0, hwVersion: 'v3' });
          const dw0 = get32(sqe, 0);
          expect(changedOutside(before, sqe, allowed)).toEqual([]);
          expect(eng.tagOf(sqe)).toBe(tag);
          expect(dw0 >>> 30).toBe(3);
          expect(dw0 & 0x1f).toBe(get32(before, 0) & 0x1f);
          expect(ok).toBe(((dw0 >>> 5) & 0x7ff) === 0);
        },
      ),
      { numRuns: 50 },
    );
  });
});
