/**
 * A deterministic RSA key for the HPRE workload: the same seed gives the same key in every
 * process, so a run can be repeated exactly. Primes come from a SHA-256 counter stream,
 * sieved by small primes and checked with Miller-Rabin (fixed bases; 24 rounds leave an
 * error below 2^-48, irrelevant for a test key). The key is handed to node:crypto as a JWK,
 * so expected outputs come from an independent implementation.
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { fail } from '../uapi/errno.js';

export interface RsaTestKey {
  bits: number;
  n: bigint;
  e: bigint;
  d: bigint;
  p: bigint;
  q: bigint;
  dp: bigint;
  dq: bigint;
  qinv: bigint;
}

const SMALL_PRIMES: number[] = [];
for (let i = 3; SMALL_PRIMES.length < 300; i += 2) {
  if (SMALL_PRIMES.every((p) => i % p !== 0)) SMALL_PRIMES.push(i);
}

export function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let r = 1n;
  let b = base % mod;
  let e = exp;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % mod;
    b = (b * b) % mod;
    e >>= 1n;
  }
  return r;
}

function modInverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [a % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) fail('EINVAL', 'no modular inverse');
  return ((s0 % m) + m) % m;
}

function isProbablePrime(n: bigint): boolean {
  for (const p of SMALL_PRIMES) if (n % BigInt(p) === 0n) return n === BigInt(p);
  let d = n - 1n;
  let s = 0;
  while ((d & 1n) === 0n) {
    d >>= 1n;
    s++;
  }
  for (const a of SMALL_PRIMES.slice(0, 24)) {
    let x = modPow(BigInt(a), d, n);
    if (x === 1n || x === n - 1n) continue;
    let composite = true;
    for (let i = 1; i < s; i++) {
      x = (x * x) % n;
      if (x === n - 1n) {
        composite = false;
        break;
      }
    }
    if (composite) return false;
  }
  return true;
}

/** SHA-256 counter stream: `bytes` bytes for (label, counter). */
function stream(label: string, counter: number, bytes: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; parts.length * 32 < bytes; i++) parts.push(createHash('sha256').update(`${label}/${counter}/${i}`).digest());
  return Buffer.concat(parts).subarray(0, bytes);
}

function prime(bits: number, label: string, e: bigint): bigint {
  for (let c = 0; c < 1_000_000; c++) {
    const b = stream(label, c, bits / 8);
    b[0]! |= 0xc0; // top two bits: the product has exactly 2*bits bits
    b[b.length - 1]! |= 1;
    const cand = BigInt('0x' + b.toString('hex'));
    if ((cand - 1n) % e === 0n) continue;
    if (isProbablePrime(cand)) return cand;
  }
  return fail('EAGAIN', 'no prime found');
}

const cache = new Map<string, RsaTestKey>();

/** The key of `bits` (512..4096, multiple of 16) for `seed`. */
export function rsaTestKey(bits: number, seed: number): RsaTestKey {
  if (!Number.isInteger(bits) || bits < 512 || bits > 4096 || bits % 16 !== 0) fail('EINVAL', `RSA size ${bits}`);
  const id = `${bits}/${seed}`;
  const have = cache.get(id);
  if (have) return have;
  const e = 65537n;
  const p = prime(bits / 2, `rsa-p/${id}`, e);
  let q = prime(bits / 2, `rsa-q/${id}`, e);
  for (let k = 1; q === p; k++) q = prime(bits / 2, `rsa-q/${id}/${k}`, e);
  const [hi, lo] = p > q ? [p, q] : [q, p];
  const n = hi * lo;
  const d = modInverse(e, (hi - 1n) * (lo - 1n));
  const key: RsaTestKey = { bits, n, e, d, p: hi, q: lo, dp: d % (hi - 1n), dq: d % (lo - 1n), qinv: modInverse(lo, hi) };
  cache.set(id, key);
  return key;
}

function b64url(x: bigint): string {
  let h = x.toString(16);
  if (h.length % 2) h = '0' + h;
  return Buffer.from(h, 'hex').toString('base64url');
}

/** The key as node:crypto KeyObjects (JWK import). */
export function rsaKeyObjects(k: RsaTestKey): { publicKey: KeyObject; privateKey: KeyObject } {
  const jwk = {
    kty: 'RSA', n: b64url(k.n), e: b64url(k.e), d: b64url(k.d), p: b64url(k.p), q: b64url(k.q),
    dp: b64url(k.dp), dq: b64url(k.dq), qi: b64url(k.qinv),
  };
  return {
    publicKey: createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' }),
    privateKey: createPrivateKey({ key: jwk, format: 'jwk' }),
  };
}

/** Plain-data form (hex strings). */
export function rsaKeyToJson(k: RsaTestKey): Record<string, string | number> {
  const o: Record<string, string | number> = { bits: k.bits };
  for (const f of ['n', 'e', 'd', 'p', 'q', 'dp', 'dq', 'qinv'] as const) o[f] = k[f].toString(16);
  return o;
}

export function rsaKeyFromJson(o: Record<string, unknown>): RsaTestKey {
  const big = (f: string): bigint => {
    const v = o[f];
    if (typeof v !== 'string' || !/^[0-9a-f]+$/.test(v)) fail('EINVAL', `saved RSA key: bad ${f}`);
    return BigInt('0x' + v);
  };
  const bits = o.bits;
  if (typeof bits !== 'number') fail('EINVAL', 'saved RSA key: bad size');
  return { bits, n: big('n'), e: big('e'), d: big('d'), p: big('p'), q: big('q'), dp: big('dp'), dq: big('dq'), qinv: big('qinv') };
}
