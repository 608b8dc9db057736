/**
 * How guest code waits. The simulation has no wall clock: "sleeping" means letting the
 * scheduler run device work for a span of simulated time. Both helpers are bounded, so a
 * device that never answers turns into a timeout, never a hang.
 */
import type { Scheduler } from '../sim/scheduler.js';

/**
 * Register polling the way `readl_poll_timeout` does it: check, sleep `periodNs`, check again,
 * giving up once `timeoutNs` has passed. Returns whether `done()` held.
 */
export function pollUntil(sched: Scheduler, done: () => boolean, periodNs: number, timeoutNs: number): boolean {
  let waited = 0;
  for (;;) {
    if (done()) return true;
    if (waited >= timeoutNs) return false;
    sched.advance(periodNs);
    waited += periodNs;
  }
}

/**
 * Runs device work until `done()` holds. Gives up when nothing is left to run (no event can
 * change the answer any more) or when simulated time passes the deadline.
 */
export function runUntilDone(sched: Scheduler, done: () => boolean, timeoutNs: number): boolean {
  const deadline = sched.now + timeoutNs;
  while (!done()) {
    if (sched.now > deadline || !sched.step()) return done();
  }
  return true;
}

/** A request whose `done` turns true when it finished (see runUntilSettled). */
export interface Settles {
  readonly done: boolean;
}

/** runUntilDone for one request's flag, without a predicate closure per wait. */
export function runUntilSettled(sched: Scheduler, req: Settles, timeoutNs: number): boolean {
  const deadline = sched.now + timeoutNs;
  while (!req.done) {
    if (sched.now > deadline || !sched.step()) return req.done;
  }
  return true;
}
