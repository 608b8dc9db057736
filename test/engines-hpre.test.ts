/**
 * HPRE engine (qm-hardware.md 6, hpre_sqe) against node:crypto RSA/DH and a plain
 * square-and-multiply BigInt modexp written here, independent of the engine's windowed one.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  constants,
  createDiffieHellman,
  generateKeyPairSync,
  getDiffieHellman,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createEngine } from '../src/hw/engines/engine.js';
import { modPow } from '../src/hw/engines/bigint-math.js';
import { FlatDma, get16, get32, put16, put32, put64 } from './engines-dma-helper.js';

const NCRT = 0;
const CRT = 1;
const DH_G2 = 4;
const DH = 5;

function slowModPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n % m;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

function be(x: bigint, size: number): Buffer {
  const hex = x.toString(16);
  if (hex.length > size * 2) throw new Error('value wider than field');
  return Buffer.from(hex.padStart(size * 2, '0'), 'hex');
}
const num = (b: Uint8Array) => (b.length ? BigInt('0x' + Buffer.from(b).toString('hex')) : 0n);
const b64 = (s: string) => num(Buffer.from(s, 'base64url'));

function sqe(alg: number, keyBytes: number, key: number, input: number, out: number, tag = 0x77): Uint8Array {
  const s = new Uint8Array(64);
  put32(s, 0, alg | (1 << 30)); // driver submits done = 1
  s[4] = keyBytes / 8 - 1;
  put64(s, 8, key);
  put64(s, 16, input);
  put64(s, 24, out);
  put16(s, 32, tag);
  return s;
}
const etype = (s: Uint8Array) => (get32(s, 0) >>> 5) & 0x7ff;
const doneBits = (s: Uint8Array) => get32(s, 0) >>> 30;

interface Rsa {
  size: number;
  n: bigint;
  e: bigint;
  d: bigint;
  p: bigint;
  q: bigint;
  dp: bigint;
  dq: bigint;
  qi: bigint;
  pub: KeyObject;
  priv: KeyObject;
}

function rsaKey(bits: number): Rsa {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  const j = privateKey.export({ format: 'jwk' }) as Record<string, string>;
  return {
    size: bits / 8, n: b64(j.n), e: b64(j.e), d: b64(j.d), p: b64(j.p), q: b64(j.q),
    dp: b64(j.dp), dq: b64(j.dq), qi: b64(j.qi), pub: publicKey, priv: privateKey,
  };
}

/** Runs one HPRE op through a fresh arena; returns the SQE and the output bytes. */
function run(alg: number, size: number, key: Buffer, input: Buffer | null, hw: 'v2' | 'v3' = 'v3') {
  const dma = new FlatDma(1 << 16);
  const k = dma.put(key);
  const i = input ? dma.put(input) : 0;
  const o = dma.alloc(size);
  const s = sqe(alg, size, k, i, o);
  const ok = createEngine('hpre').process(s, { dma, algType: 0, hwVersion: hw });
  return { ok, s, out: dma.get(o, size), dma, o };
}

describe('HPRE RSA (spec 6: non-CRT key exp|n, CRT key dq|dp|q|p|qinv at key_bytes/2 each)', () => {
  const keys: Rsa[] = [];
  beforeAll(() => {
    keys.push(rsaKey(1024), rsaKey(2048));
  });

  it('public op e|n equals publicEncrypt(RSA_NO_PADDING) and the test modexp', () => {
    for (const k of keys) {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: k.size, maxLength: k.size }), (raw) => {
          const m = num(raw) % k.n;
          const r = run(NCRT, k.size, Buffer.concat([be(k.e, k.size), be(k.n, k.size)]), be(m, k.size));
          expect(r.ok).toBe(true);
          expect(etype(r.s)).toBe(0);
          expect(doneBits(r.s)).toBe(3);
          expect(num(r.out)).toBe(slowModPow(m, k.e, k.n));
          const ref = publicEncrypt({ key: k.pub, padding: constants.RSA_NO_PADDING }, be(m, k.size));
          expect(Buffer.from(r.out)).toEqual(ref);
        }),
        { numRuns: 6 },
      );
    }
  });

  it('private op d|n and CRT op agree with privateDecrypt(RSA_NO_PADDING) and with each other', () => {
    for (const k of keys) {
      const half = k.size / 2;
      const crtKey = Buffer.concat([be(k.dq, half), be(k.dp, half), be(k.q, half), be(k.p, half), be(k.qi, half)]);
      fc.assert(
        fc.property(fc.uint8Array({ minLength: k.size, maxLength: k.size }), (raw) => {
          const c = num(raw) % k.n;
          const plain = run(NCRT, k.size, Buffer.concat([be(k.d, k.size), be(k.n, k.size)]), be(c, k.size));
          const crt = run(CRT, k.size, crtKey, be(c, k.size));
          expect(plain.ok && crt.ok).toBe(true);
          const ref = privateDecrypt({ key: k.priv, padding: constants.RSA_NO_PADDING }, be(c, k.size));
          expect(Buffer.from(plain.out)).toEqual(ref);
          expect(Buffer.from(crt.out)).toEqual(ref);
        }),
        { numRuns: 4 },
      );
      // round trip: decrypt(encrypt(m)) = m through the engine alone
      const m = num(randomBytes(k.size - 1));
      const c = run(NCRT, k.size, Buffer.concat([be(k.e, k.size), be(k.n, k.size)]), be(m, k.size));
      expect(num(run(CRT, k.size, crtKey, Buffer.from(c.out)).out)).toBe(m);
    }
  });

  it('input >= modulus -> etype BAD_INPUT (3), output untouched; done = 3', () => {
    const k = keys[0];
    const r = run(NCRT, k.size, Buffer.concat([be(k.e, k.size), be(k.n, k.size)]), be(k.n, k.size));
    expect(r.ok).toBe(false);
    expect(etype(r.s)).toBe(3);
    expect(doneBits(r.s)).toBe(3);
    expect(r.out.every((b) => b === 0)).toBe(true);
    const half = k.size / 2;
    const crtKey = Buffer.concat([be(k.dq, half), be(k.dp, half), be(k.q, half), be(k.p, half), be(k.qi, half)]);
    expect(etype(run(CRT, k.size, crtKey, be(k.n + 1n, k.size)).s)).toBe(3);
  });

  it('4096-bit modexp (largest key) matches the test modexp', () => {
    const size = 512;
    const n = num(randomBytes(size)) | (1n << 4095n) | 1n;
    const d = num(randomBytes(size)) | (1n << 4095n);
    const m = num(randomBytes(size)) % n;
    const r = run(NCRT, size, Buffer.concat([be(d, size), be(n, size)]), be(m, size));
    expect(r.ok).toBe(true);
    expect(num(r.out)).toBe(slowModPow(m, d, n));
  });
});

describe('HPRE DH (spec 6: key xa|p; DH_G2 computes 2^xa mod p, DH in^xa mod p)', () => {
  for (const group of ['modp1', 'modp2', 'modp14'] as const) {
    it(`${group}: public keys and shared secret equal node:crypto`, () => {
      const alice = getDiffieHellman(group);
      const bob = getDiffieHellman(group);
      alice.generateKeys();
      bob.generateKeys();
      const p = alice.getPrime();
      const size = p.length;
      const pad = (b: Buffer) => Buffer.concat([Buffer.alloc(size - b.length), b]);
      const aKey = Buffer.concat([pad(alice.getPrivateKey()), p]);
      const pubA = run(DH_G2, size, aKey, null);
      expect(pubA.ok).toBe(true);
      expect(Buffer.from(pubA.out)).toEqual(pad(alice.getPublicKey()));
      const shared = run(DH, size, aKey, pad(bob.getPublicKey()));
      expect(shared.ok).toBe(true);
      expect(num(shared.out)).toBe(num(bob.computeSecret(alice.getPublicKey())));
      // explicit generator g = 2 through DH equals DH_G2
      expect(Buffer.from(run(DH, size, aKey, be(2n, size)).out)).toEqual(Buffer.from(pubA.out));
    });
  }

  it('createDiffieHellman with a custom generator: engine DH matches computeSecret', () => {
    const prime = getDiffieHellman('modp1').getPrime();
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 1000 }), (g) => {
        const a = createDiffieHellman(prime, g);
        const b = createDiffieHellman(prime, g);
        a.generateKeys();
        b.generateKeys();
        const size = prime.length;
        const key = Buffer.concat([be(num(a.getPrivateKey()), size), prime]);
        const pub = run(DH, size, key, be(BigInt(g), size));
        expect(num(pub.out)).toBe(num(a.getPublicKey()));
        const s = run(DH, size, key, be(num(b.getPublicKey()), size));
        expect(num(s.out)).toBe(num(b.computeSecret(a.getPublicKey())));
      }),
      { numRuns: 3 },
    );
  });
});

describe('HPRE error paths and write-back', () => {
  const size = 128;
  const n = num(randomBytes(size)) | (1n << 1023n) | 1n;
  const key = Buffer.concat([be(65537n, size), be(n, size)]);

  it('unsupported algorithms -> BAD_ALG (1); unsupported key sizes -> BAD_LENGTH (2)', () => {
    for (const alg of [2, 3, 6, 0xd, 0x10, 0x1f]) {
      const r = run(alg, size, key, be(5n, size));
      expect(r.ok).toBe(false);
      expect(etype(r.s)).toBe(1);
      expect(get32(r.s, 0) & 0x1f).toBe(alg);
    }
    // RSA 512/1536 are done in software by Linux; DH 768 is valid, RSA 768 is not
    const sizes: Array<[number, number, number]> = [[NCRT, 64, 2], [NCRT, 192, 2], [CRT, 96, 2], [DH, 64, 2], [NCRT, 96, 2]];
    for (const [alg, sz, want] of sizes) {
      const m = num(randomBytes(sz)) | 1n | (1n << BigInt(sz * 8 - 1));
      const r = run(alg, sz, Buffer.concat([be(3n, sz), be(m, sz), Buffer.alloc(sz)]), be(2n, sz));
      expect(etype(r.s)).toBe(want);
    }
  });

  it('even, zero or one modulus -> BAD_KEY (4)', () => {
    for (const m of [n - 1n, 0n, 1n]) {
      const r = run(NCRT, size, Buffer.concat([be(3n, size), be(m, size)]), be(0n, size));
      expect(etype(r.s)).toBe(4);
      expect(r.dma.writes).toBe(0);
    }
    const half = size / 2;
    const crt = Buffer.concat([be(1n, half), be(1n, half), be(4n, half), be(7n, half), be(1n, half)]);
    expect(etype(run(CRT, size, crt, be(3n, size)).s)).toBe(4);
  });

  it('DMA read faults on key or input -> DMA_READ (5); output write fault -> DMA_WRITE (6)', () => {
    const eng = createEngine('hpre');
    const dma = new FlatDma(1 << 16);
    const k = dma.put(key);
    const i = dma.put(be(12345n, size));
    const o = dma.alloc(size);
    for (const [faults, want] of [
      [[[k + size + 3, k + size + 4]], 5],
      [[[i, i + 1]], 5],
    ] as Array<[Array<[number, number]>, number]>) {
      dma.readFaults = faults;
      const s = sqe(NCRT, size, k, i, o);
      expect(eng.process(s, { dma, algType: 0, hwVersion: 'v3' })).toBe(false);
      expect(etype(s)).toBe(want);
    }
    expect(dma.writes).toBe(0);
    dma.readFaults = [];
    dma.writeFaults = [[o + size - 1, o + size]];
    const s = sqe(NCRT, size, k, i, o);
    expect(eng.process(s, { dma, algType: 0, hwVersion: 'v3' })).toBe(false);
    expect(etype(s)).toBe(6);
    expect(doneBits(s)).toBe(3);
  });

  it('write-back touches only dw0 etype/done; alg bits and tag @32 (u16) preserved', () => {
    const eng = createEngine('hpre');
    const dma = new FlatDma(1 << 16);
    const s = sqe(NCRT, size, dma.put(key), dma.put(be(99n, size)), dma.alloc(size), 0xfeed);
    s[2] = 0x5a; // dw0 bits [23:16] are reserved: preserved
    const before = s.slice();
    expect(eng.tagOf(s)).toBe(0xfeed);
    expect(eng.process(s, { dma, algType: 0, hwVersion: 'v3' })).toBe(true);
    expect(s[2]).toBe(0x5a);
    expect(s.subarray(4)).toEqual(before.subarray(4));
    expect(get16(s, 32)).toBe(0xfeed);
    expect(get32(s, 0)).toBe(((0x5a << 16) | (3 << 30) | NCRT) >>> 0);
    expect(eng.sqeSize).toBe(64);
  });

  it('modPow agrees with plain square-and-multiply on random operands (all window sizes)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 700n) - 1n }), fc.bigInt({ min: 0n, max: (1n << 2000n) - 1n }), fc.bigInt({ min: 1n, max: (1n << 600n) }), (b, e, m) => {
        expect(modPow(b, e, m)).toBe(slowModPow(b, e, m));
      }),
      { numRuns: 60 },
    );
  });
});
