/**
 * `readl_relaxed_poll_timeout` on simulated time for the condition every QM poll uses,
 * `(reg & mask) === want`: read, test, and between reads let the Scheduler run what is due
 * in the next `periodNs` (the device's delayed completions). The poll is bounded: once more
 * than `timeoutNs` have passed it reads one last time and gives up. Returns the satisfying
 * value or null on timeout.
 *
 * Polls sit on every migration arc and usually succeed on their first read, so they take no
 * closures and a condition that already holds costs exactly one register read and no
 * scheduler work. (A register read never moves simulated time, so taking the deadline after
 * the first read gives the same deadline.)
 */
import type { Scheduler } from '../../sim/scheduler.js';

/** Something with 32-bit registers a driver polls (a VF mapping, the PF BAR2). */
export interface RegReader {
  readReg32(off: number): number;
}

/** `mask` and `want` are below 2^31 (bit tests on status registers). */
export function pollMasked(
  sched: Scheduler,
  regs: RegReader,
  off: number,
  mask: number,
  want: number,
  periodNs: number,
  timeoutNs: number,
): number | null {
  let v = regs.readReg32(off);
  if ((v & mask) === want) return v;
  const deadline = sched.now + timeoutNs;
  for (;;) {
    if (sched.now > deadline) {
      v = regs.readReg32(off);
      return (v & mask) === want ? v : null;
    }
    sched.advance(periodNs);
    v = regs.readReg32(off);
    if ((v & mask) === want) return v;
  }
}
