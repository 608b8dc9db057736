/**
 * ZIP engine against node:zlib (qm-hardware.md 6, hisi_zip_sqe). SQEs are built here from
 * the spec's dword offsets, not from src constants, so the layout itself is under test.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as zlib from 'node:zlib';
import { createEngine } from '../src/hw/engines/engine.js';
import type { EngineContext } from '../src/hw/engines/engine.js';
import * as Z from '../src/hw/engines/zip-sqe.js';
import { FlatDma, buildSgl, fillSegments, gatherSegments, get32, put32, scatterRegions } from './engines-dma-helper.js';

const DEFLATE = 1;
const ZLIB = 2;
const GZIP = 3;
const COMPRESS = 0;
const DECOMPRESS = 1;

interface ZipReq {
  req: number;
  buf?: number;
  inLen: number;
  avail: number;
  src: number;
  dst: number;
  inOff?: number;
  outOff?: number;
  sqeType?: number;
  tag?: number;
}

function zipSqe(r: ZipReq): Uint8Array {
  const s = new Uint8Array(128);
  put32(s, 0, 0xdeadbeef); // consumed: must be overwritten
  put32(s, 4, 0xdeadbeef); // produced: must be overwritten
  put32(s, 16, r.inLen);
  put32(s, 28, ((r.inOff ?? 0) & 0xffffff) | ((r.sqeType ?? 3) << 28));
  put32(s, 32, (r.outOff ?? 0) & 0xffffff);
  put32(s, 36, (r.req & 0xff) | ((r.buf ?? 0) << 8));
  put32(s, 52, r.tag ?? 0x1357);
  put32(s, 56, r.avail);
  put32(s, 72, r.src % 2 ** 32);
  put32(s, 76, Math.floor(r.src / 2 ** 32));
  put32(s, 80, r.dst % 2 ** 32);
  put32(s, 84, Math.floor(r.dst / 2 ** 32));
  put32(s, 104, r.tag ?? 0x2468ace);
  return s;
}

const status = (s: Uint8Array) => s[12];
const consumed = (s: Uint8Array) => get32(s, 0);
const produced = (s: Uint8Array) => get32(s, 4);

function ctxOf(dma: FlatDma, algType: number): EngineContext {
  return { dma, algType, hwVersion: 'v3' };
}

/** Full stream (as node:zlib wants it) from the engine's headerless output. */
function withHeader(req: number, body: Uint8Array): Buffer {
  if (req === ZLIB) return Buffer.concat([Buffer.from([0x78, 0x9c]), body]);
  if (req === GZIP) return Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), body]);
  return Buffer.from(body);
}

function nodeInflate(req: number, stream: Buffer): Buffer {
  if (req === ZLIB) return zlib.inflateSync(stream);
  if (req === GZIP) return zlib.gunzipSync(stream);
  return zlib.inflateRawSync(stream);
}

/** node-compressed stream with its header stripped, as the engine consumes it. */
function nodeBody(req: number, data: Uint8Array): Buffer {
  if (req === ZLIB) return zlib.deflateSync(data).subarray(2);
  if (req === GZIP) return zlib.gzipSync(data).subarray(10);
  return zlib.deflateRawSync(data);
}

const payload = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }),
  fc
    .tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 300 }))
    .map(([unit, n]) => new Uint8Array(Buffer.concat(Array.from({ length: n }, () => Buffer.from(unit))))),
);

const formats = [
  ['deflate', DEFLATE],
  ['zlib', ZLIB],
  ['gzip', GZIP],
] as const;

describe('ZIP engine, flat buffers (spec 6: dw4 input length, dw14 dest_avail_out)', () => {
  for (const [name, req] of formats) {
    it(`${name}: engine compress -> node:zlib inflate round-trips, consumed/produced exact`, () => {
      const eng = createEngine('zip');
      fc.assert(
        fc.property(payload, fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 64 }), (data, inOff, outOff) => {
          const dma = new FlatDma(1 << 20);
          const src = dma.alloc(inOff + data.length);
          dma.mem.set(data, src + inOff);
          const avail = data.length * 2 + 64;
          const dst = dma.alloc(outOff + avail + 16);
          dma.mem.fill(0xa5, dst, dst + outOff + avail + 16);
          const sqe = zipSqe({ req, inLen: data.length, avail, src, dst, inOff, outOff });
          expect(eng.process(sqe, ctxOf(dma, COMPRESS))).toBe(true);
          expect(status(sqe)).toBe(0);
          expect(consumed(sqe)).toBe(data.length);
          const n = produced(sqe);
          const body = dma.get(dst + outOff, n);
          expect(new Uint8Array(nodeInflate(req, withHeader(req, body)))).toEqual(data);
          // bytes before the out offset and after the produced range are untouched
          expect(dma.mem.subarray(dst, dst + outOff).every((b) => b === 0xa5)).toBe(true);
          expect(dma.mem.subarray(dst + outOff + n, dst + outOff + avail).every((b) => b === 0xa5)).toBe(true);
        }),
        { numRuns: 40 },
      );
    });

    it(`${name}: node:zlib compress -> engine decompress equals input; trailing bytes not consumed`, () => {
      const eng = createEngine('zip');
      fc.assert(
        fc.property(payload, fc.uint8Array({ maxLength: 16 }), (data, junk) => {
          const dma = new FlatDma(1 << 20);
          const body = nodeBody(req, data);
          const input = Buffer.concat([body, junk]);
          const src = dma.put(input);
          const dst = dma.alloc(data.length + 8);
          const sqe = zipSqe({ req, inLen: input.length, avail: data.length, src, dst });
          expect(eng.process(sqe, ctxOf(dma, DECOMPRESS))).toBe(true);
          expect(status(sqe)).toBe(0);
          expect(produced(sqe)).toBe(data.length);
          expect(consumed(sqe)).toBe(body.length);
          expect(dma.get(dst, data.length)).toEqual(data);
        }),
        { numRuns: 40 },
      );
    });
  }

  it('compress of zero bytes yields a valid empty stream per format', () => {
    const eng = createEngine('zip');
    for (const [, req] of formats) {
      const dma = new FlatDma(1 << 16);
      const src = dma.alloc(16);
      const dst = dma.alloc(64);
      const sqe = zipSqe({ req, inLen: 0, avail: 64, src, dst });
      expect(eng.process(sqe, ctxOf(dma, COMPRESS))).toBe(true);
      const body = dma.get(dst, produced(sqe));
      expect(nodeInflate(req, withHeader(req, body)).length).toBe(0);
      if (req === DEFLATE) expect([...body]).toEqual([0x03, 0x00]);
      if (req === ZLIB) expect([...body.subarray(body.length - 4)]).toEqual([0, 0, 0, 1]); // adler32("") = 1
      if (req === GZIP) expect([...body.subarray(body.length - 8)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    }
  });

  it('compress output larger than dest_avail_out -> OUTPUT_OVERFLOW, nothing written, lengths 0', () => {
    const eng = createEngine('zip');
    const dma = new FlatDma(1 << 20);
    const data = new Uint8Array(4096).map((_, i) => (i * 2654435761) >>> 24); // incompressible-ish
    const src = dma.put(data);
    const full = zlib.deflateRawSync(data).length;
    const dst = dma.alloc(full);
    dma.mem.fill(0x5a, dst, dst + full);
    const sqe = zipSqe({ req: DEFLATE, inLen: data.length, avail: full - 1, src, dst });
    expect(eng.process(sqe, ctxOf(dma, COMPRESS))).toBe(false);
    expect(status(sqe)).toBe(0x04);
    expect(consumed(sqe)).toBe(0);
    expect(produced(sqe)).toBe(0);
    expect(dma.mem.subarray(dst, dst + full).every((b) => b === 0x5a)).toBe(true);
    // exactly enough room succeeds
    const ok = zipSqe({ req: DEFLATE, inLen: data.length, avail: full, src, dst });
    expect(eng.process(ok, ctxOf(dma, COMPRESS))).toBe(true);
    expect(produced(ok)).toBe(full);
  });

  it('decompress output larger than dest_avail_out -> OUTPUT_OVERFLOW; exact fit succeeds', () => {
    const eng = createEngine('zip');
    for (const [, req] of formats) {
      const dma = new FlatDma(1 << 20);
      const data = new Uint8Array(10000).fill(7);
      const src = dma.put(nodeBody(req, data));
      const dst = dma.alloc(10000);
      const small = zipSqe({ req, inLen: nodeBody(req, data).length, avail: 9999, src, dst });
      expect(eng.process(small, ctxOf(dma, DECOMPRESS))).toBe(false);
      expect(status(small)).toBe(0x04);
      expect(dma.mem.subarray(dst, dst + 10000).every((b) => b === 0)).toBe(true);
      const exact = zipSqe({ req, inLen: nodeBody(req, data).length, avail: 10000, src, dst });
      expect(eng.process(exact, ctxOf(dma, DECOMPRESS))).toBe(true);
      expect(produced(exact)).toBe(10000);
      const zero = zipSqe({ req, inLen: nodeBody(req, data).length, avail: 0, src, dst });
      expect(eng.process(zero, ctxOf(dma, DECOMPRESS))).toBe(false);
      expect(status(zero)).toBe(0x04);
    }
  });

  it('corrupt, truncated and empty streams, and bad trailers, are reported distinctly', () => {
    const eng = createEngine('zip');
    const data = Buffer.from('the quick brown fox jumps over the lazy dog '.repeat(50));
    const run = (req: number, input: Uint8Array) => {
      const dma = new FlatDma(1 << 20);
      const src = dma.put(input);
      const dst = dma.alloc(data.length * 2);
      const sqe = zipSqe({ req, inLen: input.length, avail: data.length * 2, src, dst });
      const ok = eng.process(sqe, ctxOf(dma, DECOMPRESS));
      return { ok, st: status(sqe), produced: produced(sqe) };
    };
    expect(run(DEFLATE, Uint8Array.of(0xff, 0xff, 0xff))).toEqual({ ok: false, st: 0x05, produced: 0 });
    const body = nodeBody(DEFLATE, data);
    expect(run(DEFLATE, body.subarray(0, body.length - 5))).toEqual({ ok: false, st: 0x06, produced: 0 });
    expect(run(DEFLATE, new Uint8Array(0))).toEqual({ ok: false, st: 0x06, produced: 0 });
    // zlib: Adler-32 mismatch
    const z = Buffer.from(nodeBody(ZLIB, data));
    z[z.length - 1] ^= 1;
    expect(run(ZLIB, z).st).toBe(0x05);
    // gzip: CRC mismatch, ISIZE mismatch, missing trailer
    const g = Buffer.from(nodeBody(GZIP, data));
    const g1 = Buffer.from(g);
    g1[g1.length - 8] ^= 1;
    expect(run(GZIP, g1).st).toBe(0x05);
    const g2 = Buffer.from(g);
    g2[g2.length - 1] ^= 1;
    expect(run(GZIP, g2).st).toBe(0x05);
    expect(run(GZIP, g.subarray(0, g.length - 3)).st).toBe(0x06);
  });

  it('the tag (dw13 for sqe_type 0, dw26 for sqe_type 3) is reported and never written', () => {
    const eng = createEngine('zip');
    for (const sqeType of [0, 3]) {
      const dma = new FlatDma(1 << 16);
      const src = dma.put(Buffer.from('abc'));
      const dst = dma.alloc(64);
      const sqe = zipSqe({ req: DEFLATE, inLen: 3, avail: 64, src, dst, sqeType, tag: 0xcafe0000 + sqeType });
      put32(sqe, sqeType === 3 ? 52 : 104, 0x11111111); // the other tag slot holds a decoy
      const before = sqe.slice();
      expect(eng.tagOf(sqe)).toBe(0xcafe0000 + sqeType);
      expect(eng.process(sqe, ctxOf(dma, COMPRESS))).toBe(true);
      expect(sqe.subarray(52, 56)).toEqual(before.subarray(52, 56));
      expect(sqe.subarray(104, 108)).toEqual(before.subarray(104, 108));
      // only dw0, dw1 and dw3[7:0] changed
      for (let i = 0; i < 128; i++) if (i >= 8 && i !== 12) expect(sqe[i]).toBe(before[i]);
    }
  });

  it('bad request type, buffer type, sqe_type or queue alg_type -> BAD_REQUEST', () => {
    const eng = createEngine('zip');
    const dma = new FlatDma(1 << 16);
    const src = dma.put(Buffer.from('abc'));
    const dst = dma.alloc(64);
    const cases: Array<[ZipReq, number]> = [
      [{ req: 0x00, inLen: 3, avail: 64, src, dst }, COMPRESS],
      [{ req: 0x04, inLen: 3, avail: 64, src, dst }, COMPRESS],
      [{ req: DEFLATE, buf: 2, inLen: 3, avail: 64, src, dst }, COMPRESS],
      [{ req: DEFLATE, sqeType: 5, inLen: 3, avail: 64, src, dst }, COMPRESS],
      [{ req: DEFLATE, inLen: 3, avail: 64, src, dst }, 2],
    ];
    for (const [r, alg] of cases) {
      const sqe = zipSqe(r);
      expect(eng.process(sqe, ctxOf(dma, alg))).toBe(false);
      expect(status(sqe)).toBe(0x01);
    }
    expect(dma.writes).toBe(0);
  });

  it('input_data_length above 16 MiB -> LENGTH without touching memory', () => {
    const eng = createEngine('zip');
    const dma = new FlatDma(1 << 16);
    const sqe = zipSqe({ req: DEFLATE, inLen: 16 * 1024 * 1024 + 1, avail: 64, src: 0x1000, dst: 0x2000 });
    expect(eng.process(sqe, ctxOf(dma, COMPRESS))).toBe(false);
    expect(status(sqe)).toBe(0x08);
    expect(dma.reads + dma.writes).toBe(0);
  });

  it('DMA faults: source read -> DMA_READ_FAULT, destination write -> DMA_WRITE_FAULT', () => {
    const eng = createEngine('zip');
    const data = Buffer.from('fault me '.repeat(100));
    const dma = new FlatDma(1 << 16);
    const src = dma.put(data);
    const dst = dma.alloc(4096);
    dma.readFaults = [[src + 100, src + 101]];
    const a = zipSqe({ req: DEFLATE, inLen: data.length, avail: 4096, src, dst });
    expect(eng.process(a, ctxOf(dma, COMPRESS))).toBe(false);
    expect(status(a)).toBe(0x02);
    expect(dma.mem.subarray(dst, dst + 4096).every((b) => b === 0)).toBe(true);
    dma.readFaults = [];
    dma.writeFaults = [[dst, dst + 1]];
    const b = zipSqe({ req: DEFLATE, inLen: data.length, avail: 4096, src, dst });
    expect(eng.process(b, ctxOf(dma, COMPRESS))).toBe(false);
    expect(status(b)).toBe(0x03);
    expect(produced(b)).toBe(0);
    // unmapped addresses beyond the arena fault too
    const c = zipSqe({ req: DEFLATE, inLen: 10, avail: 4096, src: 2 ** 40, dst });
    expect(eng.process(c, ctxOf(dma, COMPRESS))).toBe(false);
    expect(status(c)).toBe(0x02);
  });
});

describe('ZIP engine, hardware SGLs (spec 6: 64 B header, 32 B entries, next_dma chaining)', () => {
  const cutsArb = fc.array(fc.integer({ min: 0, max: 4000 }), { maxLength: 12 });

  for (const [name, req] of formats) {
    it(`${name}: compress and decompress through random chained SGLs with sge offsets`, () => {
      const eng = createEngine('zip');
      fc.assert(
        fc.property(
          payload,
          cutsArb,
          cutsArb,
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 0, max: 40 }),
          fc.integer({ min: 0, max: 40 }),
          (data, inCuts, outCuts, per, inOff, outOff) => {
            const dma = new FlatDma(1 << 21);
            // compress: source SGL holds junk[inOff] | data
            const srcData = new Uint8Array(inOff + data.length);
            srcData.fill(0xee, 0, inOff);
            srcData.set(data, inOff);
            const srcSegs = scatterRegions(dma, srcData.length, inCuts);
            fillSegments(dma, srcSegs, srcData);
            const cap = outOff + data.length * 2 + 64;
            const dstSegs = scatterRegions(dma, cap, outCuts);
            const sqe = zipSqe({
              req, buf: 1, inLen: data.length, avail: cap - outOff,
              src: buildSgl(dma, srcSegs, { perSgl: per }), dst: buildSgl(dma, dstSegs, { perSgl: per }),
              inOff, outOff,
            });
            expect(eng.process(sqe, ctxOf(dma, COMPRESS))).toBe(true);
            expect(consumed(sqe)).toBe(data.length);
            const n = produced(sqe);
            const compressed = gatherSegments(dma, dstSegs, outOff + n).subarray(outOff);
            expect(new Uint8Array(nodeInflate(req, withHeader(req, compressed)))).toEqual(data);

            // decompress it back through fresh SGLs
            const cSegs = scatterRegions(dma, compressed.length, outCuts);
            fillSegments(dma, cSegs, compressed);
            const pSegs = scatterRegions(dma, data.length + 8, inCuts);
            const back = zipSqe({
              req, buf: 1, inLen: compressed.length, avail: data.length + 8,
              src: buildSgl(dma, cSegs, { perSgl: per }), dst: buildSgl(dma, pSegs, { perSgl: per }),
            });
            expect(eng.process(back, ctxOf(dma, DECOMPRESS))).toBe(true);
            expect(produced(back)).toBe(data.length);
            expect(consumed(back)).toBe(compressed.length);
            expect(gatherSegments(dma, pSegs, data.length)).toEqual(data);
          },
        ),
        { numRuns: 30 },
      );
    });
  }

  it('malformed SGLs -> BAD_SGL: zero chain sum, sum above capacity, early end, next_dma loop', () => {
    const eng = createEngine('zip');
    const dma = new FlatDma(1 << 20);
    const data = Buffer.from('sgl data');
    const seg = { addr: dma.put(data), len: data.length };
    const dst = dma.alloc(256);
    const run = (src: number) => {
      const sqe = zipSqe({ req: DEFLATE, buf: 1, inLen: data.length, avail: 256, src, dst });
      expect(eng.process(sqe, ctxOf(dma, COMPRESS))).toBe(false);
      return status(sqe);
    };
    expect(run(buildSgl(dma, [seg], { chainSum: 0 }))).toBe(0x07);
    expect(run(buildSgl(dma, [seg, seg], { capacity: 1, perSgl: 2 }))).toBe(0x07);
    expect(run(buildSgl(dma, [seg], { chainSum: 3 }))).toBe(0x07); // next_dma 0 before 3 entries
    // a table whose next_dma points to itself, with a chain sum it can never reach
    const loop = buildSgl(dma, [seg], { chainSum: 0xffff });
    put32(dma.mem, loop, loop);
    const before = dma.reads;
    expect(run(loop)).toBe(0x07);
    expect(dma.reads - before).toBeLessThan(3000); // bounded walk
    // data range beyond the SGL's total length
    const short = buildSgl(dma, [{ addr: seg.addr, len: 4 }]);
    expect(run(short)).toBe(0x07);
  });

  it('an unreadable SGL table -> DMA_READ_FAULT; output SGL too small -> BAD_SGL', () => {
    const eng = createEngine('zip');
    const dma = new FlatDma(1 << 20);
    const data = Buffer.from('abcdefgh'.repeat(20));
    const srcSgl = buildSgl(dma, [{ addr: dma.put(data), len: data.length }]);
    const dstSgl = buildSgl(dma, [{ addr: dma.alloc(256), len: 256 }]);
    dma.readFaults = [[srcSgl + 64, srcSgl + 65]];
    const a = zipSqe({ req: DEFLATE, buf: 1, inLen: data.length, avail: 256, src: srcSgl, dst: dstSgl });
    expect(eng.process(a, ctxOf(dma, COMPRESS))).toBe(false);
    expect(status(a)).toBe(0x02);
    dma.readFaults = [];
    const tiny = buildSgl(dma, [{ addr: dma.alloc(4), len: 4 }]);
    const b = zipSqe({ req: DEFLATE, buf: 1, inLen: data.length, avail: 256, src: srcSgl, dst: tiny });
    expect(eng.process(b, ctxOf(dma, COMPRESS))).toBe(false);
    expect(status(b)).toBe(0x07);
  });
});

describe('ZIP SQE constants match the spec layout', () => {
  it('offsets and codes', () => {
    expect([Z.ZIP_CONSUMED, Z.ZIP_PRODUCED, Z.ZIP_DW3, Z.ZIP_INPUT_DATA_LENGTH, Z.ZIP_DW7, Z.ZIP_DW8, Z.ZIP_DW9]).toEqual([
      0, 4, 12, 16, 28, 32, 36,
    ]);
    expect([Z.ZIP_TAG_DW13, Z.ZIP_DEST_AVAIL_OUT, Z.ZIP_SOURCE_ADDR_L, Z.ZIP_SOURCE_ADDR_H]).toEqual([52, 56, 72, 76]);
    expect([Z.ZIP_DEST_ADDR_L, Z.ZIP_DEST_ADDR_H, Z.ZIP_TAG_DW26, Z.ZIP_SQE_SIZE]).toEqual([80, 84, 104, 128]);
    expect([Z.ZIP_REQ_DEFLATE, Z.ZIP_REQ_ZLIB, Z.ZIP_REQ_GZIP]).toEqual([1, 2, 3]);
    expect(createEngine('zip').sqeSize).toBe(128);
  });
});
