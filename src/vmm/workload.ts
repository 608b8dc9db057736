/**
 * A busy guest: a steady stream of jobs on the VF, inputs and outputs in guest RAM, and an
 * application that keeps dirtying guest RAM from its own vCPU.
 *
 * Jobs by engine: ZIP alternates deflate compression and decompression, SEC alternates
 * AES-128-CBC encryption and HMAC-SHA256, HPRE alternates RSA-1024 public and private (CRT)
 * operations. Every job is in the ledger: id, operation, input hash, the expected output
 * computed independently at submit time (node:zlib, node:crypto; a compression is checked by
 * inflating the device's output with node:zlib), state, completion count and whether the
 * output matched. Job inputs are a pure function of (seed, id), so nothing random needs to
 * be carried across a migration.
 *
 * Driving it: `start()` once; then either `pump(n)`/`drain()` by hand, or `vm.run(ns)`,
 * whose run loop calls `tick` while the vCPUs run: it submits at `jobsPerMs` keeping at most
 * `inFlight` jobs outstanding, and stores to `dirtyPagesPerMs` pages of its own RAM region
 * per simulated ms through vCPU `dirtyVcpu`.
 *
 * Migration: the ledger and the workload's counters are part of the VM's CPU state
 * (saveState/restoreState, JSON-safe). Only outstanding jobs travel as entries; a job leaves
 * the carried ledger when it settles (first completion or failure) and is folded into the
 * settled summary: counts by outcome, the tickets of the few that went wrong, and a digest of
 * every settlement. So the state stays the same size however long the guest has run, and the
 * verdict is as strict as with every entry: a later completion of a settled job is still
 * seen (by its ticket) as a duplicate. Settled entries stay readable through entries() in the
 * process that saw them settle (the newest HISTORY_LIMIT to 2 x HISTORY_LIMIT). The guest driver's and the Accel's own state travel
 * beside it (Vm.saveCpuState). On the destination, Vm.loadCpuState rebuilds the driver and
 * Accel and calls restoreState on the workload object attached to the VM (in one process:
 * the same object, which so continues on the destination VF) or builds a new Workload
 * (another process). `bind(vm)` re-targets the object at a VM's Accel and vCPUs.
 */
import { createCipheriv, createHash, createHmac, constants as cryptoConstants, type KeyObject, privateDecrypt, publicEncrypt } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { Accel, AccelJob, JobResult } from '../guest/accel.js';
import type { EngineKind } from '../hw/profile.js';
import { PAGE_SIZE } from '../mem/sparse-memory.js';
import { KernelError, fail } from '../uapi/errno.js';
import { type RsaTestKey, rsaKeyFromJson, rsaKeyObjects, rsaKeyToJson, rsaTestKey } from './rsa-key.js';
import type { Vm } from './vm.js';

export interface WorkloadOptions {
  /** Jobs kept in flight (default 4). */
  inFlight?: number;
  /** Submissions per simulated ms under vm.run (default 20; HPRE 5). */
  jobsPerMs?: number;
  /** Pages the application dirties per simulated ms (default 50). */
  dirtyPagesPerMs?: number;
  /** Pages of the application's RAM region (default 256 = 1 MiB). */
  dirtyRegionPages?: number;
  /** Input bytes of ZIP and SEC jobs (default 4096; SEC rounds down to 16). */
  jobBytes?: number;
  /** Seed of job inputs and of the RSA key (default 1). */
  seed?: number;
  /** vCPU of the application (default 1, or 0 on a one-vCPU VM). */
  dirtyVcpu?: number;
}

type Resolved = Required<WorkloadOptions>;

export type JobState = 'submitted' | 'completed' | 'failed';

/** One ledger entry. */
export interface LedgerEntry {
  id: number;
  op: string;
  /** Accel ticket of the submission. */
  ticket: number;
  /** SHA-256 of the input (hex, first 16 bytes). */
  inputHash: string;
  /** SHA-256 of the expected output (hex, first 16 bytes). */
  expectedHash: string;
  expectedLength: number;
  /** 'inflate': the output is checked by inflating it (compression). */
  check: 'equal' | 'inflate';
  state: JobState;
  completions: number;
  wrong: boolean;
  /** errno name of a failure. */
  error: string | null;
  submittedNs: number;
  completedNs: number | null;
}

export interface WorkloadVerdict {
  submitted: number;
  /** Jobs that completed exactly once with the expected output. */
  completed: number;
  /** Jobs that never completed (still in flight, or failed without output). */
  lost: number;
  /** Jobs that completed more than once. */
  duplicated: number;
  /** Jobs whose output did not match. */
  wrong: number;
  inFlight: number;
  failed: number;
  interrupts: InterruptAccounting;
  /** No job lost, duplicated or wrong, and the interrupt accounting adds up. */
  ok: boolean;
}

/** Interrupt accounting since start(), from the guest driver's counters. */
export interface InterruptAccounting {
  /** MSIs the guest received. */
  received: number;
  /** EQEs the guest processed. */
  eqes: number;
  /** CQEs reaped from the EQ interrupt path. */
  irqCqes: number;
  /** Job completions by the device (ledger). */
  completions: number;
  /** irqCqes === completions, and at least one interrupt when anything completed. */
  consistent: boolean;
}

export interface WorkloadStats {
  ticks: number;
  pagesDirtied: number;
  /** Completions that came from an Accel this workload no longer uses (must stay 0). */
  staleCompletions: number;
  /** Completions of tickets not in the ledger (must stay 0). */
  unknownCompletions: number;
  /** Completions of other Accel users' jobs whose tickets fell between ours (not an error). */
  foreignCompletions: number;
  /** Submissions refused (queue full). */
  busy: number;
}

/**
 * What is left of the jobs that settled (completed or failed at least once). Outcome counts
 * are by job; `bad` and `dup` name the tickets that need remembering so that a later
 * completion of a settled job is judged exactly as if its entry were still there.
 */
export interface SettledSummary {
  jobs: number;
  /** First completion with the right output and no second one. */
  completedOnce: number;
  wrong: number;
  failed: number;
  /** Jobs completed more than once. */
  duplicated: number;
  /** Completions of settled jobs in state 'completed' (interrupt accounting). */
  completions: number;
  /** Lowest and highest ticket this workload was given (0, 0 before the first). */
  ticketLo: number;
  ticketHi: number;
  /**
   * Tickets inside [ticketLo, ticketHi] that went to other users of the same Accel, as
   * [first, last] pairs: their completions are not ours and must not count as duplicates.
   */
  foreign: [number, number][];
  /** Tickets of settled jobs that failed ('f') or came back wrong ('w'). */
  bad: [number, 'f' | 'w'][];
  /** Tickets of settled jobs already completed twice. */
  dup: number[];
  /** Order-sensitive digest of every settlement (ticket, id, outcome), hex. */
  digest: string;
}

/** The workload's part of the CPU state. */
export interface WorkloadState {
  kind: 'hisi-acc-sim/workload';
  options: Resolved;
  engine: EngineKind;
  started: boolean;
  nextId: number;
  /** Outstanding ledger entries as arrays (see entryToRow), in submission order. */
  ledger: unknown[][];
  settled: SettledSummary;
  region: number;
  cursor: number;
  generation: number;
  jobCredit: number;
  dirtyCredit: number;
  irqBase: { received: number; eqes: number; irqCqes: number };
  stats: WorkloadStats;
  rsaKey: Record<string, string | number> | null;
}

function resolve(o: WorkloadOptions, engine: EngineKind, vcpus: number): Resolved {
  const r: Resolved = {
    inFlight: o.inFlight ?? 4,
    jobsPerMs: o.jobsPerMs ?? (engine === 'hpre' ? 5 : 20),
    dirtyPagesPerMs: o.dirtyPagesPerMs ?? 50,
    dirtyRegionPages: o.dirtyRegionPages ?? 256,
    jobBytes: o.jobBytes ?? 4096,
    seed: o.seed ?? 1,
    dirtyVcpu: o.dirtyVcpu ?? (vcpus > 1 ? 1 : 0),
  };
  const int = (v: number, lo: number, hi: number, what: string) => {
    if (!Number.isInteger(v) || v < lo || v > hi) fail('EINVAL', `workload ${what} ${v} outside [${lo}, ${hi}]`);
  };
  int(r.inFlight, 1, 1024, 'inFlight');
  int(r.dirtyRegionPages, 1, 1 << 20, 'dirtyRegionPages');
  int(r.jobBytes, 16, 1 << 20, 'jobBytes');
  int(r.seed, 0, 0xffffffff, 'seed');
  int(r.dirtyVcpu, 0, vcpus - 1, 'dirtyVcpu');
  if (!Number.isFinite(r.jobsPerMs) || r.jobsPerMs < 0) fail('EINVAL', `workload jobsPerMs ${r.jobsPerMs}`);
  if (!Number.isFinite(r.dirtyPagesPerMs) || r.dirtyPagesPerMs < 0) fail('EINVAL', `workload dirtyPagesPerMs ${r.dirtyPagesPerMs}`);
  return r;
}

const CREDIT_EPSILON = 1e-9;

/** Settled entries kept for entries() in the process that saw them settle. */
export const HISTORY_LIMIT = 4096;

function emptySettled(): SettledSummary {
  return { jobs: 0, completedOnce: 0, wrong: 0, failed: 0, duplicated: 0, completions: 0, ticketLo: 0, ticketHi: 0, foreign: [], bad: [], dup: [], digest: '0000000000000000' };
}

/** Two 32-bit FNV-1a style lanes over (previous digest, ticket, id, outcome). */
function digestStep(prev: string, ticket: number, id: number, outcome: number): string {
  let a = parseInt(prev.slice(0, 8), 16) >>> 0;
  let b = parseInt(prev.slice(8, 16), 16) >>> 0;
  for (const v of [ticket >>> 0, Math.floor(ticket / 2 ** 32), id >>> 0, Math.floor(id / 2 ** 32), outcome]) {
    a = Math.imul((a ^ v) >>> 0, 0x01000193) >>> 0;
    b = Math.imul((b ^ Math.imul(v, 0x9e3779b1)) >>> 0, 0x85ebca6b) >>> 0;
    b = (b ^ (b >>> 13)) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

function hash16(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 32);
}

/**
 * Deterministic bytes for (seed, id, label): xorshift32 seeded by FNV-1a of the triple. Job
 * inputs need to be reproducible, not unpredictable.
 */
function streamBytes(seed: number, id: number, label: string, n: number): Buffer {
  let h = 0x811c9dc5;
  const key = `${seed}/${id}/${label}`;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  let x = (h >>> 0) || 1;
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
    if (i + 1 < n) out[i + 1] = (x >>> 8) & 0xff;
    if (i + 2 < n) out[i + 2] = (x >>> 16) & 0xff;
    if (i + 3 < n) out[i + 3] = (x >>> 24) & 0xff;
  }
  return out;
}

const WORDS = ['accel', 'queue', 'doorbell', 'mailbox', 'vfio', 'dirty', 'ring', 'page', 'guest', 'host',
  'migrate', 'stream', 'engine', 'zlib', 'cipher', 'state', 'vector', 'iommu', 'the', 'and', 'of', 'to']
  .map((w) => Buffer.from(`${w} `));

/** Compressible text for ZIP jobs: words picked by the byte stream. */
function text(seed: number, id: number, n: number): Buffer {
  const r = streamBytes(seed, id, 'text', Math.ceil(n / 2) + 32);
  const out = Buffer.alloc(n);
  for (let i = 0, at = 0; at < n; i++) at += WORDS[r[i]! % WORDS.length]!.copy(out, at);
  return out;
}

const ROW_FIELDS = ['id', 'op', 'ticket', 'inputHash', 'expectedHash', 'expectedLength', 'check', 'state', 'completions',
  'wrong', 'error', 'submittedNs', 'completedNs'] as const;

function entryToRow(e: LedgerEntry): unknown[] {
  return ROW_FIELDS.map((f) => e[f]);
}

function rowToEntry(r: unknown[]): LedgerEntry {
  if (!Array.isArray(r) || r.length !== ROW_FIELDS.length) fail('EINVAL', 'bad saved ledger entry');
  const e = Object.fromEntries(ROW_FIELDS.map((f, i) => [f, r[i]])) as unknown as LedgerEntry;
  if (!Number.isSafeInteger(e.id) || !Number.isSafeInteger(e.ticket) || !['submitted', 'completed', 'failed'].includes(e.state)
    || !Number.isInteger(e.completions) || e.completions < 0) {
    fail('EINVAL', 'bad saved ledger entry');
  }
  return e;
}

/** Whether `ticket` lies in one of the sorted, disjoint [first, last] ranges (binary search). */
function isForeign(ranges: readonly [number, number][], ticket: number): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid]!;
    if (ticket < r[0]) hi = mid - 1;
    else if (ticket > r[1]) lo = mid + 1;
    else return true;
  }
  return false;
}

/** Validates a saved settled summary (EINVAL otherwise). */
function checkSettled(v: unknown): SettledSummary {
  const s = v as SettledSummary;
  const bad = (): never => fail('EINVAL', 'saved workload: bad settled summary');
  if (s === null || typeof s !== 'object') bad();
  for (const k of ['jobs', 'completedOnce', 'wrong', 'failed', 'duplicated', 'completions', 'ticketLo', 'ticketHi'] as const) {
    if (!Number.isSafeInteger(s[k]) || s[k] < 0) bad();
  }
  if (s.ticketLo > s.ticketHi || typeof s.digest !== 'string' || !/^[0-9a-f]{16}$/.test(s.digest)) bad();
  if (!Array.isArray(s.bad) || !Array.isArray(s.dup) || !Array.isArray(s.foreign)) bad();
  const inRange = (t: unknown) => Number.isSafeInteger(t) && (t as number) >= s.ticketLo && (t as number) <= s.ticketHi;
  let prev = s.ticketLo;
  for (const f of s.foreign) {
    if (!Array.isArray(f) || f.length !== 2 || !inRange(f[0]) || !inRange(f[1]) || f[0] <= prev || f[1] < f[0] || f[1] >= s.ticketHi) bad();
    prev = f[1] + 1;
  }
  for (const b of s.bad) if (!Array.isArray(b) || b.length !== 2 || !inRange(b[0]) || (b[1] !== 'f' && b[1] !== 'w')) bad();
  for (const t of s.dup) if (!inRange(t)) bad();
  const wrongs = s.bad.filter((b) => b[1] === 'w').length;
  if (wrongs !== s.wrong || s.bad.length - wrongs !== s.failed || new Set(s.bad.map((b) => b[0])).size !== s.bad.length) bad();
  if (s.dup.length !== s.duplicated || new Set(s.dup).size !== s.dup.length) bad();
  if (s.completedOnce + s.wrong + s.failed > s.jobs || s.duplicated > s.jobs) bad();
  return s;
}

export class Workload {
  vm: Vm;
  readonly engine: EngineKind;
  options: Readonly<Resolved>;
  readonly stats: WorkloadStats = { ticks: 0, pagesDirtied: 0, staleCompletions: 0, unknownCompletions: 0, foreignCompletions: 0, busy: 0 };
  private accel: Accel;
  private started = false;
  private nextId = 1;
  /** Outstanding jobs by ticket, in submission order. */
  private byTicket = new Map<number, LedgerEntry>();
  private settled: SettledSummary = emptySettled();
  private bad = new Map<number, 'f' | 'w'>();
  private dup = new Set<number>();
  /** Settled entries seen here, newest last (not part of the CPU state). */
  private history: LedgerEntry[] = [];
  private historyByTicket = new Map<number, LedgerEntry>();
  private region = 0;
  private cursor = 0;
  private generation = 0;
  private jobCredit = 0;
  private dirtyCredit = 0;
  private lastTick = -1;
  private irqBase = { received: 0, eqes: 0, irqCqes: 0 };
  private rsa: RsaTestKey | null = null;
  private rsaObjs: { publicKey: KeyObject; privateKey: KeyObject } | null = null;
  /** Accels this object registered its completion callback with. */
  private readonly hooked = new WeakSet<Accel>();
  private readonly stamp = new Uint8Array(16);

  constructor(vm: Vm, opts: WorkloadOptions = {}) {
    const accel = vm.accel ?? fail('ENODEV', 'the VM runs no guest driver');
    this.vm = vm;
    this.accel = accel;
    this.engine = accel.engine;
    this.options = Object.freeze(resolve(opts, this.engine, vm.vcpus.length));
  }

  /** Rebuilds a workload from its saved state on `vm` (after the VM's guest was restored). */
  static restore(vm: Vm, st: WorkloadState): Workload {
    if (st === null || typeof st !== 'object' || st.kind !== 'hisi-acc-sim/workload') fail('EINVAL', 'not a saved workload');
    const w = new Workload(vm, st.options);
    w.restoreState(st, vm);
    return w;
  }

  /** Points the workload at `vm`'s Accel and vCPUs (after a restore, or back after a failed migration). */
  bind(vm: Vm): void {
    const accel = vm.accel ?? fail('ENODEV', 'the VM runs no guest driver');
    if (accel.engine !== this.engine) fail('EINVAL', `workload runs ${this.engine} jobs, the VM has a ${accel.engine} VF`);
    if (this.options.dirtyVcpu >= vm.vcpus.length) fail('EINVAL', 'the VM lacks the workload\'s vCPU');
    this.vm = vm;
    this.accel = accel;
    this.lastTick = -1;
    if (!this.hooked.has(accel)) {
      this.hooked.add(accel);
      accel.onComplete((t, r) => this.onComplete(accel, t, r));
    }
  }

  /** Allocates the application's RAM region and hooks completions. Idempotent. */
  start(): void {
    if (this.started) return;
    this.bind(this.vm);
    if (this.engine === 'hpre') this.useKey(rsaTestKey(1024, this.options.seed));
    this.region = this.vm.guestRam.alloc(this.options.dirtyRegionPages * PAGE_SIZE, PAGE_SIZE);
    const s = this.vm.driver!.stats;
    this.irqBase = { received: s.interrupts, eqes: s.eqes, irqCqes: s.irqCqes };
    this.started = true;
    if (this.vm.workload === null) this.vm.workload = this;
  }

  private useKey(k: RsaTestKey): void {
    this.rsa = k;
    this.rsaObjs = rsaKeyObjects(k);
  }

  get isStarted(): boolean {
    return this.started;
  }

  /** Jobs submitted and not yet completed or failed. */
  get inFlight(): number {
    return this.byTicket.size;
  }

  get submitted(): number {
    return this.settled.jobs + this.byTicket.size;
  }

  /**
   * Copies of the ledger entries known here, by id: the settled jobs this process saw settle
   * (the newest HISTORY_LIMIT of them) and every outstanding job. verify() needs none of it.
   */
  entries(): LedgerEntry[] {
    return [...this.history, ...this.byTicket.values()].map((e) => ({ ...e })).sort((a, b) => a.id - b.id);
  }

  /** The settled summary (a copy). */
  settledSummary(): SettledSummary {
    return { ...this.settled, bad: [...this.bad], dup: [...this.dup] };
  }

  /** Base GPA of the application's RAM region. */
  get regionBase(): number {
    return this.region;
  }

  /** Submits up to `n` jobs without exceeding `inFlight` outstanding; returns how many. */
  pump(n: number): number {
    if (!this.started) fail('EINVAL', 'workload not started');
    let k = 0;
    while (k < n && this.byTicket.size < this.options.inFlight) {
      if (!this.submitOne()) break;
      k++;
    }
    return k;
  }

  /** Runs the simulation until every job of the workload has finished (ETIMEDOUT otherwise). */
  drain(timeoutNs = 10_000_000_000): void {
    if (!this.vm.driver!.waitFor(() => this.byTicket.size === 0, timeoutNs)) {
      fail('ETIMEDOUT', `${this.byTicket.size} workload jobs did not complete`);
    }
  }

  /** One run-loop step (Vm.run while the vCPUs run): submissions and page dirtying due by now. */
  tick(nowNs: number): void {
    if (!this.started) return;
    this.stats.ticks++;
    const dt = this.lastTick < 0 ? 0 : Math.max(0, nowNs - this.lastTick);
    this.lastTick = nowNs;
    const o = this.options;
    // credits are fractional; the epsilon keeps 100 steps of 0.01 from summing to 0.99999
    this.jobCredit = Math.min(o.inFlight, this.jobCredit + (dt * o.jobsPerMs) / 1e6);
    while (this.jobCredit + CREDIT_EPSILON >= 1 && this.byTicket.size < o.inFlight) {
      if (!this.submitOne()) break;
      this.jobCredit = Math.max(0, this.jobCredit - 1);
    }
    this.dirtyCredit += (dt * o.dirtyPagesPerMs) / 1e6;
    const pages = Math.floor(this.dirtyCredit + CREDIT_EPSILON);
    if (pages > 0) {
      this.dirtyCredit = Math.max(0, this.dirtyCredit - pages);
      // after a long gap, storing to every page of the region once dirties all it can
      this.dirty(Math.min(pages, o.dirtyRegionPages));
    }
  }

  /** Stores to `pages` pages of the region through the application's vCPU. */
  dirty(pages: number): void {
    const n = this.options.dirtyRegionPages;
    const vcpu = this.vm.vcpu(this.options.dirtyVcpu);
    const dv = new DataView(this.stamp.buffer);
    for (let i = 0; i < pages; i++) {
      // a stride coprime with the region size visits every page before repeating
      this.cursor = (this.cursor + 7919) % n;
      this.generation++;
      dv.setUint32(0, this.generation >>> 0, true);
      dv.setUint32(4, this.cursor, true);
      dv.setUint32(8, this.options.seed, true);
      dv.setUint32(12, 0x4455_5459, true);
      vcpu.write(this.region + this.cursor * PAGE_SIZE, this.stamp);
    }
    this.stats.pagesDirtied += pages;
  }

  /** Builds job `id` and its expected output; false when the queue refused it. */
  private submitOne(): boolean {
    const id = this.nextId;
    const { job, input, expected, check } = this.build(id);
    let ticket: number;
    try {
      ticket = this.accel.trySubmitJob(job);
    } catch (e) {
      if (e instanceof KernelError && e.code === 'EBUSY') {
        this.stats.busy++;
        return false;
      }
      throw e;
    }
    this.nextId++;
    const entry: LedgerEntry = {
      id, op: job.op === 'rsa' ? `rsa-${job.mode}` : job.op === 'encrypt' ? 'aes-128-cbc' : job.op === 'hmac' ? 'hmac-sha256' : job.op,
      ticket, inputHash: hash16(input), expectedHash: hash16(expected), expectedLength: expected.length, check,
      state: 'submitted', completions: 0, wrong: false, error: null, submittedNs: this.vm.scheduler.now, completedNs: null,
    };
    this.byTicket.set(ticket, entry);
    const st = this.settled;
    if (st.ticketLo === 0 || ticket < st.ticketLo) st.ticketLo = ticket;
    else if (ticket > st.ticketHi + 1) st.foreign.push([st.ticketHi + 1, ticket - 1]);
    if (ticket > st.ticketHi) st.ticketHi = ticket;
    return true;
  }

  private build(id: number): { job: AccelJob; input: Uint8Array; expected: Uint8Array; check: 'equal' | 'inflate' } {
    const { seed, jobBytes } = this.options;
    const even = id % 2 === 0;
    switch (this.engine) {
      case 'zip': {
        const data = text(seed, id, jobBytes);
        if (!even) return { job: { op: 'compress', format: 'deflate', data }, input: data, expected: data, check: 'inflate' };
        const body = deflateRawSync(data);
        return { job: { op: 'decompress', format: 'deflate', data: body }, input: body, expected: data, check: 'equal' };
      }
      case 'sec': {
        if (!even) {
          const n = Math.max(16, jobBytes - (jobBytes % 16));
          const key = streamBytes(seed, id, 'key', 16);
          const iv = streamBytes(seed, id, 'iv', 16);
          const data = streamBytes(seed, id, 'data', n);
          const c = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false);
          const expected = Buffer.concat([c.update(data), c.final()]);
          return { job: { op: 'encrypt', alg: 'aes-128-cbc', key, iv, data }, input: data, expected, check: 'equal' };
        }
        const key = streamBytes(seed, id, 'mac-key', 32);
        const data = streamBytes(seed, id, 'data', jobBytes);
        const expected = createHmac('sha256', key).update(data).digest();
        return { job: { op: 'hmac', alg: 'hmac-sha256', key, data }, input: data, expected, check: 'equal' };
      }
      case 'hpre': {
        const k = this.rsa!;
        const size = k.bits / 8;
        // below 2^(8*(size-1)) < n: a valid input for both directions
        const input = Buffer.concat([Buffer.alloc(1), streamBytes(seed, id, 'rsa', size - 1)]);
        const objs = this.rsaObjs!;
        const pad = cryptoConstants.RSA_NO_PADDING;
        const key = { n: k.n, e: k.e, d: k.d, p: k.p, q: k.q, dp: k.dp, dq: k.dq, qinv: k.qinv };
        if (!even) {
          const expected = publicEncrypt({ key: objs.publicKey, padding: pad }, input);
          return { job: { op: 'rsa', mode: 'public', key: { n: k.n, e: k.e }, input }, input, expected, check: 'equal' };
        }
        const expected = privateDecrypt({ key: objs.privateKey, padding: pad }, input);
        return { job: { op: 'rsa', mode: 'private', key, input }, input, expected, check: 'equal' };
      }
    }
  }

  private onComplete(accel: Accel, ticket: number, r: JobResult): void {
    if (accel !== this.accel) {
      this.stats.staleCompletions++;
      return;
    }
    const e = this.byTicket.get(ticket);
    if (e === undefined) {
      this.againOrUnknown(ticket);
      return;
    }
    e.completions = 1;
    e.completedNs = this.vm.scheduler.now;
    if (!r.ok) {
      e.state = 'failed';
      e.error = r.error.code;
    } else {
      e.state = 'completed';
      let got: Uint8Array | null = r.output;
      if (e.check === 'inflate') {
        try {
          got = inflateRawSync(r.output);
        } catch {
          got = null;
        }
      }
      e.wrong = got === null || got.length !== e.expectedLength || hash16(got) !== e.expectedHash;
    }
    this.settle(e);
  }

  /** Moves a job that just completed or failed from the outstanding set into the summary. */
  private settle(e: LedgerEntry): void {
    this.byTicket.delete(e.ticket);
    const st = this.settled;
    st.jobs++;
    let outcome = 0;
    if (e.state === 'failed') {
      st.failed++;
      this.bad.set(e.ticket, 'f');
      outcome = 2;
    } else {
      st.completions++;
      if (e.wrong) {
        st.wrong++;
        this.bad.set(e.ticket, 'w');
        outcome = 1;
      } else {
        st.completedOnce++;
      }
    }
    st.digest = digestStep(st.digest, e.ticket, e.id, outcome);
    this.history.push(e);
    this.historyByTicket.set(e.ticket, e);
    if (this.history.length > HISTORY_LIMIT * 2) {
      for (const old of this.history.splice(0, this.history.length - HISTORY_LIMIT)) this.historyByTicket.delete(old.ticket);
    }
  }

  /**
   * A completion for a ticket with no outstanding job: a settled job of ours completing
   * again (judged as its ledger entry would have been), or a ticket this workload never had.
   */
  private againOrUnknown(ticket: number): void {
    const st = this.settled;
    if (isForeign(st.foreign, ticket)) {
      this.stats.foreignCompletions++;
      return;
    }
    if (st.ticketLo === 0 || ticket < st.ticketLo || ticket > st.ticketHi) {
      this.stats.unknownCompletions++;
      return;
    }
    const h = this.historyByTicket.get(ticket);
    if (h) h.completions++;
    const bad = this.bad.get(ticket);
    if (bad !== 'f') st.completions++;
    if (this.dup.has(ticket)) return;
    this.dup.add(ticket);
    st.duplicated++;
    if (bad === undefined) st.completedOnce--;
  }

  /** The ledger's verdict (call after drain() for a final answer). */
  verify(): WorkloadVerdict {
    // outstanding jobs have not completed; everything else is in the settled summary
    const st = this.settled;
    const completed = st.completedOnce;
    const duplicated = st.duplicated;
    const wrong = st.wrong;
    const failed = st.failed;
    const deviceCompletions = st.completions;
    const lost = failed + this.byTicket.size;
    const s = this.vm.driver?.stats;
    const received = s ? s.interrupts - this.irqBase.received : 0;
    const irqCqes = s ? s.irqCqes - this.irqBase.irqCqes : 0;
    const interrupts: InterruptAccounting = {
      received, eqes: s ? s.eqes - this.irqBase.eqes : 0, irqCqes, completions: deviceCompletions,
      // completions of other Accel users' jobs also arrive as CQEs through the same interrupts
      consistent: irqCqes === deviceCompletions + this.stats.foreignCompletions + this.stats.unknownCompletions && (deviceCompletions === 0 || received > 0),
    };
    return {
      submitted: this.submitted, completed, lost, duplicated, wrong, inFlight: this.byTicket.size, failed, interrupts,
      ok: lost === 0 && duplicated === 0 && wrong === 0 && interrupts.consistent
        && this.stats.staleCompletions === 0 && this.stats.unknownCompletions === 0,
    };
  }

  // ---- CPU state ------------------------------------------------------------------------

  saveState(): WorkloadState {
    return {
      kind: 'hisi-acc-sim/workload',
      options: { ...this.options },
      engine: this.engine,
      started: this.started,
      nextId: this.nextId,
      ledger: [...this.byTicket.values()].map(entryToRow),
      settled: this.settledSummary(),
      region: this.region,
      cursor: this.cursor,
      generation: this.generation,
      jobCredit: this.jobCredit,
      dirtyCredit: this.dirtyCredit,
      irqBase: { ...this.irqBase },
      stats: { ...this.stats },
      rsaKey: this.rsa ? rsaKeyToJson(this.rsa) : null,
    };
  }

  /**
   * Replaces this workload's state with a saved one and binds it to `vm` (whose guest was
   * just restored). EINVAL for a state of another engine or a corrupt ledger.
   */
  restoreState(st: WorkloadState, vm: Vm): void {
    if (st === null || typeof st !== 'object' || st.kind !== 'hisi-acc-sim/workload') fail('EINVAL', 'not a saved workload');
    if (st.engine !== this.engine) fail('EINVAL', `saved workload ran ${String(st.engine)} jobs`);
    if (!Array.isArray(st.ledger)) fail('EINVAL', 'saved workload has no ledger');
    const ledger = st.ledger.map(rowToEntry);
    const settled = checkSettled(st.settled);
    const key = st.rsaKey ? rsaKeyFromJson(st.rsaKey) : null;
    const options = Object.freeze(resolve(st.options ?? {}, this.engine, vm.vcpus.length));
    const num = (v: unknown, lo: number, hi: number, what: string, int = true): void => {
      if (typeof v !== 'number' || !(int ? Number.isSafeInteger(v) : Number.isFinite(v)) || v < lo || v > hi) {
        fail('EINVAL', `saved workload: bad ${what}`);
      }
    };
    num(st.nextId, 1, Number.MAX_SAFE_INTEGER, 'nextId');
    num(st.generation, 0, Number.MAX_SAFE_INTEGER, 'generation');
    num(st.cursor, 0, options.dirtyRegionPages - 1, 'cursor');
    num(st.jobCredit, 0, options.inFlight, 'job credit', false);
    num(st.dirtyCredit, 0, 1, 'dirty credit', false);
    if (st.started === true) {
      const end = st.region + options.dirtyRegionPages * PAGE_SIZE;
      num(st.region, vm.ramBase, vm.ramBase + vm.ramBytes, 'region');
      if (st.region % PAGE_SIZE !== 0 || end > vm.ramBase + vm.ramBytes) fail('EINVAL', 'saved workload: region outside RAM');
    }
    for (const k of ['received', 'eqes', 'irqCqes'] as const) num(st.irqBase?.[k], 0, Number.MAX_SAFE_INTEGER, `irqBase.${k}`);
    for (const k of Object.keys(this.stats) as (keyof WorkloadStats)[]) num(st.stats?.[k], 0, Number.MAX_SAFE_INTEGER, `stats.${k}`);
    for (const e of ledger) {
      if (typeof e.inputHash !== 'string' || typeof e.expectedHash !== 'string' || !Number.isSafeInteger(e.expectedLength)
        || (e.check !== 'equal' && e.check !== 'inflate') || typeof e.op !== 'string') {
        fail('EINVAL', `saved workload: bad ledger entry ${e.id}`);
      }
      // only outstanding jobs are carried; a settled one belongs in the summary
      if (e.state !== 'submitted' || e.completions !== 0) fail('EINVAL', `saved workload: ledger entry ${e.id} is not outstanding`);
      if (e.ticket < settled.ticketLo || e.ticket > settled.ticketHi) fail('EINVAL', `saved workload: ledger entry ${e.id} has a ticket outside the summary's range`);
    }
    if (new Set(ledger.map((e) => e.ticket)).size !== ledger.length) fail('EINVAL', 'saved workload: two outstanding jobs share a ticket');
    if (settled.jobs + ledger.length !== st.nextId - 1) fail('EINVAL', 'saved workload: settled and outstanding jobs do not add up to the jobs submitted');
    // this object's own history of settled jobs stays readable when the state continues it
    if (settled.digest !== this.settled.digest || settled.jobs !== this.settled.jobs) {
      this.history = [];
      this.historyByTicket = new Map();
    }
    this.options = options;
    this.bind(vm);
    this.byTicket = new Map(ledger.map((e) => [e.ticket, e]));
    this.settled = { ...settled, bad: [], dup: [] };
    this.bad = new Map(settled.bad);
    this.dup = new Set(settled.dup);
    this.started = st.started === true;
    this.nextId = st.nextId;
    this.region = st.region;
    this.cursor = st.cursor;
    this.generation = st.generation;
    this.jobCredit = st.jobCredit;
    this.dirtyCredit = st.dirtyCredit;
    this.irqBase = { ...st.irqBase };
    Object.assign(this.stats, st.stats);
    if (key) this.useKey(key);
    vm.workload = this;
  }
}
