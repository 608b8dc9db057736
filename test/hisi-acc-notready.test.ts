/**
 * QM_VF_STATE reads NOT_READY at the save (hisi-acc-vfio-pci.md section 4 sends match data
 * only then). The driver deviates in one case, documented at saveState in
 * src/drivers/hisi-acc/vf-qm.ts: when the function shows a started guest (EQ/AEQ interrupts
 * unmasked, qm-hardware.md section 8 "Start ... write 0 to 0xC and 0x4") with all four DMA
 * addresses set, the full 176-byte state goes out with vf_qm_state = QM_READY, so the
 * destination loads it and its STOP -> RUNNING restarts the queues (section 5). A function
 * never probed, probed but not started, or whose guest was removed (its stop masks 0xC/0x4,
 * uninit leaves the bases) still sends 40 bytes of match data with QM_NOT_READY.
 */
import { describe, expect, it } from 'vitest';
import { AccHost, AccVm, migrateVm } from '../src/drivers/hisi-acc/testbed.js';
import { QmVfDriver } from '../src/guest/qm-vf-driver.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { S, drain, rig, setState, tracker, u32, u64 } from './hisi-acc-helpers.js';

const LAT = { processNs: 40_000 };
const QM_BAR = 2;
const QM_VF_AEQ_INT_MASK = 0x4;
const QM_VF_EQ_INT_MASK = 0xc;
const QM_VF_STATE = 0x60;

/** STOP_COPY from RUNNING and the whole stream. */
function saveNow(host: AccHost, vm: AccVm): Uint8Array {
  const r = setState(vm.device, S.STOP_COPY);
  expect(r.ret).toBe(0);
  const s = drain(host.fds.get(r.fd)!);
  expect(s.last).toBe(0);
  return s.bytes;
}

describe('QM_VF_STATE stuck at NOT_READY under a started guest (deviation from section 4)', () => {
  it('saves the full 176-byte state as QM_READY; the destination loads it and every in-flight job completes once', () => {
    const sched = new Scheduler();
    const a = new AccHost({ scheduler: sched, numVfs: 1, latencies: LAT });
    const b = new AccHost({ scheduler: sched, numVfs: 1, latencies: LAT });
    expect(a.bind(1)).toBe(0);
    expect(b.bind(1)).toBe(0);
    const vm = new AccVm(a, 1, { driver: { sqDepth: 32, cqDepth: 32 } });
    const t = tracker(vm, 'zip');
    t.submit(10);
    sched.advance(3 * LAT.processNs);
    const src = a.acc.qm.vf(1)!;
    const before = src.debugSnapshot();
    src.faults.setNotReady(true);
    expect(vm.io.read32(QM_BAR, QM_VF_STATE) & 1).toBe(1);
    const { stream } = migrateVm(vm, b, 1);
    expect(stream.length).toBe(176);
    expect(u32(stream, 24)).toBe(0); // vf_qm_state QM_READY
    // The bases the stream carries are the ones the guest programmed (the model's own view).
    expect(u64(stream, 144)).toBe(BigInt(before.eq.base));
    expect(u64(stream, 152)).toBe(BigInt(before.aeq.base));
    expect(u64(stream, 160)).toBe(BigInt(before.sqcBt!));
    expect(u64(stream, 168)).toBe(BigInt(before.cqcBt!));
    // The destination function is configured, started and reads ready.
    const dst = b.acc.qm.vf(1)!;
    expect(b.migDevice(1).vfQmState).toBe(0);
    expect(dst.paused).toBe(false);
    expect(dst.debugSnapshot().sqcBt).toBe(before.sqcBt);
    expect(vm.io.read32(QM_BAR, QM_VF_STATE) & 1).toBe(0);
    vm.accel!.drain();
    expect(t.failures).toEqual([]);
    expect(t.verify()).toEqual({ ok: 10, bad: 0, duplicates: 0, missing: 0 });
    // And the guest keeps working there.
    t.submit(5);
    vm.accel!.drain();
    expect(t.verify()).toEqual({ ok: 15, bad: 0, duplicates: 0, missing: 0 });
  });
});

describe('a genuinely not-loaded guest driver still sends match data only (section 4)', () => {
  it('never probed: 40 bytes, QM_NOT_READY (interrupts masked out of reset)', () => {
    const { host, vm } = rig({ vm: { start: false } });
    expect(vm!.io.read32(QM_BAR, QM_VF_EQ_INT_MASK) & 1).toBe(1);
    const bytes = saveNow(host, vm!);
    expect(bytes.length).toBe(40);
    expect(u32(bytes, 24)).toBe(1);
    expect(host.migDevice(1).vfQmState).toBe(1);
  });

  it('probed but never started: 40 bytes, QM_NOT_READY', () => {
    const { host, vm } = rig({ vm: { start: false } });
    QmVfDriver.probe({ io: vm!.io, ram: vm!.ram, sched: host.sched });
    const bytes = saveNow(host, vm!);
    expect(bytes.length).toBe(40);
    expect(u32(bytes, 24)).toBe(1);
  });

  it('removed after use: 40 bytes although the bases are still programmed (uninit does not clear them)', () => {
    const { host, vm } = rig();
    vm!.accel!.compress(new Uint8Array(2000).fill(7), 'deflate');
    vm!.driver!.uninit();
    const snap = host.acc.qm.vf(1)!.debugSnapshot();
    expect(snap.sqcBt).not.toBeNull();
    expect(snap.sqcBt).not.toBe(0);
    expect(snap.eq.base).not.toBe(0);
    expect(vm!.io.read32(QM_BAR, QM_VF_STATE) & 1).toBe(1);
    const bytes = saveNow(host, vm!);
    expect(bytes.length).toBe(40);
    expect(u32(bytes, 24)).toBe(1);
    expect(host.migDevice(1).vfQmState).toBe(1);
  });

  it('removed after use with QM_VF_STATE also forced NOT_READY: still 40 bytes', () => {
    const { host, vm } = rig();
    vm!.driver!.uninit();
    host.acc.qm.vf(1)!.faults.setNotReady(true);
    expect(saveNow(host, vm!).length).toBe(40);
  });

  it('interrupts unmasked on a never-configured function (zero bases): 40 bytes, QM_NOT_READY', () => {
    const { host, vm } = rig({ vm: { start: false } });
    vm!.io.write32(QM_BAR, QM_VF_EQ_INT_MASK, 0);
    vm!.io.write32(QM_BAR, QM_VF_AEQ_INT_MASK, 0);
    const bytes = saveNow(host, vm!);
    expect(bytes.length).toBe(40);
    expect(u32(bytes, 24)).toBe(1);
    expect(host.migDevice(1).vfQmState).toBe(1);
  });

  it('only the EQ interrupt unmasked (AEQ still masked): not a started guest, 40 bytes', () => {
    const { host, vm } = rig();
    host.acc.qm.vf(1)!.faults.setNotReady(true);
    vm!.io.write32(QM_BAR, QM_VF_AEQ_INT_MASK, 1);
    expect(saveNow(host, vm!).length).toBe(40);
  });
});
