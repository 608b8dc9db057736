/**
 * `readl_relaxed_poll_timeout` on simulated time: read, test, and between reads let the
 * Scheduler run what is due in the next `periodNs` (the device's delayed completions). The
 * poll is bounded: once more than `timeoutNs` have passed it reads one last time and gives
 * up. Returns the satisfying value or null on timeout.
 */
import type { Scheduler } from '../../sim/scheduler.js';

export function pollTimeout(
  sched: Scheduler,
  read: () => number,
  done: (v: number) => boolean,
  periodNs: number,
  timeoutNs: number,
): number | null {
  const deadline = sched.now + timeoutNs;
  for (;;) {
    const v = read();
    if (done(v)) return v;
    if (sched.now > deadline) {
      const last = read();
      return done(last) ? last : null;
    }
    sched.advance(periodNs);
  }
}
