/**
 * Recovery (hisi-acc-vfio-pci.md sections 4 and 6, uAPI section 6): faults injected into the
 * device model make the stop or the save fail with the driver's errno after the driver's own
 * polls; the queues are restarted, the source stays RUNNING (or PRE_COPY) and every job in
 * flight still completes exactly once. A failure on the destination leaves the source able to
 * go back to RUNNING.
 */
import { describe, expect, it } from 'vitest';
import { AccHost, AccVm, migrateVm } from '../src/drivers/hisi-acc/testbed.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { KernelError } from '../src/uapi/errno.js';
import { S, drain, errno, getMigState, rig, setState, tracker, u32 } from './hisi-acc-helpers.js';

const LAT = { processNs: 40_000 };

/** A guest with jobs in flight and its vCPUs stopped, as a VMM has it before RUNNING -> STOP. */
function busyGuest(opts: Parameters<typeof rig>[0] = {}) {
  const r = rig({ latencies: LAT, vm: { driver: { sqDepth: 32, cqDepth: 32 } }, ...opts });
  const vm = r.vm!;
  const t = tracker(vm, 'zip');
  t.submit(10);
  r.host.sched.advance(3 * LAT.processNs);
  vm.io.pause();
  r.host.sched.advance(0);
  return { ...r, vm, t };
}

/** The VMM's recovery: the device is RUNNING again, the vCPUs resume, everything completes. */
function expectRecovered(h: ReturnType<typeof busyGuest>, jobs = 10): void {
  expect(getMigState(h.vm.device)).toBe(S.RUNNING);
  expect(h.host.migDevice(1).vfRegsMapped).toBe(false);
  h.vm.io.resume();
  h.vm.accel!.drain();
  expect(h.t.failures).toEqual([]);
  expect(h.t.verify()).toEqual({ ok: jobs, bad: 0, duplicates: 0, missing: 0 });
  expect(h.host.acc.qm.vf(1)!.paused).toBe(false);
}

describe('failed stop: queues restarted, source keeps running (spec 4)', () => {
  it('stuck RAS status: EBUSY after 100 polls 100 us apart', () => {
    const h = busyGuest();
    h.host.acc.qm.faults.setRasStatus(0x4);
    const t0 = h.host.sched.now;
    expect(setState(h.vm.device, S.STOP).ret).toBe(errno('EBUSY'));
    expect(h.host.sched.now - t0).toBeGreaterThanOrEqual(100 * 100_000);
    expect(h.host.migDevice(1).arcs.at(-1)).toMatchObject({ from: S.RUNNING, to: S.STOP, ok: false, errno: 16 });
    h.host.acc.qm.faults.setRasStatus(0);
    expectRecovered(h);
  });

  it('stuck engine status (HZIP_CORE_INT_STATUS): EBUSY', () => {
    const h = busyGuest();
    h.host.acc.qm.faults.setEngineStatus(1);
    expect(setState(h.vm.device, S.STOP_COPY).ret).toBe(errno('EBUSY'));
    h.host.acc.qm.faults.setEngineStatus(0);
    expectRecovered(h);
  });

  it('cache write-back never done: EINVAL after the 1 ms poll', () => {
    const h = busyGuest();
    h.host.acc.qm.vf(1)!.faults.setWritebackHang(true);
    const t0 = h.host.sched.now;
    expect(setState(h.vm.device, S.STOP).ret).toBe(errno('EINVAL'));
    expect(h.host.sched.now - t0).toBeGreaterThanOrEqual(1_000_000);
    h.host.acc.qm.vf(1)!.faults.setWritebackHang(false);
    expectRecovered(h);
  });

  it('mailbox hang: PAUSE_QM never completes, ETIMEDOUT, and the function keeps processing', () => {
    const h = busyGuest();
    h.host.acc.qm.vf(1)!.faults.setMailboxHang(true);
    expect(setState(h.vm.device, S.STOP).ret).toBe(errno('ETIMEDOUT'));
    expectRecovered(h);
  });
});

describe('failed save after a successful stop (spec 4, 6)', () => {
  it('PRE_COPY -> STOP_COPY: the mailbox hangs between write-back and state read; EINVAL, restart, PRE_COPY kept', () => {
    const h = busyGuest({ latencies: { ...LAT, wbNs: 20_000 } });
    const dev = h.vm.device;
    const p = setState(dev, S.PRE_COPY);
    expect(p.ret).toBe(0);
    // Fires after PAUSE_QM completed, while the write-back is being polled.
    h.host.sched.schedule(15_000, () => h.host.acc.qm.vf(1)!.faults.setMailboxHang(true));
    expect(setState(dev, S.STOP_COPY).ret).toBe(errno('EINVAL'));
    expect(getMigState(dev)).toBe(S.PRE_COPY);
    expect(h.host.acc.qm.vf(1)!.paused).toBe(false);
    // The VMM gives up: back to RUNNING, the data fd goes away.
    expect(setState(dev, S.RUNNING).ret).toBe(0);
    expect(h.host.fds.get(p.fd)!.read(new Uint8Array(8))).toBe(errno('ENODEV'));
    expectRecovered(h);
  });

  it('QM_VF_STATE stuck NOT_READY under a started guest: the full state as QM_READY (deviation, vf-qm.ts saveState), the source resumes', () => {
    const h = busyGuest();
    h.host.acc.qm.vf(1)!.faults.setNotReady(true);
    const r = setState(h.vm.device, S.STOP_COPY);
    expect(r.ret).toBe(0);
    const bytes = drain(h.host.fds.get(r.fd)!).bytes;
    expect(bytes.length).toBe(176);
    expect(u32(bytes, 24)).toBe(0);
    h.host.acc.qm.vf(1)!.faults.setNotReady(false);
    expect(setState(h.vm.device, S.RUNNING).ret).toBe(0);
    expectRecovered(h);
  });
});

describe('failure on the destination', () => {
  it('a destination that does not match (doorbell isolation differs): the source goes back to RUNNING', () => {
    const sched = new Scheduler();
    const a = new AccHost({ scheduler: sched, numVfs: 1, latencies: LAT });
    const b = new AccHost({ scheduler: sched, numVfs: 1, latencies: LAT, doorbellIsolation: true });
    expect(a.bind(1)).toBe(0);
    expect(b.bind(1)).toBe(0);
    const vm = new AccVm(a, 1, { driver: { sqDepth: 32, cqDepth: 32 } });
    const t = tracker(vm, 'zip');
    t.submit(10);
    sched.advance(3 * LAT.processNs);
    let err: unknown;
    try {
      migrateVm(vm, b, 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KernelError);
    expect((err as KernelError).code).toBe('EFAULT');
    // Still on the source, in STOP_COPY: recover.
    expect(vm.link.host).toBe(a);
    expect(getMigState(vm.device)).toBe(S.STOP_COPY);
    expect(setState(vm.device, S.RUNNING).ret).toBe(0);
    vm.io.resume();
    vm.accel!.drain();
    expect(t.failures).toEqual([]);
    expect(t.verify()).toEqual({ ok: 10, bad: 0, duplicates: 0, missing: 0 });
    expect(b.acc.qm.vf(1)!.debugSnapshot().queues.sqesProcessed).toBe(0);
  });
});
