/**
 * One queue pair as the VF driver runs it (qm-hardware.md 3 and 8): the SQ and CQ rings in
 * guest RAM, the SQC/CQC it loads through the mailbox, submission at the SQ tail, CQE
 * consumption by phase, and an in-flight table indexed by SQE tag.
 *
 * Tags are small integers handed out from a free stack; the tag, not the SQ slot, finds the
 * request a CQE completes (the CQE names the slot, the slot's SQE carries the tag, which the
 * device never rewrites). A tag is reused only after its CQE arrived or the qp restarted.
 */
import { KernelError, fail } from '../uapi/errno.js';
import type { Scheduler } from '../sim/scheduler.js';
import type { GuestRam } from './io.js';
import type { VfMailbox } from './mailbox.js';
import * as R from './regs.js';
import * as F from './sqe-format.js';
import type { TagField } from './sqe-format.js';
import { pollUntil } from './wait.js';
import { type ErrorState, reviveError, saveError } from './job-state.js';

// Module-local bindings: under the tsx/vitest transforms an imported binding is a getter call.
const { CQC_C_FLAG, CQC_PHASE, CQE_SIZE, CQE_SQ_HEAD, CQE_SQ_NUM, CQE_W7, Db, Mb, XQC_SIZE, XQC_W11_TAIL_WRAP } = R;
const { readTag, writeTag } = F;
const DB_SQ = Db.SQ;
const DB_CQ = Db.CQ;

/** A request: writes its SQE, then hears back. `sqe` is a scratch view: copy what you keep. */
export interface QpRequest {
  /** Writes the engine fields into a zeroed SQE; the tag is set afterwards. */
  fill(sqe: Uint8Array): void;
  complete(sqe: Uint8Array): void;
  fail(err: KernelError): void;
  /** The request as plain data, so an in-flight request can cross a live migration. */
  save?(): unknown;
}

/** A queue pair's JavaScript-side state as plain data (see QueuePair.saveState). */
export interface QueuePairState {
  qn: number;
  algType: number;
  sqDepth: number;
  cqDepth: number;
  sqBase: number;
  state: QpState;
  error: ErrorState | null;
  sqTail: number;
  cqHead: number;
  cqPhase: number;
  used: number;
  /** The free-tag stack, bottom first. */
  freeTags: number[];
  /** In-flight requests by tag, each as its own save(). */
  inflight: [number, unknown][];
  stats: QpStats;
  released: boolean;
}

/** Rebuilds a saved in-flight request; called once per tag when a queue pair is restored. */
export type RequestReviver = (qp: QueuePair, tag: number, saved: unknown) => QpRequest;

export type QpState = 'idle' | 'running' | 'stopped' | 'error';

/** What a queue pair needs from its driver. */
export interface QpHost {
  readonly ram: GuestRam;
  readonly mailbox: VfMailbox;
  readonly sched: Scheduler;
  readonly sqeSize: number;
  readonly tagField: TagField;
  /** STOP_QP capability (V3+); otherwise stop drains by polling the contexts. */
  readonly canStopQp: boolean;
  /** Completion interrupts off: CQC c_flag 0 and no priority-1 CQ doorbells. */
  readonly pollMode: boolean;
  /** A 64-byte DMA buffer for mailbox context loads and dumps. */
  readonly ctxBuf: number;
  ringSqCq(qn: number, cmd: number, index: number, priority: number): void;
}

export interface QpStats {
  submitted: number;
  completed: number;
  /** CQEs that named no request in flight (or another qp / a slot outside the ring). */
  spurious: number;
  /** Requests failed without a completion (stop, reset, CQE error). */
  failed: number;
}

/** Drain without STOP_QP (spec 3, behaviour 7): 20 us between context dumps, 1000 tries. */
const DRAIN_PERIOD_NS = 20_000;
const DRAIN_TIMEOUT_NS = 20_000_000;

export class QueuePair {
  readonly sqBase: number;
  readonly cqBase: number;
  readonly stats: QpStats = { submitted: 0, completed: 0, spurious: 0, failed: 0 };
  state: QpState = 'idle';
  /** Why the qp went to 'error'. */
  error: KernelError | undefined;

  private sqTail = 0;
  private cqHead = 0;
  private cqPhase = 1;
  private used = 0;
  private readonly inflight: (QpRequest | undefined)[];
  private readonly freeTags: Uint16Array;
  private freeTop = 0;
  private readonly sqe: Uint8Array;
  private readonly ctx = new Uint8Array(XQC_SIZE);
  private readonly ctxView = new DataView(this.ctx.buffer);
  private consuming = false;
  private released = false;
  /** Saved in-flight requests waiting for `revive` after a restore. */
  private unrevived: [number, unknown][] = [];

  /** `sqBase` given: a restored qp whose rings are already allocated (see restore). */
  constructor(
    private readonly host: QpHost,
    readonly qn: number,
    readonly algType: number,
    readonly sqDepth: number,
    readonly cqDepth: number,
    sqBase?: number,
  ) {
    const sqBytes = host.sqeSize * sqDepth;
    this.sqBase = sqBase ?? host.ram.alloc(sqBytes + CQE_SIZE * cqDepth, 4096);
    this.cqBase = this.sqBase + sqBytes;
    this.inflight = new Array<QpRequest | undefined>(sqDepth).fill(undefined);
    this.freeTags = new Uint16Array(sqDepth);
    this.sqe = new Uint8Array(host.sqeSize);
    this.resetTags();
  }

  /**
   * The qp's JavaScript-side state. Every in-flight request must implement `save`
   * (EOPNOTSUPP otherwise: it could not be completed after a migration).
   */
  saveState(): QueuePairState {
    const inflight: [number, unknown][] = [];
    for (let tag = 0; tag < this.sqDepth; tag++) {
      const r = this.inflight[tag];
      if (r === undefined) continue;
      if (typeof r.save !== 'function') fail('EOPNOTSUPP', `qp ${this.qn}: in-flight request ${tag} cannot be saved`);
      inflight.push([tag, r.save()]);
    }
    for (const u of this.unrevived) inflight.push(u);
    return {
      qn: this.qn, algType: this.algType, sqDepth: this.sqDepth, cqDepth: this.cqDepth, sqBase: this.sqBase,
      state: this.state, error: this.error ? saveError(this.error) : null, sqTail: this.sqTail,
      cqHead: this.cqHead, cqPhase: this.cqPhase, used: this.used,
      freeTags: Array.from(this.freeTags.subarray(0, this.freeTop)), inflight, stats: { ...this.stats },
      released: this.released,
    };
  }

  /** Rebuilds a saved qp for `host` (its rings are already in guest RAM). EINVAL on inconsistent state. */
  static restore(host: QpHost, st: QueuePairState): QueuePair {
    const int = (v: unknown, lo: number, hi: number, what: string): number => {
      if (!Number.isSafeInteger(v) || (v as number) < lo || (v as number) > hi) fail('EINVAL', `saved qp: bad ${what}`);
      return v as number;
    };
    const sqDepth = int(st.sqDepth, 2, 65536, 'SQ depth');
    const cqDepth = int(st.cqDepth, 2, 65536, 'CQ depth');
    const qp = new QueuePair(host, int(st.qn, 0, 0xffff, 'qn'), int(st.algType, 0, 15, 'alg type'), sqDepth, cqDepth,
      int(st.sqBase, 1, Number.MAX_SAFE_INTEGER, 'SQ base'));
    if (!['idle', 'running', 'stopped', 'error'].includes(st.state)) fail('EINVAL', `saved qp: state ${String(st.state)}`);
    qp.state = st.state;
    qp.error = st.error ? reviveError(st.error) : undefined;
    qp.sqTail = int(st.sqTail, 0, sqDepth - 1, 'SQ tail');
    qp.cqHead = int(st.cqHead, 0, cqDepth - 1, 'CQ head');
    qp.cqPhase = int(st.cqPhase, 0, 1, 'CQ phase');
    if (!Array.isArray(st.freeTags) || !Array.isArray(st.inflight) || st.freeTags.length + st.inflight.length !== sqDepth) {
      fail('EINVAL', 'saved qp: tags do not add up');
    }
    const seen = new Uint8Array(sqDepth);
    qp.freeTop = 0;
    for (const t of st.freeTags) {
      const tag = int(t, 0, sqDepth - 1, 'free tag');
      if (seen[tag]++) fail('EINVAL', `saved qp: tag ${tag} listed twice`);
      qp.freeTags[qp.freeTop++] = tag;
    }
    for (const e of st.inflight) {
      const tag = int(Array.isArray(e) ? e[0] : -1, 0, sqDepth - 1, 'in-flight tag');
      if (seen[tag]++) fail('EINVAL', `saved qp: tag ${tag} listed twice`);
      qp.unrevived.push([tag, e[1]]);
    }
    qp.used = int(st.used, 0, sqDepth - 1, 'in-flight count');
    if (qp.used !== st.inflight.length) fail('EINVAL', 'saved qp: in-flight count does not match its table');
    Object.assign(qp.stats, st.stats);
    qp.released = st.released === true;
    return qp;
  }

  /** Requests restored but not yet rebuilt (see revive). */
  get unrevivedCount(): number {
    return this.unrevived.length;
  }

  /** Rebuilds the restored in-flight requests with `fn`, putting each back under its tag. */
  revive(fn: RequestReviver): void {
    const list = this.unrevived;
    this.unrevived = [];
    for (const [tag, saved] of list) this.inflight[tag] = fn(this, tag, saved);
  }

  /** Requests submitted and not yet completed. */
  get inFlight(): number {
    return this.used;
  }

  /** The ring keeps one slot empty: full at depth-1 entries in use. */
  get full(): boolean {
    return this.used >= this.sqDepth - 1;
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /** QP start: clear the rings, cq_head 0 / phase 1, then SQC and CQC through the mailbox. */
  start(): void {
    if (this.released) fail('ENODEV', `qp ${this.qn} was released`);
    if (this.state === 'running') fail('EBUSY', `qp ${this.qn} is already running`);
    this.failAll(new KernelError('ECANCELED', `qp ${this.qn} restarted`));
    this.resetTags();
    this.sqTail = 0;
    this.cqHead = 0;
    this.cqPhase = 1;
    this.used = 0;
    this.error = undefined;
    const h = this.host;
    h.ram.mem.fill(this.sqBase, h.sqeSize * this.sqDepth + CQE_SIZE * this.cqDepth, 0);

    const v = this.ctxView;
    this.ctx.fill(0);
    v.setUint32(4, this.sqBase % 0x1_0000_0000, true);
    v.setUint32(8, Math.floor(this.sqBase / 0x1_0000_0000), true);
    v.setUint32(12, ((this.sqDepth - 1) | (Math.log2(h.sqeSize) << 12)) >>> 0, true);
    v.setUint16(24, this.qn, true); // cq_num: each SQ completes to the CQ of the same number
    // w13: priority 0, orders 1 (as Linux programs it), alg_type [11:8]
    v.setUint16(26, (1 << 4) | ((this.algType & 0xf) << 8), true);
    h.ram.mem.write(h.ctxBuf, this.ctx);
    h.mailbox.sendAddr(Mb.SQC, 0, this.qn, h.ctxBuf);

    this.ctx.fill(0);
    v.setUint32(4, this.cqBase % 0x1_0000_0000, true);
    v.setUint32(8, Math.floor(this.cqBase / 0x1_0000_0000), true);
    v.setUint32(12, ((this.cqDepth - 1) | (4 << 12)) >>> 0, true);
    v.setUint32(24, CQC_PHASE | (h.pollMode ? 0 : CQC_C_FLAG), true);
    h.ram.mem.write(h.ctxBuf, this.ctx);
    h.mailbox.sendAddr(Mb.CQC, 0, this.qn, h.ctxBuf);
    this.state = 'running';
  }

  /** Writes the request's SQE at the tail and rings the SQ doorbell. Returns the tag. */
  submit(req: QpRequest): number {
    if (this.state !== 'running') {
      throw this.error ?? new KernelError('EIO', `qp ${this.qn} is not running (${this.state})`);
    }
    if (this.full) fail('EBUSY', `qp ${this.qn}: submission queue full`);
    const sqe = this.sqe;
    sqe.fill(0);
    req.fill(sqe);
    const tag = this.freeTags[--this.freeTop]!;
    writeTag(sqe, this.host.tagField, tag);
    this.inflight[tag] = req;
    const slot = this.sqTail;
    this.host.ram.mem.write(this.sqBase + slot * this.host.sqeSize, sqe);
    this.sqTail = slot + 1 === this.sqDepth ? 0 : slot + 1;
    this.used++;
    this.stats.submitted++;
    this.host.ringSqCq(this.qn, DB_SQ, this.sqTail, 0);
    return tag;
  }

  /**
   * Consumes CQEs while their phase matches: CQ doorbell per CQE, then (interrupt mode) a
   * priority-1 one that re-arms completion events. Returns the number of CQEs consumed.
   */
  consume(): number {
    if (this.consuming || (this.state !== 'running' && this.state !== 'error')) return 0;
    this.consuming = true;
    let n = 0;
    const h = this.host;
    const mem = h.ram.mem;
    try {
      for (;;) {
        const cqe = this.cqBase + this.cqHead * CQE_SIZE;
        if ((mem.getU16(cqe + CQE_W7) & 1) !== this.cqPhase) break;
        const slot = mem.getU16(cqe + CQE_SQ_HEAD);
        const sqNum = mem.getU16(cqe + CQE_SQ_NUM);
        if (++this.cqHead === this.cqDepth) {
          this.cqHead = 0;
          this.cqPhase ^= 1;
        }
        h.ringSqCq(this.qn, DB_CQ, this.cqHead, 0);
        n++;
        if (slot >= this.sqDepth || sqNum !== this.qn) {
          this.stats.spurious++;
          continue;
        }
        mem.read(this.sqBase + slot * h.sqeSize, this.sqe);
        const tag = readTag(this.sqe, h.tagField);
        const req = tag < this.sqDepth ? this.inflight[tag] : undefined;
        if (req === undefined) {
          this.stats.spurious++;
          continue;
        }
        this.inflight[tag] = undefined;
        this.releaseTag(tag);
        this.stats.completed++;
        req.complete(this.sqe);
      }
      if (!h.pollMode && this.state === 'running') h.ringSqCq(this.qn, DB_CQ, this.cqHead, 1);
    } finally {
      this.consuming = false;
    }
    return n;
  }

  /**
   * QP stop: STOP_QP when the function has it, otherwise poll the SQC/CQC dumps until the
   * CQ tail has caught up with the SQ tail. Completions that arrived are delivered; what is
   * still in flight afterwards fails with ECANCELED. Errors of the stop itself are thrown
   * after the qp is marked stopped.
   */
  stop(): void {
    if (this.state !== 'running' && this.state !== 'error') return;
    let err: unknown;
    try {
      if (this.host.canStopQp) this.host.mailbox.send(Mb.STOP_QP, 0, this.qn, 0, 0);
      else this.drainByTail();
    } catch (e) {
      err = e;
    }
    this.consume();
    this.state = 'stopped';
    this.failAll(new KernelError('ECANCELED', `qp ${this.qn} stopped`));
    if (err !== undefined) throw err;
  }

  /** The device reported this qp broken (CQE_ERROR) or it was lost: fail everything. */
  markError(err: KernelError): void {
    if (this.state !== 'running') return;
    this.consume();
    this.state = 'error';
    this.error = err;
    this.failAll(err);
  }

  /** After the function lost its state (reset): nothing will complete any more. */
  markLost(err: KernelError): void {
    if (this.state !== 'running' && this.state !== 'error') return;
    this.state = 'stopped';
    this.failAll(err);
  }

  /** Frees the ring memory; the qp object is dead afterwards. */
  release(): void {
    if (this.released) return;
    this.failAll(new KernelError('ECANCELED', `qp ${this.qn} released`));
    this.state = 'stopped';
    this.released = true;
    this.host.ram.free(this.sqBase);
  }

  private drainByTail(): void {
    const h = this.host;
    const mem = h.ram.mem;
    const done = () => {
      h.mailbox.sendAddr(Mb.SQC, 1, this.qn, h.ctxBuf);
      const sqTail = mem.getU16(h.ctxBuf + 2);
      const sqWrap = mem.getU16(h.ctxBuf + 22) & XQC_W11_TAIL_WRAP;
      h.mailbox.sendAddr(Mb.CQC, 1, this.qn, h.ctxBuf);
      const cqTail = mem.getU16(h.ctxBuf + 2);
      const cqWrap = mem.getU16(h.ctxBuf + 22) & XQC_W11_TAIL_WRAP;
      return sqTail === cqTail && sqWrap === cqWrap;
    };
    if (!pollUntil(h.sched, done, DRAIN_PERIOD_NS, DRAIN_TIMEOUT_NS)) {
      fail('EBUSY', `qp ${this.qn} did not drain`);
    }
  }

  private failAll(err: KernelError): void {
    for (let tag = 0; tag < this.sqDepth; tag++) {
      const req = this.inflight[tag];
      if (req === undefined) continue;
      this.inflight[tag] = undefined;
      this.stats.failed++;
      req.fail(err);
    }
  }

  private resetTags(): void {
    this.freeTop = 0;
    for (let t = this.sqDepth - 1; t >= 0; t--) this.freeTags[this.freeTop++] = t;
  }

  private releaseTag(tag: number): void {
    this.freeTags[this.freeTop++] = tag;
    this.used--;
  }
}
