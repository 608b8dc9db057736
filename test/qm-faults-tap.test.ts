import { describe, expect, it } from 'vitest';
import type { FaultPoint } from '../src/hw/qm/faults.js';
import { GuestDriver, makeRig } from './qm-harness.js';

const BUSY = 1 << 13;

/** A plain copy of a tapped event (the model reuses its object). */
function copy(ev: FaultPoint): FaultPoint {
  return { ...ev };
}

describe('fault tap (faults.ts): events a fault matrix can fire on', () => {
  it('mailbox latch (qm-hardware.md section 2): one event per command, on the store that latches it', () => {
    const r = makeRig({ numVfs: 2 });
    const seen: FaultPoint[] = [];
    r.dev.faults.tap = (ev) => { if (ev.kind === 'mailbox') seen.push(copy(ev)); };
    const g = new GuestDriver(r.fn(2), r.mem.get(2)!, r.sched);
    g.mailbox(0x6, 1, 0, 0, 0); // SQC_VFT_V2 read, four dword stores
    g.mbMode = '64';
    g.mailbox(0x4, 0, 7, 0x1000, 0x2); // SQC_BT write, two qword stores
    expect(seen).toEqual([
      { kind: 'mailbox', seq: 1, fn: 2, cmd: 0x6, op: 1, queue: 0, write: false, reg: 0, origin: null },
      expect.objectContaining({ kind: 'mailbox', fn: 2, cmd: 0x4, op: 0, queue: 7, write: true }),
    ]);
    // Seq counts every tapped event, status reads included (the driver polled 0x300 between).
    expect(seen[1]!.seq).toBeGreaterThan(1);
  });

  it('a mailbox command hung from inside the tap stays busy; lifting the hang completes it', () => {
    const r = makeRig({ numVfs: 1 });
    const fn = r.fn(1);
    r.dev.faults.tap = (ev) => { if (ev.kind === 'mailbox') fn.faults.setMailboxHang(true); };
    const bar = fn.bar2;
    bar.write64(0x300, (0x6 | (1 << 14) | BUSY) >>> 0, 0, 'guest');
    bar.write64(0x308, 0, 0, 'guest');
    r.sched.runUntilIdle();
    expect(bar.read(0x300, 4, 'guest') & BUSY).toBe(BUSY);
    r.dev.faults.tap = null;
    fn.faults.setMailboxHang(false);
    expect(bar.read(0x300, 4, 'guest') & BUSY).toBe(0);
    // The command ran: VF1's SQC VFT (1024 qps - 64 for the PF = 960 for the one VF, num-1 = 959).
    expect((bar.read(0x308, 4, 'guest') >>> 13) & 0x3ff).toBe(959);
  });

  it('a device-wide mailbox hang from the tap also holds the tapped command', () => {
    const r = makeRig({ numVfs: 1 });
    r.dev.faults.tap = (ev) => { if (ev.kind === 'mailbox') r.dev.faults.setMailboxHang(true); };
    const bar = r.fn(1).bar2;
    bar.write64(0x300, (0x6 | (1 << 14) | BUSY) >>> 0, 0, 'driver');
    bar.write64(0x308, 0, 0, 'driver');
    expect(r.dev.debugSnapshot().mailboxBacklog).toBe(1);
    expect(bar.read(0x300, 4, 'driver') & BUSY).toBe(BUSY);
  });

  it('QM_CACHE_WB_START: the tap runs before the write-back, so a hang set there keeps WB_DONE at 0', () => {
    const r = makeRig({ numVfs: 1 });
    const fn = r.fn(1);
    const kinds: string[] = [];
    r.dev.faults.tap = (ev) => {
      kinds.push(`${ev.kind}:${ev.fn}:${ev.write}`);
      if (ev.kind === 'writeback-start') fn.faults.setWritebackHang(true);
    };
    fn.bar2.write(0x204, 4, 0, 'driver'); // bit0 clear: no write-back, no event
    expect(kinds).toEqual([]);
    fn.bar2.write(0x204, 4, 1, 'driver');
    expect(kinds).toEqual(['writeback-start:1:true']);
    r.sched.runUntilIdle();
    expect(fn.bar2.read(0x208, 4, 'guest')).toBe(0);
    fn.faults.setWritebackHang(false);
    expect(fn.bar2.read(0x208, 4, 'guest')).toBe(1);
  });

  it('status reads: only polled registers, only non-guest origins, fault applied to that very read', () => {
    const r = makeRig({ engine: 'sec', numVfs: 1 });
    const fn = r.fn(1);
    const g = new GuestDriver(fn, r.mem.get(1)!, r.sched);
    g.start(); // QM_VF_STATE = 0 (ready)
    const regs: string[] = [];
    r.dev.faults.tap = (ev) => {
      if (ev.kind !== 'status-read') return;
      regs.push(`${ev.fn}:${ev.reg.toString(16)}:${ev.origin}`);
      if (ev.reg === 0x60) fn.faults.setNotReady(true);
      if (ev.reg === 0x100008) r.dev.faults.setRasStatus(0x4);
      if (ev.reg === 0x301008) r.dev.faults.setEngineStatus(0x10);
    };
    expect(fn.bar2.read(0x60, 4, 'guest')).toBe(0); // guest reads are not tapped
    expect(regs).toEqual([]);
    expect(fn.bar2.read(0x304, 4, 'driver')).toBe(fn.bar2.read(0x304, 4, 'guest')); // not a status register
    expect(regs).toEqual([]);
    expect(fn.bar2.read(0x60, 4, 'driver')).toBe(1); // QM_NOT_READY from the tapped read on
    const pf = r.dev.pf.bar2;
    expect(pf.read(0x100008, 4, 'pf')).toBe(0x4);
    expect(pf.read(0x301008, 4, 'pf')).toBe(0x10);
    fn.bar2.read(0x300, 4, 'vmm');
    fn.bar2.read(0x208, 4, 'driver');
    fn.bar2.read(0x28, 4, 'driver');
    fn.bar2.read(0x2c, 4, 'driver');
    fn.bar2.read(0x100008, 4, 'driver'); // a VF has no RAS block: not a polled register there
    expect(regs).toEqual([
      '1:60:driver', '0:100008:pf', '0:301008:pf', '1:300:vmm', '1:208:driver', '1:28:driver',
      '1:2c:driver',
    ]);
  });

  it('installing a tap restarts seq; a cleared tap sees nothing', () => {
    const r = makeRig({ numVfs: 1 });
    const seqs: number[] = [];
    r.dev.faults.tap = (ev) => seqs.push(ev.seq);
    r.fn(1).bar2.read(0x60, 4, 'driver');
    r.fn(1).bar2.read(0x60, 4, 'driver');
    expect(r.dev.faults.tapEvents).toBe(2);
    r.dev.faults.tap = (ev) => seqs.push(ev.seq * 100);
    r.fn(1).bar2.read(0x208, 4, 'driver');
    r.dev.faults.tap = null;
    r.fn(1).bar2.read(0x208, 4, 'driver');
    r.fn(1).bar2.write(0x204, 4, 1, 'driver');
    expect(seqs).toEqual([1, 2, 100]);
    expect(r.dev.faults.tapEvents).toBe(0);
  });
});
