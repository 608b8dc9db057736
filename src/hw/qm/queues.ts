/**
 * Queue pairs: the cached SQC/CQC of one qp and the SQE -> CQE -> EQE pipeline
 * (qm-hardware.md section 3, "Device behaviour the driver relies on").
 *
 * Context cache. A qp's contexts live in guest memory, in the SQC/CQC arrays whose bases the
 * function set with SQC_BT/CQC_BT. The mailbox SQC/CQC load installs a context in the cache
 * (and writes it through to the array slot); the hardware then updates heads, tails, wrap
 * bits, the CQ phase and c_flag in the cache only. QM_CACHE_WB_START writes every cached
 * context back to its array slot. A doorbell for a qp with nothing cached fetches both
 * contexts from the arrays: that is how a migrated function, whose arrays arrived in guest
 * memory after a write-back on the source, resumes where the source stopped.
 *
 * Processing one SQE: DMA-read it at sq_base + head*sqe_size, hand it to the engine, DMA-write
 * it back in place, write the CQE at the CQ tail with the CQ phase, then (c_flag set) the EQE
 * and the EQ interrupt. c_flag is one-shot: the EQE clears it and the final CQ doorbell with
 * priority 1 sets it again ("set c_flag" in the driver); if CQEs are still unconsumed at that
 * moment the device emits a fresh EQE so no completion goes unannounced.
 *
 * Model rules for guest mistakes (each hurts only this qp):
 * - SQE size in the SQC dw3 different from the engine's, CQE size other than 16, or a
 *   head/tail beyond the depth: AEQE CQE_ERROR, the qp stops until its SQC is reloaded;
 * - SQE fetch or CQE write DMA fault: AEQE CQE_ERROR and the qp stops the same way (an SQE
 *   write-back fault is only counted: the CQE still tells software the job ran);
 * - CQ full ((tail+1) % depth == head): the SQE is not consumed, one AEQE CQ_OVERFLOW is
 *   reported and the qp waits for a CQ doorbell that frees a slot, then resumes on its own.
 * The SQ engine pairs SQ n with CQ n; the SQC cq_num field is kept but not used for routing.
 */
import type { DmaPort } from '../dma.js';
import type { HwVersion } from '../profile.js';
import type { Engine, EngineContext } from './engine-contract.js';
import * as Ctx from './contexts.js';
import * as Regs from './registers.js';

// Imported values are bound to module-local constants: under the tsx/vitest module
// transforms every access to an imported binding is a getter call, too slow for the hot paths.
const {
  CQC_DW6, CQC_DW6_C_FLAG, CQC_DW6_PHASE, CQC_SIZE, CQE, CQE_SIZE, CQE_SIZE_LOG2, SQC_SIZE,
  SQC_W13, XQC, XQC_DW3_DEPTH_MASK, XQC_DW3_SIZE_SHIFT, XQC_W11_TAIL_WRAP, dmaAddr, sqcAlgType,
} = Ctx;
const { AeqeType } = Regs;

/** What the qp pipeline needs from its function. */
export interface QpHost {
  readonly dma: DmaPort;
  readonly engine: Engine;
  readonly paused: boolean;
  emitEqe(qn: number): void;
  /** The EQE for a CQ whose doorbell changed nothing, `delayNs` later (see cqDoorbell). */
  deferEqe(qp: Qp, delayNs: number): void;
  emitAeqe(qn: number, type: number): void;
  readonly stats: QueueStats;
  readonly sqeBuf: Uint8Array;
  readonly tags: TagRing;
}

export interface QueueStats {
  sqesProcessed: number;
  engineErrors: number;
  engineExceptions: number;
  sqeFetchFaults: number;
  sqeWritebackFaults: number;
  cqeWriteFaults: number;
  contextErrors: number;
  cqOverflows: number;
  abandonedAtStop: number;
}

export function newQueueStats(): QueueStats {
  return {
    sqesProcessed: 0, engineErrors: 0, engineExceptions: 0, sqeFetchFaults: 0,
    sqeWritebackFaults: 0, cqeWriteFaults: 0, contextErrors: 0, cqOverflows: 0,
    abandonedAtStop: 0,
  };
}

/** The last completed SQE tags (engine.tagOf), for debug views. */
export class TagRing {
  readonly tags: Uint32Array;
  private next = 0;
  count = 0;
  constructor(size = 256) {
    this.tags = new Uint32Array(size);
  }
  push(tag: number): void {
    this.tags[this.next] = tag >>> 0;
    this.next = (this.next + 1) % this.tags.length;
    this.count++;
  }
  recent(): number[] {
    const n = Math.min(this.count, this.tags.length);
    const out: number[] = [];
    const start = (this.next - n + this.tags.length) % this.tags.length;
    for (let k = 0; k < n; k++) out.push(this.tags[(start + k) % this.tags.length]!);
    return out;
  }
}

function putU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

/** Context w11 with its tail wrap bit (bit 6, in the low byte) replaced by `wrap`. */
function patchTailWrap(b: Uint8Array, wrap: number): void {
  const lo = b[XQC.W11]! & ~XQC_W11_TAIL_WRAP;
  b[XQC.W11] = wrap ? lo | XQC_W11_TAIL_WRAP : lo;
}

const cqeBuf = new Uint8Array(CQE_SIZE);
const cqeView = new DataView(cqeBuf.buffer);

export class Qp {
  /** Raw context bytes as last loaded; live fields are patched in on dump/write-back. */
  readonly sqc = new Uint8Array(SQC_SIZE);
  readonly cqc = new Uint8Array(CQC_SIZE);
  private readonly sqcView = new DataView(this.sqc.buffer);
  private readonly cqcView = new DataView(this.cqc.buffer);
  sqcLoaded = false;
  cqcLoaded = false;

  sqHead = 0;
  sqTail = 0;
  sqWrap = 0;
  sqDepth = 1;
  sqeShift = 0;
  sqBase = 0;

  cqHead = 0;
  cqTail = 0;
  cqWrap = 0;
  cqDepth = 1;
  cqeShift = 0;
  cqBase = 0;
  /** CQC dw6 as loaded, with bit0 (phase) and bit1 (c_flag) kept live. */
  cqDw6 = 0;
  /** Head and tail at the last priority-1 CQ doorbell, and the next re-notify delay. */
  cqDbHead = -1;
  cqDbTail = -1;
  cqRenotifyNs = 0;
  /** A deferred EQE for this CQ is scheduled. */
  cqRenotifyPending = false;
  /** A deferred EQE came due while the function was paused: issued on restart. */
  cqRenotifyHeld = false;

  /** STOP_QP: doorbells are ignored until the SQC is reloaded. */
  stopped = false;
  /** A CQE_ERROR was reported; processing stays off until the SQC is reloaded. */
  error = false;
  /** Waiting for the CQ doorbell after a CQ overflow. */
  stalled = false;
  scheduled = false;
  /** Set when the qp was dropped (reset, VFT shrink): a scheduled run must not touch it. */
  dead = false;
  readonly ctx: EngineContext;
  readonly runner: () => void;

  constructor(readonly qn: number, dma: DmaPort, hwVersion: HwVersion, run: (qp: Qp) => void) {
    this.ctx = { dma, algType: 0, hwVersion };
    this.runner = () => {
      this.scheduled = false;
      if (!this.dead) run(this);
    };
  }

  get cqPhase(): number { return this.cqDw6 & CQC_DW6_PHASE; }
  get cFlag(): boolean { return (this.cqDw6 & CQC_DW6_C_FLAG) !== 0; }
  set cFlag(on: boolean) {
    this.cqDw6 = (on ? this.cqDw6 | CQC_DW6_C_FLAG : this.cqDw6 & ~CQC_DW6_C_FLAG) >>> 0;
  }

  get ready(): boolean {
    return this.sqcLoaded && this.cqcLoaded;
  }

  get hasWork(): boolean {
    return this.sqHead !== this.sqTail;
  }

  loadSqc(bytes: Uint8Array): void {
    this.sqc.set(bytes.length === SQC_SIZE ? bytes : bytes.subarray(0, SQC_SIZE));
    this.sqcFilled();
  }

  /**
   * `sqc` was just filled with a context (a fetch DMA-reads straight into it): take it over.
   * The bytes may be garbage only while the SQC is not loaded, and they are never looked at
   * in that state.
   */
  sqcFilled(): void {
    const v = this.sqcView;
    this.sqHead = v.getUint16(XQC.HEAD, true);
    this.sqTail = v.getUint16(XQC.TAIL, true);
    this.sqWrap = (v.getUint16(XQC.W11, true) & XQC_W11_TAIL_WRAP) !== 0 ? 1 : 0;
    const dw3 = v.getUint32(XQC.DW3, true);
    this.sqDepth = (dw3 & XQC_DW3_DEPTH_MASK) + 1;
    this.sqeShift = (dw3 >>> XQC_DW3_SIZE_SHIFT) & 0xf;
    this.sqBase = dmaAddr(v.getUint32(XQC.BASE_L, true), v.getUint32(XQC.BASE_H, true));
    this.ctx.algType = sqcAlgType(v.getUint16(SQC_W13, true));
    this.sqcLoaded = true;
    this.stopped = false;
    this.error = false;
    this.stalled = false;
  }

  loadCqc(bytes: Uint8Array): void {
    this.cqc.set(bytes.length === CQC_SIZE ? bytes : bytes.subarray(0, CQC_SIZE));
    this.cqcFilled();
  }

  /** `cqc` was just filled with a context: take it over (see sqcFilled). */
  cqcFilled(): void {
    const v = this.cqcView;
    this.cqHead = v.getUint16(XQC.HEAD, true);
    this.cqTail = v.getUint16(XQC.TAIL, true);
    this.cqWrap = (v.getUint16(XQC.W11, true) & XQC_W11_TAIL_WRAP) !== 0 ? 1 : 0;
    const dw3 = v.getUint32(XQC.DW3, true);
    this.cqDepth = (dw3 & XQC_DW3_DEPTH_MASK) + 1;
    this.cqeShift = (dw3 >>> XQC_DW3_SIZE_SHIFT) & 0xf;
    this.cqBase = dmaAddr(v.getUint32(XQC.BASE_L, true), v.getUint32(XQC.BASE_H, true));
    this.cqDw6 = v.getUint32(CQC_DW6, true);
    this.cqcLoaded = true;
    this.stalled = false;
    // A new context starts a new history: the next doorbell notifies at once.
    this.cqDbHead = this.cqDbTail = -1;
    this.cqRenotifyNs = 0;
  }

  /**
   * The SQC as the hardware would write it back: the loaded bytes with the live head, tail
   * and wrap bit. They are patched into `sqc` itself and that buffer is returned (valid
   * until the next load): every patched field is rewritten each time, so the raw copy can
   * carry them, and a write-back of many contexts then copies nothing.
   */
  sqcImage(): Uint8Array {
    const b = this.sqc;
    putU16(b, XQC.HEAD, this.sqHead);
    putU16(b, XQC.TAIL, this.sqTail);
    patchTailWrap(b, this.sqWrap);
    return b;
  }

  /** The CQC as written back (live head, tail, wrap bit, phase and c_flag); see sqcImage. */
  cqcImage(): Uint8Array {
    const b = this.cqc;
    putU16(b, XQC.HEAD, this.cqHead);
    putU16(b, XQC.TAIL, this.cqTail);
    patchTailWrap(b, this.cqWrap);
    const d = this.cqDw6;
    b[CQC_DW6] = d & 0xff;
    b[CQC_DW6 + 1] = (d >>> 8) & 0xff;
    b[CQC_DW6 + 2] = (d >>> 16) & 0xff;
    b[CQC_DW6 + 3] = d >>> 24;
    return b;
  }

  /** SQ doorbell with priority 0: the new tail. False if the index is outside the ring. */
  setSqTail(index: number): boolean {
    if (index >= this.sqDepth) return false;
    if (index < this.sqTail) this.sqWrap ^= 1;
    this.sqTail = index;
    return true;
  }
}

export const Step = { DONE: 0, IDLE: 1, STALL: 2, ERROR: 3 } as const;
export type Step = (typeof Step)[keyof typeof Step];

function fail(host: QpHost, qp: Qp): Step {
  qp.error = true;
  host.emitAeqe(qp.qn, AeqeType.CQE_ERROR);
  return Step.ERROR;
}

/** Processes the SQE at the qp's head, start to finish. */
export function processOne(host: QpHost, qp: Qp): Step {
  if (qp.sqHead === qp.sqTail) return Step.IDLE;
  const engine = host.engine;
  if ((1 << qp.sqeShift) !== engine.sqeSize || qp.cqeShift !== CQE_SIZE_LOG2
    || qp.sqHead >= qp.sqDepth || qp.sqTail >= qp.sqDepth
    || qp.cqHead >= qp.cqDepth || qp.cqTail >= qp.cqDepth) {
    host.stats.contextErrors++;
    return fail(host, qp);
  }
  if ((qp.cqTail + 1) % qp.cqDepth === qp.cqHead) {
    if (!qp.stalled) {
      qp.stalled = true;
      host.stats.cqOverflows++;
      host.emitAeqe(qp.qn, AeqeType.CQ_OVERFLOW);
    }
    return Step.STALL;
  }
  const dma = host.dma;
  const sqe = host.sqeBuf;
  const index = qp.sqHead;
  const sqeAddr = qp.sqBase + index * engine.sqeSize;
  if (!dma.read(sqeAddr, sqe)) {
    host.stats.sqeFetchFaults++;
    return fail(host, qp);
  }
  let ok: boolean;
  try {
    ok = engine.process(sqe, qp.ctx);
  } catch {
    // The engine contract says it never throws; if one does, the job fails like a bad SQE.
    host.stats.engineExceptions++;
    ok = false;
  }
  if (!ok) host.stats.engineErrors++;
  if (!dma.write(sqeAddr, sqe)) host.stats.sqeWritebackFaults++;
  qp.sqHead = index + 1 === qp.sqDepth ? 0 : index + 1;
  host.stats.sqesProcessed++;
  try {
    host.tags.push(engine.tagOf(sqe));
  } catch {
    host.tags.push(0);
  }

  cqeBuf.fill(0);
  cqeView.setUint16(CQE.SQ_HEAD, index, true);
  cqeView.setUint16(CQE.SQ_NUM, qp.qn, true);
  cqeView.setUint16(CQE.W7, qp.cqPhase, true);
  if (!dma.write(qp.cqBase + qp.cqTail * CQE_SIZE, cqeBuf)) {
    host.stats.cqeWriteFaults++;
    return fail(host, qp);
  }
  const next = qp.cqTail + 1;
  if (next === qp.cqDepth) {
    qp.cqTail = 0;
    qp.cqWrap ^= 1;
    qp.cqDw6 = (qp.cqDw6 ^ CQC_DW6_PHASE) >>> 0;
  } else {
    qp.cqTail = next;
  }
  if (qp.cFlag) {
    qp.cFlag = false;
    host.emitEqe(qp.qn);
  }
  return Step.DONE;
}

/** Runs up to `budget` SQEs; returns true when work remains that a later run should do. */
export function runQp(host: QpHost, qp: Qp, budget: number): boolean {
  for (let n = 0; n < budget; n++) {
    if (host.paused || qp.stopped || qp.error || qp.dead || !qp.ready) return false;
    const s = processOne(host, qp);
    if (s !== Step.DONE) return false;
  }
  return !host.paused && !qp.stopped && !qp.error && !qp.dead && qp.ready && qp.hasWork && !qp.stalled;
}

/** STOP_QP / FLUSH_QM: complete everything up to the tail now (bounded by the ring depth). */
export function drainQp(host: QpHost, qp: Qp): void {
  if (!qp.ready || qp.error) return;
  const limit = qp.sqDepth;
  for (let n = 0; n < limit && qp.hasWork; n++) {
    if (qp.stopped || qp.dead || qp.error) return;
    if (processOne(host, qp) !== Step.DONE) break;
  }
}

/** CQ doorbell: software consumed up to `index`; priority 1 re-arms c_flag. */
export function cqDoorbell(host: QpHost, qp: Qp, index: number, priority: number): boolean {
  if (index >= qp.cqDepth) return false;
  qp.cqHead = index;
  if (priority & 1) {
    if (qp.cqHead !== qp.cqTail) {
      // Unconsumed CQEs are notified again. When the doorbell moved nothing since the last
      // one (software found no CQE of the current phase: a hostile or stale CQC), the EQE
      // comes later, with a delay that doubles up to EQ_REARM_MAX_NS, so a driver that rings
      // from its own completion handler cannot loop in zero simulated time.
      if (qp.cqHead !== qp.cqDbHead || qp.cqTail !== qp.cqDbTail) {
        qp.cqRenotifyNs = 0;
        host.emitEqe(qp.qn);
      } else {
        qp.cqRenotifyNs = qp.cqRenotifyNs === 0 ? CQ_RENOTIFY_NS : Math.min(qp.cqRenotifyNs * 2, CQ_RENOTIFY_MAX_NS);
        host.deferEqe(qp, qp.cqRenotifyNs);
      }
      qp.cqDbHead = qp.cqHead;
      qp.cqDbTail = qp.cqTail;
    } else {
      qp.cFlag = true;
      qp.cqDbHead = qp.cqDbTail = -1;
    }
  }
  return true;
}

/** First delay of a CQ re-notification that made no progress, and its ceiling. */
export const CQ_RENOTIFY_NS = 1000;
export const CQ_RENOTIFY_MAX_NS = 256_000;
