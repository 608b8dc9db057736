/**
 * Save and resume semantics of hisi-acc-vfio-pci (hisi-acc-vfio-pci.md sections 2-6): what the
 * stream holds (checked against the device model and raw register reads), the not-ready
 * case, the EQ/AEQ doorbells after a save, the driver staying off the VF while the guest may
 * run (audit log), the match check on each field, corrupt / short / oversized streams, the
 * match flag reset for each resume, and resets in the middle of a migration.
 */
import { describe, expect, it } from 'vitest';
import { AccVm, readToEnd, writeAll } from '../src/drivers/hisi-acc/testbed.js';
import { decodeAccVfData, encodeAccVfData } from '../src/drivers/hisi-acc/acc-vf-data.js';
import type { AccHost } from '../src/drivers/hisi-acc/testbed.js';
import {
  ACC_DEV_MAGIC_V1, S, VFIO_DEVICE_RESET, drain, errno, getMigState, handStream, rig, setState, tracker, u32,
} from './hisi-acc-helpers.js';

/** Saves VF 1 of `host` (RUNNING -> STOP_COPY) and returns to RUNNING: the stream. */
function saveStream(host: AccHost, vm: AccVm): Uint8Array {
  const r = setState(vm.device, S.STOP_COPY);
  expect(r.ret).toBe(0);
  const s = readToEnd(host.fds, r.fd);
  expect(s.last).toBe(0);
  expect(setState(vm.device, S.RUNNING).ret).toBe(0);
  return s.bytes;
}

/** RUNNING -> RESUMING on `vm`'s device: the resuming fd. */
function resuming(vm: AccVm): number {
  const r = setState(vm.device, S.RESUMING);
  expect(r.ret).toBe(0);
  return r.fd;
}

describe('save (spec 4)', () => {
  it('the stream holds the match data, the registers, EQC/AEQC and the context bases the device uses', () => {
    const { host, vm } = rig();
    vm!.accel!.compress(new Uint8Array(2000).fill(7), 'deflate');
    const fn = host.vf(1).fn;
    const raw = (off: number) => fn.mmioRead(2, off, 4, 'test');
    const want = {
      aeq: raw(0x4), eq: raw(0xc), ifcSrc: raw(0x20), ifcMask: raw(0x24), ifcSet: raw(0x2c), page: raw(0x34),
    };
    const bytes = saveStream(host, vm!);
    expect(bytes.length).toBe(176);
    const dv = new DataView(bytes.buffer);
    expect(dv.getBigUint64(0, true)).toBe(0xaaccfeeddecadeden);
    expect(dv.getUint32(12, true)).toBe(0xa251);
    expect(dv.getUint32(20, true)).toBe(host.acc.qm.vft.qpBase(1));
    expect(dv.getUint32(8, true)).toBe(host.acc.qm.vft.qpNum(1));
    expect(dv.getUint32(16, true)).toBe(host.pf.fn.mmioRead(2, 0x301154, 4, 'test'));
    expect(dv.getUint32(24, true)).toBe(0); // QM_READY: the guest driver is started
    expect([28, 30].map((o) => dv.getUint16(o, true))).toEqual([1, 0]);
    expect([40, 44, 48, 52, 56, 60].map((o) => dv.getUint32(o, true))).toEqual([
      want.aeq, want.eq, want.ifcSrc, want.ifcMask, want.ifcSet, want.page,
    ]);
    const snap = host.acc.qm.vf(1)!.debugSnapshot();
    for (let i = 0; i < 7; i++) {
      expect(dv.getUint32(64 + 4 * i, true)).toBe(snap.eq.dw[i]);
      expect(dv.getUint32(92 + 4 * i, true)).toBe(snap.aeq.dw[i]);
    }
    expect(dv.getBigUint64(144, true)).toBe(BigInt(snap.eq.base));
    expect(dv.getBigUint64(152, true)).toBe(BigInt(snap.aeq.base));
    expect(dv.getBigUint64(160, true)).toBe(BigInt(snap.sqcBt!));
    expect(dv.getBigUint64(168, true)).toBe(BigInt(snap.cqcBt!));
    // Nothing of the mailbox travels: reserved words stay zero.
    for (let o = 120; o < 144; o += 4) expect(dv.getUint32(o, true)).toBe(0);
  });

  it('without a started guest driver: QM_NOT_READY and match data only (40 bytes) after the 1 ms wait', () => {
    const { host, vm } = rig({ vm: { start: false } });
    const t0 = host.sched.now;
    const r = setState(vm!.device, S.STOP_COPY);
    expect(r.ret).toBe(0);
    expect(host.sched.now - t0).toBeGreaterThanOrEqual(1_000_000);
    const s = drain(host.fds.get(r.fd)!);
    expect(s.bytes.length).toBe(40);
    expect(s.last).toBe(0);
    expect(u32(s.bytes, 24)).toBe(1);
    expect(host.migDevice(1).vfQmState).toBe(1);
  });

  it('rings the EQ and AEQ doorbells with the saved heads after reading the state', () => {
    const { host, vm } = rig();
    vm!.accel!.compress(new Uint8Array(3000).fill(1), 'deflate');
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    const bytes = saveStream(host, vm!);
    const eqHead = u32(bytes, 64) & 0xffff;
    const aeqHead = u32(bytes, 92) & 0xffff;
    expect(eqHead).toBeGreaterThan(0);
    const all = audit.entries();
    const dbs = all.filter((e) => e.origin === 'driver' && e.write && e.off === 0x2000);
    expect(dbs.map((e) => [e.size, (e.value >>> 12) & 0xf, e.valueHi & 0xffff])).toEqual([[8, 2, eqHead], [8, 3, aeqHead]]);
    // ...and after the SQC_BT/CQC_BT reads, the last mailbox commands of the save.
    const mb = all.filter((e) => e.origin === 'driver' && e.write && e.off === 0x300);
    expect(mb.map((e) => e.value & 0xff)).toEqual([0xe, 0x4, 0x5]);
    expect(all.indexOf(dbs[0]!)).toBeGreaterThan(all.lastIndexOf(mb[mb.length - 1]!));
  });
});

describe('match data and load preconditions (spec 4, 5)', () => {
  it('a VF whose VFT gives it no queues cannot be migrated: EINVAL, still RUNNING', () => {
    const { host, vm } = rig({ vm: { start: false } });
    host.acc.qm.programVft(1, 0, 0);
    expect(setState(vm!.device, S.PRE_COPY).ret).toBe(errno('EINVAL'));
    expect(getMigState(vm!.device)).toBe(S.RUNNING);
    expect(setState(vm!.device, S.STOP_COPY).ret).toBe(errno('EINVAL'));
    expect(getMigState(vm!.device)).toBe(S.STOP);
  });

  it('load waits for the mailbox: EBUSY "not ready to write" after 1 ms, still RESUMING, no register written', () => {
    const { host, vm } = rig();
    const good = saveStream(host, vm!);
    expect(host.fds.get(resuming(vm!))!.write(good)).toBe(176);
    const vf = host.acc.qm.vf(1)!;
    vf.faults.setMailboxHang(true);
    // Someone's command is stuck in the mailbox: its busy bit stays set.
    host.vf(1).fn.mmioWrite64(2, 0x300, (0x6 | (1 << 14) | (1 << 13)) >>> 0, 0, 'test');
    host.vf(1).fn.mmioWrite64(2, 0x308, 0, 0, 'test');
    vf.audit.clear();
    const t0 = host.sched.now;
    expect(setState(vm!.device, S.STOP).ret).toBe(errno('EBUSY'));
    expect(host.sched.now - t0).toBeGreaterThanOrEqual(1_000_000);
    expect(getMigState(vm!.device)).toBe(S.RESUMING);
    expect(vf.audit.entries().filter((e) => e.origin === 'driver' && e.write)).toEqual([]);
  });
});

describe('the driver stays off the VF while the guest may run (spec 2, 3)', () => {
  it('no driver access in RUNNING or PRE_COPY; PRE_COPY -> STOP_COPY accesses fall inside that arc', () => {
    const { host, vm } = rig();
    const audit = host.acc.qm.vf(1)!.audit;
    const mig = host.migDevice(1);
    const t = tracker(vm!, 'zip');
    t.submit(4);
    vm!.accel!.drain();
    expect(audit.count('driver', 'low') + audit.count('driver', 'high')).toBe(0);
    const p = setState(vm!.device, S.PRE_COPY);
    expect(p.ret).toBe(0);
    expect(mig.vfRegsMapped).toBe(false);
    // The guest keeps working in PRE_COPY; the driver still has not touched the VF.
    t.submit(4);
    vm!.accel!.drain();
    expect(audit.count('driver', 'low') + audit.count('driver', 'high')).toBe(0);
    expect(audit.count('pf', 'low')).toBe(0);
    mig.arcs.length = 0;
    expect(setState(vm!.device, S.STOP_COPY).ret).toBe(0);
    expect(mig.vfRegsMapped).toBe(false);
    const arc = mig.arcs[0]!;
    expect([arc.from, arc.to]).toEqual([S.PRE_COPY, S.STOP_COPY]);
    const driver = audit.entries().filter((e) => e.origin === 'driver');
    expect(driver.length).toBeGreaterThan(20);
    expect(driver.every((e) => e.time >= arc.start && e.time <= arc.end)).toBe(true);
    const before = audit.count('driver', 'low');
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    expect(audit.count('driver', 'low')).toBe(before);
    expect(audit.count('guest', 'high')).toBe(0);
    expect(t.verify()).toEqual({ ok: 8, bad: 0, duplicates: 0, missing: 0 });
  });
});

describe('match check (spec 5)', () => {
  const cases: [string, (b: Uint8Array) => void][] = [
    ['bad magic', (b) => { b[0] ^= 0xff; }],
    ['foreign major version', (b) => new DataView(b.buffer).setUint16(28, 2, true)],
    ['dev_id of another engine', (b) => new DataView(b.buffer).setUint32(12, 0xa256, true)],
    ['qp_num', (b) => new DataView(b.buffer).setUint32(8, u32(b, 8) + 1, true)],
    ['que_iso_cfg', (b) => new DataView(b.buffer).setUint32(16, u32(b, 16) ^ 1, true)],
  ];
  for (const [name, corrupt] of cases) {
    it(`${name}: the write fails EFAULT and nothing is kept; the right data then goes in`, () => {
      const { host, vm } = rig();
      const good = saveStream(host, vm!);
      const bad = good.slice();
      corrupt(bad);
      const fd = resuming(vm!);
      const f = host.fds.get(fd)!;
      expect(f.write(bad)).toBe(errno('EFAULT'));
      expect(getMigState(vm!.device)).toBe(S.RESUMING);
      expect(host.migDevice(1).matchDone).toBe(false);
      expect(f.write(good.subarray(0, 40))).toBe(40);
      expect(f.write(good.subarray(40))).toBe(136);
      expect(setState(vm!.device, S.STOP).ret).toBe(0);
    });
  }

  it('a minor version difference is accepted (informational)', () => {
    const { host, vm } = rig();
    const s = saveStream(host, vm!);
    new DataView(s.buffer).setUint16(30, 9, true);
    expect(host.fds.get(resuming(vm!))!.write(s)).toBe(176);
  });

  it('V1 magic passes the version check', () => {
    const { host, vm } = rig();
    const s = saveStream(host, vm!);
    new DataView(s.buffer).setBigUint64(0, ACC_DEV_MAGIC_V1, true);
    expect(host.fds.get(resuming(vm!))!.write(s.subarray(0, 40))).toBe(40);
  });

  it('the check runs once, when the 40th byte arrives, even in small pieces', () => {
    const { host, vm } = rig();
    const good = saveStream(host, vm!);
    const f = host.fds.get(resuming(vm!))!;
    const bad = good.slice();
    new DataView(bad.buffer).setUint32(12, 0xa259, true);
    expect(f.write(bad.subarray(0, 13))).toBe(13);
    expect(f.write(bad.subarray(13, 39))).toBe(26);
    expect(host.migDevice(1).matchDone).toBe(false);
    expect(f.write(bad.subarray(39, 41))).toBe(errno('EFAULT'));
    expect(f.write(good.subarray(39, 41))).toBe(errno('EFAULT')); // the first 39 bytes are the bad ones
  });

  it('rfc policy: a mismatch is EINVAL', () => {
    const { host, vm } = rig({ driver: { oldHwPolicy: 'rfc' } });
    const s = saveStream(host, vm!);
    new DataView(s.buffer).setUint32(12, 0xa256, true);
    expect(host.fds.get(resuming(vm!))!.write(s)).toBe(errno('EINVAL'));
  });

  it('every new resume checks again (the match flag does not survive a resume)', () => {
    const { host, vm } = rig();
    const good = saveStream(host, vm!);
    const f1 = host.fds.get(resuming(vm!))!;
    expect(f1.write(good)).toBe(176);
    expect(host.migDevice(1).matchDone).toBe(true);
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    const r = setState(vm!.device, S.RESUMING);
    expect(r.ret).toBe(0);
    expect(host.migDevice(1).matchDone).toBe(false);
    const bad = good.slice();
    new DataView(bad.buffer).setUint32(12, 0xa256, true);
    expect(host.fds.get(r.fd)!.write(bad)).toBe(errno('EFAULT'));
  });
});

describe('corrupt, short and oversized streams (spec 5)', () => {
  it('more than 176 bytes: ENOMEM', () => {
    const { host, vm } = rig();
    const good = saveStream(host, vm!);
    const f = host.fds.get(resuming(vm!))!;
    expect(f.write(new Uint8Array(177))).toBe(errno('ENOMEM'));
    expect(f.write(good)).toBe(176);
    expect(f.write(new Uint8Array(1))).toBe(errno('ENOMEM'));
  });

  it('between 40 and 176 bytes, or nothing: RESUMING -> STOP is EINVAL and the state stays', () => {
    const { host, vm } = rig();
    const good = saveStream(host, vm!);
    const f = host.fds.get(resuming(vm!))!;
    expect(setState(vm!.device, S.STOP).ret).toBe(errno('EINVAL'));
    expect(f.write(good.subarray(0, 100))).toBe(100);
    expect(setState(vm!.device, S.STOP).ret).toBe(errno('EINVAL'));
    expect(getMigState(vm!.device)).toBe(S.RESUMING);
    expect(f.write(good.subarray(100))).toBe(76);
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
  });

  it('exactly 40 bytes: nothing is loaded', () => {
    const { host } = rig({ bindVfs: [2], vm: false });
    // VF 2 has no guest (QM_VF_STATE stays 1); it resumes its own match data.
    const v2 = host.vf(2);
    const other = new AccVm(host, 2, { start: false });
    const pre = setState(other.device, S.PRE_COPY);
    const match = drain(host.fds.get(pre.fd)!).bytes;
    expect(setState(other.device, S.STOP).ret).toBe(0);
    const audit = host.acc.qm.vf(2)!.audit;
    audit.clear();
    const f = host.fds.get(setState(other.device, S.RESUMING).fd)!;
    expect(f.write(match)).toBe(40);
    expect(setState(other.device, S.STOP).ret).toBe(0);
    // The only driver writes: the match check's mailbox SQC_VFT_V2 (op 1) as two 64-bit stores.
    const writes = audit.entries().filter((e) => e.origin === 'driver' && e.write);
    expect(writes.map((e) => [e.off, e.size, e.value & 0x40ff])).toEqual([[0x300, 8, 0x4006], [0x308, 8, 0]]);
    expect(v2.fn.mmioRead(2, 0x60, 4, 'test')).toBe(1);
    expect(host.migDevice(2).lastMigf?.length).toBe(40);
  });

  it('a zero DMA address: QM_NOT_READY, the load succeeds and STOP -> RUNNING starts nothing', () => {
    const { host, vm } = rig();
    const s = saveStream(host, vm!);
    new DataView(s.buffer).setBigUint64(160, 0n, true);
    const f = host.fds.get(resuming(vm!))!;
    expect(f.write(s)).toBe(176);
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    expect(host.migDevice(1).vfQmState).toBe(1);
    expect(audit.entries().filter((e) => e.origin === 'driver' && e.write)).toEqual([]);
  });

  it('garbage addresses and registers break only that VF; the host, the model and other VFs go on', () => {
    const { host, vm } = rig({ bindVfs: [1, 2] });
    const good = saveStream(host, vm!);
    const s = good.slice();
    const dv = new DataView(s.buffer);
    for (let o = 40; o < 144; o += 4) dv.setUint32(o, (0x9e3779b9 * (o + 1)) >>> 0, true);
    dv.setBigUint64(144, 0xfffffffff000n, true);
    dv.setBigUint64(152, 0x7ffff000n, true);
    dv.setBigUint64(160, 0xfff0000n, true);
    dv.setBigUint64(168, 0x1n, true);
    const f = host.fds.get(resuming(vm!))!;
    expect(f.write(s)).toBe(176);
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    expect(setState(vm!.device, S.RUNNING).ret).toBe(0);
    host.sched.advance(1_000_000);
    // Another VF with its own guest is unaffected.
    const other = new AccVm(host, 2);
    const t = tracker(other, 'zip');
    t.submit(3);
    other.accel!.drain();
    expect(t.verify()).toEqual({ ok: 3, bad: 0, duplicates: 0, missing: 0 });
    expect(host.acc.qm.vf(2)!.debugSnapshot().queues.contextErrors).toBe(0);
    // And the broken VF can be reset back to health by its user.
    expect(vm!.device.ioctl(VFIO_DEVICE_RESET)).toBe(0);
    expect(getMigState(vm!.device)).toBe(S.RUNNING);
  });
});

describe('reset during a migration (spec 6)', () => {
  it('VFIO_DEVICE_RESET in PRE_COPY: RUNNING, fd disabled, QM_NOT_READY', () => {
    const { host, vm } = rig();
    const r = setState(vm!.device, S.PRE_COPY);
    const f = host.fds.get(r.fd)!;
    expect(vm!.device.ioctl(VFIO_DEVICE_RESET)).toBe(0);
    expect(getMigState(vm!.device)).toBe(S.RUNNING);
    expect(f.read(new Uint8Array(8))).toBe(errno('ENODEV'));
    expect(host.migDevice(1).vfQmState).toBe(1);
  });

  it('an FLR through config space while RESUMING: RUNNING, the resuming fd disabled, match flag cleared', () => {
    const { host, vm } = rig();
    const good = saveStream(host, vm!);
    const f = host.fds.get(resuming(vm!))!;
    expect(f.write(good.subarray(0, 50))).toBe(50);
    expect(host.migDevice(1).matchDone).toBe(true);
    vm!.driver!.flr();
    expect(getMigState(vm!.device)).toBe(S.RUNNING);
    expect(f.write(good.subarray(50))).toBe(errno('ENODEV'));
    expect(host.migDevice(1).matchDone).toBe(false);
    // The guest re-initialised after its FLR and works.
    const t = tracker(vm!, 'zip');
    t.submit(2);
    vm!.accel!.drain();
    expect(t.verify().ok).toBe(2);
  });

  it('a reset that lands during a transition is applied when the transition ends', () => {
    const { host, vm } = rig({ vm: { start: false } });
    // STOP -> STOP_COPY waits up to 1 ms for QM_VF_STATE; the VF is reset 300 us into it.
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    host.sched.schedule(300_000, () => host.vf(1).fn.flr());
    const mig = host.migDevice(1);
    mig.arcs.length = 0;
    const r = setState(vm!.device, S.STOP_COPY);
    expect(r.ret).toBe(0);
    expect(r.fd).toBeGreaterThanOrEqual(0);
    expect(mig.arcs.map((a) => [a.from, a.to, a.ok])).toEqual([[S.STOP, S.STOP_COPY, true]]);
    expect(getMigState(vm!.device)).toBe(S.RUNNING);
    expect(host.fds.get(r.fd)!.read(new Uint8Array(8))).toBe(errno('ENODEV'));
  });
});

describe('PF reset during a migration (spec 6)', () => {
  it('tears the VFs down: the device fd is closed and the data fd reads ENODEV', () => {
    const { host, vm } = rig();
    const r = setState(vm!.device, S.PRE_COPY);
    const f = host.fds.get(r.fd)!;
    host.pf.fn.flr();
    expect(host.host.bus.vfsOf(host.pf)).toHaveLength(0);
    expect(vm!.device.closed).toBe(true);
    expect(f.read(new Uint8Array(8))).toBe(errno('ENODEV'));
    // The VFs are gone from the model as well.
    expect(host.acc.qm.vfCount).toBe(0);
  });
});

describe('handStream cross-check', () => {
  it('a stream built by hand at the spec offsets loads like a saved one', () => {
    const { host, vm } = rig();
    const saved = decodeAccVfData(saveStream(host, vm!)).data;
    const hand = handStream({
      qpNum: saved.qp_num, devId: saved.dev_id, iso: saved.que_iso_cfg, qpBase: saved.qp_base, state: 0,
      regs: [saved.aeq_int_mask, saved.eq_int_mask, saved.ifc_int_source, saved.ifc_int_mask, saved.ifc_int_set, saved.page_size],
      eqc: saved.qm_eqc_dw, aeqc: saved.qm_aeqc_dw, eqe: saved.eqe_dma, aeqe: saved.aeqe_dma, sqc: saved.sqc_dma, cqc: saved.cqc_dma,
    });
    expect(Buffer.from(hand).equals(Buffer.from(encodeAccVfData(saved)))).toBe(true);
    expect(writeAll(host.fds, resuming(vm!), hand, 50)).toBe(176);
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    expect(setState(vm!.device, S.RUNNING).ret).toBe(0);
    const t = tracker(vm!, 'zip');
    t.submit(2);
    vm!.accel!.drain();
    expect(t.verify().ok).toBe(2);
  });
});
