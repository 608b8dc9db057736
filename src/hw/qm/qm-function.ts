/**
 * One QM function (the PF or a VF): its BAR2 registers, BAR4 doorbell pages, mailbox, event
 * queues, interrupts and queue pairs (qm-hardware.md sections 1-5 and 8).
 *
 * BAR2 layout (function-relative): the functional registers in the low 32 KiB; for a VF the
 * upper 32 KiB is the migration window (live EQC at 0x8000, AEQC at 0x8020) unless the V4 PF
 * moved it into its own BAR2, in which case the VF's upper half reads all-ones and ignores
 * writes. The PF BAR2 adds the PF-only block from 0x100000 (pf-regs.ts).
 *
 * Reset values [inference, section 1]: EQ/AEQ/IFC masks 1 (masked), QM_VF_STATE 1
 * (QM_NOT_READY), everything else 0; profile `resetValues` override these.
 *
 * Doorbells: SQ/CQ doorbells are 64-bit writes at 0x1000 (or, with QM_QUE_ISO_CFG bit0, at
 * BAR4 qn*0x10000 + 0x1000, where the page and not the qn field selects the qp); EQ/AEQ
 * doorbells are 64-bit writes at 0x2000. A narrower write to a doorbell, a doorbell on the
 * path isolation does not select, a command that does not belong to the register, a qn at
 * or beyond qp_num or an index beyond the ring is ignored and counted. The V1 doorbell at
 * 0x340 reads 0 and ignores writes (profiles are V2+).
 *
 * Pause and restart (PAUSE_QM): a paused function fetches no more SQEs; an SQE being
 * processed always finishes (processing is atomic per SQE). Doorbells still update the
 * cached tails, so nothing submitted is lost. An SQ doorbell with priority 1 (what the
 * vendor driver rings, index 0, on every qp to start a device) un-pauses the function and
 * resumes that qp from its context head to its context tail; the index is ignored because
 * the context, not the doorbell, knows the tail. On a migration destination the context
 * comes from the SQC/CQC arrays the source wrote back (QM_CACHE_WB_START), so every SQE
 * submitted but not completed on the source completes exactly once on the destination.
 */
import type { AccessOrigin, DmaPort, MsiSink } from '../dma.js';
import type { MmioRegion } from '../mmio.js';
import type { HwVersion } from '../profile.js';
import { AuditLog } from './audit.js';
import * as Ctx from './contexts.js';
import type { Engine } from './engine-contract.js';
import * as EqNs from './eq.js';
import { EventQueue } from './eq.js';
import { type DeviceFaults, FunctionFaults } from './faults.js';
import { IrqLines } from './irq.js';
import * as MailboxNs from './mailbox.js';
import { MailboxRegs, type MailboxClient, type MailboxCommand, type MailboxResult } from './mailbox.js';
import * as MigWin from './migration-window.js';
import * as Mmio from './mmio-access.js';
import type { DwordRegs } from './mmio-access.js';
import * as PfRegs from './pf-regs.js';
import type { QmDevice } from './qm-device.js';
import * as Queues from './queues.js';
import { type QpHost, type QueueStats, Qp, TagRing } from './queues.js';
import * as Regs from './registers.js';

// Imported values are bound to module-local constants: under the tsx/vitest module
// transforms every access to an imported binding is a getter call, too slow for the hot paths.
const { CQC_SIZE, SQC_SIZE, XEQC_SIZE, aeqeValue, dmaAddr } = Ctx;
const { statusResult } = MailboxNs;
const { PushResult } = EqNs;
const { migWindowRead, migWindowWrite } = MigWin;
const { accessOk, allOnes, read64Split, readSized, write64Split, writeSized } = Mmio;
const { PF_REGS_BASE } = PfRegs;
const { cqDoorbell, drainQp, newQueueStats, runQp } = Queues;
const {
  AeqeType, Cap, DbCmd, MbCmd, MbStatus, QM_AEQC_DW0, QM_CACHE_WB_DONE, QM_CACHE_WB_START,
  QM_DB_ISO_INTERVAL, QM_DB_ISO_SQ_CQ, QM_DOORBELL_EQ_AEQ_BASE_V2, QM_DOORBELL_SQ_CQ_BASE_V2,
  QM_ENGINE_CAP_FIRST, QM_ENGINE_CAP_LAST, QM_EQC_DW0, QM_EXT_BAR_INDEX, QM_FUNC_CAPS_REG,
  QM_FUNC_CAPS_V3_DEFAULT, QM_IFC_INT_MASK, QM_IFC_INT_SET_V, QM_IFC_INT_SOURCE_V,
  QM_IFC_INT_STATUS, QM_IRQ_NUM_CAP, QM_MB_CMD_SEND_BASE, QM_NOT_READY, QM_PAGE_SIZE,
  QM_PF2VF_VF_R, QM_QP_DEPTH_CAP, QM_QUE_ISO_CFG_V, QM_SUB_VERSION_ID, QM_VF2PF_VF_W,
  QM_VF_AEQ_INT_MASK, QM_VF_AEQ_INT_SOURCE, QM_VF_EQ_INT_MASK, QM_VF_EQ_INT_SOURCE,
  QM_VF_STATE, QM_XEQ_DEPTH_CAP, QM_ABNORMAL_INT_STATUS, QM_VFT_CFG_RDY, QM_IFC_READY_STATUS, VF_BAR2_HALF, VF_BAR2_SIZE, Vector, VftType,
  QM_EQ_IRQ_TYPE_CAP, QM_AEQ_IRQ_TYPE_CAP, QM_ABN_IRQ_TYPE_CAP, QM_PF2VF_IRQ_TYPE_CAP,
} = Regs;

/** Ignored doorbells by cause. */
export interface DoorbellStats {
  rung: number;
  outOfRange: number;
  noContext: number;
  badIndex: number;
  badCmd: number;
  stoppedQp: number;
  narrowWrite: number;
  wrongPath: number;
}

export interface QpSnapshot {
  qn: number;
  sqcLoaded: boolean;
  cqcLoaded: boolean;
  sqHead: number;
  sqTail: number;
  sqWrap: number;
  sqDepth: number;
  sqBase: number;
  algType: number;
  cqHead: number;
  cqTail: number;
  cqWrap: number;
  cqPhase: number;
  cFlag: boolean;
  cqDepth: number;
  cqBase: number;
  stopped: boolean;
  error: boolean;
  stalled: boolean;
}

export interface EqSnapshot {
  head: number;
  tail: number;
  depth: number;
  phase: number;
  base: number;
  dw: number[];
}

export interface FunctionSnapshot {
  index: number;
  qpBase: number;
  qpNum: number;
  attached: boolean;
  paused: boolean;
  vfState: number;
  pageSize: number;
  mailboxBusy: boolean;
  sqcBt: number | null;
  cqcBt: number | null;
  writebackDone: boolean;
  eq: EqSnapshot;
  aeq: EqSnapshot;
  masks: { eq: boolean; aeq: boolean; ifc: boolean };
  pendingIrq: { eq: boolean; aeq: boolean; ifc: boolean };
  irq: { sent: number; heldPending: number; dropped: number; perVector: number[] };
  doorbells: DoorbellStats;
  queues: QueueStats;
  mailbox: { latched: number; droppedWhileBusy: number; failed: number };
  eventDrops: { eqFull: number; eqBroken: number; aeqLost: number; dmaFaults: number };
  qps: QpSnapshot[];
  recentTags: number[];
}

/**
 * Delay of the interrupt an EQ/AEQ doorbell re-raises for entries still unconsumed [inference:
 * the hardware re-evaluates the queue after the doorbell; 1 us keeps a driver's interrupt
 * loop from spinning in zero simulated time].
 */
export const EQ_REARM_NS = 1000;
/**
 * Ceiling of the re-raise delay. A doorbell that moved neither head nor tail since the last one
 * (the driver found nothing to consume) doubles the delay up to this, as interrupt moderation
 * would: a ring the driver cannot read (a hostile or stale EQC) then costs a few interrupts
 * per millisecond instead of one per microsecond forever. Progress resets it to EQ_REARM_NS.
 */
export const EQ_REARM_MAX_NS = 256_000;

const NO_DMA: DmaPort = { read: () => false, write: () => false };

export interface QmLatencies {
  processNs: number;
  mailboxNs: number;
  irqNs: number;
  wbNs: number;
}

export class QmFunction implements QpHost, MailboxClient {
  readonly isPf: boolean;
  readonly bar2: MmioRegion;
  readonly bar4: MmioRegion;
  readonly audit = new AuditLog();
  readonly faults: FunctionFaults;
  readonly mailbox = new MailboxRegs();
  readonly irq: IrqLines;
  readonly eq = new EventQueue();
  readonly aeq = new EventQueue();
  readonly stats: QueueStats = newQueueStats();
  readonly doorbellStats: DoorbellStats = {
    rung: 0, outOfRange: 0, noContext: 0, badIndex: 0, badCmd: 0, stoppedQp: 0, narrowWrite: 0,
    wrongPath: 0,
  };
  readonly eventDrops = { aeqLost: 0 };
  readonly sqeBuf: Uint8Array;
  readonly tags = new TagRing();
  readonly engine: Engine;
  /** The function's DMA as engines and the pipeline see it: forwards to the attached port. */
  readonly dma: DmaPort;

  private port: DmaPort = NO_DMA;
  private attachedFlag = false;
  private qps: (Qp | undefined)[] = [];
  private cachedQpNum = 0;
  private cachedQpBase = 0;
  private sqcBtL = 0;
  private sqcBtH = 0;
  private sqcBtValid = false;
  private cqcBtL = 0;
  private cqcBtH = 0;
  private cqcBtValid = false;
  private pageSize = 0;
  private vfState = QM_NOT_READY;
  private wbDone = 0;
  private wbPending = false;
  private epoch = 0;
  private pausedFlag = false;
  private removed = false;
  /** Bit per vector: an EQ/AEQ re-raise is scheduled (see eqDoorbell). */
  private rearmPending = 0;
  /** Per vector (EQ, AEQ): the next re-raise delay, head/tail at the last doorbell, and the due time and sequence number of the re-raise in flight. */
  private readonly rearm = { delay: [EQ_REARM_NS, EQ_REARM_NS], head: [-1, -1], tail: [-1, -1], due: [0, 0], seq: [0, 0] };
  private readonly ctxBuf = new Uint8Array(SQC_SIZE);
  /** Staging for write-back bursts (grown to qp_num contexts on first use). */
  private wbBuf = new Uint8Array(0);
  private readonly mbResult: MailboxResult = { status: MbStatus.OK, dataL: 0, dataH: 0 };
  private readonly xeqcBuf = new Uint8Array(XEQC_SIZE);
  private readonly hw: HwVersion;
  private readonly resetOverrides: [number, number][];
  private readonly lowRegs: DwordRegs;

  constructor(private readonly dev: QmDevice, readonly index: number) {
    this.isPf = index === 0;
    this.engine = dev.engine;
    this.hw = dev.profile.hwVersion;
    this.sqeBuf = new Uint8Array(dev.engine.sqeSize);
    const vectors = this.isPf ? dev.profile.msi.pfVectors : dev.profile.msi.vfVectors;
    this.irq = new IrqLines(dev.scheduler, dev.latencies.irqNs, vectors);
    this.faults = new FunctionFaults({
      onMailboxResume: () => dev.mailboxEngine.unpark(this),
      onWritebackResume: () => { if (this.wbPending) this.scheduleWriteback(); },
    });
    this.dma = {
      read: (iova, dst) => this.port.read(iova, dst),
      write: (iova, src) => this.port.write(iova, src),
      readView: (iova, len) => this.port.readView?.(iova, len) ?? null,
    };
    this.resetOverrides = Object.entries(dev.profile.resetValues ?? {})
      .map(([k, v]) => [Number.parseInt(k, 16), Number(v) >>> 0] as [number, number])
      .filter(([k]) => Number.isInteger(k));
    this.lowRegs = { readDw: (o) => this.readDw(o), writeDw: (o, v, m) => this.writeDw(o, v, m) };
    const bar2Size = this.isPf ? (dev.profile.bars.pf['2'] ?? 0x400000) : VF_BAR2_SIZE;
    const bar4Size = (this.isPf ? dev.profile.bars.pf['4'] : dev.profile.bars.vf['4']) ?? 0;
    this.bar2 = new Bar2Region(this, bar2Size);
    this.bar4 = new Bar4Region(this, bar4Size);
    this.onVftChanged();
    this.resetState();
  }

  // ---------------------------------------------------------------- public API

  /** The PCI layer provides the bus-master-gated DMA port and the MSI signaller. */
  attach(io: { dma: DmaPort; msi: MsiSink }): void {
    this.port = io.dma;
    this.irq.attach(io.msi);
    this.attachedFlag = true;
  }

  detach(): void {
    this.port = NO_DMA;
    this.irq.attach(null);
    this.attachedFlag = false;
  }

  /** Function-level reset (FLR): registers to reset values, queues stopped, contexts dropped. */
  reset(): void {
    if (this.isPf) {
      this.dev.resetDevice();
      return;
    }
    this.resetState();
  }

  get qpBase(): number { return this.cachedQpBase; }
  get qpNum(): number { return this.cachedQpNum; }
  get paused(): boolean { return this.pausedFlag; }
  get attached(): boolean { return this.attachedFlag; }
  get mailboxHung(): boolean { return this.faults.mailboxHang; }
  /** @internal The device-wide fault switches (the BAR2 region checks the tap on reads). */
  get deviceFaults(): DeviceFaults { return this.dev.faults; }

  debugSnapshot(): FunctionSnapshot {
    const eqs = (q: EventQueue): EqSnapshot => ({
      head: q.head, tail: q.tail, depth: q.depth, phase: q.phase, base: q.base, dw: Array.from(q.dw),
    });
    const qps: QpSnapshot[] = [];
    for (const qp of this.qps) {
      if (!qp) continue;
      qps.push({
        qn: qp.qn, sqcLoaded: qp.sqcLoaded, cqcLoaded: qp.cqcLoaded, sqHead: qp.sqHead,
        sqTail: qp.sqTail, sqWrap: qp.sqWrap, sqDepth: qp.sqDepth, sqBase: qp.sqBase,
        algType: qp.ctx.algType, cqHead: qp.cqHead, cqTail: qp.cqTail, cqWrap: qp.cqWrap,
        cqPhase: qp.cqPhase, cFlag: qp.cFlag, cqDepth: qp.cqDepth, cqBase: qp.cqBase,
        stopped: qp.stopped, error: qp.error, stalled: qp.stalled,
      });
    }
    return {
      index: this.index,
      qpBase: this.qpBase,
      qpNum: this.qpNum,
      attached: this.attachedFlag,
      paused: this.pausedFlag,
      vfState: this.readDw(QM_VF_STATE),
      pageSize: this.pageSize,
      mailboxBusy: this.mailbox.busy,
      sqcBt: this.sqcBtValid ? dmaAddr(this.sqcBtL, this.sqcBtH) : null,
      cqcBt: this.cqcBtValid ? dmaAddr(this.cqcBtL, this.cqcBtH) : null,
      writebackDone: this.wbDone === 1,
      eq: eqs(this.eq),
      aeq: eqs(this.aeq),
      masks: { eq: this.irq.isMasked(Vector.EQ), aeq: this.irq.isMasked(Vector.AEQ), ifc: this.irq.isMasked(Vector.IFC) },
      pendingIrq: { eq: this.irq.isPending(Vector.EQ), aeq: this.irq.isPending(Vector.AEQ), ifc: this.irq.isPending(Vector.IFC) },
      irq: { ...this.irq.counters, perVector: Array.from(this.irq.perVector) },
      doorbells: { ...this.doorbellStats },
      queues: { ...this.stats },
      mailbox: { ...this.mailbox.counters },
      eventDrops: {
        eqFull: this.eq.counters.full, eqBroken: this.eq.counters.broken + this.aeq.counters.broken,
        aeqLost: this.eventDrops.aeqLost, dmaFaults: this.eq.counters.dmaFaults + this.aeq.counters.dmaFaults,
      },
      qps,
      recentTags: this.tags.recent(),
    };
  }

  // ---------------------------------------------------------------- device-facing hooks

  /** The VFT changed: refresh qp_base/qp_num and drop qps the function no longer owns. */
  onVftChanged(): void {
    this.cachedQpNum = this.dev.vft.qpNum(this.index);
    this.cachedQpBase = this.dev.vft.qpBase(this.index);
    for (let qn = this.cachedQpNum; qn < this.qps.length; qn++) {
      const qp = this.qps[qn];
      if (qp) qp.dead = true;
    }
    if (this.qps.length > this.cachedQpNum) this.qps.length = this.cachedQpNum;
  }

  /** VF removal: nothing scheduled may touch this function again. */
  markRemoved(): void {
    this.removed = true;
    this.dev.mailboxEngine.cancel(this);
    this.killQps();
    this.epoch++;
    this.detach();
  }

  resetState(): void {
    this.dev.mailboxEngine.cancel(this);
    this.mailbox.reset();
    this.irq.reset();
    if (this.isPf) this.irq.setMasked(Vector.ABNORMAL, false);
    this.eq.reset();
    this.aeq.reset();
    this.killQps();
    this.sqcBtL = this.sqcBtH = 0;
    this.sqcBtValid = false;
    this.cqcBtL = this.cqcBtH = 0;
    this.cqcBtValid = false;
    this.pageSize = 0;
    this.vfState = QM_NOT_READY;
    this.wbDone = 0;
    this.wbPending = false;
    this.pausedFlag = false;
    this.rearmPending = 0;
    this.resetRearm();
    this.epoch++;
    if (!this.isPf) this.dev.ifc.resetVf(this.index);
    for (const [off, val] of this.resetOverrides) this.applyResetValue(off, val);
  }

  raise(vector: number): void {
    if (!this.removed) this.irq.raise(vector);
  }

  // ---------------------------------------------------------------- MMIO

  /** @internal BAR2 dword read, function-relative offset, no audit. */
  readDw(off: number): number {
    if (off >= VF_BAR2_HALF) {
      if (this.isPf) return off >= PF_REGS_BASE ? this.dev.pfRegs.readDw(off) : 0;
      if (this.dev.pfRegs.migRegionInPf) return 0xffffffff;
      return migWindowRead(this.eq, this.aeq, off - VF_BAR2_HALF, QM_EQC_DW0 - VF_BAR2_HALF, QM_AEQC_DW0 - VF_BAR2_HALF);
    }
    if (off >= QM_FUNC_CAPS_REG && off <= QM_ENGINE_CAP_LAST) return this.capRead(off);
    if (off >= QM_MB_CMD_SEND_BASE && off < QM_MB_CMD_SEND_BASE + 16) {
      return this.mailbox.read((off - QM_MB_CMD_SEND_BASE) >>> 2);
    }
    const ifc = this.dev.ifc;
    const v3 = this.hw !== 'v2';
    switch (off) {
      case QM_VF_AEQ_INT_SOURCE: return this.irq.sourceBit(Vector.AEQ);
      case QM_VF_AEQ_INT_MASK: return this.irq.isMasked(Vector.AEQ) ? 1 : 0;
      case QM_VF_EQ_INT_SOURCE: return this.irq.sourceBit(Vector.EQ);
      case QM_VF_EQ_INT_MASK: return this.irq.isMasked(Vector.EQ) ? 1 : 0;
      case QM_IFC_INT_SOURCE_V: return v3 ? this.ifcSource() : 0;
      case QM_IFC_INT_MASK: return v3 && this.irq.isMasked(Vector.IFC) ? 1 : 0;
      // faults.ts ifcStatusStuck: a pending bit that never clears, visible even when masked
      case QM_IFC_INT_STATUS:
        return v3 ? ((!this.irq.isMasked(Vector.IFC) ? this.ifcSource() : 0) | this.faults.ifcStatusForce) : 0;
      case QM_IFC_INT_SET_V: return v3 && !this.isPf ? ifc.vfSetBit(this.index) | this.faults.ifcSetForce : 0;
      case QM_QUE_ISO_CFG_V: return v3 ? this.dev.pfRegs.queIsoCfg : 0;
      case QM_PAGE_SIZE: return this.pageSize;
      case QM_VF_STATE: return this.faults.notReady ? QM_NOT_READY : this.vfState;
      case QM_CACHE_WB_START: return 0;
      case QM_CACHE_WB_DONE: return this.wbDone;
      case QM_SUB_VERSION_ID: return this.dev.profile.pci.subVersionId >>> 0;
      default: break;
    }
    if (this.hw === 'v4' && !this.isPf) {
      if (off === QM_VF2PF_VF_W || off === QM_VF2PF_VF_W + 4) return ifc.vf2pfRead(this.index, (off - QM_VF2PF_VF_W) >>> 2);
      if (off === QM_PF2VF_VF_R || off === QM_PF2VF_VF_R + 4) return ifc.pf2vfForVf(this.index, (off - QM_PF2VF_VF_R) >>> 2);
    }
    return 0;
  }

  /** @internal BAR2 dword write under `mask`, function-relative offset, no audit. */
  writeDw(off: number, value: number, mask: number): void {
    if (off >= VF_BAR2_HALF) {
      if (this.isPf) {
        if (off >= PF_REGS_BASE) this.dev.pfRegs.writeDw(off, value, mask);
        return;
      }
      if (this.dev.pfRegs.migRegionInPf) return;
      migWindowWrite(this.eq, this.aeq, off - VF_BAR2_HALF, QM_EQC_DW0 - VF_BAR2_HALF, QM_AEQC_DW0 - VF_BAR2_HALF, value, mask);
      return;
    }
    if (off >= QM_MB_CMD_SEND_BASE && off < QM_MB_CMD_SEND_BASE + 16) {
      if (this.mailbox.write((off - QM_MB_CMD_SEND_BASE) >>> 2, value, mask)) {
        const faults = this.dev.faults;
        if (faults.tap !== null) {
          const c = this.mailbox.command();
          faults.tapMailbox(this.index, c.cmd, c.op, c.queue);
        }
        this.dev.mailboxEngine.submit(this);
      }
      return;
    }
    if (off === QM_DOORBELL_SQ_CQ_BASE_V2 || off === QM_DOORBELL_SQ_CQ_BASE_V2 + 4
      || off === QM_DOORBELL_EQ_AEQ_BASE_V2 || off === QM_DOORBELL_EQ_AEQ_BASE_V2 + 4) {
      this.doorbellStats.narrowWrite++;
      return;
    }
    const v = value & mask;
    const bit0 = (mask & 1) !== 0;
    const v3 = this.hw !== 'v2';
    const ifc = this.dev.ifc;
    switch (off) {
      case QM_VF_AEQ_INT_SOURCE: if (v & 1) this.irq.clearSource(Vector.AEQ); return;
      case QM_VF_EQ_INT_SOURCE: if (v & 1) this.irq.clearSource(Vector.EQ); return;
      case QM_VF_AEQ_INT_MASK: if (bit0) this.irq.setMasked(Vector.AEQ, (v & 1) === 1); return;
      case QM_VF_EQ_INT_MASK: if (bit0) this.irq.setMasked(Vector.EQ, (v & 1) === 1); return;
      case QM_IFC_INT_SOURCE_V: if (v3 && !this.isPf) ifc.vfAck(this.index, v); return;
      case QM_IFC_INT_MASK: if (v3 && bit0) this.irq.setMasked(Vector.IFC, (v & 1) === 1); return;
      case QM_IFC_INT_SET_V: if (v3 && !this.isPf) ifc.vfTrigger(this.index, v); return;
      case QM_PAGE_SIZE: this.pageSize = ((this.pageSize & ~mask) | v) & 0x3; return;
      case QM_VF_STATE: if (bit0) this.vfState = v & 1; return;
      case QM_CACHE_WB_START:
        if (v & 1) {
          if (this.dev.faults.tap !== null) this.dev.faults.tapWritebackStart(this.index);
          this.startWriteback();
        }
        return;
      default: break;
    }
    if (this.hw === 'v4' && !this.isPf && (off === QM_VF2PF_VF_W || off === QM_VF2PF_VF_W + 4)) {
      ifc.vf2pfWrite(this.index, (off - QM_VF2PF_VF_W) >>> 2, value, mask);
    }
  }

  /** @internal A single 64-bit BAR2 store: doorbells are only honoured this way. */
  write64(off: number, lo: number, hi: number): void {
    if (off === QM_DOORBELL_SQ_CQ_BASE_V2) {
      if (this.dev.pfRegs.doorbellIsolation) {
        this.doorbellStats.wrongPath++;
        return;
      }
      this.sqCqDoorbell(lo & 0xfff, lo, hi);
      return;
    }
    if (off === QM_DOORBELL_EQ_AEQ_BASE_V2) {
      this.eqDoorbell(lo, hi);
      return;
    }
    if ((off & 3) === 0) {
      this.writeDw(off, lo >>> 0, 0xffffffff);
      this.writeDw(off + 4, hi >>> 0, 0xffffffff);
      return;
    }
    write64Split(this.lowRegs, off, lo, hi);
  }

  /** @internal BAR4 64-bit store (doorbell pages under isolation). */
  bar4Write64(off: number, lo: number, hi: number): void {
    if ((off & (QM_DB_ISO_INTERVAL - 1)) !== QM_DB_ISO_SQ_CQ) return;
    if (!this.dev.pfRegs.doorbellIsolation) {
      this.doorbellStats.wrongPath++;
      return;
    }
    this.sqCqDoorbell(Math.floor(off / QM_DB_ISO_INTERVAL), lo, hi);
  }

  /** @internal */
  bar4NarrowWrite(off: number): void {
    if ((off & ((QM_DB_ISO_INTERVAL - 1) & ~7)) === QM_DB_ISO_SQ_CQ) this.doorbellStats.narrowWrite++;
  }

  /**
   * @internal A non-guest read of BAR2 offset `off` is about to happen: if it is a status
   * register a driver polls, the device's fault tap sees it first.
   */
  tapRead(off: number, origin: AccessOrigin): void {
    const faults = this.dev.faults;
    if (faults.tap === null || origin === 'guest') return;
    const dw = off - (off & 3);
    let polled = dw === QM_MB_CMD_SEND_BASE || dw === QM_VF_STATE || dw === QM_CACHE_WB_DONE
      || dw === QM_IFC_INT_STATUS || dw === QM_IFC_INT_SET_V;
    if (!polled && this.isPf) {
      polled = dw === QM_ABNORMAL_INT_STATUS || dw === QM_VFT_CFG_RDY || dw === QM_IFC_READY_STATUS
        || dw === this.dev.pfRegs.engineStatusOff;
    }
    if (polled) faults.tapStatusRead(this.index, dw, origin);
  }

  /** @internal */
  get regs(): DwordRegs {
    return this.lowRegs;
  }

  /** @internal */
  get now(): number {
    return this.dev.scheduler.now;
  }

  // ---------------------------------------------------------------- doorbells

  private sqCqDoorbell(qn: number, lo: number, hi: number): void {
    if (this.removed) return;
    this.doorbellStats.rung++;
    const cmd = (lo >>> 12) & 0xf;
    const index = hi & 0xffff;
    const priority = (hi >>> 16) & 1;
    if (cmd !== DbCmd.SQ && cmd !== DbCmd.CQ) {
      this.doorbellStats.badCmd++;
      return;
    }
    if (qn >= this.cachedQpNum) {
      this.doorbellStats.outOfRange++;
      return;
    }
    if (cmd === DbCmd.SQ && priority === 1 && this.pausedFlag) this.unpause();
    const qp = this.qpForDoorbell(qn);
    if (qp === null) {
      this.doorbellStats.noContext++;
      return;
    }
    if (cmd === DbCmd.SQ) {
      if (qp.stopped) {
        this.doorbellStats.stoppedQp++;
        return;
      }
      if (priority === 0 && !qp.setSqTail(index)) {
        this.doorbellStats.badIndex++;
        return;
      }
      this.scheduleQp(qp);
      return;
    }
    if (!qp.cqcLoaded) {
      this.doorbellStats.noContext++;
      return;
    }
    if (!cqDoorbell(this, qp, index, priority)) {
      this.doorbellStats.badIndex++;
      return;
    }
    if (qp.stalled && (qp.cqTail + 1) % qp.cqDepth !== qp.cqHead) {
      qp.stalled = false;
      this.scheduleQp(qp);
    }
  }

  private eqDoorbell(lo: number, hi: number): void {
    if (this.removed) return;
    this.doorbellStats.rung++;
    const cmd = (lo >>> 12) & 0xf;
    const index = hi & 0xffff;
    let q: EventQueue;
    let vec: number;
    if (cmd === DbCmd.EQ) {
      q = this.eq;
      vec = Vector.EQ;
    } else if (cmd === DbCmd.AEQ) {
      q = this.aeq;
      vec = Vector.AEQ;
    } else {
      this.doorbellStats.badCmd++;
      return;
    }
    if (!q.setHead(index)) {
      this.doorbellStats.badIndex++;
      return;
    }
    this.irq.clearSource(vec);
    // Entries the driver has not consumed yet get a fresh interrupt, so a driver that stops
    // after eq_depth/2-1 entries, or a restored queue, does not wait for the next event.
    // It comes EQ_REARM_NS later through the scheduler, never inside the doorbell write: a
    // guest whose ring shows no entry of the current phase (a hostile or stale EQC) would
    // otherwise ring, be interrupted and ring again without simulated time ever moving.
    const r = this.rearm;
    const k = vec === Vector.EQ ? 0 : 1;
    if (q.head !== r.head[k] || q.tail !== r.tail[k]) r.delay[k] = EQ_REARM_NS;
    else r.delay[k] = Math.min(r.delay[k]! * 2, EQ_REARM_MAX_NS);
    r.head[k] = q.head;
    r.tail[k] = q.tail;
    if (q.tail !== q.head && q.head < q.depth && q.tail < q.depth) this.scheduleRearm(vec, r.delay[k]!);
  }

  private resetRearm(): void {
    const r = this.rearm;
    r.delay[0] = r.delay[1] = EQ_REARM_NS;
    r.head[0] = r.head[1] = r.tail[0] = r.tail[1] = -1;
  }

  private scheduleRearm(vec: number, delayNs: number): void {
    const bit = 1 << vec;
    const k = vec === Vector.EQ ? 0 : 1;
    const r = this.rearm;
    const due = this.dev.scheduler.now + delayNs;
    // One re-raise in flight per vector; a shorter delay (progress since) brings it forward,
    // and the later one then finds itself superseded.
    if ((this.rearmPending & bit) !== 0 && due >= r.due[k]!) return;
    this.rearmPending |= bit;
    r.due[k] = due;
    const seq = ++r.seq[k]!;
    const ep = this.epoch;
    this.dev.scheduler.schedule(delayNs, () => {
      if (ep !== this.epoch || seq !== r.seq[k]) return;
      this.rearmPending &= ~bit;
      const q = vec === Vector.EQ ? this.eq : this.aeq;
      // Re-checked at delivery: a doorbell in between may have consumed everything.
      if (!this.removed && q.tail !== q.head && q.head < q.depth && q.tail < q.depth) this.irq.raise(vec);
    });
  }

  /** The cached qp, fetching missing contexts from the SQC/CQC arrays; null if no SQC. */
  private qpForDoorbell(qn: number): Qp | null {
    let qp = this.qps[qn];
    if (!qp) qp = this.newQp(qn);
    if (!qp.sqcLoaded) this.fetchContext(qp, true);
    if (!qp.cqcLoaded) this.fetchContext(qp, false);
    return qp.sqcLoaded ? qp : null;
  }

  private fetchContext(qp: Qp, sqc: boolean): boolean {
    const valid = sqc ? this.sqcBtValid : this.cqcBtValid;
    if (!valid) return false;
    const base = sqc ? dmaAddr(this.sqcBtL, this.sqcBtH) : dmaAddr(this.cqcBtL, this.cqcBtH);
    // Straight into the qp's context buffer: while a context is not loaded its bytes are
    // never used, so a failed read there does no harm.
    if (!this.port.read(base + qp.qn * SQC_SIZE, sqc ? qp.sqc : qp.cqc)) return false;
    if (sqc) qp.sqcFilled();
    else qp.cqcFilled();
    return true;
  }

  private newQp(qn: number): Qp {
    const qp = new Qp(qn, this.dma, this.hw, (q) => this.runScheduled(q));
    this.qps[qn] = qp;
    return qp;
  }

  private killQps(): void {
    for (const qp of this.qps) if (qp) qp.dead = true;
    this.qps = [];
  }

  private scheduleQp(qp: Qp): void {
    if (qp.scheduled || qp.dead || !qp.ready || !qp.hasWork || this.pausedFlag) return;
    qp.scheduled = true;
    this.dev.scheduler.schedule(this.dev.latencies.processNs, qp.runner);
  }

  private runScheduled(qp: Qp): void {
    if (this.removed) return;
    const budget = this.dev.latencies.processNs > 0 ? 1 : qp.sqDepth;
    if (runQp(this, qp, budget)) this.scheduleQp(qp);
  }

  private unpause(): void {
    this.pausedFlag = false;
    for (const qp of this.qps) {
      if (!qp) continue;
      if (qp.cqRenotifyHeld) {
        qp.cqRenotifyHeld = false;
        if (qp.ready && qp.cqHead !== qp.cqTail) this.emitEqe(qp.qn);
      }
      this.scheduleQp(qp);
    }
  }

  // ---------------------------------------------------------------- events

  emitEqe(qn: number): void {
    const r = this.eq.push(qn & 0xffff, this.dma);
    if (r === PushResult.OK) {
      this.irq.raise(Vector.EQ);
    } else if (r === PushResult.FULL && !this.eq.overflowReported) {
      this.eq.overflowReported = true;
      this.emitAeqe(qn, AeqeType.EQ_OVERFLOW);
    }
  }

  deferEqe(qp: Qp, delayNs: number): void {
    if (qp.cqRenotifyPending) return;
    qp.cqRenotifyPending = true;
    this.dev.scheduler.schedule(delayNs, () => {
      qp.cqRenotifyPending = false;
      // Re-checked at delivery: the qp may be gone, or software consumed everything since.
      if (qp.dead || this.removed || !qp.ready || qp.cqHead === qp.cqTail) return;
      // A paused function writes nothing to memory (the migration harvests RAM after the
      // pause and before it reads the EQC): hold the EQE until the queues restart.
      if (this.pausedFlag) qp.cqRenotifyHeld = true;
      else this.emitEqe(qp.qn);
    });
  }

  emitAeqe(qn: number, type: number): void {
    const r = this.aeq.push(aeqeValue(qn, 0, type), this.dma);
    if (r === PushResult.OK) this.irq.raise(Vector.AEQ);
    else this.eventDrops.aeqLost++;
  }

  // ---------------------------------------------------------------- cache write-back

  private startWriteback(): void {
    this.wbDone = 0;
    this.wbPending = true;
    if (!this.faults.writebackHang) this.scheduleWriteback();
  }

  private scheduleWriteback(): void {
    const ns = this.dev.latencies.wbNs;
    if (ns <= 0) {
      this.finishWriteback();
      return;
    }
    const ep = this.epoch;
    this.dev.scheduler.schedule(ns, () => { if (ep === this.epoch) this.finishWriteback(); });
  }

  private finishWriteback(): void {
    if (!this.wbPending || this.faults.writebackHang) return;
    if (this.sqcBtValid) this.writeBackArray(dmaAddr(this.sqcBtL, this.sqcBtH), true);
    if (this.cqcBtValid) this.writeBackArray(dmaAddr(this.cqcBtL, this.cqcBtH), false);
    this.wbPending = false;
    this.wbDone = 1;
  }

  /**
   * Writes every cached context of one array back to its slot. Contexts of consecutive qps
   * go out as one burst [inference: the write-back engine streams the cache in qp order; a
   * burst the IOMMU refuses writes none of its slots, as a single DMA transaction would].
   */
  private writeBackArray(base: number, sqc: boolean): void {
    const qps = this.qps;
    const n = qps.length;
    const port = this.port;
    const size = sqc ? SQC_SIZE : CQC_SIZE;
    let qn = 0;
    while (qn < n) {
      const first = qps[qn];
      if (first === undefined || !(sqc ? first.sqcLoaded : first.cqcLoaded)) {
        qn++;
        continue;
      }
      let end = qn + 1;
      for (; end < n; end++) {
        const qp = qps[end];
        if (qp === undefined || !(sqc ? qp.sqcLoaded : qp.cqcLoaded)) break;
      }
      if (end - qn === 1) {
        port.write(base + qn * size, sqc ? first.sqcImage() : first.cqcImage());
      } else {
        const len = (end - qn) * size;
        if (this.wbBuf.length < len) this.wbBuf = new Uint8Array(Math.max(len, this.cachedQpNum * size));
        const buf = this.wbBuf;
        for (let k = qn; k < end; k++) {
          const qp = qps[k]!;
          buf.set(sqc ? qp.sqcImage() : qp.cqcImage(), (k - qn) * size);
        }
        port.write(base + qn * size, len === buf.length ? buf : buf.subarray(0, len));
      }
      qn = end;
    }
  }

  // ---------------------------------------------------------------- mailbox commands

  runMailbox(): void {
    if (this.removed) return;
    this.mailbox.complete(this.execute(this.mailbox.command()));
  }

  private hasCap(bit: number): boolean {
    if (this.hw === 'v2') return false;
    let caps = this.dev.profile.caps.funcCaps >>> 0;
    if ((caps & 0xff) === 0) caps = QM_FUNC_CAPS_V3_DEFAULT;
    return ((caps >>> bit) & 1) === 1;
  }

  private execute(c: MailboxCommand): MailboxResult {
    const addr = dmaAddr(c.baseL, c.baseH);
    switch (c.cmd) {
      case MbCmd.SQC:
      case MbCmd.CQC:
        return this.mbXqc(c.cmd === MbCmd.SQC, c.op, c.queue, addr);
      case MbCmd.EQC:
      case MbCmd.AEQC: {
        const q = c.cmd === MbCmd.EQC ? this.eq : this.aeq;
        const buf = this.xeqcBuf;
        if (c.op === 0) {
          if (!this.dma.read(addr, buf)) return statusResult(MbStatus.DMA_FAULT);
          q.load(buf);
          return statusResult(MbStatus.OK);
        }
        q.dump(buf);
        return statusResult(this.dma.write(addr, buf) ? MbStatus.OK : MbStatus.DMA_FAULT);
      }
      case MbCmd.SQC_BT:
      case MbCmd.CQC_BT: {
        const sqc = c.cmd === MbCmd.SQC_BT;
        if (c.op === 1) return sqc ? this.okWithData(this.sqcBtL, this.sqcBtH) : this.okWithData(this.cqcBtL, this.cqcBtH);
        if (sqc) {
          this.sqcBtL = c.baseL; this.sqcBtH = c.baseH; this.sqcBtValid = true;
        } else {
          this.cqcBtL = c.baseL; this.cqcBtH = c.baseH; this.cqcBtValid = true;
        }
        // The cache is tagged by its array: a new array means contexts come from it.
        this.invalidateCache(sqc);
        return statusResult(MbStatus.OK);
      }
      case MbCmd.SQC_VFT_V2: {
        if (c.op !== 1) return statusResult(MbStatus.BAD_OP);
        const [lo, hi] = this.dev.vft.word(VftType.SQC, this.index);
        return this.okWithData(lo, hi);
      }
      case MbCmd.STOP_QP: {
        if (!this.hasCap(Cap.STOP_QP)) return statusResult(MbStatus.UNSUPPORTED);
        if (c.queue >= this.cachedQpNum) return statusResult(MbStatus.BAD_QUEUE);
        const qp = this.qps[c.queue];
        if (qp) {
          if (!this.pausedFlag) drainQp(this, qp);
          if (qp.ready && qp.hasWork) {
            this.stats.abandonedAtStop += (qp.sqTail - qp.sqHead + qp.sqDepth) % qp.sqDepth;
          }
          qp.stopped = true;
        }
        return statusResult(MbStatus.OK);
      }
      case MbCmd.FLUSH_QM: {
        if (!this.hasCap(Cap.STOP_FUNC)) return statusResult(MbStatus.UNSUPPORTED);
        if (!this.pausedFlag) for (const qp of this.qps) if (qp && !qp.stopped) drainQp(this, qp);
        return statusResult(MbStatus.OK);
      }
      case MbCmd.SRC: {
        if (!this.hasCap(Cap.MB_COMMAND)) return statusResult(MbStatus.UNSUPPORTED);
        return statusResult(this.dev.ifc.send(this.index, c.queue, c.baseL, c.baseH));
      }
      case MbCmd.DST: {
        if (!this.hasCap(Cap.MB_COMMAND)) return statusResult(MbStatus.UNSUPPORTED);
        const m = this.dev.ifc.receive(this.index, c.queue);
        return m.status === MbStatus.OK ? this.okWithData(m.lo, m.hi) : statusResult(m.status);
      }
      case MbCmd.PAUSE_QM:
        if (this.hw === 'v2') return statusResult(MbStatus.UNSUPPORTED);
        this.pausedFlag = true;
        return statusResult(MbStatus.OK);
      default:
        return statusResult(MbStatus.UNDEFINED_CMD);
    }
  }

  /** A successful command's result with data words (one object per function, used at once). */
  private okWithData(lo: number, hi: number): MailboxResult {
    const r = this.mbResult;
    r.dataL = lo;
    r.dataH = hi;
    return r;
  }

  private mbXqc(sqc: boolean, op: 0 | 1, qn: number, addr: number): MailboxResult {
    if (qn >= this.cachedQpNum) return statusResult(MbStatus.BAD_QUEUE);
    const buf = this.ctxBuf;
    if (op === 0) {
      if (!this.dma.read(addr, buf)) return statusResult(MbStatus.DMA_FAULT);
      const qp = this.qps[qn] ?? this.newQp(qn);
      if (sqc) qp.loadSqc(buf);
      else qp.loadCqc(buf);
      // Write-through to the context array, the hardware's backing store.
      if (sqc && this.sqcBtValid) this.dma.write(dmaAddr(this.sqcBtL, this.sqcBtH) + qn * SQC_SIZE, buf);
      if (!sqc && this.cqcBtValid) this.dma.write(dmaAddr(this.cqcBtL, this.cqcBtH) + qn * CQC_SIZE, buf);
      this.scheduleQp(qp);
      return statusResult(MbStatus.OK);
    }
    const qp = this.qps[qn] ?? this.newQp(qn);
    if (sqc ? !qp.sqcLoaded : !qp.cqcLoaded) {
      if (!this.fetchContext(qp, sqc)) return statusResult(MbStatus.NO_CONTEXT);
    }
    return statusResult(this.dma.write(addr, sqc ? qp.sqcImage() : qp.cqcImage()) ? MbStatus.OK : MbStatus.DMA_FAULT);
  }

  private invalidateCache(sqc: boolean): void {
    for (const qp of this.qps) {
      if (!qp) continue;
      if (sqc) qp.sqcLoaded = false;
      else qp.cqcLoaded = false;
    }
  }

  // ---------------------------------------------------------------- misc registers

  private ifcSource(): number {
    return this.isPf ? (this.dev.ifc.pfPending() ? 1 : 0) : this.dev.ifc.vfSource(this.index);
  }

  private capRead(off: number): number {
    const c = this.dev.profile.caps;
    switch (off) {
      case QM_FUNC_CAPS_REG: return c.funcCaps >>> 0;
      case QM_XEQ_DEPTH_CAP: return c.xeqDepthCap >>> 0;
      case QM_QP_DEPTH_CAP: return c.qpDepthCap >>> 0;
      case QM_EQ_IRQ_TYPE_CAP: return c.eqIrqType >>> 0;
      case QM_AEQ_IRQ_TYPE_CAP: return c.aeqIrqType >>> 0;
      case QM_ABN_IRQ_TYPE_CAP: return c.abnIrqType >>> 0;
      case QM_PF2VF_IRQ_TYPE_CAP: return c.pf2vfIrqType >>> 0;
      case QM_IRQ_NUM_CAP: return c.irqNumCap >>> 0;
      case QM_EXT_BAR_INDEX: return c.extBarIndex >>> 0;
      default:
        if (off >= QM_ENGINE_CAP_FIRST) return this.dev.engineCap(off);
        return 0;
    }
  }

  private applyResetValue(off: number, val: number): void {
    switch (off) {
      case QM_VF_AEQ_INT_MASK: this.irq.setMasked(Vector.AEQ, (val & 1) === 1); return;
      case QM_VF_EQ_INT_MASK: this.irq.setMasked(Vector.EQ, (val & 1) === 1); return;
      case QM_IFC_INT_MASK: this.irq.setMasked(Vector.IFC, (val & 1) === 1); return;
      case QM_VF_STATE: this.vfState = val & 1; return;
      case QM_PAGE_SIZE: this.pageSize = val & 3; return;
      case QM_CACHE_WB_DONE: this.wbDone = val & 1; return;
      default: return;
    }
  }
}

/** BAR2 as the PCI layer sees it. */
class Bar2Region implements MmioRegion {
  private readonly faults: DeviceFaults;

  constructor(private readonly fn: QmFunction, readonly size: number) {
    this.faults = fn.deviceFaults;
  }

  private audit(origin: AccessOrigin, off: number, size: 1 | 2 | 4 | 8, write: boolean, lo: number, hi: number): void {
    if (this.fn.isPf) return;
    this.fn.audit.access(this.fn.now, origin, 2, off, size, write, lo, hi, off >= VF_BAR2_HALF);
  }

  read(off: number, size: 1 | 2 | 4, origin: AccessOrigin): number {
    if (!accessOk(off, size, this.size) || size > 4) return allOnes(size);
    if (this.faults.tapFn !== null) this.fn.tapRead(off, origin);
    // Aligned dwords (every driver access) skip the generic byte-lane split.
    const v = size === 4 && (off & 3) === 0 ? this.fn.readDw(off) >>> 0 : readSized(this.fn.regs, off, size);
    this.audit(origin, off, size, false, v, 0);
    return v;
  }

  write(off: number, size: 1 | 2 | 4, value: number, origin: AccessOrigin): void {
    if (!accessOk(off, size, this.size) || size > 4) return;
    this.audit(origin, off, size, true, value >>> 0, 0);
    if (size === 4 && (off & 3) === 0) this.fn.writeDw(off, value >>> 0, 0xffffffff);
    else writeSized(this.fn.regs, off, size, value >>> 0);
  }

  read64(off: number, origin: AccessOrigin): [number, number] {
    if (!accessOk(off, 8, this.size)) return [0xffffffff, 0xffffffff];
    if (this.faults.tapFn !== null) {
      this.fn.tapRead(off, origin);
      this.fn.tapRead(off + 4, origin);
    }
    const r = read64Split(this.fn.regs, off);
    this.audit(origin, off, 8, false, r[0], r[1]);
    return r;
  }

  write64(off: number, lo: number, hi: number, origin: AccessOrigin): void {
    if (!accessOk(off, 8, this.size)) return;
    this.audit(origin, off, 8, true, lo >>> 0, hi >>> 0);
    this.fn.write64(off, lo >>> 0, hi >>> 0);
  }
}

/** BAR4: one 64 KiB doorbell page per qp, used when QM_QUE_ISO_CFG bit0 is set. */
class Bar4Region implements MmioRegion {
  constructor(private readonly fn: QmFunction, readonly size: number) {}

  read(off: number, size: 1 | 2 | 4): number {
    if (!accessOk(off, size, this.size) || size > 4) return allOnes(size);
    return 0;
  }

  write(off: number, size: 1 | 2 | 4): void {
    if (!accessOk(off, size, this.size) || size > 4) return;
    this.fn.bar4NarrowWrite(off);
  }

  read64(off: number): [number, number] {
    if (!accessOk(off, 8, this.size)) return [0xffffffff, 0xffffffff];
    return [0, 0];
  }

  write64(off: number, lo: number, hi: number): void {
    if (!accessOk(off, 8, this.size)) return;
    this.fn.bar4Write64(off, lo >>> 0, hi >>> 0);
  }
}
