/**
 * The simulator's event loop (src/sim/scheduler.ts): total order by due time then by
 * insertion, cancellation through the returned handle, `pending`, `advance` and `runUntil`.
 * The order is checked against a plain stable sort of the same events.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Scheduler } from '../src/sim/scheduler.js';

describe('Scheduler', () => {
  it('runs events by due time, ties in insertion order, skipping cancelled ones (property, against a stable sort)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ delay: fc.integer({ min: 0, max: 20 }), cancel: fc.boolean() }), { maxLength: 200 }),
        (evs) => {
          const s = new Scheduler();
          const ran: number[] = [];
          const handles = evs.map((e, i) => s.schedule(e.delay, () => ran.push(i)));
          evs.forEach((e, i) => { if (e.cancel) handles[i]!.cancel(); });
          const live = evs.map((e, i) => ({ ...e, i })).filter((e) => !e.cancel);
          expect(s.pending).toBe(live.length);
          s.runUntilIdle();
          const want = live.slice().sort((a, b) => a.delay - b.delay || a.i - b.i).map((e) => e.i);
          expect(ran).toEqual(want);
          expect(s.pending).toBe(0);
          expect(s.now).toBe(live.length ? Math.max(...live.map((e) => e.delay)) : 0);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('events queued while running keep the order (due, then insertion) relative to the rest', () => {
    const s = new Scheduler();
    const log: string[] = [];
    s.schedule(10, () => {
      log.push('a@10');
      s.schedule(0, () => log.push('c@10'));
      s.schedule(5, () => log.push('e@15'));
    });
    s.schedule(10, () => log.push('b@10'));
    s.schedule(15, () => log.push('d@15'));
    s.runUntilIdle();
    expect(log).toEqual(['a@10', 'b@10', 'c@10', 'd@15', 'e@15']);
  });

  it('cancel after the event ran changes nothing, and does not hit a later event', () => {
    const s = new Scheduler();
    let a = 0;
    let b = 0;
    const h = s.schedule(1, () => a++);
    s.runUntilIdle();
    s.schedule(1, () => b++);
    h.cancel();
    h.cancel();
    expect(s.pending).toBe(1);
    s.runUntilIdle();
    expect([a, b]).toEqual([1, 1]);
  });

  it('advance runs only what is due within the span, then sets the clock; a cancelled top is skipped', () => {
    const s = new Scheduler();
    const log: number[] = [];
    s.schedule(5, () => log.push(5)).cancel();
    s.schedule(7, () => log.push(7));
    s.schedule(12, () => log.push(12));
    s.advance(10);
    expect(log).toEqual([7]);
    expect(s.now).toBe(10);
    expect(s.pending).toBe(1);
    s.advance(1);
    expect(log).toEqual([7]);
    s.advance(1);
    expect(log).toEqual([7, 12]);
    expect(s.now).toBe(12);
    expect(s.executed).toBe(2);
  });

  it('runUntil stops as soon as the condition holds; negative delays count as 0', () => {
    const s = new Scheduler();
    let n = 0;
    for (let i = 0; i < 5; i++) s.schedule(-3, () => n++);
    expect(s.runUntil(() => n === 2)).toBe(true);
    expect(n).toBe(2);
    expect(s.now).toBe(0);
    expect(s.pending).toBe(3);
    expect(s.runUntil(() => n === 9)).toBe(false);
    expect(n).toBe(5);
  });

  it('a self-rescheduling task trips runUntilIdle\'s bound instead of hanging', () => {
    const s = new Scheduler();
    const loop = (): void => { s.schedule(0, loop); };
    s.schedule(0, loop);
    expect(() => s.runUntilIdle(1000)).toThrow(/more than 1000 tasks/);
  });
});
