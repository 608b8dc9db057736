/**
 * Verification after a switchover, from what the two sides report and what the guest's
 * workload ledger says:
 *
 * - guest RAM identical: the source's RAM hash after its final dirty collection equals the
 *   destination's after every page was applied, before the guest ran there; and no store hit
 *   source RAM after the final collection (the dirty ring's late-write trap);
 * - VF state equivalent: each destination VF's driver holds exactly the acc_vf_data the
 *   source sent, and (v2) its live registers after the load hold the saved values
 *   (vf-state-check.ts, on the destination);
 * - jobs: every job submitted before, during and after the migration completed exactly once
 *   with the right output (lost / duplicated / wrong all zero);
 * - interrupts: the guest's interrupt accounting agrees with its completions.
 */
import type { SourceReport, VfStateCheck } from './report-types.js';

/** What a job ledger reports (src/vmm/workload.ts verify()). */
export interface JobVerdict {
  submitted: number;
  completed: number;
  lost: number;
  duplicated: number;
  wrong: number;
  /** Jobs still in flight (they count as lost once the workload has drained). */
  inFlight: number;
  /** Interrupt accounting agrees with completions; null when not tracked. */
  interruptsOk: boolean | null;
  interruptNote: string;
}

export interface Verification {
  ok: boolean;
  ram: { ok: boolean; sourceHash: string | null; destinationHash: string | null; lateWrites: number };
  devices: VfStateCheck[];
  jobs: JobVerdict | null;
  problems: string[];
}

export function verifyMigration(src: SourceReport, jobs: JobVerdict | null): Verification {
  const problems: string[] = [];
  const dest = src.destination;
  const sh = src.ramHash;
  const dh = dest?.ramHash ?? null;
  const ramOk = src.ok && sh !== null && dh !== null && sh === dh && src.lateWrites === 0;
  if (!src.ok) problems.push(`migration failed: ${src.failure?.message ?? 'unknown'}`);
  else if (src.handover === 'unconfirmed') problems.push(`handover unconfirmed: ${src.handoverNote ?? 'no result from the destination'}`);
  else if (sh === null || dh === null) problems.push('guest RAM was not hashed on both sides');
  else if (sh !== dh) problems.push(`guest RAM differs: source ${sh.slice(0, 16)}..., destination ${dh.slice(0, 16)}...`);
  if (src.lateWrites !== 0) problems.push(`${src.lateWrites} store(s) to source RAM after the final dirty collection`);
  const devices: VfStateCheck[] = [];
  for (const d of dest?.devices ?? []) {
    if (!d.check) {
      if (src.ok) problems.push(`${d.name}: VF state not checked`);
      continue;
    }
    devices.push(d.check);
    if (!d.check.ok) problems.push(`${d.name}: VF state: ${d.check.note}${d.check.mismatches.length ? ` (${d.check.mismatches.join('; ')})` : ''}`);
  }
  if (src.ok && devices.length !== src.devices.length) problems.push(`${src.devices.length} device(s) migrated, ${devices.length} checked`);
  if (jobs) {
    if (jobs.lost) problems.push(`${jobs.lost} job(s) lost`);
    if (jobs.duplicated) problems.push(`${jobs.duplicated} job(s) completed more than once`);
    if (jobs.wrong) problems.push(`${jobs.wrong} job(s) with wrong output`);
    if (jobs.inFlight) problems.push(`${jobs.inFlight} job(s) never completed`);
    if (jobs.completed !== jobs.submitted) problems.push(`${jobs.submitted} submitted, ${jobs.completed} completed`);
    if (jobs.interruptsOk === false) problems.push(`interrupt accounting: ${jobs.interruptNote}`);
  }
  return {
    ok: problems.length === 0,
    ram: { ok: ramOk, sourceHash: sh, destinationHash: dh, lateWrites: src.lateWrites },
    devices,
    jobs,
    problems,
  };
}
