/**
 * Engines keep state between SQEs to avoid per-request work: SEC stages keys and IVs in
 * buffers it owns, ZIP sizes its decompression output chunk from the previous request. These
 * tests run sequences chosen to defeat such state (shrinking key lengths, a 2-key 3DES key
 * right after a longer one, streams whose expansion ratio swings by orders of magnitude) and
 * check every result against node:crypto / node:zlib. SQEs are built from the spec offsets
 * (qm-hardware.md 6), not from src constants.
 */
import { describe, expect, it } from 'vitest';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { createEngine } from '../src/hw/engines/engine.js';
import { FlatDma, get16, get32, put16, put32, put64 } from './engines-dma-helper.js';

/** Type 3 BD (sec_sqe3): cipher-only or HMAC-only requests on flat buffers. */
function bd3(o: {
  cipher?: number; cAlg?: number; cMode?: number; cKey?: number; cLen?: number;
  auth?: number; aAlg?: number; macWords?: number; aKeyWords?: number; aLen?: number;
  keyAddr?: number; ivAddr?: number; aKeyAddr?: number; macAddr?: number; src: number; dst?: number;
}): Uint8Array {
  const s = new Uint8Array(128);
  put32(s, 0, 3);
  put16(s, 4, (o.cipher ?? 0) | ((o.cKey ?? 0) << 13));
  s[6] = (o.cMode ?? 0) | ((o.cAlg ?? 0) << 4);
  put64(s, 16, o.src);
  put64(s, 24, o.aKeyAddr ?? 0);
  put64(s, 48, o.keyAddr ?? 0);
  put32(s, 56, (o.auth ?? 0) | ((o.macWords ?? 0) << 4) | ((o.aKeyWords ?? 0) << 9) | ((o.aAlg ?? 0) << 15) | (2 << 25));
  put32(s, 68, o.aLen ?? 0);
  put32(s, 72, o.cLen ?? 0);
  put64(s, 76, o.dst ?? 0);
  put64(s, 84, o.macAddr ?? 0);
  put64(s, 92, o.ivAddr ?? 0);
  return s;
}

const secOk = (s: Uint8Array) => (get16(s, 112) & 1) === 1 && s[114] === 0 && ((get16(s, 112) >> 1) & 7) === 0;

describe('SEC engine: staged key material never leaks between BDs (spec 6, c_key / a_key)', () => {
  // [label, c_alg, c_mode, c_key_len code, key bytes, iv bytes, node reference, reference key]
  const seq: Array<[string, number, number, number, number, number, string, (k: Buffer) => Buffer]> = [
    ['aes-256-xts', 2, 7, 2, 64, 16, 'aes-256-xts', (k) => k],
    ['aes-256-cbc', 2, 1, 2, 32, 16, 'aes-256-cbc', (k) => k],
    // 2-key 3DES after a longer key: the third key must be K1, not stale bytes
    ['3des-2key-cbc', 1, 1, 3, 16, 8, 'des-ede3-cbc', (k) => Buffer.concat([k, k.subarray(0, 8)])],
    ['aes-128-ecb', 2, 0, 0, 16, 0, 'aes-128-ecb', (k) => k],
    ['3des-3key-cbc', 1, 1, 1, 24, 8, 'des-ede3-cbc', (k) => k],
    ['3des-2key-ecb', 1, 0, 3, 16, 0, 'des-ede3-ecb', (k) => Buffer.concat([k, k.subarray(0, 8)])],
    ['aes-192-ctr', 2, 4, 1, 24, 16, 'aes-192-ctr', (k) => k],
  ];

  it('a sequence of ciphers with changing key and IV lengths matches node:crypto each time', () => {
    const eng = createEngine('sec');
    const dma = new FlatDma(1 << 20);
    for (let round = 0; round < 3; round++) {
      for (const [label, cAlg, cMode, cKey, keyLen, ivLen, ref, refKey] of seq) {
        const key = randomBytes(keyLen);
        const iv = ivLen > 0 ? randomBytes(ivLen) : null;
        const data = randomBytes(48 * (round + 1));
        const src = dma.put(data);
        const dst = dma.alloc(data.length);
        const s = bd3({
          cipher: 1, cAlg, cMode, cKey, cLen: data.length, keyAddr: dma.put(key),
          ivAddr: iv ? dma.put(iv) : 0, src, dst,
        });
        expect(eng.process(s, { dma, algType: 0, hwVersion: 'v3' }), label).toBe(true);
        expect(secOk(s), label).toBe(true);
        const c = createCipheriv(ref, refKey(key), iv);
        c.setAutoPadding(false);
        expect(Buffer.from(dma.get(dst, data.length)).equals(Buffer.concat([c.update(data), c.final()])), label).toBe(true);
      }
    }
  });

  it('HMAC keys of shrinking and growing length match node:crypto createHmac', () => {
    const eng = createEngine('sec');
    const dma = new FlatDma(1 << 20);
    // a_alg 0x11 = HMAC-SHA256 (Linux A_HMAC_SHA256); key lengths in words
    for (const words of [63, 16, 1, 8, 0, 32, 5]) {
      const key = randomBytes(words * 4);
      const data = randomBytes(300 + words);
      const mac = dma.alloc(32);
      const s = bd3({
        auth: 1, aAlg: 0x11, macWords: 8, aKeyWords: words, aLen: data.length,
        aKeyAddr: words > 0 ? dma.put(key) : 0, macAddr: mac, src: dma.put(data),
      });
      expect(eng.process(s, { dma, algType: 0, hwVersion: 'v3' })).toBe(true);
      expect(secOk(s)).toBe(true);
      expect(Buffer.from(dma.get(mac, 32)).equals(createHmac('sha256', key).update(data).digest())).toBe(true);
    }
  });

  it('a verify BD after a generate BD compares against its own MAC, not a staged one', () => {
    const eng = createEngine('sec');
    const dma = new FlatDma(1 << 20);
    const key = randomBytes(32);
    const data = randomBytes(200);
    const good = createHmac('sha256', key).update(data).digest();
    const run = (auth: number, macBytes: Uint8Array) => {
      const mac = dma.put(macBytes);
      const s = bd3({ auth, aAlg: 0x11, macWords: 8, aKeyWords: 8, aLen: data.length, aKeyAddr: dma.put(key), macAddr: mac, src: dma.put(data) });
      eng.process(s, { dma, algType: 0, hwVersion: 'v3' });
      return s;
    };
    expect(secOk(run(1, new Uint8Array(32)))).toBe(true);
    const bad = Buffer.from(good);
    bad[31] ^= 1;
    const s1 = run(2, bad);
    expect((get16(s1, 112) >> 1) & 7).toBe(2); // icv mismatch reported
    expect(secOk(run(2, good))).toBe(true);
    expect((get16(run(2, bad), 112) >> 1) & 7).toBe(2);
  });
});

/** hisi_zip_sqe, sqe_type 3, deflate (req type 1), flat buffers. */
function zipSqe(inLen: number, avail: number, src: number, dst: number): Uint8Array {
  const s = new Uint8Array(128);
  put32(s, 16, inLen);
  put32(s, 28, 3 << 28);
  put32(s, 36, 1);
  put32(s, 56, avail);
  put32(s, 72, src);
  put32(s, 80, dst);
  return s;
}

describe('ZIP engine: decompression output sizing adapts without changing results (spec 6, dw14)', () => {
  const zeros = (n: number) => new Uint8Array(n);
  const text = (n: number) => new Uint8Array(Buffer.from('the quick brown fox jumps over the lazy dog '.repeat(Math.ceil(n / 44))).subarray(0, n));
  // expansion ratios from ~1 (random) to ~1000 (zeros), in an order that makes each guess wrong
  const streams: Array<[string, Uint8Array]> = [
    ['random 40000', new Uint8Array(randomBytes(40000))],
    ['zeros 900000', zeros(900_000)],
    ['random 3000', new Uint8Array(randomBytes(3000))],
    ['text 300000', text(300_000)],
    ['zeros 70000', zeros(70_000)],
    ['random 100000', new Uint8Array(randomBytes(100_000))],
    ['empty body', new Uint8Array(0)],
    ['text 20000', text(20_000)],
  ];

  it('every stream of a swinging sequence inflates to exactly node:zlib output', () => {
    const eng = createEngine('zip');
    const dma = new FlatDma(4 << 20);
    const dst = dma.alloc(1 << 20);
    for (const [label, plain] of streams) {
      const packed = zlib.deflateRawSync(plain);
      const src = dma.put(packed);
      dma.mem.fill(0xee, dst, dst + (1 << 20)); // no earlier output can pass for this one
      const s = zipSqe(packed.length, 1 << 20, src, dst);
      expect(eng.process(s, { dma, algType: 1, hwVersion: 'v3' }), label).toBe(true);
      expect(s[12], label).toBe(0);
      expect(get32(s, 0), label).toBe(packed.length); // consumed
      expect(get32(s, 4), label).toBe(plain.length); // produced
      expect(Buffer.from(dma.get(dst, plain.length)).equals(zlib.inflateRawSync(packed)), label).toBe(true);
    }
  });

  it('dest_avail_out exactly the output size succeeds and one byte less overflows, after any history', () => {
    const eng = createEngine('zip');
    const dma = new FlatDma(8 << 20);
    for (const [label, plain] of streams) {
      if (plain.length === 0) continue;
      const packed = zlib.deflateRawSync(plain);
      const src = dma.put(packed);
      const dst = dma.alloc(plain.length);
      const tight = zipSqe(packed.length, plain.length, src, dst);
      expect(eng.process(tight, { dma, algType: 1, hwVersion: 'v3' }), label).toBe(true);
      expect(get32(tight, 4), label).toBe(plain.length);
      const short = zipSqe(packed.length, plain.length - 1, src, dst);
      expect(eng.process(short, { dma, algType: 1, hwVersion: 'v3' }), label).toBe(false);
      expect(short[12], label).toBe(0x04); // OUTPUT_OVERFLOW, this model's code
      expect(get32(short, 4), label).toBe(0);
    }
  });
});
