import { describe, expect, it } from 'vitest';
import { GuestDriver, makeRig, type Rig } from './qm-harness.js';

const BUSY = 1 << 13;

/** What the vendor driver does through the VF BAR2 (origin 'driver'); hisi-acc-vfio-pci.md 4-5. */
class VendorView {
  readonly g: GuestDriver;
  constructor(rig: Rig, n: number) {
    this.g = new GuestDriver(rig.fn(n), rig.mem.get(n)!, rig.sched);
    this.g.origin = 'driver';
  }
  r(off: number): number { return this.g.r32(off); }
  w(off: number, v: number): void { this.g.w32(off, v); }
  pause(): number { return this.g.mailbox(0xe, 0, 0, 0, 0).status; }
  writeback(): boolean {
    this.w(0x204, 1);
    for (let i = 0; i < 100; i++) {
      if (this.r(0x208) & 1) return true;
      if (!this.g.sched.step()) break;
    }
    return (this.r(0x208) & 1) === 1;
  }
  save() {
    const eqc = [0, 1, 2, 3, 4, 5, 6].map((i) => this.r(0x8000 + i * 4));
    const aeqc = [0, 1, 2, 3, 4, 5, 6].map((i) => this.r(0x8020 + i * 4));
    const sqcBt = this.g.mailbox(0x4, 1, 0, 0, 0);
    const cqcBt = this.g.mailbox(0x5, 1, 0, 0, 0);
    return {
      vfState: this.r(0x60), aeqMask: this.r(0x4), eqMask: this.r(0xc), ifcMask: this.r(0x24),
      pageSize: this.r(0x34), eqc, aeqc, sqcBt: [sqcBt.dataL, sqcBt.dataH], cqcBt: [cqcBt.dataL, cqcBt.dataH],
    };
  }
  load(s: ReturnType<VendorView['save']>): void {
    this.w(0x60, s.vfState);
    this.w(0x4, s.aeqMask);
    this.w(0xc, s.eqMask);
    this.w(0x24, s.ifcMask);
    this.w(0x34, s.pageSize);
    s.eqc.forEach((v, i) => this.w(0x8000 + i * 4, v));
    s.aeqc.forEach((v, i) => this.w(0x8020 + i * 4, v));
    expect(this.g.mailbox(0x4, 0, 0, s.sqcBt[0]!, s.sqcBt[1]!).status).toBe(0);
    expect(this.g.mailbox(0x5, 0, 0, s.cqcBt[0]!, s.cqcBt[1]!).status).toBe(0);
    this.w(0x20, 1);
    this.w(0x24, 0);
  }
  /** "start device": SQ doorbell index 0 priority 1 on every queue. */
  startDevice(): void {
    for (let qn = 0; qn < this.g.fn.qpNum; qn++) this.g.db(0x1000, qn, 0, 0, 1);
  }
}

describe('context cache write-back (QM_CACHE_WB_START/DONE)', () => {
  it('writes the live SQC/CQC (heads, tails, wrap bits, phase) into the SQC/CQC arrays', () => {
    const r = makeRig({ numVfs: 1 });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched, { sqDepth: 4, cqDepth: 4 });
    g.start();
    g.startQp(2);
    const m = r.mem.get(1)!;
    const sqc = g.sqcBase + 2 * 32;
    const cqc = g.cqcBase + 2 * 32;
    // The mailbox load wrote the context through to the array slot.
    expect(m.u32(sqc + 12)).toBe(3 | (7 << 12));
    for (let i = 0; i < 5; i++) {
      g.submit(2, i);
      r.sched.runUntilIdle();
      g.consumeCq(2);
    }
    expect(m.u16(sqc + 2)).toBe(0); // array still stale
    const v = new VendorView(r, 1);
    expect(v.writeback()).toBe(true);
    expect(m.u16(sqc)).toBe(1); // head: 5 mod 4
    expect(m.u16(sqc + 2)).toBe(1); // tail
    expect((m.u16(sqc + 22) >> 6) & 1).toBe(1); // tail wrapped once
    expect(m.u32(sqc + 12)).toBe(3 | (7 << 12)); // other fields preserved
    expect(m.u16(cqc)).toBe(1); // cq head from the doorbells
    expect(m.u16(cqc + 2)).toBe(1); // cq tail
    expect((m.u16(cqc + 22) >> 6) & 1).toBe(1);
    expect(m.u32(cqc + 24) & 1).toBe(0); // phase toggled once
    expect(m.u32(cqc + 24) & 2).toBe(2); // c_flag re-armed by the final doorbell
    // spec 3.7 drain condition holds in the dumped contexts
    expect(m.u16(sqc + 2)).toBe(m.u16(cqc + 2));
  });
});

describe('PAUSE_QM and restart (hisi-acc-vfio-pci.md 4-5)', () => {
  it('paused: no SQE fetched, doorbells recorded; a priority-1 SQ doorbell resumes each job exactly once', () => {
    const r = makeRig({ numVfs: 1, latencies: { processNs: 100 } });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    g.start();
    g.startQp(0);
    for (let i = 1; i <= 6; i++) g.submit(0, i);
    r.sched.advance(250); // two done
    const v = new VendorView(r, 1);
    expect(v.pause()).toBe(0);
    expect(r.fn(1).paused).toBe(true);
    r.sched.runUntilIdle();
    const done = r.engine.order.length;
    expect(done).toBeGreaterThanOrEqual(2);
    expect(done).toBeLessThan(6);
    g.submit(0, 7); // recorded while paused
    r.sched.runUntilIdle();
    expect(r.engine.order.length).toBe(done);
    v.startDevice();
    r.sched.runUntilIdle();
    expect(r.engine.order).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect([...r.engine.seen.values()].every((c) => c === 1)).toBe(true);
    expect(g.consumeCq(0).map((c) => c.tag)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('migration: every SQE submitted but not completed on the source completes exactly once on the destination', () => {
    const src = makeRig({ numVfs: 2, latencies: { processNs: 100 } });
    const dst = makeRig({ numVfs: 2, latencies: { processNs: 100 } });
    const g = new GuestDriver(src.fn(2), src.mem.get(2)!, src.sched, { sqDepth: 8, cqDepth: 8 });
    g.start();
    g.startQp(0);
    g.startQp(5, { algType: 1 });
    const tags: number[] = [];
    let t = 1;
    // Several laps of the rings on the source first, so phases and wrap bits are non-trivial.
    for (let lap = 0; lap < 3; lap++) {
      for (let i = 0; i < 5; i++) { g.submit(0, t); tags.push(t++); g.submit(5, t); tags.push(t++); }
      src.sched.runUntilIdle();
      g.consumeEq();
      g.consumeCq(0);
      g.consumeCq(5);
    }
    for (let i = 0; i < 6; i++) { g.submit(0, t); tags.push(t++); g.submit(5, t); tags.push(t++); }
    src.sched.advance(350);
    const sv = new VendorView(src, 2);
    expect(sv.pause()).toBe(0);
    expect(sv.writeback()).toBe(true);
    const saved = sv.save();
    src.sched.runUntilIdle();
    const consumed = [...g.consumeCq(0), ...g.consumeCq(5)].map((c) => c.tag);
    const srcDone = src.engine.order.length;
    expect(srcDone).toBeLessThan(tags.length);

    // Guest RAM moves to the destination; the device state travels as `saved`.
    dst.mem.get(2)!.bytes.set(src.mem.get(2)!.bytes);
    const dv = new VendorView(dst, 2);
    dv.load(saved);
    expect(dst.fn(2).bar2.read(0x8000, 4, 'driver')).toBe(saved.eqc[0]);
    dv.startDevice();
    dst.sched.runUntilIdle();

    const g2 = g.moveTo(dst.fn(2), dst.mem.get(2)!, dst.sched);
    const rest = [...g2.consumeCq(0), ...g2.consumeCq(5)].map((c) => c.tag);
    const all = [...consumed, ...rest].sort((a, b) => a - b);
    const lastLapTags = tags.slice(30);
    expect(all).toEqual(lastLapTags);
    // Exactly once across both devices.
    for (const tag of tags) {
      expect((src.engine.seen.get(tag) ?? 0) + (dst.engine.seen.get(tag) ?? 0), `tag ${tag}`).toBe(1);
    }
    expect(dst.engine.order.length).toBe(tags.length - srcDone);
    // The destination EQ carries on from the restored context: the guest's EQ phase mirror agrees.
    expect(g2.consumeEq().length).toBeGreaterThan(0);
    // And the queues keep working for new jobs.
    g2.submit(0, 999);
    dst.sched.runUntilIdle();
    expect(g2.consumeCq(0).map((c) => c.tag)).toEqual([999]);
    expect(dst.mem.get(2)!.u8(g2.sqRing(5) + 13)).toBe(1); // alg_type came from the migrated SQC
  });
});

describe('migration window: live EQC/AEQC in the VF upper half', () => {
  it('reads return the live context; writes change the live EQ/AEQ', () => {
    const r = makeRig({ numVfs: 1 });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched, { eqDepth: 8 });
    g.start();
    g.startQp(0);
    const bar = r.fn(1).bar2;
    expect(bar.read(0x8004, 4, 'driver') + bar.read(0x8008, 4, 'driver') * 2 ** 32).toBe(g.eqBase);
    expect(bar.read(0x8018, 4, 'driver')).toBe(7 | (1 << 16));
    expect(bar.read(0x8038, 4, 'driver')).toBe(31 | (1 << 16));
    g.submit(0, 1);
    r.sched.runUntilIdle();
    expect(bar.read(0x8000, 4, 'driver')).toBe(1 << 16); // tail 1, head 0
    // Move the tail to 5 and flip the phase: the next EQE lands at slot 5 with phase 0.
    bar.write(0x8000, 4, (5 << 16) | 5, 'driver');
    bar.write(0x8018, 4, 7, 'driver');
    g.consumeCq(0);
    g.submit(0, 2);
    r.sched.runUntilIdle();
    expect(r.mem.get(1)!.u32(g.eqBase + 5 * 4)).toBe(0);
    expect(bar.read(0x8000, 4, 'driver')).toBe((6 << 16) | 5);
    // AEQC write: base moved to scratch, next AEQE goes there
    bar.write(0x8024, 4, g.scratch % 2 ** 32, 'driver');
    bar.write(0x8028, 4, Math.floor(g.scratch / 2 ** 32), 'driver');
    g.db(0x1000, 99, 0, 0, 0); // out of range: counted, no AEQE
    g.startQp(1, { sqeSizeLog2: 3 });
    g.submit(1, 3);
    r.sched.runUntilIdle();
    expect(r.mem.get(1)!.u32(g.scratch)).toBe(1 | (1 << 16) | (2 << 17)); // qp1 CQE_ERROR phase 1
  });

  it('other upper-half offsets read 0; the PF has no migration window', () => {
    const r = makeRig({ numVfs: 1 });
    expect(r.fn(1).bar2.read(0x8040, 4, 'driver')).toBe(0);
    expect(r.fn(1).bar2.read(0xfffc, 4, 'driver')).toBe(0);
    r.dev.pf.bar2.write(0x8000, 4, 0x1234, 'pf');
    expect(r.dev.pf.bar2.read(0x8000, 4, 'pf')).toBe(0);
  });

  it('V4 PF-control mode moves the window to PF 0x180000 + vf*0x2000 (+0x1C00 EQC, +0x1C20 AEQC)', () => {
    const r = makeRig({ hw: 'v4', numVfs: 2 });
    const g = new GuestDriver(r.fn(2), r.mem.get(2)!, r.sched, { eqDepth: 16 });
    g.start();
    const vfBar = r.fn(2).bar2;
    const pf = r.dev.pf.bar2;
    const win = 0x180000 + 2 * 0x2000;
    expect(pf.read(win + 0x1c18, 4, 'pf')).toBe(0); // not selected yet
    pf.write(0x100198, 4, 1, 'pf');
    expect(vfBar.read(0x8018, 4, 'guest')).toBe(0xffffffff);
    expect(vfBar.read(0x8000, 2, 'guest')).toBe(0xffff);
    vfBar.write(0x8000, 4, 0x30003, 'guest'); // ignored
    expect(pf.read(win + 0x1c18, 4, 'pf')).toBe(15 | (1 << 16));
    expect(pf.read(win + 0x1c00, 4, 'pf')).toBe(0);
    expect(pf.read(win + 0x1c38, 4, 'pf')).toBe(31 | (1 << 16));
    expect(pf.read(0x180000 + 1 * 0x2000 + 0x1c18, 4, 'pf')).toBe(0); // VF1 never started
    pf.write(win + 0x1c00, 4, (3 << 16) | 3, 'pf');
    pf.write(0x100198, 4, 0, 'pf');
    expect(vfBar.read(0x8000, 4, 'driver')).toBe((3 << 16) | 3);
    expect(pf.read(win + 0x1c00, 4, 'pf')).toBe(0);
  });
});

describe('STOP_QP and FLUSH_QM', () => {
  it('STOP_QP drains pending SQEs, then doorbells to that qp are ignored until the SQC is reloaded', () => {
    const r = makeRig({ numVfs: 1, latencies: { processNs: 1000 } });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    g.start();
    g.startQp(0);
    g.startQp(1);
    for (let i = 1; i <= 3; i++) g.submit(0, i);
    g.submit(1, 50);
    expect(g.mailbox(0x8, 0, 0, 0, 0).status).toBe(0);
    expect(r.engine.order).toEqual([1, 2, 3]); // drained by the command
    g.submit(0, 4);
    r.sched.runUntilIdle();
    expect(r.engine.order).toEqual([1, 2, 3, 50]);
    expect(r.fn(1).debugSnapshot().doorbells.stoppedQp).toBe(1);
    expect(g.consumeCq(0).map((c) => c.tag)).toEqual([1, 2, 3]);
    g.startQp(0);
    g.submit(0, 5);
    r.sched.runUntilIdle();
    expect(r.engine.order).toEqual([1, 2, 3, 50, 5]);
  });

  it('FLUSH_QM completes everything pending on the function and leaves queues running', () => {
    const r = makeRig({ numVfs: 1, latencies: { processNs: 1000 } });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    g.start();
    g.startQp(0);
    g.startQp(3);
    g.submit(0, 1); g.submit(3, 2); g.submit(0, 3);
    expect(g.mailbox(0x9, 0, 0, 0, 0).status).toBe(0);
    expect([...r.engine.order].sort()).toEqual([1, 2, 3]);
    g.submit(3, 4);
    r.sched.runUntilIdle();
    expect(r.engine.order.length).toBe(4);
  });
});

describe('audit log', () => {
  it('guest low-half accesses are counted only; driver and upper-half accesses are recorded', () => {
    const r = makeRig({ numVfs: 1 });
    const bar = r.fn(1).bar2;
    const a = r.fn(1).audit;
    bar.read(0x60, 4, 'guest');
    bar.write(0x34, 4, 1, 'guest');
    expect(a.count('guest', 'low')).toBe(2);
    expect(a.entries()).toEqual([]);
    bar.read(0x8000, 4, 'guest');
    bar.write64(0x1000, 1, 2, 'driver');
    bar.read(0x60, 4, 'vmm');
    const e = a.entries();
    expect(e.map((x) => [x.origin, x.off, x.size, x.write])).toEqual([
      ['guest', 0x8000, 4, false], ['driver', 0x1000, 8, true], ['vmm', 0x60, 4, false],
    ]);
    expect(e[1]).toMatchObject({ value: 1, valueHi: 2 });
    expect(e[2]!.value).toBe(1);
    expect(a.counters()).toMatchObject({ guest: { low: 2, high: 1 }, driver: { low: 1, high: 0 } });
  });

  it('the detailed ring is bounded and keeps the newest entries', () => {
    const r = makeRig({ numVfs: 1 });
    const bar = r.fn(1).bar2;
    for (let i = 0; i < 1500; i++) bar.read(0x8000 + (i % 7) * 4, 4, 'driver');
    const e = r.fn(1).audit.entries();
    expect(e.length).toBe(1024);
    expect(e[e.length - 1]!.off).toBe(0x8000 + (1499 % 7) * 4);
    expect(r.fn(1).audit.recorded).toBe(1500);
  });
});

describe('mailbox busy polling by the vendor driver', () => {
  it('busy bit is set while a slow command runs', () => {
    const r = makeRig({ numVfs: 1, latencies: { mailboxNs: 5000 } });
    const bar = r.fn(1).bar2;
    bar.write64(0x300, 0xe | BUSY, 0, 'driver');
    bar.write64(0x308, 0, 0, 'driver');
    expect(bar.read(0x300, 4, 'driver') & BUSY).toBe(BUSY);
    expect(r.fn(1).paused).toBe(false);
    r.sched.advance(5000);
    expect(bar.read(0x300, 4, 'driver') & BUSY).toBe(0);
    expect(r.fn(1).paused).toBe(true);
  });
});
