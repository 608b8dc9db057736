/**
 * Bugs the fuzz campaigns found stay fixed: each one's minimal reproduction runs here and must
 * now pass every campaign invariant. Open bugs live in src/fuzz/known-bugs.ts (empty now) with a
 * repro test each; when one is fixed its repro moves here.
 */
import { describe, expect, it } from 'vitest';
import { KNOWN_BUGS } from '../src/fuzz/known-bugs.js';
import { dmalogCampaign } from '../src/fuzz/dmalog-campaign.js';
import { guestCampaign } from '../src/fuzz/guest-campaign.js';
import { migfsmCampaign } from '../src/fuzz/migfsm-campaign.js';
import { Recorder } from '../src/fuzz/runner.js';
import { AccDevice } from '../src/hw/acc-device.js';
import { PCI_MSI_ADDRESS_LO, PCI_MSI_DATA_64, PCI_SRIOV_CTRL, PCI_SRIOV_CTRL_MSE, PCI_SRIOV_CTRL_VFE, PCI_SRIOV_NUM_VF } from '../src/hw/pci/regs.js';
import { UserAddressSpace } from '../src/mem/user-space.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { Errno } from '../src/uapi/errno.js';
import {
  VFIO_DEVICE_SET_IRQS, VFIO_IOMMU_MAP_DMA, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_MSI_IRQ_INDEX,
} from '../src/uapi/vfio.js';
import { VfioContainer } from '../src/vfio/container.js';
import { EventFd, FdTable } from '../src/vfio/fd.js';
import { VfioPciCoreDevice } from '../src/vfio/pci-core/core-device.js';

function u64le(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}

function hexBytes(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g)!.map((h) => parseInt(h, 16)));
}

describe('the known-bug register', () => {
  it('lists only bugs whose repro tests exist (fixed ones are removed and tested below)', () => {
    const fixed = ['msi-message-left-programmed', 'eq-doorbell-livelock', 'paused-without-guest', 'dmalog-report-unbounded-scratch'];
    for (const id of fixed) expect(KNOWN_BUGS.find((b) => b.id === id)).toBeUndefined();
  });
});

describe('bugs the fuzzer found stay fixed', () => {
  it('cq-doorbell-storm: a hostile CQC whose tail is not its head no longer makes CQ doorbell and EQE chase each other in zero time', () => {
    const ctx = guestCampaign.setup();
    const rec = new Recorder();
    guestCampaign.apply(ctx, { op: 'sqe', q: 3, slot: 2, tail: 2, sqe: hexBytes('000000000000000000000000000000003c1100000000000000000000000000d000000000010000000000000000000000000000000000000073a1d12a0000000000000000000000008090ed0000000000c05f230000000000000000000000000000000000000000008aaf0ba90000000000000000000000000000000000000000') }, rec);
    guestCampaign.apply(ctx, { op: 'mb', cmd: 1, read: false, queue: 1, addr: 0x100000, ctx: hexBytes('0000000000001000000000003f40000000000000000000003f000100e149f646') }, rec);
    guestCampaign.apply(ctx, { op: 'run', n: 200 }, rec);
    // Before the fix the guest took more than 2000 MSIs within the mailbox input (a 'livelock'
    // violation of the storm guard): the priority-1 CQ doorbell re-issued the EQE at once.
    expect(rec.pending).toEqual([]);
  });

  it('dmalog-report-unbounded-scratch: a REPORT of 2^40 bytes at 1 GiB pages holds bounded memory and is still exact', () => {
    const ctx = dmalogCampaign.setup();
    const rec = new Recorder();
    const ps = 2n ** 30n;
    dmalogCampaign.apply(ctx, { op: 'start', hdr: { flags: 0x20006, argsz: 32, bufLen: 32 }, w: [ps, 1n, BigInt(ctx.rw)], arr: { off: 0, words: [0n, 2n ** 40n] } }, rec);
    dmalogCampaign.apply(ctx, { op: 'report', hdr: { flags: 0x10008, argsz: 40, bufLen: 40 }, w: [0n, 2n ** 40n, ps, BigInt(ctx.rw + 4096)], prefill: 0 }, rec);
    // The campaign's oracle compares the bitmap with its own record of device writes and its
    // resource invariant bounds the memory held after the call (it saw 32 MiB before the fix).
    expect(rec.pending).toEqual([]);
  });

  it('eq-doorbell-livelock: an EQC loaded by a hostile guest no longer makes the EQ interrupt re-raise itself inside one MMIO write', () => {
    const ctx = guestCampaign.setup();
    const rec = new Recorder();
    guestCampaign.apply(ctx, { op: 'mb', cmd: 2, read: false, queue: 3, addr: 0x100000, ctx: hexBytes('0000000080b3a0000000000000e000000000000000000000eb6e20a2c52707eb') }, rec);
    guestCampaign.apply(ctx, { op: 'db', bar: 2, off: 0x2000, lo: 0x2001, hi: 0x3c }, rec);
    guestCampaign.apply(ctx, { op: 'mb', cmd: 3, read: false, queue: 0, addr: 0x100000, ctx: hexBytes('2d1a2bf7d96c4d8c629e1bbce14ec97da83ac66edbe3a90cad42ec4aa976f56c') }, rec);
    // Before the fix the third input never returned within the input's event budget
    // (a 'livelock' violation); now every campaign invariant holds after it.
    expect(rec.pending).toEqual([]);
  });

  it('paused-without-guest: reset, STOP, RUNNING, then a guest probes and its job completes', () => {
    const ctx = migfsmCampaign.setup();
    const rec = new Recorder();
    for (const op of [{ op: 'reset' }, { op: 'set', state: 1 }, { op: 'set', state: 2 }] as const) migfsmCampaign.apply(ctx, op, rec);
    migfsmCampaign.apply(ctx, { op: 'job' }, rec);
    // The job op checks the guest's job output against node:zlib and reports a 'victim'
    // violation (ETIMEDOUT before the fix) when it does not complete.
    expect(rec.pending).toEqual([]);
  });

  it('msi-message-left-programmed: a SET_IRQS that enables MSI and fails leaves the MSI message as it was (zero)', () => {
    const sched = new Scheduler();
    const acc = new AccDevice({ profile: 'zip-v3', scheduler: sched });
    const so = acc.pf.sriov.offset;
    acc.pf.configWrite(so + PCI_SRIOV_NUM_VF, 2, 1);
    acc.pf.configWrite(so + PCI_SRIOV_CTRL, 2, PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
    const vf = acc.vf(1)!;
    const fds = new FdTable();
    const core = new VfioPciCoreDevice({ fn: vf, process: { fds, user: new UserAddressSpace() } });
    const file = core.openDevice();
    const addr = () => vf.configRead(vf.msi.offset + PCI_MSI_ADDRESS_LO, 4);
    const msiSet = (count: number, fd: number, flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER) => {
      const buf = new Uint8Array(24);
      const dv = new DataView(buf.buffer);
      dv.setUint32(0, 24, true);
      dv.setUint32(4, flags, true);
      dv.setUint32(8, VFIO_PCI_MSI_IRQ_INDEX, true);
      dv.setUint32(16, count, true);
      dv.setInt32(20, fd, true);
      return file.ioctl(VFIO_DEVICE_SET_IRQS, buf);
    };
    expect(addr()).toBe(0);
    expect(msiSet(1, 4242)).toBe(-Errno.EBADF); // no such fd
    expect(addr()).toBe(0);
    // The same call with a real eventfd programs a message; tearing MSI down erases it again.
    const efd = fds.install(new EventFd());
    expect(msiSet(1, efd)).toBe(0);
    expect(addr()).not.toBe(0);
    expect(msiSet(0, -1, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER)).toBe(0);
    expect(addr()).toBe(0);
    expect(vf.configRead(vf.msi.offset + PCI_MSI_DATA_64, 2)).toBe(0);
  });

  it('container-einval: a type1 ioctl before SET_IOMMU is EINVAL, as Linux vfio_fops_unl_ioctl', () => {
    const c = new VfioContainer({ user: new UserAddressSpace(), fds: new FdTable() });
    expect(c.ioctl(VFIO_IOMMU_MAP_DMA, new Uint8Array(32))).toBe(-Errno.EINVAL);
  });

  it('eventfd-overflow: a write that would pass 0xfffffffffffffffe is EAGAIN and changes nothing (eventfd(2))', () => {
    const e = new EventFd();
    expect(e.write(u64le(1n))).toBe(8);
    expect(e.write(u64le(0xfffffffffffffffen))).toBe(-Errno.EAGAIN);
    expect(e.count).toBe(1n);
    expect(e.write(u64le(0xfffffffffffffffdn))).toBe(8);
    expect(e.count).toBe(0xfffffffffffffffen);
    e.signal(5n); // eventfd_signal saturates
    expect(e.count).toBe(0xfffffffffffffffen);
  });
});
