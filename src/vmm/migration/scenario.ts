/**
 * A complete migration scenario as the `demo`, `listen` and `migrate` commands (and the
 * bench) run it: build the source and/or destination from one set of options, run the
 * guest's workload for a warm-up, migrate, let the guest go on at the destination, drain
 * its jobs and verify.
 *
 * Intensity sets the guest's load: jobs per simulated ms and in flight, and how many pages of
 * how large a region its application dirties per ms (link bandwidth 25 Gbit/s moves about
 * 760 pages per ms, so `high` dirties faster than pre-copy can send and never converges).
 */
import type { EngineKind } from '../../hw/profile.js';
import { Scheduler } from '../../sim/scheduler.js';
import { PAGE_SIZE } from '../../mem/sparse-memory.js';
import { KernelError } from '../../uapi/errno.js';
import { createDestination, createSource, type TestbedEndpoint, type TestbedOptions } from '../testbed.js';
import type { Workload, WorkloadOptions } from '../workload.js';
import type { DirtyMode } from './dirty-tracker.js';
import { assignExtraVfs, withDevices } from './extra-vfs.js';
import { migrateInProcess } from './in-process.js';
import type { MigrationOptions, MigrationProgress } from './options.js';
import type { DestinationReport, SourceReport } from './report-types.js';
import { type JobVerdict, type Verification, verifyMigration } from './verify.js';

export type Intensity = 'idle' | 'low' | 'medium' | 'high';

export interface ScenarioOptions {
  engine: EngineKind;
  hw: 'v2' | 'v3' | 'v4';
  ramBytes: number;
  intensity: Intensity;
  /** VFs passed through to the VM (VF 1 runs the workload, the others idle). */
  vfs: number;
  dirty: DirtyMode;
  protocol: 'v2' | 'v1';
  bandwidthBytesPerSec?: number;
  downtimeLimitNs?: number;
  maxIterations?: number;
  /** Simulated time the guest runs before the migration (default 4 ms). */
  warmupNs: number;
  /** Simulated time the guest runs on the destination before draining (default 2 ms). */
  afterNs: number;
  seed: number;
}

/** Engine time per request in the scenario's device model. */
export const DEVICE_PROCESS_NS = 40_000;

export const DEFAULT_SCENARIO: ScenarioOptions = {
  engine: 'zip',
  hw: 'v3',
  ramBytes: 256 * 2 ** 20,
  intensity: 'medium',
  vfs: 1,
  dirty: 'dma-logging',
  protocol: 'v2',
  warmupNs: 4_000_000,
  afterNs: 2_000_000,
  seed: 1,
};

/** The workload of an intensity, fitted into the guest's RAM. */
export function workloadFor(o: Pick<ScenarioOptions, 'intensity' | 'engine' | 'ramBytes' | 'seed'>): WorkloadOptions | false {
  const hpre = o.engine === 'hpre';
  const base = (() => {
    switch (o.intensity) {
      case 'idle': return { inFlight: 1, jobsPerMs: 0, dirtyPagesPerMs: 0, dirtyRegionPages: 16 };
      case 'low': return { inFlight: 4, jobsPerMs: hpre ? 2 : 10, dirtyPagesPerMs: 50, dirtyRegionPages: 256 };
      case 'medium': return { inFlight: 8, jobsPerMs: hpre ? 4 : 30, dirtyPagesPerMs: 400, dirtyRegionPages: 4096 };
      case 'high': return { inFlight: 16, jobsPerMs: hpre ? 8 : 60, dirtyPagesPerMs: 1500, dirtyRegionPages: 16384 };
    }
  })();
  // leave room for the guest driver's rings and job buffers
  const maxRegion = Math.max(16, Math.floor(o.ramBytes / PAGE_SIZE / 4));
  return { ...base, dirtyRegionPages: Math.min(base.dirtyRegionPages, maxRegion), seed: o.seed };
}

export function testbedOptions(o: ScenarioOptions): TestbedOptions {
  return {
    engine: o.engine,
    hw: o.hw,
    ramBytes: o.ramBytes,
    numVfs: Math.max(2, o.vfs),
    protocol: o.protocol,
    dirty: o.dirty,
    workload: workloadFor(o),
    warmupJobs: o.intensity === 'idle' ? 0 : 8,
    // a busy VF: 40 us of engine time per request keeps a backlog, so jobs are in flight at the stop
    latencies: { processNs: DEVICE_PROCESS_NS, irqNs: 1_000, mailboxNs: 2_000, wbNs: 5_000 },
  };
}

export function migrationOptions(o: ScenarioOptions): MigrationOptions {
  const m: MigrationOptions = { dirty: o.dirty };
  if (o.bandwidthBytesPerSec !== undefined) m.bandwidthBytesPerSec = o.bandwidthBytesPerSec;
  if (o.downtimeLimitNs !== undefined) m.downtimeLimitNs = o.downtimeLimitNs;
  if (o.maxIterations !== undefined) m.maxIterations = o.maxIterations;
  return m;
}

/** The VFs beyond VF 1, assigned idle to the endpoint. */
function withExtraVfs(ep: TestbedEndpoint, vfs: number): TestbedEndpoint {
  if (vfs <= 1) return ep;
  const idx: number[] = [];
  for (let i = 2; i <= vfs; i++) idx.push(i);
  return withDevices(ep, assignExtraVfs(ep.host, ep, idx));
}

export function buildSource(o: ScenarioOptions, scheduler = new Scheduler()): TestbedEndpoint {
  return withExtraVfs(createSource(testbedOptions(o), scheduler), o.vfs);
}

export function buildDestination(o: ScenarioOptions, scheduler = new Scheduler(), workload: Workload | null = null): TestbedEndpoint {
  return withExtraVfs(createDestination(testbedOptions(o), scheduler, workload), o.vfs);
}

/** The guest's jobs as the verification wants them. */
export function jobVerdict(w: Workload): JobVerdict {
  const v = w.verify();
  const i = v.interrupts;
  return {
    submitted: v.submitted,
    completed: v.completed,
    lost: v.lost,
    duplicated: v.duplicated,
    wrong: v.wrong,
    inFlight: v.inFlight,
    interruptsOk: i.consistent,
    interruptNote: `${i.received} MSIs, ${i.eqes} EQEs, ${i.irqCqes} CQEs by interrupt for ${i.completions} completions`,
  };
}

/** Runs the guest, then lets every job finish (ETIMEDOUT-safe: a stuck job is reported, not thrown). */
export function finishGuest(ep: TestbedEndpoint, w: Workload | null, ns: number): string | null {
  ep.vm.run(ns);
  if (!w) return null;
  try {
    w.drain();
    return null;
  } catch (e) {
    if (e instanceof KernelError) return e.message;
    throw e;
  }
}

export interface DemoResult {
  options: ScenarioOptions;
  source: SourceReport;
  destination: DestinationReport;
  verification: Verification;
  /** Jobs the guest had in flight when its vCPUs stopped. */
  jobsInFlightAtStop: number;
  jobsBefore: number;
  drainError: string | null;
  sourceBdf: string;
  destinationBdf: string;
}

/** One process, two hosts: warm-up, live migration, the guest continues, verification. */
export async function runInProcessScenario(o: ScenarioOptions, onProgress?: (p: MigrationProgress) => void): Promise<DemoResult> {
  const sched = new Scheduler();
  const source = buildSource(o, sched);
  const dest = buildDestination(o, sched, source.workload);
  const w = source.workload;
  source.vm.run(o.warmupNs);
  const jobsBefore = w ? w.submitted - w.inFlight : 0;
  let inFlight = 0;
  const out = await migrateInProcess(source, dest, {
    ...migrationOptions(o),
    ...(onProgress ? { onProgress } : {}),
    onVcpusStopped: () => {
      inFlight = w?.inFlight ?? 0;
    },
  });
  // the guest carries on wherever it now runs
  const runsOn = out.source.ok ? dest : source;
  const drainError = finishGuest(runsOn, w, o.afterNs);
  const jobs = w ? jobVerdict(w) : null;
  const verification = verifyMigration(out.source, jobs);
  if (drainError) verification.problems.push(drainError);
  verification.ok = verification.problems.length === 0;
  return {
    options: o,
    source: out.source,
    destination: out.destination,
    verification,
    jobsInFlightAtStop: inFlight,
    jobsBefore,
    drainError,
    sourceBdf: source.bdf,
    destinationBdf: dest.bdf,
  };
}
