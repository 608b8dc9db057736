/**
 * The fault-injection matrix of issue 6 item 2. A clean recording run of a busy guest's live
 * migration lists every step of save, load and the orchestrator: each mailbox command, each
 * polled status read and each cache write-back start on the source and destination devices
 * (the device model's fault tap), each call the orchestrator makes on a VFIO file, each
 * write of the stream and of the return path, and each read of them. Then every step k gets
 * fresh worlds, one per fault that fits it, fired exactly at step k:
 *
 *   mailbox command   hang (the command stays busy) / failing status (it completes with a
 *                     non-zero status and does nothing)
 *   polled status     the condition never comes true: busy stays set (QM_MB_CMD), not ready
 *                     (QM_VF_STATE), write-back never done (QM_CACHE_WB_DONE), stuck RAS
 *                     (QM_ABNORMAL_INT_STATUS), stuck engine status (engine INT_STATUS), an
 *                     IFC interrupt that never clears (QM_IFC_INT_STATUS, QM_IFC_INT_SET_V),
 *                     VFT configuration never ready (QM_VFT_CFG_RDY)
 *   write-back start  never done
 *   orchestrator call fails with EIO (the call does nothing)
 *   transport write   connection dropped / one bit flipped / stream truncated (this write
 *                     and all later ones vanish, then a clean end) / delayed (2 ms of wall
 *                     time, 1 ms of simulated time)
 *   transport read    connection reset
 *
 * A fault fires at its step and stays for the rest of the migration; afterwards status
 * faults are lifted (a transient hardware condition) while a hung mailbox stays hung (a
 * command released later would act on a function that has moved on). Each cell is then
 * judged by fault-world.ts `judge`: the source keeps running with no job lost or duplicated,
 * and the destination never starts on bad data.
 */
import type { FaultPoint } from '../hw/qm/faults.js';
import type { QmDevice } from '../hw/qm/qm-device.js';
import { type CallVerdict, INJECTED_CALL_ERRNO, type RecvFault, type SendFault, type Side, type StepEvent, type StepKind } from './fault-taps.js';
import { type CellOutcome, type RunResult, type World, type WorldOptions, buildWorld, judge, migrateTapped, pollRegName } from './fault-world.js';

export type FaultKind =
  | 'hang' | 'fail-status' | 'stuck'
  | 'fail'
  | 'drop' | 'flip' | 'truncate' | 'delay'
  | 'reset';

/** One step of the clean run: the `ordinal`-th step of its side and kind. */
export interface Step {
  side: Side;
  kind: StepKind;
  ordinal: number;
  label: string;
  bytes?: number;
}

export interface CellSpec {
  side: Side;
  kind: StepKind;
  ordinal: number;
  fault: FaultKind;
}

export interface CellResult extends CellSpec {
  id: string;
  label: string;
  /** The fault was applied (the step was reached). */
  fired: boolean;
  /** The step reached at that ordinal had another label than in the clean run. */
  diverged: boolean;
  outcome: CellOutcome | null;
  /** Requirement violations (outcome's, plus harness-level: not fired, exception, hang). */
  violations: string[];
  ms: number;
}

export function cellId(c: CellSpec): string {
  return `${c.side}:${c.kind}:${c.ordinal}:${c.fault}`;
}

export function parseCellId(id: string): CellSpec | null {
  const m = /^(source|dest):(mailbox|poll|writeback|call|send|recv):(\d+):([a-z-]+)$/.exec(id.trim());
  if (!m) return null;
  const fault = m[4] as FaultKind;
  if (!['hang', 'fail-status', 'stuck', 'fail', 'drop', 'flip', 'truncate', 'delay', 'reset'].includes(fault)) return null;
  return { side: m[1] as Side, kind: m[2] as StepKind, ordinal: Number(m[3]), fault };
}

// ---- device faults ----------------------------------------------------------------------------

export type PollFault =
  | 'busy' | 'not-ready' | 'wb-never-done' | 'ras' | 'engine' | 'ifc-status' | 'ifc-set' | 'vft-not-ready';

/** The stuck condition a polled register can show, or null when the model has no switch for it. */
export function pollFault(reg: string): PollFault | null {
  switch (reg) {
    case 'QM_MB_CMD': return 'busy';
    case 'QM_VF_STATE': return 'not-ready';
    case 'QM_CACHE_WB_DONE': return 'wb-never-done';
    case 'QM_ABNORMAL_INT_STATUS': return 'ras';
    case 'engine INT_STATUS': return 'engine';
    case 'QM_IFC_INT_STATUS': return 'ifc-status';
    case 'QM_IFC_INT_SET_V': return 'ifc-set';
    case 'QM_VFT_CFG_RDY': return 'vft-not-ready';
    default: return null;
  }
}

/** The register a poll step reads, from its label ("VF1 poll QM_VF_STATE (driver)"). */
function pollReg(label: string): string {
  const m = / poll (.+) \(/.exec(label);
  return m ? m[1]! : '';
}

/** Opcode no QM implements: the engine answers it with a failing status and does nothing. */
const UNDEFINED_MB_CMD = 0xff;

/**
 * Makes the command just latched by function `fn` complete with a non-zero status instead of
 * running: its latched opcode becomes one the hardware does not implement, which the mailbox
 * engine answers with UNDEFINED_CMD and no side effect. What software reads back keeps its
 * own opcode (only status and busy change on completion).
 */
function failLatchedCommand(qm: QmDevice, fn: number): boolean {
  const f = qm.functionAt(fn);
  const latched = (f?.mailbox as unknown as { latchedWords?: unknown } | undefined)?.latchedWords;
  if (!(latched instanceof Uint32Array)) return false;
  latched[0] = ((latched[0]! & ~0xff) | UNDEFINED_MB_CMD) >>> 0;
  return true;
}

function applyDeviceFault(fault: FaultKind, ev: StepEvent, p: FaultPoint, qm: QmDevice): boolean {
  const f = qm.functionAt(p.fn);
  if (!f) return false;
  if (ev.kind === 'mailbox') {
    if (fault === 'hang') f.faults.setMailboxHang(true);
    else if (fault === 'fail-status') return failLatchedCommand(qm, p.fn);
    else return false;
    return true;
  }
  if (ev.kind === 'writeback' && fault === 'hang') {
    f.faults.setWritebackHang(true);
    return true;
  }
  if (ev.kind === 'poll' && fault === 'stuck') {
    switch (pollFault(pollRegName(p.reg, qm))) {
      case 'busy': f.faults.setMailboxHang(true); return true;
      case 'not-ready': f.faults.setNotReady(true); return true;
      case 'wb-never-done': f.faults.setWritebackHang(true); return true;
      case 'ras': qm.faults.setRasStatus(0x4); return true;
      case 'engine': qm.faults.setEngineStatus(1); return true;
      case 'ifc-status': f.faults.setIfcStatusStuck('status'); return true;
      case 'ifc-set': f.faults.setIfcStatusStuck('set-v'); return true;
      case 'vft-not-ready': qm.faults.setVftNotReady(true); return true;
      default: return false;
    }
  }
  return false;
}

/** Lifts the status faults after the migration; hung mailboxes stay hung. */
function liftStatusFaults(qm: QmDevice): void {
  qm.faults.setRasStatus(0);
  qm.faults.setEngineStatus(0);
  qm.faults.setVftNotReady(false);
  for (let fn = 0; fn < 64; fn++) {
    const f = qm.functionAt(fn);
    if (!f) continue;
    f.faults.setNotReady(false);
    f.faults.setWritebackHang(false);
    f.faults.setIfcStatusStuck('none');
  }
}

// ---- the faults that fit a step ---------------------------------------------------------------

/** Every fault that fits `s` (empty: the model offers no switch for that condition). */
export function faultsFor(s: Step): FaultKind[] {
  switch (s.kind) {
    case 'mailbox': return ['hang', 'fail-status'];
    case 'writeback': return ['hang'];
    case 'poll': return pollFault(pollReg(s.label)) ? ['stuck'] : [];
    case 'call': return ['fail'];
    case 'send': return ['drop', 'flip', 'truncate', 'delay'];
    case 'recv': return ['reset'];
  }
}

/** One cell per (step, fitting fault). */
export function cellsFor(steps: readonly Step[]): CellSpec[] {
  const out: CellSpec[] = [];
  for (const s of steps) for (const fault of faultsFor(s)) out.push({ side: s.side, kind: s.kind, ordinal: s.ordinal, fault });
  return out;
}

function sendFault(fault: FaultKind, bytes: number): SendFault | undefined {
  switch (fault) {
    case 'drop': return { kind: 'drop' };
    case 'flip': return { kind: 'flip', byte: bytes >>> 1, xor: 0x01 };
    case 'truncate': return { kind: 'truncate' };
    case 'delay': return { kind: 'delay', wallMs: 2, simNs: 1_000_000 };
    default: return undefined;
  }
}

// ---- running -----------------------------------------------------------------------------------

/** Counts steps per side and kind the same way in every run. */
class StepCounter {
  private readonly n = new Map<string, number>();
  next(side: Side, kind: StepKind): number {
    const k = `${side}:${kind}`;
    const i = this.n.get(k) ?? 0;
    this.n.set(k, i + 1);
    return i;
  }
}

/** The clean recording run: every step, in order. */
export async function recordSteps(o: WorldOptions = {}): Promise<{ steps: Step[]; outcome: CellOutcome }> {
  const w = buildWorld(o);
  const steps: Step[] = [];
  const count = new StepCounter();
  const rec = (ev: StepEvent) => {
    const s: Step = { side: ev.side, kind: ev.kind, ordinal: count.next(ev.side, ev.kind), label: ev.label };
    if (ev.bytes !== undefined) s.bytes = ev.bytes;
    steps.push(s);
  };
  const r = await migrateTapped(w, {
    steps: {
      call: (ev) => { rec(ev); return undefined; },
      send: (ev) => { rec(ev); return undefined; },
      recv: (ev) => { rec(ev); return undefined; },
    },
    device: (_side, ev) => rec(ev),
  });
  return { steps, outcome: judge(w, r) };
}

/** Wall-clock limit of one cell's migration (a hang of the orchestrator is a finding). */
const CELL_TIMEOUT_MS = 30_000;

/** Runs one cell on a fresh world. `label` is the step's label in the clean run (for divergence). */
export async function runCell(spec: CellSpec, label: string, o: WorldOptions = {}): Promise<CellResult> {
  const t0 = performance.now();
  const res: CellResult = { ...spec, id: cellId(spec), label, fired: false, diverged: false, outcome: null, violations: [], ms: 0 };
  let world: World | null = null;
  try {
    const w = buildWorld(o);
    world = w;
    const count = new StepCounter();
    const hit = (ev: StepEvent): boolean => {
      const i = count.next(ev.side, ev.kind);
      if (ev.side !== spec.side || ev.kind !== spec.kind || i !== spec.ordinal) return false;
      if (ev.label !== label) res.diverged = true;
      return true;
    };
    const run = migrateTapped(w, {
      steps: {
        call: (ev): CallVerdict => {
          if (!hit(ev) || spec.fault !== 'fail') return undefined;
          res.fired = true;
          return INJECTED_CALL_ERRNO;
        },
        send: (ev): SendFault | undefined => {
          if (!hit(ev)) return undefined;
          const f = sendFault(spec.fault, ev.bytes ?? 0);
          if (f) res.fired = true;
          return f;
        },
        recv: (ev): RecvFault | undefined => {
          if (!hit(ev) || spec.fault !== 'reset') return undefined;
          res.fired = true;
          return { kind: 'reset' };
        },
      },
      device: (_side, ev, p, qm) => {
        if (hit(ev) && applyDeviceFault(spec.fault, ev, p, qm)) res.fired = true;
      },
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), CELL_TIMEOUT_MS);
    });
    const r: RunResult | 'timeout' = await Promise.race([run, timeout]);
    clearTimeout(timer);
    if (r === 'timeout') {
      res.violations.push(`the migration did not finish within ${CELL_TIMEOUT_MS / 1000} s of wall time (orchestrator hang)`);
    } else {
      liftStatusFaults(w.source.host.accelerators[0]!.qm);
      liftStatusFaults(w.dest.host.accelerators[0]!.qm);
      res.outcome = judge(w, r);
      res.violations.push(...res.outcome.violations);
    }
  } catch (e) {
    res.violations.push(`exception escaped: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  }
  if (!res.fired && world) res.violations.push('the fault never fired (the step was not reached)');
  res.ms = performance.now() - t0;
  return res;
}

// ---- selection and summary ----------------------------------------------------------------------

/**
 * A fast slice: for every (side, kind, fault) the first, middle and last step, so each kind
 * of fault is tried early, mid-way and late in the migration.
 */
export function sliceCells(steps: readonly Step[], perGroup = 3): CellSpec[] {
  const groups = new Map<string, CellSpec[]>();
  for (const c of cellsFor(steps)) {
    const k = `${c.side}:${c.kind}:${c.fault}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(c);
  }
  const out: CellSpec[] = [];
  for (const g of groups.values()) {
    if (g.length <= perGroup) {
      out.push(...g);
      continue;
    }
    const picks = new Set<number>();
    for (let i = 0; i < perGroup; i++) picks.add(Math.round((i * (g.length - 1)) / (perGroup - 1)));
    for (const i of [...picks].sort((a, b) => a - b)) out.push(g[i]!);
  }
  return out;
}

export interface GroupSummary {
  side: Side;
  kind: StepKind;
  fault: FaultKind;
  cells: number;
  migrated: number;
  failed: number;
  violations: number;
  /** Failure codes (errno names, stream/transport codes) and how often. */
  codes: Record<string, number>;
  /** Jobs the guest ran after the migration, summed over the group's cells. */
  jobsAfter: number;
  /** Cells whose destination started although its own VF-state check did not pass. */
  uncheckedStarts: number;
}

export interface MatrixSummary {
  steps: Record<string, number>;
  /** Steps with no fitting fault switch in the model (listed, not run). */
  uncovered: { side: Side; kind: StepKind; label: string }[];
  cells: number;
  migrated: number;
  failed: number;
  violating: number;
  /** Cells whose destination started although its own VF-state check did not pass. */
  uncheckedStarts: number;
  groups: GroupSummary[];
}

export function summarize(steps: readonly Step[], results: readonly CellResult[]): MatrixSummary {
  const stepCounts: Record<string, number> = {};
  for (const s of steps) stepCounts[`${s.side} ${s.kind}`] = (stepCounts[`${s.side} ${s.kind}`] ?? 0) + 1;
  const uncovered = steps.filter((s) => faultsFor(s).length === 0).map((s) => ({ side: s.side, kind: s.kind, label: s.label }));
  const groups = new Map<string, GroupSummary>();
  for (const r of results) {
    const k = `${r.side}:${r.kind}:${r.fault}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { side: r.side, kind: r.kind, fault: r.fault, cells: 0, migrated: 0, failed: 0, violations: 0, codes: {}, jobsAfter: 0, uncheckedStarts: 0 }));
    g.cells++;
    if (r.outcome?.migrated) g.migrated++;
    else g.failed++;
    if (r.violations.length) g.violations++;
    const code = r.outcome?.code;
    if (code) g.codes[code] = (g.codes[code] ?? 0) + 1;
    g.jobsAfter += r.outcome?.jobsAfter ?? 0;
    if (r.outcome?.destCheckNote) g.uncheckedStarts++;
  }
  return {
    steps: stepCounts,
    uncovered,
    cells: results.length,
    migrated: results.filter((r) => r.outcome?.migrated).length,
    failed: results.filter((r) => !r.outcome?.migrated).length,
    violating: results.filter((r) => r.violations.length > 0).length,
    uncheckedStarts: results.filter((r) => r.outcome?.destCheckNote).length,
    groups: [...groups.values()],
  };
}

/** The command that reruns one cell alone (with the world options that differ from the defaults). */
export function reproCommand(c: CellSpec, o: WorldOptions = {}): string {
  const engine = o.engine && o.engine !== 'zip' ? ` --engine ${o.engine}` : '';
  const ram = o.ramMiB !== undefined && o.ramMiB !== 16 ? ` --ram ${o.ramMiB}` : '';
  return `npm run faults -- --cell ${cellId(c)}${engine}${ram}`;
}
