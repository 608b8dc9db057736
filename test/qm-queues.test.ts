import { describe, expect, it } from 'vitest';
import { FAKE, GuestDriver, makeRig } from './qm-harness.js';

function setup(opts: Parameters<typeof makeRig>[0] = {}, layout = {}) {
  const rig = makeRig(opts);
  const g = new GuestDriver(rig.fn(1), rig.mem.get(1)!, rig.sched, layout);
  g.start();
  return { ...rig, g };
}

describe('qm queue processing (qm-hardware.md 3)', () => {
  it('one SQE: written back in place, CQE at the CQ tail with phase 1, EQE, MSI vector 0', () => {
    const { g, sched, msi, mem, engine } = setup();
    g.startQp(0, { algType: 1 });
    const slot = g.submit(0, 0xcafe0001);
    expect(slot).toBe(0);
    expect(engine.seen.size).toBe(0); // nothing before the scheduler runs
    sched.runUntilIdle();
    const m = mem.get(1)!;
    const sqe = g.sqRing(0);
    expect(m.u8(sqe + FAKE.STATUS)).toBe(0x01);
    expect(m.u8(sqe + FAKE.ALG)).toBe(1); // SQC w13 [11:8] alg_type reached the engine
    expect(m.u32(sqe + FAKE.TAG)).toBe(0xcafe0001); // tag bytes untouched
    const cqe = g.cqRing(0);
    expect(m.u16(cqe + 8)).toBe(0); // sq_head = index of the completed SQE
    expect(m.u16(cqe + 10)).toBe(0); // sq_num = qp
    expect(m.u16(cqe + 14) & 1).toBe(1); // phase starts at 1
    expect(m.u32(g.eqBase)).toBe(0 | (1 << 16)); // EQE: cqn 0, phase 1
    expect(msi.get(1)).toEqual([0]);
    expect(engine.seen.get(0xcafe0001)).toBe(1);
  });

  it('orders SQE write-back < CQE < EQE < MSI', () => {
    const { g, sched, mem, dev } = setup();
    g.startQp(2);
    const m = mem.get(1)!;
    const events: string[] = [];
    const port = {
      read: (a: number, d: Uint8Array) => m.read(a, d),
      write: (a: number, s: Uint8Array) => {
        if (a >= g.sqRing(2) && a < g.cqRing(2)) events.push('sqe');
        else if (a >= g.cqRing(2) && a < g.cqRing(2) + 16 * 16) events.push('cqe');
        else if (a >= g.eqBase && a < g.eqBase + 256) events.push('eqe');
        return m.write(a, s);
      },
    };
    dev.vf(1)!.attach({ dma: port, msi: (v) => events.push(`msi${v}`) });
    g.submit(2, 7);
    sched.runUntilIdle();
    expect(events).toEqual(['sqe', 'cqe', 'eqe', 'msi0']);
  });

  it('phase bits toggle on every wrap across 10 wraps of a depth-4 queue (independent phase model)', () => {
    const { g, sched, mem, msi } = setup({}, { sqDepth: 4, cqDepth: 4, eqDepth: 8 });
    g.startQp(0);
    const m = mem.get(1)!;
    let tag = 1;
    let completed = 0;
    for (let round = 0; round < 40; round++) {
      // Each CQE is written at slot completed%4 with phase 1 on even laps, 0 on odd laps.
      const expectSlot = completed % 4;
      const expectPhase = Math.floor(completed / 4) % 2 === 0 ? 1 : 0;
      g.submit(0, tag++);
      sched.runUntilIdle();
      const cqeAddr = g.cqRing(0) + expectSlot * 16;
      expect(m.u16(cqeAddr + 14) & 1).toBe(expectPhase);
      expect(m.u16(cqeAddr + 8)).toBe(completed % 4); // SQ slot index of this job
      const got = g.consumeCq(0);
      expect(got.map((c) => c.tag)).toEqual([tag - 1]);
      const eqes = g.consumeEq();
      expect(eqes).toEqual([0]);
      completed++;
    }
    // EQ depth 8: 40 EQEs = 5 laps, and the driver's phase mirror agrees with the device.
    expect(g.eqPhase).toBe(40 / 8 % 2 === 0 ? 1 : 0);
    expect(msi.get(1)!.filter((v) => v === 0).length).toBe(40);
  });

  it('batches: a doorbell for several SQEs completes them in order with ascending sq_head', () => {
    const { g, sched, engine } = setup({}, { sqDepth: 8, cqDepth: 8 });
    g.startQp(1);
    for (let i = 0; i < 5; i++) g.submit(1, 100 + i, undefined, false);
    g.db(0x1000, 1, 0, 5, 0);
    sched.runUntilIdle();
    const c = g.consumeCq(1);
    expect(c.map((x) => x.sqHead)).toEqual([0, 1, 2, 3, 4]);
    expect(c.map((x) => x.tag)).toEqual([100, 101, 102, 103, 104]);
    expect(c.every((x) => x.sqNum === 1)).toBe(true);
    expect(engine.order).toEqual([100, 101, 102, 103, 104]);
  });

  it('c_flag is one-shot: one EQE until the priority-1 CQ doorbell re-arms it (spec 3.5)', () => {
    const { g, sched, mem } = setup({}, { sqDepth: 8, cqDepth: 8 });
    g.startQp(0);
    const m = mem.get(1)!;
    g.submit(0, 1);
    g.submit(0, 2);
    sched.runUntilIdle();
    // Two CQEs but a single EQE: the first completion consumed c_flag.
    expect(m.u32(g.eqBase) >>> 16 & 1).toBe(1);
    expect(m.u32(g.eqBase + 4)).toBe(0);
    // Consume only the first CQE, then re-arm with CQEs still outstanding: a fresh EQE.
    const addr = g.cqRing(0);
    expect(m.u16(addr + 14) & 1).toBe(1);
    g.db(0x1000, 0, 1, 1, 1);
    expect(m.u32(g.eqBase + 4)).toBe(0 | (1 << 16));
    // Re-arm with nothing outstanding: no EQE, c_flag stays set for the next completion.
    g.db(0x1000, 0, 1, 2, 1);
    expect(m.u32(g.eqBase + 8)).toBe(0);
    g.submit(0, 3);
    sched.runUntilIdle();
    expect(m.u32(g.eqBase + 8)).toBe(1 << 16);
  });

  it('c_flag 0 in the CQC: completions without EQEs or MSIs (polling mode)', () => {
    const { g, sched, mem, msi } = setup();
    g.startQp(0, { cFlag: false });
    g.submit(0, 9);
    sched.runUntilIdle();
    expect(g.consumeCq(0, false).map((c) => c.tag)).toEqual([9]);
    expect(mem.get(1)!.u32(g.eqBase)).toBe(0);
    expect(msi.get(1)).toEqual([]);
  });

  it('CQ full -> one AEQE CQ_OVERFLOW on vector 1, SQEs wait, and resume after the CQ doorbell', () => {
    const { g, sched, msi, engine } = setup({}, { sqDepth: 8, cqDepth: 4 });
    g.startQp(3);
    for (let i = 0; i < 6; i++) g.submit(3, i + 1);
    sched.runUntilIdle();
    // One slot stays empty: 3 CQEs fit in a depth-4 CQ, the 4th job waits.
    expect(engine.order).toEqual([1, 2, 3]);
    expect(g.consumeAeq()).toEqual([{ qn: 3, type: 0 }]);
    expect(msi.get(1)!.filter((v) => v === 1).length).toBe(1);
    // Ringing the SQ again does not re-report the same overflow.
    g.db(0x1000, 3, 0, 6, 0);
    sched.runUntilIdle();
    expect(g.consumeAeq()).toEqual([]);
    const got: number[] = [];
    for (let k = 0; k < 4 && got.length < 6; k++) {
      got.push(...g.consumeCq(3).map((c) => c.tag));
      sched.runUntilIdle();
    }
    expect(got).toEqual([1, 2, 3, 4, 5, 6]);
    expect(engine.order).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('EQ full -> AEQE EQ_OVERFLOW once until the EQ doorbell moves the head', () => {
    const { g, sched, mem } = setup({}, { sqDepth: 16, cqDepth: 16, eqDepth: 4 });
    for (let q = 0; q < 4; q++) g.startQp(q);
    // 4 qps, one EQE each; a depth-4 EQ holds 3.
    for (let q = 0; q < 4; q++) g.submit(q, 10 + q);
    sched.runUntilIdle();
    const m = mem.get(1)!;
    expect([0, 1, 2].map((i) => m.u32(g.eqBase + i * 4))).toEqual([0x10000, 0x10001, 0x10002]);
    expect(g.consumeAeq()).toEqual([{ qn: 3, type: 1 }]);
    expect(g.consumeEq()).toEqual([0, 1, 2]);
    for (let q = 0; q < 4; q++) g.consumeCq(q);
    sched.runUntilIdle();
    // qp 3 had a CQE but no EQE; re-arming it with nothing outstanding emits nothing, but the
    // next completion does produce an EQE again: the overflow episode is over.
    g.submit(3, 99);
    sched.runUntilIdle();
    expect(g.consumeEq()).toEqual([3]);
  });

  it('masked EQ interrupt is held pending and delivered once on unmask (spec 5)', () => {
    const { g, sched, msi } = setup();
    g.startQp(0);
    g.w32(0xc, 1);
    g.submit(0, 1);
    sched.runUntilIdle();
    g.consumeCq(0);
    g.submit(0, 2);
    sched.runUntilIdle();
    expect(msi.get(1)).toEqual([]);
    expect(g.r32(0x8) & 1).toBe(1); // EQ interrupt source latched
    g.w32(0xc, 0);
    expect(msi.get(1)).toEqual([0]);
    g.w32(0xc, 1);
    g.w32(0xc, 0);
    expect(msi.get(1)).toEqual([0]);
  });

  it('EQ doorbell with EQEs still outstanding re-signals the EQ vector', () => {
    const { g, sched, msi } = setup({}, { sqDepth: 16, cqDepth: 16 });
    for (let q = 0; q < 3; q++) g.startQp(q);
    for (let q = 0; q < 3; q++) g.submit(q, q);
    sched.runUntilIdle();
    expect(msi.get(1)!.length).toBe(3);
    expect(g.consumeEq(2)).toEqual([0, 1]); // the driver stops early
    // The re-raise comes through the scheduler 1 us (EQ_REARM_NS) after the doorbell, never
    // inside the doorbell write (fuzz bug eq-doorbell-livelock).
    expect(msi.get(1)!.length).toBe(3);
    sched.advance(999);
    expect(msi.get(1)!.length).toBe(3);
    sched.advance(1);
    expect(msi.get(1)!.length).toBe(4);
    expect(g.consumeEq()).toEqual([2]);
    sched.runUntilIdle();
    expect(msi.get(1)!.length).toBe(4);
  });

  it('EQ doorbells rung again before the re-raise fires coalesce into one interrupt, re-checked at delivery', () => {
    const { g, sched, msi } = setup({}, { sqDepth: 16, cqDepth: 16 });
    for (let q = 0; q < 4; q++) g.startQp(q);
    for (let q = 0; q < 4; q++) g.submit(q, q);
    sched.runUntilIdle();
    expect(msi.get(1)!.length).toBe(4);
    expect(g.consumeEq(1)).toEqual([0]);
    expect(g.consumeEq(1)).toEqual([1]); // a second doorbell while the first re-raise is in flight
    sched.runUntilIdle();
    expect(msi.get(1)!.length).toBe(5);
    // Consumed everything before the re-raise fired: no interrupt for an empty queue.
    expect(g.consumeEq(1)).toEqual([2]);
    expect(g.consumeEq()).toEqual([3]);
    sched.runUntilIdle();
    expect(msi.get(1)!.length).toBe(5);
  });

  it('processNs latency: one SQE per processNs of simulated time', () => {
    const { g, sched, engine } = setup({ latencies: { processNs: 1000 } });
    g.startQp(0);
    for (let i = 0; i < 4; i++) g.submit(0, i, undefined, false);
    g.db(0x1000, 0, 0, 4, 0);
    sched.advance(999);
    expect(engine.order.length).toBe(0);
    sched.advance(1);
    expect(engine.order.length).toBe(1);
    sched.advance(2000);
    expect(engine.order.length).toBe(3);
    sched.runUntilIdle();
    expect(engine.order).toEqual([0, 1, 2, 3]);
    expect(sched.now).toBe(4000);
  });

  it('irqNs latency delays the MSI, not the EQE', () => {
    const { g, sched, msi, mem } = setup({ latencies: { irqNs: 500 } });
    g.startQp(0);
    g.submit(0, 1);
    sched.advance(0);
    expect(mem.get(1)!.u32(g.eqBase)).toBe(1 << 16);
    expect(msi.get(1)).toEqual([]);
    sched.advance(499);
    expect(msi.get(1)).toEqual([]);
    sched.advance(1);
    expect(msi.get(1)).toEqual([0]);
  });

  it('engine DMA goes through the function port; engine error and exception surface as statuses', () => {
    const { g, sched, mem } = setup();
    g.startQp(0);
    const m = mem.get(1)!;
    const src = g.scratch;
    const dst = g.scratch + 0x100;
    m.put(src, new Uint8Array([1, 2, 3, 0xff]));
    g.submit(0, 1, (v) => {
      v.setUint32(FAKE.LEN, 4, true);
      v.setBigUint64(FAKE.SRC, BigInt(src), true);
      v.setBigUint64(FAKE.DST, BigInt(dst), true);
    });
    g.submit(0, 2, (v) => v.setUint8(FAKE.CTRL, 1));
    g.submit(0, 3, (v) => v.setUint8(FAKE.CTRL, 2));
    sched.runUntilIdle();
    expect(Array.from(m.get(dst, 4))).toEqual([0xfe, 0xfd, 0xfc, 0x00]);
    const c = g.consumeCq(0);
    expect(c.map((x) => [x.tag, x.status])).toEqual([[1, 0x01], [2, 0xee], [3, 0]]);
    const snap = g.fn.debugSnapshot();
    expect(snap.queues.engineErrors).toBe(2);
    expect(snap.queues.engineExceptions).toBe(1);
    expect(snap.recentTags).toEqual([1, 2, 3]);
  });

  it('SQE fetch fault -> AEQE CQE_ERROR and the qp stops until its SQC is reloaded', () => {
    const { g, sched, mem, engine } = setup();
    g.startQp(0);
    const m = mem.get(1)!;
    m.faultAt(g.sqRing(0), 128);
    g.submit(0, 1);
    sched.runUntilIdle();
    expect(engine.order).toEqual([]);
    expect(g.consumeAeq()).toEqual([{ qn: 0, type: 2 }]);
    m.clearFaults();
    g.db(0x1000, 0, 0, 1, 0);
    sched.runUntilIdle();
    expect(engine.order).toEqual([]); // still stopped
    g.startQp(0);
    g.submit(0, 5);
    sched.runUntilIdle();
    expect(engine.order).toEqual([5]);
  });

  it('SQE size in the SQC that does not match the engine -> CQE_ERROR, nothing processed', () => {
    const { g, sched, engine } = setup();
    g.startQp(0, { sqeSizeLog2: 6 }); // 64 B SQEs on a 128 B engine
    g.submit(0, 1);
    sched.runUntilIdle();
    expect(engine.order).toEqual([]);
    expect(g.consumeAeq()).toEqual([{ qn: 0, type: 2 }]);
  });

  it('doorbell isolation: SQ/CQ doorbells only through BAR4 qn*0x10000+0x1000; the page picks the qp', () => {
    const { g, sched, engine, dev } = setup({ isolation: true });
    g.startQp(2);
    g.submit(2, 1, undefined, false);
    g.db(0x1000, 2, 0, 1, 0); // the BAR2 doorbell is not the path under isolation
    sched.runUntilIdle();
    expect(engine.order).toEqual([]);
    expect(g.fn.debugSnapshot().doorbells.wrongPath).toBe(1);
    // qn field says 0, page says 2: the page wins.
    g.fn.bar4.write64(2 * 0x10000 + 0x1000, 0 | (0 << 12), 1, 'guest');
    sched.runUntilIdle();
    expect(engine.order).toEqual([1]);
    expect(g.r32(0x30)).toBe(1);
    expect(dev.pf.bar2.read(0x301154, 4, 'test')).toBe(1);
  });

  it('doorbells only act as single 64-bit stores; qn >= qp_num and bad indexes are ignored and counted', () => {
    const { g, sched, engine } = setup();
    g.startQp(0);
    g.submit(0, 1, undefined, false);
    g.w32(0x1000, 0);
    g.w32(0x1004, 1);
    sched.runUntilIdle();
    expect(engine.order).toEqual([]);
    const qpNum = g.fn.qpNum;
    g.db(0x1000, qpNum, 0, 1, 0);
    g.db(0x1000, 0, 0, 16, 0); // index == depth
    g.db(0x1000, 0, 7, 1, 0); // not an SQ/CQ command
    sched.runUntilIdle();
    expect(engine.order).toEqual([]);
    const d = g.fn.debugSnapshot().doorbells;
    expect(d).toMatchObject({ narrowWrite: 2, outOfRange: 1, badIndex: 1, badCmd: 1 });
    g.db(0x1000, 0, 0, 1, 0);
    sched.runUntilIdle();
    expect(engine.order).toEqual([1]);
  });

  it('works for an HPRE profile with 64-byte SQEs', () => {
    const { g, sched, engine } = setup({ engine: 'hpre' });
    expect(g.L.sqeSize).toBe(64);
    g.startQp(0);
    g.submit(0, 0x55);
    sched.runUntilIdle();
    expect(g.consumeCq(0).map((c) => [c.tag, c.status])).toEqual([[0x55, 1]]);
    expect(engine.kind).toBe('hpre');
  });

  it('queues of two VFs are independent', () => {
    const rig = makeRig({ numVfs: 2 });
    const g1 = new GuestDriver(rig.fn(1), rig.mem.get(1)!, rig.sched);
    const g2 = new GuestDriver(rig.fn(2), rig.mem.get(2)!, rig.sched);
    g1.start();
    g2.start();
    g1.startQp(0);
    g2.startQp(0);
    g1.submit(0, 11);
    g2.submit(0, 22);
    g2.submit(0, 23);
    rig.sched.runUntilIdle();
    expect(g1.consumeCq(0).map((c) => c.tag)).toEqual([11]);
    expect(g2.consumeCq(0).map((c) => c.tag)).toEqual([22, 23]);
    expect(rig.msi.get(1)).toEqual([0]);
    expect(rig.msi.get(2)).toEqual([0]);
  });

  it('masked AEQ interrupt is held pending and delivered on unmask of 0x4', () => {
    const { g, sched, msi } = setup({}, { sqDepth: 8, cqDepth: 2 });
    g.startQp(0);
    g.w32(0x4, 1);
    g.submit(0, 1);
    g.submit(0, 2);
    sched.runUntilIdle();
    expect(msi.get(1)).toEqual([0]); // EQ fired, the overflow AEQE is held
    expect(g.r32(0x0) & 1).toBe(1);
    g.w32(0x4, 0);
    expect(msi.get(1)).toEqual([0, 1]);
    expect(g.consumeAeq()).toEqual([{ qn: 0, type: 0 }]);
  });
});
