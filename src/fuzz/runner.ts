/**
 * The campaign runner. A campaign is a deterministic state machine: `setup` builds a fresh
 * world, `next` draws one input (an `Op`, plain data) from the seeded PRNG given the world,
 * `apply` performs it and checks the invariants after it, reporting through a Recorder.
 * Because ops are data and `apply` never draws randomness, any prefix of the op history can
 * be replayed on a fresh world, which is how a violation is shrunk to a short reproduction.
 *
 * Violations are never thrown: they are recorded (deduplicated by signature) and the run
 * goes on, so one bug does not hide the next. A violation whose signature matches an entry
 * of the campaign's `knownBugs` is reported loudly but does not fail the run; the lead
 * removes the entry once the bug is fixed, and the invariant stays strict throughout.
 */
import { KernelError, errnoName } from '../uapi/errno.js';
import { Rng } from '../sim/scheduler.js';

export interface Violation {
  campaign: string;
  seed: number;
  /** Index of the input after which the invariant failed. */
  index: number;
  /** Invariant class, e.g. "exception", "errno", "state-changed", "victim". */
  kind: string;
  message: string;
  /** The input (op) that was being applied. */
  call: string;
  /** Shrunk reproduction: the ops to replay on a fresh world, last one failing. */
  repro?: string[];
  /** Id of the matching knownBugs entry. */
  knownBug?: string;
  /** Further hits of the same known bug (any signature) after this one. */
  repeats?: number;
}

export interface KnownBug {
  id: string;
  /** Where the bug lives (file and function), for the report. */
  where: string;
  summary: string;
  matches(v: Pick<Violation, 'kind' | 'message' | 'call'>): boolean;
}

/** What `apply` and `checkpoint` report into. */
export class Recorder {
  readonly entries = new Map<string, number>();
  readonly errnos = new Map<string, number>();
  readonly outcomes = new Map<string, number>();
  successes = 0;
  failures = 0;
  /** Violations of the current input, drained by the runner. */
  pending: { kind: string; message: string }[] = [];

  /** Counts one input against an entry point (e.g. "container ioctl"). */
  entry(name: string): void {
    this.entries.set(name, (this.entries.get(name) ?? 0) + 1);
  }

  /** A return value of an entry point: >= 0 success, < 0 an errno (must be a known one). */
  ret(r: number): void {
    if (r >= 0) {
      this.successes++;
      return;
    }
    this.failures++;
    const name = errnoName(r);
    this.errnos.set(name, (this.errnos.get(name) ?? 0) + 1);
  }

  private readonly keyed = new Map<number, string>();

  /** A distinct behaviour observed (a status code, a fault reason...). */
  outcome(label: string, n = 1): void {
    this.outcomes.set(label, (this.outcomes.get(label) ?? 0) + n);
  }

  /**
   * The same for hot paths: `key` identifies the outcome numerically and `label` is only
   * built the first time the key shows up.
   */
  outcomeKey(key: number, label: () => string): void {
    let l = this.keyed.get(key);
    if (l === undefined) {
      l = label();
      this.keyed.set(key, l);
    }
    this.outcomes.set(l, (this.outcomes.get(l) ?? 0) + 1);
  }

  violation(kind: string, message: string): void {
    this.pending.push({ kind, message });
  }

  /**
   * An exception escaped `what`: a KernelError that should have become -errno at the entry
   * point ('escaped-errno'), or anything else ('exception').
   */
  threw(what: string, e: unknown): void {
    this.violation(e instanceof KernelError ? 'escaped-errno' : 'exception', `${what} threw ${errorText(e)}`);
  }
}

/** `Name: message` of an error, or the thrown value as a string. */
export function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

export interface Campaign<Ctx, Op> {
  readonly name: string;
  readonly description: string;
  /** Inputs of the default run. */
  readonly defaultInputs: number;
  /** Run `checkpoint` every this many inputs (victim jobs and cross-function checks). */
  readonly checkpointEvery: number;
  readonly knownBugs: readonly KnownBug[];
  setup(): Ctx;
  next(ctx: Ctx, rng: Rng, index: number): Op;
  apply(ctx: Ctx, op: Op, rec: Recorder): void;
  describe(op: Op): string;
  checkpoint(ctx: Ctx, rec: Recorder, index: number): void;
  /** Releases what setup built (optional). */
  teardown?(ctx: Ctx): void;
}

export interface CampaignResult {
  campaign: string;
  description: string;
  seed: number;
  inputs: number;
  /** Inputs per entry point. */
  entryPoints: Record<string, number>;
  successes: number;
  failures: number;
  errnos: Record<string, number>;
  outcomes: Record<string, number>;
  checkpoints: number;
  violations: Violation[];
  knownBugHits: Violation[];
  ms: number;
}

export interface RunOptions {
  inputs?: number;
  seed?: number;
  /** Shrink violations to a short reproduction (default true). */
  shrink?: boolean;
  /** Keep at most this many distinct violations (default 20). */
  maxViolations?: number;
  /** Called every ~1% with the inputs done. */
  progress?: (done: number, total: number) => void;
}

/** Digits and hex runs vary between occurrences of one bug; the signature ignores them. */
function signature(kind: string, message: string, call: string): string {
  const op = call.split(/[ (]/, 1)[0];
  return `${kind}|${op}|${message.replace(/0x[0-9a-f]+|\d+/gi, '#')}`;
}

/** Checkpoint violations do not depend on the last op: their signature names none. */
const CHECKPOINT = 'checkpoint';

function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/** Replays ops on a fresh world; true when a violation with `sig` shows up. */
function replayFails<Ctx, Op>(c: Campaign<Ctx, Op>, ops: readonly Op[], sig: string, withCheckpoint: boolean): boolean {
  const ctx = c.setup();
  const rec = new Recorder();
  try {
    for (const op of ops) {
      try {
        c.apply(ctx, op, rec);
      } catch (e) {
        rec.violation('exception', `campaign step threw ${describeError(e)}`);
      }
      if (!withCheckpoint) for (const p of rec.pending) if (signature(p.kind, p.message, c.describe(op)) === sig) return true;
      rec.pending = [];
    }
    if (withCheckpoint) {
      c.checkpoint(ctx, rec, ops.length);
      for (const p of rec.pending) if (signature(p.kind, p.message, CHECKPOINT) === sig) return true;
    }
    return false;
  } finally {
    c.teardown?.(ctx);
  }
}

/**
 * Shrinks the op history before a violation: first the shortest failing suffix (doubling),
 * then a bounded delta-debugging pass removing chunks. Bounded by `budget` replayed ops.
 */
function shrink<Ctx, Op>(c: Campaign<Ctx, Op>, history: readonly Op[], sig: string, withCheckpoint: boolean): Op[] | null {
  let budget = 100_000;
  let replays = 60;
  const tryOps = (ops: Op[]): boolean => {
    if (budget <= 0 || replays <= 0) return false;
    budget -= ops.length + 1;
    replays--;
    return replayFails(c, ops, sig, withCheckpoint);
  };
  let cur: Op[] | null = null;
  for (let n = 1; n <= history.length; n *= 2) {
    const suffix = history.slice(history.length - n);
    if (tryOps(suffix)) {
      cur = suffix;
      break;
    }
    if (n * 2 > history.length && n !== history.length) {
      if (tryOps(history.slice())) cur = history.slice();
      break;
    }
  }
  if (cur === null) return null;
  let best: Op[] = cur;
  // ddmin-style: drop chunks while the failure persists; never drop the last (failing) op.
  let chunk = Math.max(1, Math.floor((best.length - 1) / 2));
  while (chunk >= 1 && budget > 0 && replays > 0) {
    let removed = false;
    for (let start = 0; start + chunk < best.length && budget > 0 && replays > 0; ) {
      const cand: Op[] = best.slice(0, start).concat(best.slice(start + chunk));
      if (tryOps(cand)) {
        best = cand;
        removed = true;
      } else {
        start += chunk;
      }
    }
    if (!removed) chunk = Math.floor(chunk / 2);
  }
  return best;
}

function toRecord(m: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...m.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])));
}

export function runCampaign<Ctx, Op>(c: Campaign<Ctx, Op>, opts: RunOptions = {}): CampaignResult {
  const inputs = opts.inputs ?? c.defaultInputs;
  const seed = (opts.seed ?? 1) >>> 0;
  const maxViolations = opts.maxViolations ?? 20;
  const rng = new Rng(seed);
  const rec = new Recorder();
  const history: Op[] = [];
  const seen = new Set<string>();
  const violations: Violation[] = [];
  const knownBugHits: Violation[] = [];
  const t0 = performance.now();
  // KernelErrors are the common case on these paths; their stack traces are pure cost here.
  const stackLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const ctx = c.setup();
  let checkpoints = 0;
  const step = Math.max(1, Math.floor(inputs / 100));

  const handle = (index: number, call: string, withCheckpoint: boolean): void => {
    for (const p of rec.pending) {
      const sig = signature(p.kind, p.message, withCheckpoint ? CHECKPOINT : call);
      if (seen.has(sig)) continue;
      seen.add(sig);
      const v: Violation = { campaign: c.name, seed, index, kind: p.kind, message: p.message, call };
      const known = c.knownBugs.find((b) => b.matches(v));
      if (known) {
        // one reproduction per known bug is enough; later hits are only counted
        const first = knownBugHits.find((k) => k.knownBug === known.id);
        if (first) {
          first.repeats = (first.repeats ?? 0) + 1;
          continue;
        }
        v.knownBug = known.id;
      }
      if (opts.shrink ?? true) {
        const ops = shrink(c, history.slice(0, index + 1), sig, withCheckpoint);
        if (ops) v.repro = ops.map((o) => c.describe(o));
      }
      if (known) knownBugHits.push(v);
      else if (violations.length < maxViolations) violations.push(v);
    }
    rec.pending = [];
  };

  try {
    for (let i = 0; i < inputs; i++) {
      const op = c.next(ctx, rng, i);
      history.push(op);
      try {
        c.apply(ctx, op, rec);
      } catch (e) {
        rec.violation('exception', `campaign step threw ${describeError(e)}`);
      }
      if (rec.pending.length > 0) {
        Error.stackTraceLimit = stackLimit;
        handle(i, c.describe(op), false);
        Error.stackTraceLimit = 0;
      }
      if ((i + 1) % c.checkpointEvery === 0 || i === inputs - 1) {
        checkpoints++;
        try {
          c.checkpoint(ctx, rec, i);
        } catch (e) {
          rec.violation('exception', `checkpoint threw ${describeError(e)}`);
        }
        if (rec.pending.length > 0) {
          Error.stackTraceLimit = stackLimit;
          handle(i, c.describe(op), true);
          Error.stackTraceLimit = 0;
        }
      }
      if (opts.progress && (i + 1) % step === 0) opts.progress(i + 1, inputs);
    }
  } finally {
    Error.stackTraceLimit = stackLimit;
    c.teardown?.(ctx);
  }

  const entryPoints = toRecord(rec.entries);
  return {
    campaign: c.name,
    description: c.description,
    seed,
    inputs,
    entryPoints,
    successes: rec.successes,
    failures: rec.failures,
    errnos: toRecord(rec.errnos),
    outcomes: toRecord(rec.outcomes),
    checkpoints,
    violations,
    knownBugHits,
    ms: Math.round(performance.now() - t0),
  };
}

/** The command that replays a campaign up to a given input. */
export function reproCommand(v: Violation): string {
  return `npm run fuzz -- --campaign ${v.campaign} --seed ${v.seed} --inputs ${v.index + 1}`;
}
