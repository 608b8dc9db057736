/**
 * Error paths of the guest VF driver: mailbox busy/timeout/status (qm-hardware.md 2), a VF
 * the PF has not given queues or memory decoding, FLR in the middle of work (section 8),
 * device-reported CQE errors and EQ overflow (section 3), and requests that time out.
 */
import { describe, expect, it } from 'vitest';
import * as crypto from 'node:crypto';
import { KernelError } from '../src/uapi/errno.js';
import { createBareVm, programVft } from '../src/guest/bare-vm.js';
import { prepareCompress } from '../src/guest/zip-job.js';
import { Accel } from '../src/guest/accel.js';
import { findExtCapability } from '../src/guest/pci-setup.js';
import * as zlib from 'node:zlib';
import { aesEcb, code } from './guest-helpers.js';

const K16 = new Uint8Array(crypto.randomBytes(16));
const NOIV = new Uint8Array(0);
const enc = (data: Uint8Array) => ({ op: 'encrypt' as const, alg: 'aes-128-ecb', key: K16, iv: NOIV, data });

describe('mailbox (section 2): bounded busy polls, 10 us period, 1 ms timeout', () => {
  it('a command that never completes is ETIMEDOUT; the next one finds the mailbox busy (EBUSY)', () => {
    const vm = createBareVm({ profile: 'zip-v3' });
    const fn = vm.device.qm.vf(1)!;
    fn.faults.setMailboxHang(true);
    const t0 = vm.sched.now;
    expect(code(() => vm.driver.createQp(0))).toBe('ETIMEDOUT');
    // exactly the timeout elapsed in simulated time: 100 polls of 10 us
    expect(vm.sched.now - t0).toBe(1_000_000);
    expect(code(() => vm.driver.createQp(0))).toBe('EBUSY');
    expect(vm.driver.mailbox.stats).toMatchObject({ timeouts: 1, busy: 1 });
    fn.faults.setMailboxHang(false);
    const qp = vm.driver.createQp(0);
    expect(qp.running).toBe(true);
  });

  it('the shared engine hung device-wide: every VF times out', () => {
    const vm = createBareVm({ profile: 'sec-v3', numVfs: 2, guests: [1, 2] });
    vm.device.qm.faults.setMailboxHang(true);
    expect(code(() => vm.guest(1).driver.createQp(0))).toBe('ETIMEDOUT');
    expect(code(() => vm.guest(2).driver.createQp(0))).toBe('ETIMEDOUT');
    vm.device.qm.faults.setMailboxHang(false);
    expect(Buffer.from(vm.guest(2).accel.encrypt('aes-128-ecb', K16, NOIV, new Uint8Array(16)))
      .equals(aesEcb(K16, new Uint8Array(16)))).toBe(true);
  });

  it('a slow mailbox (500 us) is waited for; one slower than 1 ms is ETIMEDOUT', () => {
    const slow = createBareVm({ profile: 'zip-v3', latencies: { mailboxNs: 500_000 } });
    expect(slow.driver.state).toBe('started');
    expect(code(() => createBareVm({ profile: 'zip-v3', latencies: { mailboxNs: 2_000_000 } }))).toBe('ETIMEDOUT');
  });

  it('a non-zero completion status is EIO (undefined command 0x7)', () => {
    const vm = createBareVm({ profile: 'zip-v3' });
    expect(code(() => vm.driver.mailbox.send(0x7, 0, 0, 0, 0))).toBe('EIO');
    expect(vm.driver.mailbox.lastStatus).not.toBe(0);
    expect(vm.driver.mailbox.stats.failed).toBe(1);
  });

  it('probe failure (mailbox hang) leaves no guest memory allocated and bus mastering off', () => {
    const vm = createBareVm({ profile: 'zip-v3', guests: [] });
    vm.device.qm.faults.setMailboxHang(true);
    let err: unknown;
    try {
      vm.attachGuest(1);
    } catch (e) {
      err = e;
    }
    expect((err as KernelError).code).toBe('ETIMEDOUT');
    expect(vm.device.vf(1)!.busMasterEnabled).toBe(false);
  });
});

describe('not-ready devices', () => {
  it('VFT not programmed for the VF (valid bit clear): probe is ENODEV', () => {
    const vm = createBareVm({ profile: 'zip-v3', guests: [] });
    programVft(vm.pf, vm.sched, 1, 0, 0);
    expect(code(() => vm.attachGuest(1))).toBe('ENODEV');
  });

  it('VF memory decoding off (PF SR-IOV MSE clear): BAR2 reads all-ones, probe is ENODEV', () => {
    const vm = createBareVm({ profile: 'sec-v2', guests: [] });
    const cap = findExtCapability({ cfgRead: (o, s) => vm.pf.configRead(o, s) }, 0x10);
    vm.pf.configWrite(cap + 8, 2, vm.pf.configRead(cap + 8, 2) & ~0x8);
    expect(code(() => vm.attachGuest(1))).toBe('ENODEV');
  });

  it('QM V1 revision is refused (no VF support)', () => {
    const vm = createBareVm({ profile: 'zip-v2', guests: [] });
    const vf = vm.device.vf(1)!;
    vf.config.set(0x08, 1, 0x20);
    expect(code(() => vm.attachGuest(1))).toBe('ENODEV');
  });
});

describe('FLR in the middle of work (section 8): nothing hangs, every job completes or fails', () => {
  for (const hw of ['v3', 'v2'] as const) {
    it(`${hw}: guest-initiated FLR with jobs in flight`, () => {
      const vm = createBareVm({ profile: `sec-${hw}`, latencies: { processNs: 30_000 } });
      const a = vm.accel;
      const inputs = new Map<number, Uint8Array>();
      for (let i = 0; i < 12; i++) {
        const data = new Uint8Array(crypto.randomBytes(16));
        inputs.set(a.submitJob(enc(data)), data);
      }
      vm.sched.advance(100_000); // a few complete
      vm.driver.flr();
      expect(a.pending).toBe(0);
      let ok = 0;
      for (const [t, data] of inputs) {
        const r = a.result(t)!;
        if (r.ok) {
          expect(Buffer.from(r.output).equals(aesEcb(K16, data))).toBe(true);
          ok++;
        } else {
          expect(r.error.code).toBe('ECANCELED');
        }
      }
      expect(ok).toBeGreaterThan(0);
      expect(vm.vf.stats.flrs).toBe(1);
      expect(vm.driver.stats.flrs).toBe(1);
      expect(vm.vf.msi.enabled).toBe(true);
      const data = new Uint8Array(crypto.randomBytes(48));
      expect(Buffer.from(a.encrypt('aes-128-ecb', K16, NOIV, data)).equals(aesEcb(K16, data))).toBe(true);
    });
  }

  it('the host resets the VF underneath the guest: waits end (ETIMEDOUT), driver FLR recovers', () => {
    const vm = createBareVm({ profile: 'zip-v3', latencies: { processNs: 50_000 } });
    const a = vm.accel;
    const data = new Uint8Array(Buffer.from('reset under load '.repeat(100)));
    const tickets = Array.from({ length: 8 }, () => a.submitJob({ op: 'compress', format: 'zlib', data }));
    vm.sched.advance(120_000);
    vm.vf.flr(); // contexts, MSI setup and bus mastering are gone
    expect(code(() => a.drain())).toBe('ETIMEDOUT');
    const pendingBefore = a.pending;
    expect(pendingBefore).toBeGreaterThan(0);
    vm.driver.flr();
    expect(a.pending).toBe(0);
    let cancelled = 0;
    for (const t of tickets) {
      const r = a.result(t)!;
      if (r.ok) expect(Buffer.from(zlib.inflateSync(r.output)).equals(Buffer.from(data))).toBe(true);
      else {
        expect(r.error.code).toBe('ECANCELED');
        cancelled++;
      }
    }
    expect(cancelled).toBe(pendingBefore);
    expect(Buffer.from(zlib.inflateSync(a.compress(data, 'zlib'))).equals(Buffer.from(data))).toBe(true);
  });
});

describe('device-reported errors (AEQ)', () => {
  it('SQE fetch fault -> AEQE CQE_ERROR -> the job fails EIO instead of hanging; FLR recovers', () => {
    const vm = createBareVm({ profile: 'sec-v3' });
    const a = vm.accel;
    a.encrypt('aes-128-ecb', K16, NOIV, new Uint8Array(16));
    const qp = vm.driver.qp(0)!;
    const domain = vm.guest().domain!;
    const page = Math.floor(qp.sqBase / 4096) * 4096;
    domain.unmap(page, 4096);
    expect(code(() => a.encrypt('aes-128-ecb', K16, NOIV, new Uint8Array(16)))).toBe('EIO');
    expect(vm.driver.stats.cqeErrors).toBe(1);
    expect(qp.state).toBe('error');
    expect(domain.faultCount).toBeGreaterThan(0);
    domain.map(page, 4096, vm.guest().mem, page, 3);
    vm.driver.flr();
    const data = new Uint8Array(crypto.randomBytes(16));
    expect(Buffer.from(a.encrypt('aes-128-ecb', K16, NOIV, data)).equals(aesEcb(K16, data))).toBe(true);
  });

  it('more CQs completing than the EQ holds: AEQE EQ_OVERFLOW, the driver reaps every CQ', () => {
    const vm = createBareVm({ profile: 'zip-v3', driver: { eqDepth: 4 } });
    const d = vm.driver;
    const data = new Uint8Array(Buffer.from('eq overflow '.repeat(20)));
    const outs: Uint8Array[] = [];
    const qps = Array.from({ length: 6 }, () => d.createQp(0));
    for (const qp of qps) {
      const prep = prepareCompress(d.ram, data, 'deflate');
      qp.submit({
        fill: (sqe) => prep.fill(sqe),
        complete: (sqe) => { outs.push(prep.finish(sqe) as Uint8Array); prep.release(); },
        fail: () => prep.release(),
      });
    }
    expect(d.waitFor(() => outs.length === 6)).toBe(true);
    for (const o of outs) expect(Buffer.from(zlib.inflateRawSync(o)).equals(Buffer.from(data))).toBe(true);
    expect(d.stats.eqOverflows).toBe(1);
  });
});

describe('requests that outlive their waiter', () => {
  it('ETIMEDOUT for the caller; buffers stay until the device answers, then are freed', () => {
    const vm = createBareVm({ profile: 'sec-v3', latencies: { processNs: 5_000_000_000 } });
    const a = new Accel(vm.driver, { timeoutNs: 1_000_000_000 });
    a.encrypt('aes-128-ecb', K16, NOIV, new Uint8Array(0)); // takes the qp; nothing for the device
    const idle = vm.ram.blocks;
    expect(code(() => a.encrypt('aes-128-ecb', K16, NOIV, new Uint8Array(16)))).toBe('ETIMEDOUT');
    expect(vm.ram.blocks).toBe(idle + 3); // key, source and destination still held
    vm.sched.runUntilIdle();
    expect(vm.driver.qp(0)!.stats.completed).toBe(1);
    expect(vm.ram.blocks).toBe(idle);
    expect(a.pending).toBe(0);
  });
});

describe('errors are KernelErrors', () => {
  it('bad inputs from a caller never escape as plain exceptions', () => {
    const vm = createBareVm({ profile: 'hpre-v3' });
    let e: unknown;
    try {
      vm.accel.rsa('public', { n: 'nope' as never, e: 3n }, new Uint8Array(1));
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(KernelError);
    expect(code(() => vm.accel.submitJob({ op: 'nope' } as never))).toBe('EINVAL');
    expect(code(() => vm.accel.rsa('public', { n: 1n << 1023n, e: 3n }, 'x' as never))).toBe('EINVAL');
  });
});
