/**
 * Full-path jobs through the guest VF driver (SQE -> DMA -> engine -> CQE -> EQE -> MSI ->
 * completion) for every engine on V2, V3 and V4, checked against node:zlib, node:crypto and
 * an independent BigInt square-and-multiply.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as crypto from 'node:crypto';
import * as zlib from 'node:zlib';
import { KernelError } from '../src/uapi/errno.js';
import { createBareVm, type BareVm } from '../src/guest/bare-vm.js';
import type { RsaKey } from '../src/guest/accel.js';

const HW = ['v2', 'v3', 'v4'] as const;

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return 'no error';
}

const vms = new Map<string, BareVm>();
function vm(profile: string): BareVm {
  let v = vms.get(profile);
  if (!v) {
    v = createBareVm({ profile });
    vms.set(profile, v);
  }
  return v;
}

function nodeCompress(data: Uint8Array, f: 'deflate' | 'zlib' | 'gzip'): Buffer {
  return f === 'deflate' ? zlib.deflateRawSync(data) : f === 'zlib' ? zlib.deflateSync(data) : zlib.gzipSync(data);
}

function nodeDecompress(data: Uint8Array, f: 'deflate' | 'zlib' | 'gzip'): Buffer {
  return f === 'deflate' ? zlib.inflateRawSync(data) : f === 'zlib' ? zlib.inflateSync(data) : zlib.gunzipSync(data);
}

/** Payloads that compress well, badly and not at all. */
const payload = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }),
  fc.tuple(fc.string({ maxLength: 40 }), fc.integer({ min: 1, max: 200 })).map(([s, n]) => new Uint8Array(Buffer.from(s.repeat(n)))),
);

describe.each(HW)('ZIP %s (qm-hardware.md 6, driver-side zlib/gzip headers)', (hw) => {
  const formats = ['deflate', 'zlib', 'gzip'] as const;

  it('compress gives exactly node:zlib\'s stream, decompress gives the data back', () => {
    const a = vm(`zip-${hw}`).accel;
    fc.assert(
      fc.property(payload, fc.constantFrom(...formats), (data, f) => {
        const c = a.compress(data, f);
        // the engine emits body+trailer, the driver prepends the header: same bytes as node
        expect(Buffer.from(c).equals(nodeCompress(data, f))).toBe(true);
        expect(Buffer.from(nodeDecompress(c, f)).equals(Buffer.from(data))).toBe(true);
        expect(Buffer.from(a.decompress(c, f)).equals(Buffer.from(data))).toBe(true);
      }),
      { numRuns: 12 },
    );
  });

  it('1 MiB round trip and a 4 MiB run of zeros (output buffer grows and the job is resubmitted)', () => {
    const a = vm(`zip-${hw}`).accel;
    const big = new Uint8Array(crypto.randomBytes(1 << 20));
    big.fill(0x41, 0, 300_000);
    const c = a.compress(big, 'gzip');
    expect(Buffer.from(zlib.gunzipSync(c)).equals(Buffer.from(big))).toBe(true);
    const zeros = new Uint8Array(4 << 20);
    const cz = zlib.deflateSync(zeros);
    expect(cz.length).toBeLessThan(8 * 1024);
    const back = a.decompress(cz, 'zlib');
    expect(back.length).toBe(zeros.length);
    expect(back.every((b) => b === 0)).toBe(true);
  });

  it('gzip headers with FEXTRA, FNAME, FCOMMENT and FHCRC are stripped (RFC 1952)', () => {
    const a = vm(`zip-${hw}`).accel;
    const data = new Uint8Array(Buffer.from('header fields test '.repeat(50)));
    const plain = zlib.gzipSync(data);
    const extra = [0x04, 0x00, 0xaa, 0xbb, 0xcc, 0xdd];
    const name = [...Buffer.from('file.txt'), 0];
    const comment = [...Buffer.from('a comment'), 0];
    const head = [0x1f, 0x8b, 8, 0x04 | 0x08 | 0x10 | 0x02, 0, 0, 0, 0, 0, 3, ...extra, ...name, ...comment];
    const hcrc = zlib.crc32(Buffer.from(head)) & 0xffff;
    const full = Buffer.concat([Buffer.from([...head, hcrc & 0xff, hcrc >>> 8]), plain.subarray(10)]);
    expect(Buffer.from(zlib.gunzipSync(full)).equals(Buffer.from(data))).toBe(true);
    expect(Buffer.from(a.decompress(full, 'gzip')).equals(Buffer.from(data))).toBe(true);
  });

  it('errors: corrupt stream EIO, output bound EOVERFLOW, bad headers EINVAL, preset dictionary EOPNOTSUPP', () => {
    const a = vm(`zip-${hw}`).accel;
    const data = new Uint8Array(Buffer.from('x'.repeat(5000)));
    const c = zlib.deflateSync(data);
    const corrupt = Buffer.from(c);
    corrupt[corrupt.length - 1] ^= 0xff; // Adler-32 trailer
    expect(code(() => a.decompress(corrupt, 'zlib'))).toBe('EIO');
    expect(code(() => a.decompress(c, 'zlib', 1000))).toBe('EOVERFLOW');
    expect(code(() => a.decompress(Uint8Array.of(0x78, 0x9d, 1, 2), 'zlib'))).toBe('EINVAL');
    expect(code(() => a.decompress(Uint8Array.of(0x1f, 0x8c, 8, 0, 0, 0, 0, 0, 0, 3, 0), 'gzip'))).toBe('EINVAL');
    // FDICT: CMF 0x78, FLG with bit 5 and a valid check: (0x78<<8 | 0xbb) % 31 == 0
    expect(code(() => a.decompress(Uint8Array.of(0x78, 0xbb, 0, 0, 0, 0, 1, 2), 'zlib'))).toBe('EOPNOTSUPP');
    expect(code(() => a.compress(data, 'lz4' as never))).toBe('EINVAL');
    // the device and the queue are fine afterwards
    expect(Buffer.from(a.decompress(c, 'zlib')).equals(Buffer.from(data))).toBe(true);
  });

  it('a ZIP VF refuses SEC and HPRE jobs with EOPNOTSUPP', () => {
    const a = vm(`zip-${hw}`).accel;
    expect(code(() => a.hmac('hmac-sha1', new Uint8Array(4), new Uint8Array(4)))).toBe('EOPNOTSUPP');
    expect(code(() => a.dh(23n, 5n))).toBe('EOPNOTSUPP');
  });
});

/** [our name, node name, key bytes, iv bytes, block] */
const CIPHERS: [string, string, number, number, number][] = [
  ['aes-128-ecb', 'aes-128-ecb', 16, 0, 16],
  ['aes-192-cbc', 'aes-192-cbc', 24, 16, 16],
  ['aes-256-cbc', 'aes-256-cbc', 32, 16, 16],
  ['aes-128-ctr', 'aes-128-ctr', 16, 16, 1],
  ['aes-256-ctr', 'aes-256-ctr', 32, 16, 1],
  ['aes-128-xts', 'aes-128-xts', 32, 16, 1],
  ['aes-256-xts', 'aes-256-xts', 64, 16, 1],
  ['des-ede3-cbc', 'des-ede3-cbc', 24, 8, 8],
  ['des-ede3-ecb', 'des-ede3', 24, 0, 8],
  ['sm4-cbc', 'sm4-cbc', 16, 16, 16],
  ['sm4-ctr', 'sm4-ctr', 16, 16, 1],
];

function nodeCipher(name: string, key: Uint8Array, iv: Uint8Array, data: Uint8Array, dec: boolean): Buffer {
  const c = dec ? crypto.createDecipheriv(name, key, iv.length ? iv : null) : crypto.createCipheriv(name, key, iv.length ? iv : null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

/** XTS needs two different key halves. */
function keyFor(len: number, seed: Uint8Array): Uint8Array {
  const k = new Uint8Array(len);
  for (let i = 0; i < len; i++) k[i] = (seed[i % seed.length]! + i * 37) & 0xff;
  return k;
}

describe.each(HW)('SEC %s (type %s BDs)', (hw) => {
  for (const [alg, nodeName, keyLen, ivLen, block] of CIPHERS) {
    const ctr = alg.includes('-ctr');
    it(`${alg} encrypt/decrypt matches node:crypto${ctr && hw === 'v2' ? ' (V2: EOPNOTSUPP)' : ''}`, () => {
      const a = vm(`sec-${hw}`).accel;
      if (ctr && hw === 'v2') {
        expect(code(() => a.encrypt(alg, new Uint8Array(keyLen), new Uint8Array(ivLen), new Uint8Array(16)))).toBe('EOPNOTSUPP');
        return;
      }
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 8, maxLength: 64 }), fc.uint8Array({ minLength: 16, maxLength: 16 }),
          fc.integer({ min: 1, max: 300 }), (seed, iv0, blocks) => {
            const key = keyFor(keyLen, seed);
            const iv = iv0.subarray(0, ivLen);
            const len = block === 1 ? blocks + 15 : blocks * block;
            const data = new Uint8Array(crypto.randomBytes(len));
            const ct = a.encrypt(alg, key, iv, data);
            expect(Buffer.from(ct).equals(nodeCipher(nodeName, key, iv, data, false))).toBe(true);
            expect(Buffer.from(a.decrypt(alg, key, iv, ct)).equals(Buffer.from(data))).toBe(true);
          }),
        { numRuns: 4 },
      );
    });
  }

  it('HMAC-SHA1/256/512 match node:crypto for keys of every length, incl. longer than the block', () => {
    const a = vm(`sec-${hw}`).accel;
    fc.assert(
      fc.property(fc.constantFrom('sha1', 'sha256', 'sha512'), fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 3000 }),
        (h, key, data) => {
          const mac = a.hmac(`hmac-${h}`, key, data);
          expect(Buffer.from(mac).equals(crypto.createHmac(h, key).update(data).digest())).toBe(true);
        }),
      { numRuns: 25 },
    );
  });

  it('request checks: unknown alg ENOENT, key/IV/length EINVAL, empty request is empty, XTS empty EINVAL', () => {
    const a = vm(`sec-${hw}`).accel;
    const k16 = new Uint8Array(16);
    expect(code(() => a.encrypt('aes-512-cbc', k16, k16, k16))).toBe('ENOENT');
    expect(code(() => a.hmac('hmac-md5', k16, k16))).toBe('ENOENT');
    expect(code(() => a.encrypt('aes-128-cbc', new Uint8Array(15), k16, k16))).toBe('EINVAL');
    expect(code(() => a.encrypt('aes-128-cbc', k16, new Uint8Array(8), k16))).toBe('EINVAL');
    expect(code(() => a.encrypt('aes-128-cbc', k16, k16, new Uint8Array(17)))).toBe('EINVAL');
    expect(code(() => a.encrypt('aes-128-xts', new Uint8Array(32), k16, new Uint8Array(0)))).toBe('EINVAL');
    expect(a.encrypt('aes-128-cbc', k16, k16, new Uint8Array(0)).length).toBe(0);
    expect(code(() => a.compress(k16, 'gzip'))).toBe('EOPNOTSUPP');
  });

  it('a device-side failure is EIO: XTS with equal key halves (the engine rejects the key)', () => {
    const a = vm(`sec-${hw}`).accel;
    expect(code(() => a.encrypt('aes-128-xts', new Uint8Array(32), new Uint8Array(16), new Uint8Array(32)))).toBe('EIO');
    const key = keyFor(32, Uint8Array.of(1, 2, 3));
    const data = new Uint8Array(48).fill(7);
    expect(Buffer.from(a.encrypt('aes-128-xts', key, new Uint8Array(16), data))
      .equals(nodeCipher('aes-128-xts', key, new Uint8Array(16), data, false))).toBe(true);
  });
});

// ---------------------------------------------------------------- HPRE

/** Plain square-and-multiply, independent of the engine's windowed modPow. */
function powmod(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

const big = (b: Uint8Array | Buffer): bigint => (b.length ? BigInt('0x' + Buffer.from(b).toString('hex')) : 0n);
const b64 = (s: string | undefined): Uint8Array => new Uint8Array(Buffer.from(s!, 'base64url'));

function rsaKey(bits: number): { key: RsaKey; pem: crypto.KeyObject; n: bigint; e: bigint; d: bigint } {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: bits });
  const j = privateKey.export({ format: 'jwk' });
  const key: RsaKey = { n: b64(j.n), e: b64(j.e), d: b64(j.d), p: b64(j.p), q: b64(j.q), dp: b64(j.dp), dq: b64(j.dq), qinv: b64(j.qi) };
  return { key, pem: privateKey, n: big(b64(j.n)), e: big(b64(j.e)), d: big(b64(j.d)) };
}

const rsa1024 = rsaKey(1024);
const rsa2048 = rsaKey(2048);

describe.each(HW)('HPRE %s', (hw) => {
  it('RSA-1024 public / private (CRT and d|n) against BigInt and node:crypto NO_PADDING', () => {
    const a = vm(`hpre-${hw}`).accel;
    const { key, pem, n, e, d } = rsa1024;
    const noCrt: RsaKey = { n: key.n, d: key.d };
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: n - 1n }), (m) => {
        const mb = Buffer.from(m.toString(16).padStart(256, '0'), 'hex');
        const c = a.rsa('public', key, mb);
        expect(c.length).toBe(128);
        expect(big(c)).toBe(powmod(m, e, n));
        expect(Buffer.from(c).equals(crypto.publicEncrypt({ key: pem, padding: crypto.constants.RSA_NO_PADDING }, mb))).toBe(true);
        expect(big(a.rsa('private', key, c))).toBe(m);
        expect(big(a.rsa('private', noCrt, c))).toBe(powmod(big(c), d, n));
      }),
      { numRuns: 4 },
    );
  });

  it('RSA-2048 private matches crypto.privateDecrypt; short inputs are right-aligned', () => {
    const a = vm(`hpre-${hw}`).accel;
    const { key, pem } = rsa2048;
    const msg = new Uint8Array(crypto.randomBytes(200));
    const c = a.rsa('public', key, msg);
    const padded = Buffer.concat([Buffer.alloc(56), msg]);
    expect(Buffer.from(c).equals(crypto.publicEncrypt({ key: pem, padding: crypto.constants.RSA_NO_PADDING }, padded))).toBe(true);
    const p = a.rsa('private', key, c);
    expect(Buffer.from(p).equals(crypto.privateDecrypt({ key: pem, padding: crypto.constants.RSA_NO_PADDING }, c))).toBe(true);
  });

  it('RSA errors: unsupported size EOPNOTSUPP, long input EINVAL, input >= n is a device error (EINVAL)', () => {
    const a = vm(`hpre-${hw}`).accel;
    const { key, n } = rsa1024;
    expect(code(() => a.rsa('public', { n: (1n << 511n) + 1n, e: 3n }, new Uint8Array(8)))).toBe('EOPNOTSUPP');
    expect(code(() => a.rsa('public', key, new Uint8Array(129)))).toBe('EINVAL');
    const tooBig = Buffer.from((n + 1n).toString(16).padStart(256, '0'), 'hex');
    expect(code(() => a.rsa('public', key, tooBig))).toBe('EINVAL');
    expect(code(() => a.rsa('private', { n: key.n }, new Uint8Array(1)))).toBe('EINVAL');
  });

  it('DH with the 1024-bit MODP group: 2^xa (DH_G2) and base^xa against node:crypto and BigInt', () => {
    const a = vm(`hpre-${hw}`).accel;
    const grp = crypto.getDiffieHellman('modp2');
    const p = big(grp.getPrime());
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 20, maxLength: 127 }), fc.uint8Array({ minLength: 1, maxLength: 127 }), (xaB, baseB) => {
        const xa = big(xaB);
        const pub = a.dh(p, xa);
        expect(pub.length).toBe(128);
        const dh = crypto.createDiffieHellman(grp.getPrime(), Buffer.from([2]));
        dh.setPrivateKey(Buffer.from(xaB));
        dh.generateKeys();
        expect(big(pub)).toBe(big(dh.getPublicKey()));
        const base = big(baseB) % p;
        expect(big(a.dh(p, xa, base))).toBe(powmod(base, xa, p));
      }),
      { numRuns: 4 },
    );
  });
});
