import { describe, expect, it } from 'vitest';
import { GuestDriver, makeRig } from './qm-harness.js';

const BUSY = 1 << 13;

function submitRaw(bar: { write64(o: number, l: number, h: number, origin: 'guest'): void }, cmd: number, op: number): void {
  bar.write64(0x300, (cmd | (op << 14) | BUSY) >>> 0, 0, 'guest');
  bar.write64(0x308, 0, 0, 'guest');
}

describe('fault injection hooks (faults.ts)', () => {
  it('stuck RAS: QM_ABNORMAL_INT_STATUS reads the stuck value until cleared', () => {
    const r = makeRig({ numVfs: 1 });
    const bar = r.dev.pf.bar2;
    expect(bar.read(0x100008, 4, 'pf')).toBe(0);
    r.dev.faults.setRasStatus(0x2);
    expect(bar.read(0x100008, 4, 'pf')).toBe(0x2);
    bar.write(0x100000, 4, 0xffffffff, 'pf'); // W1C of SOURCE does not unstick it
    expect(bar.read(0x100008, 4, 'pf')).toBe(0x2);
    r.dev.faults.setRasStatus(0);
    expect(bar.read(0x100008, 4, 'pf')).toBe(0);
  });

  it('stuck engine status on the engine register', () => {
    const r = makeRig({ engine: 'sec', numVfs: 1 });
    r.dev.faults.setEngineStatus(0x80);
    expect(r.dev.pf.bar2.read(0x301008, 4, 'pf')).toBe(0x80);
    r.dev.faults.clearAll();
    expect(r.dev.pf.bar2.read(0x301008, 4, 'pf')).toBe(0);
  });

  it('device-wide mailbox hang: every function stays busy; lifting it completes them in order', () => {
    const r = makeRig({ numVfs: 2 });
    r.dev.faults.setMailboxHang(true);
    submitRaw(r.fn(2).bar2, 0x6, 1);
    submitRaw(r.fn(1).bar2, 0x6, 1);
    r.sched.runUntilIdle();
    for (const n of [1, 2]) expect(r.fn(n).bar2.read(0x300, 4, 'guest') & BUSY).toBe(BUSY);
    expect(r.dev.debugSnapshot().mailboxBacklog).toBe(2);
    r.dev.faults.setMailboxHang(false);
    for (const n of [1, 2]) {
      const w0 = r.fn(n).bar2.read(0x300, 4, 'guest');
      expect(w0 & BUSY).toBe(0);
      expect((w0 >>> 9) & 0xf).toBe(0);
    }
    expect(r.fn(1).bar2.read(0x308, 4, 'guest') >>> 13 & 0x3ff).toBe(479); // VF1 VFT came back
  });

  it('per-function mailbox hang: that function stays busy, the others are served', () => {
    const r = makeRig({ numVfs: 2, latencies: { mailboxNs: 100 } });
    r.fn(1).faults.setMailboxHang(true);
    submitRaw(r.fn(1).bar2, 0x6, 1);
    submitRaw(r.fn(2).bar2, 0x6, 1);
    r.sched.runUntilIdle();
    expect(r.fn(1).bar2.read(0x300, 4, 'guest') & BUSY).toBe(BUSY);
    expect(r.fn(2).bar2.read(0x300, 4, 'guest') & BUSY).toBe(0);
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    expect(() => g.mailbox(0x6, 1, 0, 0, 0)).toThrow(/busy/); // the driver's poll times out
    r.fn(1).faults.setMailboxHang(false);
    r.sched.runUntilIdle();
    expect(r.fn(1).bar2.read(0x300, 4, 'guest') & BUSY).toBe(0);
  });

  it('write-back that never finishes: WB_DONE stays 0; lifting it writes the contexts', () => {
    const r = makeRig({ numVfs: 1 });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    g.start();
    g.startQp(0);
    g.submit(0, 1);
    r.sched.runUntilIdle();
    r.fn(1).faults.setWritebackHang(true);
    g.w32(0x204, 1);
    r.sched.runUntilIdle();
    expect(g.r32(0x208)).toBe(0);
    expect(r.mem.get(1)!.u16(g.sqcBase + 2)).toBe(0);
    r.fn(1).faults.setWritebackHang(false);
    expect(g.r32(0x208)).toBe(1);
    expect(r.mem.get(1)!.u16(g.sqcBase + 2)).toBe(1);
  });

  it('device not ready: QM_VF_STATE reads 1 whatever the guest wrote', () => {
    const r = makeRig({ numVfs: 1 });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    g.start();
    expect(g.r32(0x60)).toBe(0);
    r.fn(1).faults.setNotReady(true);
    expect(g.r32(0x60)).toBe(1);
    g.w32(0x60, 0);
    expect(g.r32(0x60)).toBe(1);
    r.fn(1).faults.clearAll();
    expect(g.r32(0x60)).toBe(0);
  });

  it('write-back latency: WB_DONE rises after wbNs', () => {
    const r = makeRig({ numVfs: 1, latencies: { wbNs: 300 } });
    const bar = r.fn(1).bar2;
    bar.write(0x204, 4, 1, 'driver');
    expect(bar.read(0x208, 4, 'driver')).toBe(0);
    r.sched.advance(299);
    expect(bar.read(0x208, 4, 'driver')).toBe(0);
    r.sched.advance(1);
    expect(bar.read(0x208, 4, 'driver')).toBe(1);
  });
});
