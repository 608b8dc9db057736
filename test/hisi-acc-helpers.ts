/**
 * Helpers for the hisi-acc-vfio-pci tests: a host with a VF bound to the driver (optionally
 * with a guest), and the uAPI calls encoded by hand from linux/vfio.h layouts so the tests do
 * not go through the code under test to build their arguments.
 */
import { createCipheriv, generateKeyPairSync } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { expect } from 'vitest';
import { AccHost, AccVm, type AccHostOptions, type VmOptions } from '../src/drivers/hisi-acc/testbed.js';
import { Errno, type ErrnoName } from '../src/uapi/errno.js';
import type { VfioFile } from '../src/vfio/fd.js';

// linux/vfio.h values, written out independently.
export const VFIO_DEVICE_GET_REGION_INFO = 0x3b6c; // _IO(';', 100 + 8)
export const VFIO_DEVICE_RESET = 0x3b6f;
export const VFIO_DEVICE_IOEVENTFD = 0x3b74;
export const VFIO_DEVICE_FEATURE = 0x3b75;
export const VFIO_MIG_GET_PRECOPY_INFO = 0x3b79;
export const FEATURE_GET = 1 << 16;
export const FEATURE_SET = 1 << 17;
export const FEATURE_PROBE = 1 << 18;
export const F_MIGRATION = 1;
export const F_MIG_DEVICE_STATE = 2;
export const F_DMA_LOGGING_START = 6;
export const F_DMA_LOGGING_STOP = 7;
export const F_DMA_LOGGING_REPORT = 8;
export const F_MIG_DATA_SIZE = 9;
export const S = { ERROR: 0, STOP: 1, RUNNING: 2, STOP_COPY: 3, RESUMING: 4, RUNNING_P2P: 5, PRE_COPY: 6, PRE_COPY_P2P: 7 } as const;
export const STATE_NAME: Record<number, string> = Object.fromEntries(Object.entries(S).map(([k, v]) => [v, k]));
export const REGION_OFFSET = (i: number) => i * 2 ** 40;
export const ACC_DEV_MAGIC_V2 = 0xaaccfeeddecadeden;
export const ACC_DEV_MAGIC_V1 = 0xcdcdcdcdfeedaaccn;

export function errno(name: ErrnoName): number {
  return -Errno[name];
}

export function expectErr(ret: number, name: ErrnoName): void {
  expect(ret).toBe(-Errno[name]);
}

export interface Rig {
  host: AccHost;
  vm: AccVm | null;
}

/** A host with VF 1 bound to hisi-acc-vfio-pci and, unless `vm: false`, a started guest on it. */
export function rig(opts: AccHostOptions & { vm?: boolean | VmOptions; bindVfs?: number[] } = {}): Rig {
  const host = new AccHost({ numVfs: 2, ...opts });
  for (const n of opts.bindVfs ?? [1]) expect(host.bind(n)).toBe(0);
  const vmOpt = opts.vm ?? true;
  const vm = vmOpt === false ? null : new AccVm(host, 1, vmOpt === true ? {} : vmOpt);
  return { host, vm };
}

export function u32(b: Uint8Array, o: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(o, true);
}

export function u64(b: Uint8Array, o: number): bigint {
  return new DataView(b.buffer, b.byteOffset).getBigUint64(o, true);
}

/** VFIO_DEVICE_GET_REGION_INFO {argsz, flags, index, cap_offset, size, offset}. */
export function regionInfo(file: VfioFile, index: number): { ret: number; flags: number; size: bigint; offset: bigint; capOffset: number; buf: Uint8Array } {
  const buf = new Uint8Array(256);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, 256, true);
  dv.setUint32(8, index, true);
  const ret = file.ioctl(VFIO_DEVICE_GET_REGION_INFO, buf);
  return { ret, flags: dv.getUint32(4, true), capOffset: dv.getUint32(12, true), size: dv.getBigUint64(16, true), offset: dv.getBigUint64(24, true), buf };
}

/** VFIO_DEVICE_FEATURE with `flags` (feature id | GET/SET/PROBE) and a payload. */
export function feature(file: VfioFile, flags: number, payload: Uint8Array = new Uint8Array(0)): { ret: number; payload: Uint8Array } {
  const buf = new Uint8Array(8 + payload.length);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, buf.length, true);
  dv.setUint32(4, flags, true);
  buf.set(payload, 8);
  const ret = file.ioctl(VFIO_DEVICE_FEATURE, buf);
  return { ret, payload: buf.subarray(8) };
}

export function getMigState(file: VfioFile): number {
  const r = feature(file, FEATURE_GET | F_MIG_DEVICE_STATE, new Uint8Array(8));
  expect(r.ret).toBe(0);
  return u32(r.payload, 0);
}

export function setState(file: VfioFile, state: number): { ret: number; fd: number } {
  const p = new Uint8Array(8);
  const dv = new DataView(p.buffer);
  dv.setUint32(0, state, true);
  dv.setInt32(4, -1, true);
  const r = feature(file, FEATURE_SET | F_MIG_DEVICE_STATE, p);
  return { ret: r.ret, fd: new DataView(r.payload.buffer, r.payload.byteOffset).getInt32(4, true) };
}

/** VFIO_MIG_GET_PRECOPY_INFO {argsz, flags, initial_bytes, dirty_bytes}. */
export function precopyInfo(file: VfioFile): { ret: number; initial: bigint; dirty: bigint } {
  const b = new Uint8Array(24);
  new DataView(b.buffer).setUint32(0, 24, true);
  const ret = file.ioctl(VFIO_MIG_GET_PRECOPY_INFO, b);
  return { ret, initial: u64(b, 8), dirty: u64(b, 16) };
}

/** Reads a file until it returns <= 0; the bytes and that last result. */
export function drain(file: VfioFile, chunk = 16): { bytes: Uint8Array; last: number } {
  const out: number[] = [];
  for (;;) {
    const b = new Uint8Array(chunk);
    const r = file.read(b);
    if (r <= 0) return { bytes: Uint8Array.from(out), last: r };
    for (let i = 0; i < r; i++) out.push(b[i]!);
  }
}

/** Reads `len` bytes at device fd position `pos`: [result, bytes]. */
export function pread(file: VfioFile, pos: number, len: number): [number, Uint8Array] {
  const b = new Uint8Array(len);
  return [file.read(b, pos), b];
}

export function pwrite(file: VfioFile, pos: number, bytes: Uint8Array): number {
  return file.write(bytes, pos);
}

/** A spec-layout acc_vf_data built with DataView at the offsets of section 3. */
export function handStream(f: {
  magic?: bigint; qpNum: number; devId: number; iso: number; qpBase: number; state: number; major?: number; minor?: number;
  regs?: number[]; eqc?: number[]; aeqc?: number[]; eqe?: bigint; aeqe?: bigint; sqc?: bigint; cqc?: bigint;
}, len = 176): Uint8Array {
  const b = new Uint8Array(len);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, f.magic ?? ACC_DEV_MAGIC_V2, true);
  dv.setUint32(8, f.qpNum, true);
  dv.setUint32(12, f.devId, true);
  dv.setUint32(16, f.iso, true);
  dv.setUint32(20, f.qpBase, true);
  dv.setUint32(24, f.state, true);
  dv.setUint16(28, f.major ?? 1, true);
  dv.setUint16(30, f.minor ?? 0, true);
  if (len === 40) return b;
  (f.regs ?? [0, 0, 0, 0, 0, 0]).forEach((v, i) => dv.setUint32(40 + 4 * i, v, true));
  (f.eqc ?? []).forEach((v, i) => dv.setUint32(64 + 4 * i, v, true));
  (f.aeqc ?? []).forEach((v, i) => dv.setUint32(92 + 4 * i, v, true));
  dv.setBigUint64(144, f.eqe ?? 0n, true);
  dv.setBigUint64(152, f.aeqe ?? 0n, true);
  dv.setBigUint64(160, f.sqc ?? 0n, true);
  dv.setBigUint64(168, f.cqc ?? 0n, true);
  return b;
}

// ---- workloads checked against node:zlib, node:crypto and BigInt ---------------------------

export type EngineName = 'zip' | 'sec' | 'hpre';

export interface Tracker {
  /** ticket -> expected output check */
  expected: Map<number, (out: Uint8Array) => boolean>;
  /** ticket -> completions seen (must end at exactly 1 each) */
  seen: Map<number, number>;
  failures: string[];
  submit(n: number): number[];
  verify(): { ok: number; bad: number; duplicates: number; missing: number };
}

function modpow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

function big(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt('0x' + Buffer.from(b).toString('hex'));
}

let rsaKey: { n: Uint8Array; e: Uint8Array } | null = null;
function testRsaKey(): { n: Uint8Array; e: Uint8Array } {
  if (!rsaKey) {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const j = publicKey.export({ format: 'jwk' });
    rsaKey = { n: new Uint8Array(Buffer.from(j.n!, 'base64url')), e: new Uint8Array(Buffer.from(j.e!, 'base64url')) };
  }
  return rsaKey;
}

/** Submits jobs on `vm`'s accelerator and records how each must come out. */
export function tracker(vm: AccVm, engine: EngineName, seed = 7): Tracker {
  const accel = vm.accel!;
  let x = seed >>> 0;
  const rnd = (n: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      b[i] = x >>> 24;
    }
    return b;
  };
  const t: Tracker = {
    expected: new Map(),
    seen: new Map(),
    failures: [],
    submit(n) {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        let ticket: number;
        let check: (o: Uint8Array) => boolean;
        if (engine === 'zip') {
          const data = new Uint8Array(4096);
          const noise = rnd(512);
          for (let k = 0; k < data.length; k++) data[k] = k % 8 === 0 ? noise[k % 512]! : (k >> 5) & 0xff;
          ticket = accel.submitJob({ op: 'compress', format: 'deflate', data });
          check = (o) => Buffer.from(inflateRawSync(o)).equals(Buffer.from(data));
        } else if (engine === 'sec') {
          const key = rnd(16);
          const iv = rnd(16);
          const data = rnd(1024);
          ticket = accel.submitJob({ op: 'encrypt', alg: 'aes-128-cbc', key, iv, data });
          const c = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false);
          const want = Buffer.concat([c.update(data), c.final()]);
          check = (o) => Buffer.from(o).equals(want);
        } else {
          const k = testRsaKey();
          const input = rnd(128);
          input[0] = 0x01;
          ticket = accel.submitJob({ op: 'rsa', mode: 'public', key: { n: k.n, e: k.e }, input });
          const want = modpow(big(input), big(k.e), big(k.n)).toString(16).padStart(256, '0');
          check = (o) => Buffer.from(o).toString('hex').padStart(256, '0') === want;
        }
        t.expected.set(ticket, check);
        out.push(ticket);
      }
      return out;
    },
    verify() {
      let ok = 0;
      let bad = 0;
      let duplicates = 0;
      let missing = 0;
      for (const [ticket] of t.expected) {
        const n = t.seen.get(ticket) ?? 0;
        if (n === 0) missing++;
        if (n > 1) duplicates++;
      }
      for (const f of t.failures) if (f.startsWith('bad')) bad++;
      ok = t.expected.size - missing - bad;
      return { ok, bad, duplicates, missing };
    },
  };
  accel.onComplete((ticket, r) => {
    t.seen.set(ticket, (t.seen.get(ticket) ?? 0) + 1);
    const check = t.expected.get(ticket);
    if (!r.ok) t.failures.push(`bad ${ticket}: ${r.error.message}`);
    else if (!check || !check(r.output)) t.failures.push(`bad ${ticket}: wrong output`);
  });
  return t;
}
