/**
 * Requests over buffers the caller keeps in guest RAM (Accel.runAt): the SQE points at the
 * caller's buffers, the device reads and writes them in place, the driver copies nothing and
 * allocates nothing. Outputs are checked against node:crypto / node:zlib.
 */
import { describe, expect, it } from 'vitest';
import * as crypto from 'node:crypto';
import * as zlib from 'node:zlib';
import { Accel } from '../src/guest/accel.js';
import { createBareVm } from '../src/guest/bare-vm.js';
import { revivePreparedJob } from '../src/guest/job-state.js';
import { RESIDENT_DONE } from '../src/guest/jobs.js';
import { prepareCipherAt } from '../src/guest/sec-job.js';
import { code } from './guest-helpers.js';

function put(vm: ReturnType<typeof createBareVm>, data: Uint8Array, extra = 0): number {
  const a = vm.ram.alloc(data.length + extra, 64);
  vm.guest().mem.write(a, data);
  return a;
}

function get(vm: ReturnType<typeof createBareVm>, addr: number, len: number): Buffer {
  const b = new Uint8Array(len);
  vm.guest().mem.read(addr, b);
  return Buffer.from(b);
}

describe('resident requests (Accel.runAt)', () => {
  it('aes-256-cbc encrypt into a separate buffer, then decrypt in place (src == dst), as node:crypto', () => {
    const vm = createBareVm({ profile: 'sec-v3' });
    const key = new Uint8Array(crypto.randomBytes(32));
    const iv = new Uint8Array(crypto.randomBytes(16));
    const data = new Uint8Array(crypto.randomBytes(4096));
    const k = put(vm, key);
    const v = put(vm, iv);
    const src = put(vm, data);
    const dst = vm.ram.alloc(data.length);
    expect(vm.accel.runAt({ op: 'encrypt', alg: 'aes-256-cbc', key: k, iv: v, src, dst, len: data.length })).toBe(4096);
    const c = crypto.createCipheriv('aes-256-cbc', key, iv);
    c.setAutoPadding(false);
    const want = Buffer.concat([c.update(data), c.final()]);
    expect(get(vm, dst, data.length)).toEqual(want);
    expect(get(vm, src, data.length)).toEqual(Buffer.from(data)); // source untouched
    const blocks = vm.ram.blocks; // the queue pair exists now
    expect(vm.accel.runAt({ op: 'decrypt', alg: 'aes-256-cbc', key: k, iv: v, src: dst, dst, len: data.length })).toBe(4096);
    expect(vm.ram.blocks).toBe(blocks); // the driver allocated nothing for the request
    expect(get(vm, dst, data.length)).toEqual(Buffer.from(data));
  });

  it('hmac-sha256 writes the digest at `mac`; key length must be whole words within the block', () => {
    const vm = createBareVm({ profile: 'sec-v2' });
    const key = new Uint8Array(crypto.randomBytes(20));
    const data = new Uint8Array(crypto.randomBytes(3000));
    const k = put(vm, key);
    const src = put(vm, data);
    const mac = vm.ram.alloc(32);
    expect(vm.accel.runAt({ op: 'hmac', alg: 'hmac-sha256', key: k, keyLen: 20, src, len: data.length, mac })).toBe(32);
    expect(get(vm, mac, 32)).toEqual(crypto.createHmac('sha256', key).update(data).digest());
    expect(code(() => vm.accel.runAt({ op: 'hmac', alg: 'hmac-sha256', key: k, keyLen: 18, src, len: 10, mac }))).toBe('EINVAL');
    expect(code(() => vm.accel.runAt({ op: 'hmac', alg: 'hmac-sha256', key: k, keyLen: 68, src, len: 10, mac }))).toBe('EINVAL');
    expect(code(() => vm.accel.runAt({ op: 'hmac', alg: 'hmac-md5', key: k, keyLen: 16, src, len: 10, mac }))).toBe('ENOENT');
  });

  it('raw deflate compress and decompress in place of the caller; too small a buffer is EOVERFLOW', () => {
    const vm = createBareVm({ profile: 'zip-v3' });
    const text = new Uint8Array(Buffer.from('resident buffers stay where the user pinned them. '.repeat(400)));
    const src = put(vm, text);
    const cap = text.length + 1024;
    const dst = vm.ram.alloc(cap);
    const n = vm.accel.runAt({ op: 'compress', format: 'deflate', src, len: text.length, dst, cap });
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(text.length);
    const packed = get(vm, dst, n);
    expect(zlib.inflateRawSync(packed)).toEqual(Buffer.from(text));
    const out = vm.ram.alloc(text.length);
    expect(vm.accel.runAt({ op: 'decompress', format: 'deflate', src: dst, len: n, dst: out, cap: text.length })).toBe(text.length);
    expect(get(vm, out, text.length)).toEqual(Buffer.from(text));
    expect(code(() => vm.accel.runAt({ op: 'decompress', format: 'deflate', src: dst, len: n, dst: out, cap: 100 }))).toBe('EOVERFLOW');
    expect(code(() => vm.accel.runAt({ op: 'compress', format: 'zlib', src, len: text.length, dst, cap }))).toBe('EINVAL');
    expect(code(() => vm.accel.runAt({ op: 'compress', format: 'deflate', src: 0, len: text.length, dst, cap }))).toBe('EINVAL');
  });

  it('a request for another engine is EOPNOTSUPP; bad lengths are EINVAL before anything reaches the device', () => {
    const zip = createBareVm({ profile: 'zip-v3' });
    expect(code(() => zip.accel.runAt({ op: 'hmac', alg: 'hmac-sha1', key: 0, keyLen: 0, src: 1 << 20, len: 1, mac: 1 << 20 }))).toBe('EOPNOTSUPP');
    const sec = createBareVm({ profile: 'sec-v3' });
    const a = sec.ram.alloc(64);
    const before = sec.device.qm.vf(1)!.debugSnapshot();
    expect(code(() => sec.accel.runAt({ op: 'encrypt', alg: 'aes-128-cbc', key: a, iv: a, src: a, dst: a, len: 15 }))).toBe('EINVAL');
    expect(code(() => sec.accel.runAt({ op: 'encrypt', alg: 'aes-128-cbc', key: a, iv: 0, src: a, dst: a, len: 16 }))).toBe('EINVAL');
    expect(sec.device.qm.vf(1)!.debugSnapshot()).toEqual(before);
    expect(sec.accel.stats.submitted).toBe(0);
  });

  it('a resident request saves as plain data with no buffers of its own and revives resident', () => {
    const vm = createBareVm({ profile: 'sec-v3' });
    const prep = prepareCipherAt(vm.ram, 'v3', { alg: 'aes-128-ecb', key: 0x200000, iv: 0, src: 0x201000, dst: 0x202000, len: 32 });
    const st = prep.save();
    expect(st).toMatchObject({ kind: 'sec-cipher', bufs: [], resident: true, keyAddr: 0x200000, ivAddr: 0, src: 0x201000, dst: 0x202000, len: 32 });
    const back = revivePreparedJob(vm.ram, JSON.parse(JSON.stringify(st)));
    const sqe = new Uint8Array(128);
    back.fill(sqe);
    expect(sqe[0]! & 0xf).toBe(3); // a type 3 BD pointing at the caller's buffers
    // completed as the engine writes it (qm-hardware.md 6): done_flag u16 @112 = done | flag 2 (cipher) << 7
    sqe[112] = 0x01;
    sqe[113] = 0x01;
    sqe[114] = 0; // error_type
    expect(back.finish(sqe)).toBe(RESIDENT_DONE);
    expect(back.produced).toBe(32);
  });
});

describe('prepareCipherAt direction argument', () => {
  // Type 3 BD (qm-hardware.md 6): c_icv_key u16 @4, bits 1:0 cipher direction, 1 = encrypt, 2 = decrypt.
  const dirOf = (decryptField: boolean | undefined, decryptArg?: boolean): number => {
    const vm = createBareVm({ profile: 'sec-v3' });
    const req = { alg: 'aes-128-ecb', key: 0x200000, iv: 0, src: 0x201000, dst: 0x202000, len: 32, decrypt: decryptField };
    const sqe = new Uint8Array(128);
    (decryptArg === undefined ? prepareCipherAt(vm.ram, 'v3', req) : prepareCipherAt(vm.ram, 'v3', req, decryptArg)).fill(sqe);
    return sqe[4]! & 3;
  };

  it('without the argument the request field decides (absent = encrypt)', () => {
    expect(dirOf(undefined)).toBe(1);
    expect(dirOf(true)).toBe(2);
  });

  it('the argument overrides the request field, as Accel.runAt passes its op', () => {
    expect(dirOf(false, true)).toBe(2);
    expect(dirOf(true, false)).toBe(1);
  });
});

describe('synchronous waits (Accel.run / runAt)', () => {
  it('a call that times out is ETIMEDOUT, is not pending, and its late completion is dropped and frees its buffers', () => {
    const vm = createBareVm({ profile: 'sec-v3', latencies: { processNs: 5_000_000 } });
    const a = new Accel(vm.driver, { timeoutNs: 1_000_000 });
    const key = new Uint8Array(crypto.randomBytes(16));
    const data = new Uint8Array(crypto.randomBytes(64));
    expect(code(() => a.encrypt('aes-128-ecb', key, new Uint8Array(0), data))).toBe('ETIMEDOUT');
    expect(a.pending).toBe(0);
    expect(a.stats).toEqual({ submitted: 1, completed: 0, failed: 0 });
    const blocks = vm.ram.blocks;
    vm.sched.runUntilIdle(); // the device answers 4 ms later
    expect(a.stats.completed).toBe(1);
    expect(vm.ram.blocks).toBe(blocks - 3); // key, source and destination returned
    expect(a.result(1)).toBeUndefined();
    expect(a.pending).toBe(0);
  });

  it('a pipelined job completing while a synchronous call waits sees that call as pending', () => {
    const vm = createBareVm({ profile: 'sec-v3', latencies: { processNs: 1000 } });
    const a = vm.accel;
    const key = new Uint8Array(crypto.randomBytes(16));
    const data = new Uint8Array(crypto.randomBytes(32));
    const seen: number[] = [];
    a.onComplete(() => seen.push(a.pending));
    a.submitJob({ op: 'encrypt', alg: 'aes-128-ecb', key, iv: new Uint8Array(0), data });
    const c = crypto.createCipheriv('aes-128-ecb', key, null);
    c.setAutoPadding(false);
    expect(Buffer.from(a.encrypt('aes-128-ecb', key, new Uint8Array(0), data))).toEqual(Buffer.concat([c.update(data), c.final()]));
    expect(seen).toEqual([1]); // the synchronous call, still waiting
    expect(a.pending).toBe(0);
  });
});
