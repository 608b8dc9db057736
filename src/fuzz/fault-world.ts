/**
 * One cell's world for the fault matrix: a source host running a busy guest (jobs in flight
 * on its VF) and an idle destination host, on one simulated clock, migrated in process with
 * every step observable (fault-taps.ts for the orchestrator and transport, the device
 * model's fault tap for mailbox commands, write-backs and polled status reads). After the
 * migration the outcome is judged without trusting the orchestrator's own bookkeeping:
 * guest RAM compared page by page, device states read through the uAPI, and the workload's
 * exactly-once ledger after the guest ran on.
 */
import { hisiAccStateOf } from '../drivers/hisi-acc/driver.js';
import type { FaultPoint } from '../hw/qm/faults.js';
import type { QmDevice } from '../hw/qm/qm-device.js';
import type { SparseMemory } from '../mem/sparse-memory.js';
import { Scheduler } from '../sim/scheduler.js';
import { errnoName } from '../uapi/errno.js';
import { VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP } from '../uapi/vfio.js';
import { getMigState } from '../vmm/migration/device-uapi.js';
import { runDestination } from '../vmm/migration/destination.js';
import type { DestinationReport, SourceReport } from '../vmm/migration/report-types.js';
import { runSource } from '../vmm/migration/source.js';
import { createDestination, createSource, type TestbedEndpoint, type TestbedOptions } from '../vmm/testbed.js';
import { createPipePair } from '../vmm/transport/in-process.js';
import { type Side, type StepEvent, type StepTap, tapEndpoint, tapTransport } from './fault-taps.js';

const MiB = 2 ** 20;

export interface WorldOptions {
  engine?: 'zip' | 'sec' | 'hpre';
  /** Guest RAM in MiB (default 16). */
  ramMiB?: number;
}

export interface World {
  sched: Scheduler;
  source: TestbedEndpoint;
  dest: TestbedEndpoint;
}

/** A busy VF: 40 us per request keeps a backlog, so jobs are in flight when the guest stops. */
const BUSY = { processNs: 40_000, irqNs: 1_000, mailboxNs: 2_000, wbNs: 5_000 };

export function buildWorld(o: WorldOptions = {}): World {
  const sched = new Scheduler();
  const base: TestbedOptions = {
    engine: o.engine ?? 'zip',
    ramBytes: (o.ramMiB ?? 16) * MiB,
    latencies: BUSY,
    workload: { inFlight: 6, jobsPerMs: 30, dirtyPagesPerMs: 300, dirtyRegionPages: 1024, jobBytes: 2048 },
    warmupJobs: 4,
  };
  const source = createSource(base, sched);
  const dest = createDestination(base, sched, source.workload);
  source.vm.run(2_000_000);
  return { sched, source, dest };
}

export function qmOf(ep: TestbedEndpoint): QmDevice {
  return ep.host.accelerators[0]!.qm;
}

/** A device-model event with the switches it may flip. */
export type DeviceTap = (side: Side, ev: StepEvent, point: FaultPoint, qm: QmDevice) => void;

export interface RunTaps {
  steps: StepTap;
  device: DeviceTap;
}

export interface RunResult {
  source: SourceReport;
  destination: DestinationReport;
  /**
   * Guest RAM of the destination identical to the source's at the moment the destination
   * resumed the vCPUs (null: it never did).
   */
  ramEqualAtStart: boolean | null;
}

const MB_NAMES: Record<number, string> = {
  0x0: 'SQC', 0x1: 'CQC', 0x2: 'EQC', 0x3: 'AEQC', 0x4: 'SQC_BT', 0x5: 'CQC_BT', 0x6: 'SQC_VFT_V2',
  0x8: 'STOP_QP', 0x9: 'FLUSH_QM', 0xc: 'SRC', 0xd: 'DST', 0xe: 'PAUSE_QM',
};

/** Status registers by function-relative BAR2 offset (qm-hardware.md section 1). */
export function pollRegName(reg: number, qm: QmDevice): string {
  switch (reg) {
    case 0x0028: return 'QM_IFC_INT_STATUS';
    case 0x002c: return 'QM_IFC_INT_SET_V';
    case 0x0060: return 'QM_VF_STATE';
    case 0x0208: return 'QM_CACHE_WB_DONE';
    case 0x0300: return 'QM_MB_CMD';
    case 0x100008: return 'QM_ABNORMAL_INT_STATUS';
    case 0x10006c: return 'QM_VFT_CFG_RDY';
    case 0x100128: return 'QM_IFC_READY_STATUS';
    default: return reg === qm.pfRegs.engineStatusOff ? 'engine INT_STATUS' : `reg 0x${reg.toString(16)}`;
  }
}

function deviceEvent(side: Side, p: FaultPoint, qm: QmDevice): StepEvent {
  const fn = p.fn === 0 ? 'PF' : `VF${p.fn}`;
  switch (p.kind) {
    case 'mailbox':
      return { side, kind: 'mailbox', label: `${fn} mailbox ${MB_NAMES[p.cmd] ?? `cmd 0x${p.cmd.toString(16)}`} ${p.op === 0 ? 'write' : 'read'} q${p.queue}` };
    case 'writeback-start':
      return { side, kind: 'writeback', label: `${fn} QM_CACHE_WB_START` };
    case 'status-read':
      return { side, kind: 'poll', label: `${fn} poll ${pollRegName(p.reg, qm)} (${p.origin ?? '?'})` };
  }
}

/**
 * Migrates the guest with every step reported to `taps`. Faults answered by the taps apply
 * to that very step. Device-model taps are installed for the migration only.
 */
export async function migrateTapped(w: World, taps: RunTaps): Promise<RunResult> {
  const [a, b] = createPipePair(['migration source', 'migration destination']);
  let srcPhase = 'setup';
  const advance = (ns: number) => w.sched.advance(ns);
  const link = tapTransport(a, 'source', taps.steps, () => srcPhase, advance);
  const back = tapTransport(b, 'dest', taps.steps, () => 'dest', advance);
  const sqm = qmOf(w.source);
  const dqm = qmOf(w.dest);
  sqm.faults.tap = (p) => taps.device('source', deviceEvent('source', p, sqm), p, sqm);
  dqm.faults.tap = (p) => taps.device('dest', deviceEvent('dest', p, dqm), p, dqm);
  let ramEqualAtStart: boolean | null = null;
  const atStart = () => {
    ramEqualAtStart = sameRam(w.source.vm.ram, w.dest.vm.ram);
  };
  try {
    const [source, destination] = await Promise.all([
      runSource(tapEndpoint(w.source, 'source', taps.steps), link, {
        onProgress: (p) => {
          srcPhase = p.phase;
        },
        onVcpusStopped: () => {
          srcPhase = 'stop';
        },
      }),
      runDestination(tapEndpoint(w.dest, 'dest', taps.steps, atStart), back),
    ]);
    return { source, destination, ramEqualAtStart };
  } finally {
    sqm.faults.tap = null;
    dqm.faults.tap = null;
  }
}

/** Page-by-page comparison (independent of SparseMemory.hash); pages backed on neither side are zero on both. */
export function sameRam(a: SparseMemory, b: SparseMemory): boolean {
  if (a.size !== b.size) return false;
  const backed = new Uint8Array(Math.ceil(a.size / 4096));
  a.forEachBackedPage((p) => { backed[p] = 1; });
  b.forEachBackedPage((p) => { backed[p] = 1; });
  const pa = new Uint8Array(4096);
  const pb = new Uint8Array(4096);
  const wa = new Uint32Array(pa.buffer);
  const wb = new Uint32Array(pb.buffer);
  for (let p = 0; p < backed.length; p++) {
    if (backed[p] === 0) continue;
    a.copyPage(p, pa);
    b.copyPage(p, pb);
    for (let i = 0; i < wa.length; i++) if (wa[i] !== wb[i]) return false;
  }
  return true;
}

/** What one cell ended with, and which requirements it broke. */
export interface CellOutcome {
  /** The migration completed (the guest runs on the destination). */
  migrated: boolean;
  /** Where it failed, as the source reports it ("stop-copy: ... (source)"), or null. */
  failure: string | null;
  /** errno name or stream/transport code of the failure, as the source reports it. */
  code: string | null;
  /** The destination's own failure ("step: message") and code, when it gave up. */
  destFailure: string | null;
  destCode: string | null;
  /** The host the guest runs on after the cell, and the jobs it ran after the migration. */
  runsOn: 'source' | 'destination' | 'both' | 'nowhere';
  jobsAfter: number;
  lost: number;
  duplicated: number;
  wrong: number;
  /** The destination ran the guest. */
  destStarted: boolean;
  /** Successful RESUMING -> STOP arcs of the destination's vendor driver (loads). */
  destLoads: number;
  /**
   * The orchestrator's own VF-state check on the destination when it did not pass (it does
   * not gate the start; the matrix judges by RAM and the job ledger instead), else null.
   */
  destCheckNote: string | null;
  violations: string[];
}

function destLoads(ep: TestbedEndpoint): number {
  const arcs = hisiAccStateOf(ep.device.core)?.dev.arcs ?? [];
  return arcs.filter((a) => a.from === VFIO_DEVICE_STATE_RESUMING && a.to === VFIO_DEVICE_STATE_STOP && a.ok).length;
}

/** Simulated time the guest runs after the migration, on whichever side it lives. */
const RUN_ON_NS = 2_000_000;

/**
 * The requirement of issue 6 item 2, checked after the migration: a failed migration leaves
 * the source running its guest with every job exactly once and a destination that never ran
 * it; a completed one has a destination that runs the very guest the source stopped (RAM page
 * by page, VF state, jobs exactly once) and a source that stays stopped.
 */
export function judge(w: World, r: RunResult): CellOutcome {
  const s = r.source;
  const d = r.destination;
  const v: string[] = [];
  const f = s.failure;
  const srcRuns = w.source.vm.vcpusRunning;
  const dstRuns = w.dest.vm.vcpusRunning;
  const out: CellOutcome = {
    migrated: s.ok,
    failure: f ? `${f.step}: ${f.message} (${f.side})` : null,
    code: f ? (f.code ?? (f.errno !== undefined ? errnoName(f.errno) : null)) : null,
    destFailure: d.failure ? `${d.failure.step}: ${d.failure.message}` : null,
    destCode: d.failure ? (d.failure.code ?? (d.failure.errno !== undefined ? errnoName(d.failure.errno) : null)) : null,
    runsOn: srcRuns && dstRuns ? 'both' : srcRuns ? 'source' : dstRuns ? 'destination' : 'nowhere',
    jobsAfter: 0,
    lost: 0,
    duplicated: 0,
    wrong: 0,
    destStarted: d.started,
    destLoads: destLoads(w.dest),
    destCheckNote: null,
    violations: v,
  };
  if (srcRuns && dstRuns) v.push('the guest runs on both hosts (split brain)');
  if (!srcRuns && !dstRuns) v.push('the guest runs on neither host');
  if (s.ok !== d.started) v.push(`source says ${s.ok ? 'migrated' : 'failed'}, destination ${d.started ? 'started' : 'did not start'} the guest`);
  const wl = w.source.workload!;
  if (d.started && r.ramEqualAtStart !== true) v.push('destination started with guest RAM different from the source');
  if (s.ok) {
    const notes = d.devices.filter((dv) => dv.check && !dv.check.ok).map((dv) => `${dv.name}: ${dv.check!.note}${dv.check!.mismatches.length ? ` (${dv.check!.mismatches.join('; ')})` : ''}`);
    if (notes.length) out.destCheckNote = notes.join('; ');
    if (getMigState(w.dest.device) !== VFIO_DEVICE_STATE_RUNNING) v.push('destination device not RUNNING after the switchover');
    if (wl.vm !== w.dest.vm) v.push('the workload did not move to the destination');
  } else {
    if (d.started || dstRuns) v.push('the migration failed but the destination ran the guest');
    if (!srcRuns) v.push('the source did not resume its guest');
    if (getMigState(w.source.device) !== VFIO_DEVICE_STATE_RUNNING) v.push('source device not RUNNING after the failed migration');
    if (wl.vm !== w.source.vm) v.push('the workload left the source');
  }
  const vm = wl.vm;
  if (vm.vcpusRunning) {
    const before = wl.submitted;
    vm.run(RUN_ON_NS);
    out.jobsAfter = wl.submitted - before;
    try {
      wl.drain();
    } catch (e) {
      // the ledger below counts what never completed
      v.push(`the guest's jobs do not drain: ${(e as Error).message}`);
    }
    if (out.jobsAfter === 0) v.push('no new job was submitted after the migration');
  }
  const verdict = wl.verify();
  out.lost = verdict.lost;
  out.duplicated = verdict.duplicated;
  out.wrong = verdict.wrong;
  if (verdict.lost) v.push(`${verdict.lost} job(s) lost`);
  if (verdict.duplicated) v.push(`${verdict.duplicated} job(s) completed twice`);
  if (verdict.wrong) v.push(`${verdict.wrong} job(s) with wrong output`);
  if (verdict.failed) v.push(`${verdict.failed} job(s) failed`);
  if (verdict.completed !== verdict.submitted) v.push(`${verdict.submitted} jobs submitted, ${verdict.completed} completed exactly once`);
  if (!verdict.interrupts.consistent) v.push('interrupt accounting does not add up');
  return out;
}
