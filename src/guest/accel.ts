/**
 * High-level, synchronous API on a started VF: each call copies its inputs into guest RAM,
 * builds the SQE, submits it, lets the simulation run until the completion arrives (by
 * interrupt, or by polling in poll mode), checks the status, copies the output back and
 * frees the buffers.
 *
 * Pipelined use: `submitJob` returns a ticket at once (waiting only for room in the queue),
 * completions arrive through `onComplete` callbacks or `result(ticket)`, and `drain()` runs
 * the simulation until every submitted job has finished. A job whose waiter timed out keeps
 * its buffers until the device answers or the queue is reset, so the device never writes
 * into memory that was handed out again.
 *
 * Queues: ZIP needs a compress queue (alg_type 0) and a decompress queue (alg_type 1); SEC
 * and HPRE use one queue each. Queues are taken from the driver on first use.
 */
import { KernelError, fail } from '../uapi/errno.js';
import type { EngineKind } from '../hw/profile.js';
import * as HpreJobs from './hpre-job.js';
import type { BigNum, RsaKey } from './hpre-job.js';
import type { JobResult, PreparedJob, PreparedJobState } from './jobs.js';
import * as JobState from './job-state.js';
import type { ErrorState } from './job-state.js';
import type { QmVfDriver } from './qm-vf-driver.js';
import type { QpRequest, QueuePair } from './queue-pair.js';
import * as SecJobs from './sec-job.js';
import * as ZipJobs from './zip-job.js';
import type { ZipAt, ZipFormat } from './zip-job.js';
import type { CipherAt, HmacAt } from './sec-job.js';

// Module-local bindings: under the tsx/vitest transforms an imported binding is a getter call.
const { prepareDh, prepareRsa } = HpreJobs;
const { prepareCipher, prepareCipherAt, prepareHmac, prepareHmacAt } = SecJobs;
const { ZIP_QP_COMPRESS, ZIP_QP_DECOMPRESS, checkFormat, prepareCompress, prepareDecompress, prepareZipAt } = ZipJobs;
const { bytesToText, revivePreparedJob, reviveError, saveError, textToBytes } = JobState;

export type { JobResult } from './jobs.js';
export type { RsaKey, BigNum } from './hpre-job.js';
export type { ZipFormat } from './zip-job.js';

/**
 * A request over buffers the caller keeps in guest RAM (Accel.runAt), as a user with pinned
 * buffers submits them: addresses instead of bytes, nothing copied in or out by the driver.
 */
export type ResidentJob =
  | ZipAt
  | ({ op: 'encrypt' | 'decrypt' } & Omit<CipherAt, 'decrypt'>)
  | ({ op: 'hmac' } & HmacAt);

export type AccelJob =
  | { op: 'compress'; format: ZipFormat; data: Uint8Array }
  | { op: 'decompress'; format: ZipFormat; data: Uint8Array; maxOutput?: number }
  | { op: 'encrypt' | 'decrypt'; alg: string; key: Uint8Array; iv: Uint8Array; data: Uint8Array }
  | { op: 'hmac'; alg: string; key: Uint8Array; data: Uint8Array }
  | { op: 'rsa'; mode: 'public' | 'private'; key: RsaKey; input: Uint8Array }
  | { op: 'dh'; p: BigNum; xa: BigNum; base?: BigNum };

export type CompletionCallback = (ticket: number, result: JobResult) => void;

/** A pipelined job in flight, as plain data (it sits in its queue pair's in-flight table). */
export interface AccelJobState {
  ticket: number;
  sync: boolean;
  orphaned: boolean;
  prep: PreparedJobState;
}

/** A stored result as plain data. */
export type JobResultState = { ok: true; output: string } | { ok: false; error: ErrorState };

/**
 * The Accel's own state (Accel.saveState); its live jobs travel inside the driver's queue
 * pairs. Completion callbacks are code, not data: the owner registers them again.
 */
export interface AccelState {
  engine: EngineKind;
  timeoutNs: number;
  /** alg_type -> qn of the queues taken from the driver. */
  queues: [number, number][];
  results: [number, JobResultState][];
  nextTicket: number;
  settledCount: number;
  stats: { submitted: number; completed: number; failed: number };
}

export interface AccelOptions {
  /** Bound on one synchronous call, in simulated ns (default 10 s). */
  timeoutNs?: number;
}

const ENGINE_OF: Record<AccelJob['op'], EngineKind> = {
  compress: 'zip', decompress: 'zip', encrypt: 'sec', decrypt: 'sec', hmac: 'sec', rsa: 'hpre', dh: 'hpre',
};

class Job implements QpRequest {
  done = false;
  /** The synchronous caller gave up; the result is dropped when it comes. */
  orphaned = false;
  /** A synchronous caller in this process waits on `done` and reads `result` itself. */
  waited = false;
  result: JobResult | undefined;

  constructor(
    readonly ticket: number,
    readonly qp: QueuePair,
    private readonly prep: PreparedJob,
    readonly sync: boolean,
    private readonly accel: Accel,
  ) {}

  submit(): void {
    this.qp.submit(this);
  }

  fill(sqe: Uint8Array): void {
    this.prep.fill(sqe);
  }

  complete(sqe: Uint8Array): void {
    let out: Uint8Array | 'retry';
    try {
      out = this.prep.finish(sqe);
    } catch (e) {
      this.fail(e instanceof KernelError ? e : new KernelError('EIO', String(e)));
      return;
    }
    if (out === 'retry') {
      try {
        this.submit();
      } catch (e) {
        this.fail(e instanceof KernelError ? e : new KernelError('EIO', String(e)));
      }
      return;
    }
    this.settle({ ok: true, output: out });
  }

  fail(err: KernelError): void {
    this.settle({ ok: false, error: err });
  }

  save(): AccelJobState {
    return { ticket: this.ticket, sync: this.sync, orphaned: this.orphaned, prep: this.prep.save() };
  }

  private settle(r: JobResult): void {
    if (this.done) return;
    this.done = true;
    this.prep.release();
    this.result = r;
    this.accel.settled(this);
  }
}

export class Accel {
  readonly engine: EngineKind;
  private readonly timeoutNs: number;
  private readonly queues = new Map<number, QueuePair>();
  private readonly live = new Map<number, Job>();
  private readonly results = new Map<number, JobResult>();
  private readonly callbacks: CompletionCallback[] = [];
  private nextTicket = 1;
  private settledCount = 0;
  /** Jobs of synchronous callers waiting right now (kept out of `live`, see await). */
  private waitedInFlight = 0;
  readonly stats = { submitted: 0, completed: 0, failed: 0 };

  constructor(readonly driver: QmVfDriver, opts: AccelOptions = {}) {
    this.engine = driver.info.engine;
    this.timeoutNs = opts.timeoutNs ?? 10_000_000_000;
  }

  // ---------------------------------------------------------------- save / restore

  /** The Accel's own state; save the driver's (driver.saveState) alongside it. */
  saveState(): AccelState {
    const res = (r: JobResult): JobResultState => (r.ok ? { ok: true, output: bytesToText(r.output) } : { ok: false, error: saveError(r.error) });
    return {
      engine: this.engine,
      timeoutNs: this.timeoutNs,
      queues: [...this.queues.entries()].map(([alg, qp]) => [alg, qp.qn]),
      results: [...this.results.entries()].map(([t, r]) => [t, res(r)]),
      nextTicket: this.nextTicket,
      settledCount: this.settledCount,
      stats: { ...this.stats },
    };
  }

  /**
   * Continues a saved Accel on a restored driver (QmVfDriver.restore): takes its queues back
   * and rebuilds every in-flight job from the queue pairs' saved tables. EINVAL when the
   * state does not fit the driver.
   */
  static restore(driver: QmVfDriver, st: AccelState): Accel {
    if (st === null || typeof st !== 'object' || st.engine !== driver.info.engine) fail('EINVAL', 'saved Accel does not fit this driver');
    const a = new Accel(driver, { timeoutNs: st.timeoutNs });
    for (const [alg, qn] of st.queues) {
      a.queues.set(alg, driver.qp(qn) ?? fail('EINVAL', `saved Accel: qp ${qn} is not in the driver`));
    }
    driver.reviveRequests((qp, tag, saved) => {
      const js = saved as AccelJobState;
      if (js === null || typeof js !== 'object' || !Number.isSafeInteger(js.ticket) || a.live.has(js.ticket)) {
        fail('EINVAL', `saved Accel: bad job under tag ${tag} of qp ${qp.qn}`);
      }
      const j = new Job(js.ticket, qp, revivePreparedJob(driver.ram, js.prep), js.sync === true, a);
      j.orphaned = js.orphaned === true;
      a.live.set(js.ticket, j);
      return j;
    });
    for (const [t, r] of st.results) {
      a.results.set(t, r.ok ? { ok: true, output: textToBytes(r.output) } : { ok: false, error: reviveError(r.error) });
    }
    a.nextTicket = st.nextTicket;
    a.settledCount = st.settledCount;
    Object.assign(a.stats, st.stats);
    return a;
  }

  // ---------------------------------------------------------------- synchronous API

  compress(data: Uint8Array, format: ZipFormat): Uint8Array {
    return this.run({ op: 'compress', format, data });
  }

  decompress(data: Uint8Array, format: ZipFormat, maxOutput?: number): Uint8Array {
    return this.run({ op: 'decompress', format, data, maxOutput });
  }

  encrypt(alg: string, key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array {
    return this.run({ op: 'encrypt', alg, key, iv, data });
  }

  decrypt(alg: string, key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array {
    return this.run({ op: 'decrypt', alg, key, iv, data });
  }

  hmac(alg: string, key: Uint8Array, data: Uint8Array): Uint8Array {
    return this.run({ op: 'hmac', alg, key, data });
  }

  rsa(op: 'public' | 'private', key: RsaKey, input: Uint8Array): Uint8Array {
    return this.run({ op: 'rsa', mode: op, key, input });
  }

  dh(p: BigNum, xa: BigNum, base?: BigNum): Uint8Array {
    return this.run({ op: 'dh', p, xa, base });
  }

  /** Submits one job and waits for it; throws its KernelError on failure. */
  run(job: AccelJob): Uint8Array {
    const j = this.submit(job, true, true, true);
    if (j instanceof Job) return this.await(j, job.op);
    // needed no device work: the output is already stored
    const r = this.results.get(j)!;
    this.results.delete(j);
    if (!r.ok) throw r.error;
    return r.output;
  }

  /**
   * Runs one request over the caller's guest buffers and waits for it: the device reads and
   * writes them in place. Returns the bytes produced (ZIP output, cipher length, digest size).
   * The buffers must stay allocated until the call returns (or, after ETIMEDOUT, until the
   * queue is reset: the device may still write them).
   */
  runAt(job: ResidentJob): number {
    const kind = ENGINE_OF[job.op];
    if (kind === undefined) fail('EINVAL', `unknown job '${String((job as { op: unknown }).op)}'`);
    if (kind !== this.engine) fail('EOPNOTSUPP', `${job.op} needs a ${kind.toUpperCase()} VF, this is ${this.engine.toUpperCase()}`);
    const ram = this.driver.ram;
    let prep: PreparedJob;
    switch (job.op) {
      case 'compress':
      case 'decompress':
        prep = prepareZipAt(ram, job);
        break;
      case 'encrypt':
      case 'decrypt':
        prep = prepareCipherAt(ram, this.driver.info.hwVersion, job, job.op === 'decrypt');
        break;
      case 'hmac':
        prep = prepareHmacAt(ram, this.driver.info.hwVersion, job);
        break;
    }
    this.stats.submitted++;
    this.await(this.submitPrepared(this.queueFor(job), prep, true, true, this.nextTicket++, true), job.op);
    return prep.produced ?? 0;
  }

  /**
   * Waits for a job its caller submitted as waited: the job is not in the live table (one map
   * insert and delete less per call) until a timeout orphans it.
   */
  private await(j: Job, op: string): Uint8Array {
    if (!j.done && !this.driver.waitForRequest(j, this.timeoutNs)) {
      j.waited = false;
      j.orphaned = true;
      this.waitedInFlight--;
      this.live.set(j.ticket, j);
      fail('ETIMEDOUT', `${op} did not complete`);
    }
    const r = j.result!;
    if (!r.ok) throw r.error;
    return r.output;
  }

  // ---------------------------------------------------------------- pipelined API

  /** Submits a job, waiting for queue room if needed; returns its ticket. */
  submitJob(job: AccelJob): number {
    return this.submit(job, true, false);
  }

  /** Submits a job or fails with EBUSY when its queue is full. */
  trySubmitJob(job: AccelJob): number {
    return this.submit(job, false, false);
  }

  /** Completion callback for pipelined jobs; with one registered, results are not stored. */
  onComplete(cb: CompletionCallback): void {
    this.callbacks.push(cb);
  }

  /** Reaps completions that have arrived without waiting; returns how many jobs finished. */
  poll(): number {
    const before = this.settledCount;
    this.driver.poll();
    return this.settledCount - before;
  }

  /** Runs the simulation until every submitted job finished; ETIMEDOUT otherwise. */
  drain(timeoutNs = this.timeoutNs): void {
    if (!this.driver.waitFor(() => this.pending === 0, timeoutNs)) {
      fail('ETIMEDOUT', `${this.pending} jobs did not complete`);
    }
  }

  /** Takes the stored result of a finished pipelined job. */
  result(ticket: number): JobResult | undefined {
    const r = this.results.get(ticket);
    if (r !== undefined) this.results.delete(ticket);
    return r;
  }

  /** Jobs submitted and not finished. */
  get pending(): number {
    let n = this.waitedInFlight;
    for (const j of this.live.values()) if (!j.orphaned) n++;
    return n;
  }

  /** Returns the queues to the driver (in-flight jobs fail with ECANCELED). */
  close(): void {
    for (const qp of this.queues.values()) this.driver.releaseQp(qp);
    this.queues.clear();
  }

  /** @internal A job finished (completion, failure, stop or reset). */
  settled(job: Job): void {
    if (job.waited) this.waitedInFlight--;
    else this.live.delete(job.ticket);
    this.settledCount++;
    if (job.result!.ok) this.stats.completed++;
    else this.stats.failed++;
    if (job.orphaned || job.waited) return;
    if (job.sync || this.callbacks.length === 0) this.results.set(job.ticket, job.result!);
    if (!job.sync) for (const cb of this.callbacks) cb(job.ticket, job.result!);
  }

  // ---------------------------------------------------------------- internals

  private submit(job: AccelJob, wait: boolean, sync: boolean): number;
  private submit(job: AccelJob, wait: boolean, sync: boolean, waited: true): number | Job;
  private submit(job: AccelJob, wait: boolean, sync: boolean, waited = false): number | Job {
    const kind = ENGINE_OF[job.op];
    if (kind === undefined) fail('EINVAL', `unknown job '${String((job as { op: unknown }).op)}'`);
    if (kind !== this.engine) fail('EOPNOTSUPP', `${job.op} needs a ${kind.toUpperCase()} VF, this is ${this.engine.toUpperCase()}`);
    const qp = this.queueFor(job);
    const prep = this.prepare(job);
    const ticket = this.nextTicket++;
    this.stats.submitted++;
    if (prep instanceof Uint8Array) {
      const r: JobResult = { ok: true, output: prep };
      this.settledCount++;
      this.stats.completed++;
      if (sync || this.callbacks.length === 0) this.results.set(ticket, r);
      if (!sync) for (const cb of this.callbacks) cb(ticket, r);
      return ticket;
    }
    const j = this.submitPrepared(qp, prep, wait, sync, ticket, waited);
    return waited ? j : j.ticket;
  }

  private submitPrepared(qp: QueuePair, prep: PreparedJob, wait: boolean, sync: boolean, ticket: number, waited: boolean): Job {
    const j = new Job(ticket, qp, prep, sync, this);
    try {
      if (qp.full && wait) this.driver.waitFor(() => !qp.full || !qp.running, this.timeoutNs);
      if (waited) {
        j.waited = true;
        this.waitedInFlight++;
      } else {
        this.live.set(ticket, j);
      }
      j.submit();
    } catch (e) {
      if (j.waited) this.waitedInFlight--;
      else this.live.delete(ticket);
      j.waited = false;
      prep.release();
      this.stats.submitted--;
      throw e;
    }
    return j;
  }

  private prepare(job: AccelJob): PreparedJob | Uint8Array {
    const ram = this.driver.ram;
    const hw = this.driver.info.hwVersion;
    switch (job.op) {
      case 'compress': return prepareCompress(ram, bytes(job.data, 'data'), checkFormat(job.format));
      case 'decompress': return prepareDecompress(ram, bytes(job.data, 'data'), checkFormat(job.format), job.maxOutput);
      case 'encrypt':
      case 'decrypt':
        return prepareCipher(ram, hw, job.alg, bytes(job.key, 'key'), bytes(job.iv, 'iv'), bytes(job.data, 'data'), job.op === 'decrypt');
      case 'hmac': return prepareHmac(ram, hw, job.alg, bytes(job.key, 'key'), bytes(job.data, 'data'));
      case 'rsa': return prepareRsa(ram, job.mode, job.key, bytes(job.input, 'input'));
      case 'dh': return prepareDh(ram, job.p, job.xa, job.base);
    }
  }

  private queueFor(job: { op: AccelJob['op'] }): QueuePair {
    const alg = job.op === 'decompress' ? ZIP_QP_DECOMPRESS : ZIP_QP_COMPRESS;
    let qp = this.queues.get(alg);
    if (qp === undefined) {
      qp = this.driver.createQp(alg);
      this.queues.set(alg, qp);
    }
    return qp;
  }
}

function bytes(x: unknown, what: string): Uint8Array {
  if (x instanceof Uint8Array) return x;
  return fail('EINVAL', `${what} must be a Uint8Array`);
}
