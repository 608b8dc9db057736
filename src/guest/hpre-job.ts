/**
 * HPRE requests (qm-hardware.md 6): raw RSA (public e|n, private d|n or the CRT form
 * dq|dp|q|p|qinv) and finite-field DH (xa|p, base 2 via DH_G2 or any base via DH). Operands
 * are big-endian, right-aligned to the key size; the key size is the modulus length and must
 * be one the hardware runs (RSA 1024-4096 bits, DH 768-4096 bits), as Linux leaves other sizes
 * to software. Device errors map to EINVAL, as in the Linux HPRE driver.
 */
import { KernelError, fail } from '../uapi/errno.js';
import * as H from '../hw/engines/hpre-sqe.js';
import type { GuestRam } from './io.js';
import * as J from './jobs.js';
import type { BufferSet as Buffers, PreparedJob, PreparedJobState } from './jobs.js';

const {
  HPRE_ALG_DH, HPRE_ALG_DH_G2, HPRE_ALG_NC_CRT, HPRE_ALG_NC_NCRT, HPRE_DH_KEY_BYTES, HPRE_DONE_COMPLETE,
  HPRE_DONE_SHIFT, HPRE_DONE_SUBMIT, HPRE_DW0, HPRE_ETYPE_MASK, HPRE_ETYPE_SHIFT, HPRE_IN, HPRE_KEY,
  HPRE_OUT, HPRE_RSA_KEY_BYTES, HPRE_TASK_LEN1,
} = H;
const { BufferSet, get32, put32, put64 } = J;

/** A big number as a BigInt or big-endian bytes. */
export type BigNum = bigint | Uint8Array;

export interface RsaKey {
  n: BigNum;
  e?: BigNum;
  d?: BigNum;
  p?: BigNum;
  q?: BigNum;
  dp?: BigNum;
  dq?: BigNum;
  qinv?: BigNum;
}

function toBytes(x: BigNum): Uint8Array {
  if (x instanceof Uint8Array) {
    let i = 0;
    while (i < x.length && x[i] === 0) i++;
    return x.subarray(i);
  }
  if (typeof x !== 'bigint' || x < 0n) return fail('EINVAL', 'big numbers must be non-negative');
  if (x === 0n) return new Uint8Array(0);
  const hex = x.toString(16);
  return new Uint8Array(Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex'));
}

/** Writes `x` right-aligned into out[off, off+size); EINVAL if it does not fit. */
function place(out: Uint8Array, off: number, size: number, x: BigNum, what: string): void {
  const b = toBytes(x);
  if (b.length > size) fail('EINVAL', `${what} is longer than ${size} bytes`);
  out.set(b, off + size - b.length);
}

/** An HPRE request as plain data (PreparedJob.save). */
export interface HpreJobState extends PreparedJobState {
  kind: 'hpre';
  alg: number;
  size: number;
  keyAddr: number;
  inAddr: number;
  outAddr: number;
}

class HpreJob implements PreparedJob {
  private readonly bufs: Buffers;
  private readonly keyAddr: number;
  private readonly inAddr: number;
  private readonly outAddr: number;

  constructor(ram: GuestRam, private readonly alg: number, private readonly size: number, key: Uint8Array | null,
    input: Uint8Array | null, saved?: HpreJobState) {
    this.bufs = new BufferSet(ram, saved?.bufs);
    if (saved) {
      ({ keyAddr: this.keyAddr, inAddr: this.inAddr, outAddr: this.outAddr } = saved);
      return;
    }
    try {
      this.keyAddr = this.bufs.put(key!, 64);
      this.inAddr = input ? this.bufs.put(input, 64) : 0;
      this.outAddr = this.bufs.alloc(this.size, 64);
    } catch (e) {
      this.bufs.releaseAll();
      throw e;
    }
  }

  save(): HpreJobState {
    return {
      kind: 'hpre', bufs: this.bufs.addresses(), alg: this.alg, size: this.size,
      keyAddr: this.keyAddr, inAddr: this.inAddr, outAddr: this.outAddr,
    };
  }

  fill(sqe: Uint8Array): void {
    put32(sqe, HPRE_DW0, (this.alg | (HPRE_DONE_SUBMIT << HPRE_DONE_SHIFT)) >>> 0);
    sqe[HPRE_TASK_LEN1] = this.size / 8 - 1;
    put64(sqe, HPRE_KEY, this.keyAddr);
    put64(sqe, HPRE_IN, this.inAddr);
    put64(sqe, HPRE_OUT, this.outAddr);
  }

  finish(sqe: Uint8Array): Uint8Array {
    const w = get32(sqe, HPRE_DW0);
    const etype = (w >>> HPRE_ETYPE_SHIFT) & HPRE_ETYPE_MASK;
    const done = w >>> HPRE_DONE_SHIFT;
    if (done !== HPRE_DONE_COMPLETE || etype !== 0) {
      throw new KernelError('EINVAL', `HPRE request failed (done ${done}, etype ${etype})`);
    }
    return this.bufs.get(this.outAddr, this.size);
  }

  release(): void {
    this.bufs.releaseAll();
  }
}

function prepare(ram: GuestRam, alg: number, size: number, key: Uint8Array, input: Uint8Array | null): PreparedJob {
  return new HpreJob(ram, alg, size, key, input);
}

/** Key size in bytes of an RSA modulus, checked against what the hardware runs. */
export function rsaKeySize(n: BigNum): number {
  const size = toBytes(n).length;
  if (!HPRE_RSA_KEY_BYTES.includes(size)) fail('EOPNOTSUPP', `RSA-${size * 8} is not run by the hardware`);
  return size;
}

export function prepareRsa(ram: GuestRam, op: 'public' | 'private', key: RsaKey, input: Uint8Array): PreparedJob {
  if (op !== 'public' && op !== 'private') fail('EINVAL', `RSA operation '${String(op)}'`);
  const size = rsaKeySize(key.n);
  if (input.length > size) fail('EINVAL', `RSA input of ${input.length} bytes is longer than the ${size}-byte key`);
  const inBuf = new Uint8Array(size);
  inBuf.set(input, size - input.length);
  if (op === 'public') {
    if (key.e === undefined) fail('EINVAL', 'RSA public operation needs e');
    const k = new Uint8Array(2 * size);
    place(k, 0, size, key.e, 'e');
    place(k, size, size, key.n, 'n');
    return prepare(ram, HPRE_ALG_NC_NCRT, size, k, inBuf);
  }
  const crt = key.p !== undefined && key.q !== undefined && key.dp !== undefined && key.dq !== undefined && key.qinv !== undefined;
  if (crt) {
    const half = size / 2;
    const k = new Uint8Array(5 * half);
    place(k, 0, half, key.dq!, 'dq');
    place(k, half, half, key.dp!, 'dp');
    place(k, 2 * half, half, key.q!, 'q');
    place(k, 3 * half, half, key.p!, 'p');
    place(k, 4 * half, half, key.qinv!, 'qinv');
    return prepare(ram, HPRE_ALG_NC_CRT, size, k, inBuf);
  }
  if (key.d === undefined) fail('EINVAL', 'RSA private operation needs d or the CRT parameters');
  const k = new Uint8Array(2 * size);
  place(k, 0, size, key.d, 'd');
  place(k, size, size, key.n, 'n');
  return prepare(ram, HPRE_ALG_NC_NCRT, size, k, inBuf);
}

/** DH: base^xa mod p; without a base, 2^xa mod p on the DH_G2 path. */
export function prepareDh(ram: GuestRam, p: BigNum, xa: BigNum, base?: BigNum): PreparedJob {
  const size = toBytes(p).length;
  if (!HPRE_DH_KEY_BYTES.includes(size)) fail('EOPNOTSUPP', `DH-${size * 8} is not run by the hardware`);
  const k = new Uint8Array(2 * size);
  place(k, 0, size, xa, 'xa');
  place(k, size, size, p, 'p');
  if (base === undefined) return prepare(ram, HPRE_ALG_DH_G2, size, k, null);
  const inBuf = new Uint8Array(size);
  place(inBuf, 0, size, base, 'base');
  return prepare(ram, HPRE_ALG_DH, size, k, inBuf);
}

/** Rebuilds a saved HPRE request over the same guest RAM (its buffers are still allocated). */
export function reviveHpreJob(ram: GuestRam, st: HpreJobState): PreparedJob {
  if (!HPRE_RSA_KEY_BYTES.includes(st.size) && !HPRE_DH_KEY_BYTES.includes(st.size)) {
    fail('EINVAL', `saved HPRE request has key size ${st.size}`);
  }
  return new HpreJob(ram, st.alg, st.size, null, null, st);
}
