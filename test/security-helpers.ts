/**
 * Helpers for the BAR2 security sweep (test/security-bar2.test.ts): a snapshot of the live
 * migration-control state a guest must never reach (EQC/AEQC of the VF, and on V4 the PF
 * window of that VF), and a per-category tally of attempts and their outcomes.
 */
import { expect } from 'vitest';
import type { AccHost } from '../src/drivers/hisi-acc/testbed.js';

/** hisi-acc-vfio-pci.md section 2: the PF window of VF n is at 0x180000 + n*0x2000, EQC/AEQC at +0x1C00/+0x1C20. */
export const PF_MIG_WINDOW = (vfId: number) => 0x180000 + vfId * 0x2000;

export interface MigState {
  eq: { base: number; head: number; tail: number; phase: number; dw: number[] };
  aeq: { base: number; head: number; tail: number; phase: number; dw: number[] };
  /** 14 dwords of the PF window (EQC then AEQC) read from the PF side, all-ones where absent. */
  pfWindow: number[];
}

/** The live migration-control state of VF `vfId`, read outside the guest's path (origin 'test'). */
export function migState(host: AccHost, vfId = 1): MigState {
  const s = host.acc.qm.vf(vfId)!.debugSnapshot();
  const pick = (q: typeof s.eq) => ({ base: q.base, head: q.head, tail: q.tail, phase: q.phase, dw: [...q.dw] });
  const pfWindow: number[] = [];
  for (const rel of [0x1c00, 0x1c20]) {
    for (let i = 0; i < 7; i++) pfWindow.push(host.pf.fn.mmioRead(2, PF_MIG_WINDOW(vfId) + rel + 4 * i, 4, 'test'));
  }
  return { eq: pick(s.eq), aeq: pick(s.aeq), pfWindow };
}

/** Attempts of one category and how they ended: result code (0, count or -errno) -> times. */
export class Tally {
  attempts = 0;
  readonly outcomes = new Map<number | string, number>();

  note(outcome: number | string): void {
    this.attempts++;
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }

  /** Records `got` and checks it is `want`, with the attempt described on failure. */
  check(got: number, want: number, what: string): void {
    this.note(got);
    if (got !== want) expect.soft(got, what).toBe(want);
  }
}

/** The guest never reached the upper half and the live state did not move. */
export function expectUntouched(host: AccHost, before: MigState, vfId = 1): void {
  expect(host.acc.qm.vf(vfId)!.audit.count('guest', 'high')).toBe(0);
  expect(migState(host, vfId)).toEqual(before);
}
