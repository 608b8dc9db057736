/**
 * The ping-pong live-migration soak (issue 6 item 3): one guest with a busy VF migrates
 * host A -> B -> A ... N times in one process on one simulated clock. Jobs keep being
 * submitted while each migration runs (pre-copy passes run the guest for the link time of
 * what they send), so jobs are in flight at every stop.
 *
 * Each hop is what a VMM pair does: the destination is a fresh VM shell on the other host
 * (VFIO opened, RAM mapped, no guest booted) holding the same Workload object, the migration
 * runs in QEMU's order (src/vmm/migration), and after a successful switchover the source VM
 * is shut down (its QEMU exits: device, group and container fds closed, which resets the VF
 * for the next time it is a destination). After a failed one the guest carries on at the
 * source and the shell is shut down instead; the failure is a finding and the soak goes on.
 *
 * Every migration is verified: guest RAM hash equal on both sides and no late write after
 * the final collection, each VF's state on the destination equal to what was sent, and the
 * job ledger (no job failed, completed twice or with a wrong output; completions agree with
 * the guest's interrupt accounting; no guest kernel error). Every `drainEvery` migrations
 * and at the end the guest lets every outstanding job finish, and then no job may be
 * missing: a job lost in migration i is caught by the next drain at the latest.
 */
import { performance } from 'node:perf_hooks';
import type { EngineKind } from '../hw/profile.js';
import { Scheduler } from '../sim/scheduler.js';
import { KernelError } from '../uapi/errno.js';
import type { VfioFile } from '../vfio/fd.js';
import { migrateInProcess } from '../vmm/migration/in-process.js';
import type { FaultPlan } from '../vmm/transport/fault.js';
import { verifyMigration } from '../vmm/migration/verify.js';
import { createTestbed, type GuestDevice, type TestbedEndpoint } from '../vmm/testbed.js';
import { Vm } from '../vmm/vm.js';
import type { Workload } from '../vmm/workload.js';
import { type MigrationPlan, planMigration } from './soak-plan.js';

export interface SoakOptions {
  migrations: number;
  seed: number;
  engine?: EngineKind;
  hw?: 'v3' | 'v4';
  protocol?: 'v2' | 'v1';
  /** Guest RAM (default 32 MiB: every migration sends all of it that was ever written). */
  ramBytes?: number;
  /** Pages of RAM the guest application dirties (default 512 = 2 MiB). */
  dirtyRegionPages?: number;
  /** Drain every outstanding job after every this many migrations (default 10; 1 = after each). */
  drainEvery?: number;
  /**
   * Breaks the stream of the migrations with these indexes (the soak's own check that a
   * failed migration is reported and the guest carries on at the source without losses).
   */
  faults?: ReadonlyMap<number, FaultPlan>;
  /** Called after each migration (progress output). */
  onMigration?: (m: MigrationRecord) => void;
}

export interface MigrationRecord {
  index: number;
  from: 'A' | 'B';
  to: 'A' | 'B';
  plan: MigrationPlan;
  ok: boolean;
  /** The migration's own failure (the guest then stays at the source). */
  failure: string | null;
  protocol: string | null;
  precopy: boolean;
  dirtyMode: string | null;
  converged: boolean;
  iterations: number;
  /** Downtime, simulated (vCPU stop to destination RUNNING, link time included) and wall. */
  downtimeNs: number;
  /** Its parts: source stop to last byte sent, link time of the stopped phase, destination load to RUNNING. */
  downtimeParts: { sourceNs: number; transferNs: number; destinationNs: number };
  downtimeWallUs: number;
  totalNs: number;
  /** Wall time of migrateInProcess (setup to the source's cleanup). */
  wallUs: number;
  streamBytes: number;
  ramOk: boolean;
  devicesOk: boolean;
  deviceMismatches: string[];
  /** Jobs submitted from this hop's warm-up to the end of its run at the new host. */
  jobsSubmitted: number;
  jobsInFlightAtStop: number;
  drained: boolean;
  /** Everything found wrong in this migration (empty = verified). */
  problems: string[];
}

export interface SoakTotals {
  migrations: number;
  succeeded: number;
  failed: number;
  verified: number;
  jobsSubmitted: number;
  jobsCompleted: number;
  lostJobs: number;
  duplicatedJobs: number;
  wrongJobs: number;
  failedJobs: number;
  ramMismatches: number;
  deviceStateMismatches: number;
  lateWrites: number;
  guestErrors: number;
  /** Jobs in flight at the stops, summed (how busy the VF was at each switchover). */
  jobsInFlightAtStops: number;
  drains: number;
}

export interface SoakResult {
  options: Required<Omit<SoakOptions, 'onMigration' | 'faults'>>;
  totals: SoakTotals;
  records: MigrationRecord[];
  /** Wall-clock of the whole soak, setup included. */
  wallMs: number;
  /** True when no migration failed and nothing was lost, duplicated, wrong or mismatched. */
  ok: boolean;
}

type Side = 'A' | 'B';

/** A VM shell on `host` for the incoming guest: VFIO set up, RAM mapped, nothing booted. */
function shellOn(prev: TestbedEndpoint, workload: Workload): TestbedEndpoint {
  const vm = new Vm(prev.host, { bdf: prev.bdf, ramBytes: prev.vm.ramBytes, vcpus: prev.vm.vcpus.length, boot: false });
  vm.workload = workload;
  const dev: GuestDevice = { name: vm.bdf, bdf: vm.bdf, fd: vm.deviceFd, file: vm.device, io: vm.io };
  return {
    scheduler: prev.host.scheduler,
    vm,
    devices: [dev],
    containerFd: vm.containerFd,
    container: vm.container as VfioFile,
    process: prev.host.process,
    host: prev.host,
    deviceFd: vm.deviceFd,
    device: vm.device,
    io: vm.io,
    bdf: vm.bdf,
    workload,
    options: prev.options,
  };
}

/** Sets the guest application's load for the coming migration (its options travel in its CPU state). */
function applyLoad(w: Workload, p: MigrationPlan): void {
  w.options = Object.freeze({ ...w.options, jobsPerMs: p.jobsPerMs, inFlight: p.inFlight, jobBytes: p.jobBytes, dirtyPagesPerMs: p.dirtyPagesPerMs });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const wall0 = performance.now();
  const o: SoakResult['options'] = {
    migrations: opts.migrations,
    seed: opts.seed,
    engine: opts.engine ?? 'zip',
    hw: opts.hw ?? 'v3',
    protocol: opts.protocol ?? 'v2',
    ramBytes: opts.ramBytes ?? 32 * 2 ** 20,
    dirtyRegionPages: opts.dirtyRegionPages ?? 512,
    drainEvery: opts.drainEvery ?? 10,
  };
  if (!Number.isSafeInteger(o.migrations) || o.migrations < 0) throw new RangeError(`migrations must be a non-negative integer (got ${o.migrations})`);
  if (!Number.isSafeInteger(o.drainEvery) || o.drainEvery < 1) throw new RangeError(`drainEvery must be a positive integer (got ${o.drainEvery})`);
  const first = planMigration(o.seed, 0, o.engine);
  const tb = createTestbed({
    engine: o.engine,
    hw: o.hw,
    protocol: o.protocol,
    ramBytes: o.ramBytes,
    scheduler: new Scheduler(),
    // the scenario's busy VF: 40 us of engine time per request keeps a backlog at every stop
    latencies: { processNs: 40_000, irqNs: 1_000, mailboxNs: 2_000, wbNs: 5_000 },
    workload: {
      seed: o.seed,
      dirtyRegionPages: o.dirtyRegionPages,
      inFlight: first.inFlight,
      jobsPerMs: first.jobsPerMs,
      jobBytes: first.jobBytes,
      dirtyPagesPerMs: first.dirtyPagesPerMs,
    },
  });
  const w = tb.source.workload!;
  const sides: Record<Side, TestbedEndpoint> = { A: tb.source, B: tb.dest };
  let at: Side = 'A';
  const records: MigrationRecord[] = [];
  const t: SoakTotals = {
    migrations: 0, succeeded: 0, failed: 0, verified: 0, jobsSubmitted: 0, jobsCompleted: 0, lostJobs: 0, duplicatedJobs: 0,
    wrongJobs: 0, failedJobs: 0, ramMismatches: 0, deviceStateMismatches: 0, lateWrites: 0, guestErrors: 0, jobsInFlightAtStops: 0, drains: 0,
  };
  // cumulative ledger figures already attributed to earlier migrations
  let seenDup = 0;
  let seenWrong = 0;
  let seenFailed = 0;
  let seenGuestErrors = 0;

  for (let i = 0; i < o.migrations; i++) {
    const plan = planMigration(o.seed, i, o.engine);
    const to: Side = at === 'A' ? 'B' : 'A';
    const src = sides[at];
    const problems: string[] = [];
    const submittedBefore = w.submitted;
    applyLoad(w, plan);
    src.vm.run(plan.warmupNs);
    let inFlightAtStop = 0;
    let dst: TestbedEndpoint;
    try {
      dst = i === 0 ? sides[to] : shellOn(sides[to], w);
    } catch (e) {
      throw new Error(`migration ${i}: building the destination VM on host ${to}: ${errorText(e)}`);
    }
    sides[to] = dst;
    const w0 = performance.now();
    const fault = opts.faults?.get(i);
    const out = await migrateInProcess(src, dst, {
      ...(fault ? { fault } : {}),
      precopy: plan.precopy,
      dirty: plan.dirty,
      downtimeLimitNs: plan.downtimeLimitNs,
      maxIterations: plan.maxIterations,
      bandwidthBytesPerSec: plan.bandwidthBytesPerSec,
      onVcpusStopped: () => {
        inFlightAtStop = w.inFlight;
      },
    });
    const wallUs = (performance.now() - w0) * 1000;
    const s = out.source;
    const v = verifyMigration(s, null);
    problems.push(...v.problems);
    const ramOk = v.ram.ok;
    const deviceMismatches = v.devices.filter((d) => !d.ok).map((d) => `${d.name}: ${d.note}${d.mismatches.length ? ` (${d.mismatches.join('; ')})` : ''}`);
    if (s.ok) {
      if (!ramOk) t.ramMismatches++;
      if (deviceMismatches.length > 0 || v.devices.length !== s.devices.length) t.deviceStateMismatches++;
      t.lateWrites += s.lateWrites;
      // the source's QEMU exits; the guest lives on the other host now
      src.vm.shutdown();
      at = to;
    } else {
      dst.vm.shutdown();
    }
    const here = sides[at];
    here.vm.run(plan.afterNs);
    const drained = (i + 1) % o.drainEvery === 0 || i + 1 === o.migrations;
    if (drained) {
      t.drains++;
      try {
        w.drain();
      } catch (e) {
        problems.push(`draining the guest's jobs: ${errorText(e)}`);
      }
    }
    const jv = w.verify();
    const jobsSubmitted = jv.submitted - submittedBefore;
    if (jv.duplicated > seenDup) problems.push(`${jv.duplicated - seenDup} job(s) completed more than once`);
    if (jv.wrong > seenWrong) problems.push(`${jv.wrong - seenWrong} job(s) with wrong output`);
    if (jv.failed > seenFailed) problems.push(`${jv.failed - seenFailed} job(s) failed`);
    if (!jv.interrupts.consistent) problems.push(`interrupt accounting: ${jv.interrupts.irqCqes} CQEs by interrupt for ${jv.interrupts.completions} completions, ${jv.interrupts.received} MSIs`);
    if (w.stats.staleCompletions || w.stats.unknownCompletions) problems.push(`${w.stats.staleCompletions} stale and ${w.stats.unknownCompletions} unknown completion(s)`);
    if (drained && (jv.lost > 0 || jv.completed !== jv.submitted)) problems.push(`after draining: ${jv.lost} job(s) lost, ${jv.completed} of ${jv.submitted} completed correctly once`);
    const ge = sides.A.vm.stats.guestErrors + sides.B.vm.stats.guestErrors;
    if (ge > seenGuestErrors) problems.push(`guest kernel error: ${(here.vm.firstGuestError ?? sides[to].vm.firstGuestError)?.message ?? 'unknown'}`);
    seenDup = jv.duplicated;
    seenWrong = jv.wrong;
    seenFailed = jv.failed;
    seenGuestErrors = ge;
    t.guestErrors = ge;
    t.migrations++;
    if (s.ok) t.succeeded++;
    else t.failed++;
    if (problems.length === 0) t.verified++;
    t.jobsInFlightAtStops += inFlightAtStop;
    const d = s.downtime;
    const rec: MigrationRecord = {
      index: i,
      from: to === 'A' ? 'B' : 'A',
      to,
      plan,
      ok: s.ok,
      failure: s.ok ? null : s.failure?.message ?? 'unknown',
      protocol: s.protocol,
      precopy: s.precopy,
      dirtyMode: s.dirtyMode,
      converged: s.converged,
      iterations: s.iterations.length,
      downtimeNs: s.ok && d ? d.totalNs : 0,
      downtimeParts: s.ok && d ? { sourceNs: d.sourceNs, transferNs: d.transferNs, destinationNs: d.destinationNs } : { sourceNs: 0, transferNs: 0, destinationNs: 0 },
      downtimeWallUs: s.ok && d ? d.sourceWallUs + d.destinationWallUs : 0,
      totalNs: s.totalNs,
      wallUs,
      streamBytes: s.streamBytes,
      ramOk,
      devicesOk: s.ok && deviceMismatches.length === 0 && v.devices.length === s.devices.length,
      deviceMismatches,
      jobsSubmitted,
      jobsInFlightAtStop: inFlightAtStop,
      drained,
      problems,
    };
    records.push(rec);
    opts.onMigration?.(rec);
  }
  const jv = w.verify();
  t.jobsSubmitted = jv.submitted;
  t.jobsCompleted = jv.completed;
  t.lostJobs = jv.lost;
  t.duplicatedJobs = jv.duplicated;
  t.wrongJobs = jv.wrong;
  t.failedJobs = jv.failed;
  const ok = t.failed === 0 && t.verified === t.migrations && t.lostJobs === 0 && t.duplicatedJobs === 0 && t.wrongJobs === 0
    && t.failedJobs === 0 && t.ramMismatches === 0 && t.deviceStateMismatches === 0 && t.lateWrites === 0 && t.guestErrors === 0;
  return { options: o, totals: t, records, wallMs: performance.now() - wall0, ok };
}

/** A KernelError's errno name, for messages (exported for the CLI's top-level catch). */
export function describeError(e: unknown): string {
  return e instanceof KernelError ? `${e.code}: ${e.message}` : errorText(e);
}
