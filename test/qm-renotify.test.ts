/**
 * Re-notification of unconsumed CQEs (src/hw/qm/README.md, model decisions): a priority-1 CQ
 * doorbell that leaves CQEs behind notifies again, at once when it made progress, else later
 * with a delay doubling from 1 us to 256 us; a paused function writes nothing to memory.
 */
import { describe, expect, it } from 'vitest';
import { CQ_RENOTIFY_MAX_NS, CQ_RENOTIFY_NS } from '../src/hw/qm/queues.js';
import { GuestDriver, makeRig } from './qm-harness.js';

/** One completed job whose CQE the "guest" never consumes (head stays 0, tail 1). */
function rig() {
  const r = makeRig({ numVfs: 1 });
  const m = r.mem.get(1)!;
  const g = new GuestDriver(r.fn(1), m, r.sched, { sqDepth: 8, cqDepth: 8, qps: 2 });
  g.start();
  g.startQp(0);
  g.submit(0, 7);
  r.sched.runUntilIdle();
  const msis = () => r.msi.get(1)!.length;
  const cqDoorbell = () => g.db(0x1000, 0, 1, 0, 1);
  return { r, m, g, msis, cqDoorbell };
}

describe('CQ re-notification', () => {
  it('a doorbell that moved nothing re-notifies after 1, 2, 4 ... us, capped at 256 us', () => {
    const { r, msis, cqDoorbell } = rig();
    cqDoorbell(); // first doorbell on this context: progress by definition, EQE at once
    const gaps: number[] = [];
    for (let i = 0; i < 11; i++) {
      const t = r.sched.now;
      const before = msis();
      cqDoorbell();
      expect(msis()).toBe(before); // never inside the MMIO write
      r.sched.runUntilIdle();
      expect(msis()).toBe(before + 1);
      gaps.push(r.sched.now - t);
    }
    const expected = [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256].map((us) => us * 1000);
    expect(CQ_RENOTIFY_NS).toBe(1000);
    expect(CQ_RENOTIFY_MAX_NS).toBe(256_000);
    expect(gaps).toEqual(expected);
  });

  it('nothing reaches memory or the MSI sink while the function is paused; the held EQE comes on restart', () => {
    const { r, m, g, msis, cqDoorbell } = rig();
    for (let i = 0; i < 8; i++) cqDoorbell(); // a re-notify is scheduled at a long delay
    expect(g.mailbox(0xe, 0, 0, 0, 0).status).toBe(0); // PAUSE_QM
    expect(r.fn(1).paused).toBe(true);
    const writes = m.writes;
    const before = msis();
    r.sched.runUntilIdle();
    expect(m.writes).toBe(writes);
    expect(msis()).toBe(before);
    // The restart (SQ doorbell, priority 1) delivers what was held.
    g.db(0x1000, 0, 0, 1, 1);
    r.sched.runUntilIdle();
    expect(r.fn(1).paused).toBe(false);
    expect(msis()).toBe(before + 1);
    expect(m.writes).toBeGreaterThan(writes); // the EQE
  });
});

describe('EQ re-raise', () => {
  it('backs off while the EQ doorbell moves nothing, and comes 1 us after a doorbell that made progress even with a long re-raise pending', () => {
    const r = makeRig({ numVfs: 1 });
    const m = r.mem.get(1)!;
    const g = new GuestDriver(r.fn(1), m, r.sched, { sqDepth: 8, cqDepth: 8, qps: 2 });
    g.start();
    g.startQp(0);
    g.submit(0, 1);
    r.sched.runUntilIdle();
    g.db(0x1000, 0, 1, 1, 1); // consume the CQE, re-arm c_flag
    g.submit(0, 2);
    r.sched.runUntilIdle();
    const msis = () => r.msi.get(1)!.length;
    const eqDoorbell = (head: number) => g.db(0x2000, 0, 2, head, 0);
    // two EQEs written (tail 2); the driver acknowledges none of them
    const gaps: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t = r.sched.now;
      const before = msis();
      eqDoorbell(0);
      r.sched.runUntilIdle();
      expect(msis()).toBe(before + 1);
      gaps.push(r.sched.now - t);
    }
    expect(gaps).toEqual([1, 2, 4, 8, 16, 32].map((us) => us * 1000));
    // a seventh no-progress doorbell schedules a re-raise 64 us out ...
    eqDoorbell(0);
    const t = r.sched.now;
    const before = msis();
    r.sched.advance(500);
    // ... and consuming one entry (head 1 of tail 2) brings it forward to 1 us after
    eqDoorbell(1);
    r.sched.runUntil(() => msis() > before);
    expect(r.sched.now - t).toBe(500 + 1000);
    r.sched.runUntilIdle();
    expect(msis()).toBe(before + 1); // the superseded 64 us re-raise does not fire as well
  });
});
