/**
 * The guest's QM VF driver (qm-hardware.md section 8, over the protocol of sections 2-5).
 *
 * Life cycle: probe (identify, caps, VFT, PCI enable, MSI, depths, queue memory, IFC) ->
 * start (EQC/AEQC/SQC_BT/CQC_BT, doorbells, unmask, QM_VF_STATE 0) -> queue pairs ->
 * stop -> uninit. FLR re-runs start and restarts the queue pairs that were running.
 *
 * Interrupts: the MSI handler only records the vector and schedules a bottom half on the
 * scheduler (a threaded handler, as Linux does with its workqueue). The bottom half reads
 * the EQ (at most eq_depth/2-1 entries, then the EQ doorbell), the AEQ (overflows, CQE
 * errors) and PF->VF IFC messages. It never runs nested: an interrupt raised while it runs
 * is picked up by its own loop.
 *
 * Completion modes: 'interrupt' loads CQCs with c_flag 1 and re-arms with priority-1 CQ
 * doorbells; 'poll' loads c_flag 0, never re-arms, and reaps CQs from `poll()`. Either way
 * the AEQ interrupt stays on.
 */
import { KernelError, fail } from '../uapi/errno.js';
import type { EngineKind, HwVersion } from '../hw/profile.js';
import type { Scheduler } from '../sim/scheduler.js';
import { EventRing } from './eq.js';
import type { GuestPciIo, GuestRam } from './io.js';
import { MAILBOX_TIMING, type MailboxTiming, VfMailbox } from './mailbox.js';
import {
  busMasterEnabled, disableMsi, enableMemory, enableMsi, initiateFlr, setBusMaster,
} from './pci-setup.js';
import { type QpHost, QueuePair, type QueuePairState, type RequestReviver } from './queue-pair.js';
import * as R from './regs.js';
import { type TagField, tagFieldFor } from './sqe-format.js';
import * as W from './wait.js';
import type { Settles } from './wait.js';
import { PCI_REVISION_ID } from '../hw/pci/regs.js';

// Module-local bindings: under the tsx/vitest transforms an imported binding is a getter call.
const {
  AEQ_IRQ_TYPE_CAP, AeqType, CACHE_WB_DONE, CACHE_WB_START, CAP_MB_COMMAND, CAP_STOP_FUNC,
  CAP_STOP_QP, CAP_SVA_PREFETCH, DB_EQ_AEQ, DB_ISO_SQ_CQ, DB_ISO_STRIDE, DB_SQ_CQ, Db,
  EQE_SIZE, EQ_IRQ_TYPE_CAP, FUNC_CAPS, FUNC_CAPS_V3_DEFAULT, HUAWEI_VENDOR, IFC_INT_MASK,
  IFC_INT_SET_V, IFC_INT_SOURCE_V, IRQ_NUM_CAP, Ifc, MB_BASE, Mb, PAGE_SIZE_REG, PF2VF_IRQ_TYPE_CAP,
  PF2VF_VF_R, QM_BAR, QM_DB_BAR, QP_DEPTH_CAP, QP_DEPTH_DEFAULT, QUE_ISO_CFG_V, REV_V1, REV_V2,
  REV_V3, REV_V4, SQE_SIZES, SUB_VERSION_ID, VF2PF_VF_W, VF_AEQ_INT_MASK, VF_DEVICE_IDS,
  VF_EQ_INT_MASK, VF_STATE, XEQC_PHASE_SHIFT, XEQC_SIZE, XEQ_DEPTH_CAP, XEQ_DEPTH_DEFAULT, XQC_SIZE,
} = R;
const { pollUntil, runUntilDone, runUntilSettled } = W;
const DB_EQ = Db.EQ;
const DB_AEQ = Db.AEQ;

export type CompletionMode = 'interrupt' | 'poll';

export interface QmVfDriverOptions {
  io: GuestPciIo;
  ram: GuestRam;
  sched: Scheduler;
  completion?: CompletionMode;
  /** Ring depths the driver uses, at most what the device reports (defaults: the maximum). */
  sqDepth?: number;
  cqDepth?: number;
  eqDepth?: number;
  aeqDepth?: number;
  mailbox?: Partial<MailboxTiming>;
  /** The MSI message the guest OS assigns (any address/data; the sink sees vector numbers). */
  msiAddress?: number;
  msiData?: number;
}

export interface QmVfInfo {
  engine: EngineKind;
  hwVersion: HwVersion;
  revision: number;
  subVersion: number;
  /** Effective QM_FUNC_CAPS (defaults substituted when cap_ver is 0). */
  caps: number;
  qpBase: number;
  qpNum: number;
  sqeSize: number;
  sqDepth: number;
  cqDepth: number;
  eqDepth: number;
  aeqDepth: number;
  doorbellIsolation: boolean;
  vectors: { count: number; eq: number; aeq: number; ifc: number };
}

export type DriverState = 'probed' | 'started' | 'stopped' | 'removed';

/** The options of QmVfDriverOptions that are plain data (everything but io, ram, sched). */
export type QmVfDriverConfig = Omit<QmVfDriverOptions, 'io' | 'ram' | 'sched'>;

/**
 * The driver's JavaScript-side state as plain data (QmVfDriver.saveState). Together with
 * guest RAM and the device's own state it is everything needed to continue the driver on
 * another host: see QmVfDriver.restore.
 */
export interface QmVfDriverState {
  config: QmVfDriverConfig;
  state: DriverState;
  info: QmVfInfo;
  stats: DriverStats;
  mailbox: { stats: VfMailbox['stats']; lastStatus: number };
  ctxBuf: number;
  funcMem: number;
  funcBytes: number;
  eq: { base: number; depth: number; head: number; phase: number };
  aeq: { base: number; depth: number; head: number; phase: number };
  sqcArray: number;
  cqcArray: number;
  qps: QueuePairState[];
  /** MSI vectors received whose bottom half has not run yet. */
  pendingVectors: number;
  /** qns parked by a PF-initiated reset. */
  parked: number[];
}

/** Where a restored driver runs: the destination's device access, RAM view and clock. */
export interface QmVfDriverEnv {
  io: GuestPciIo;
  ram: GuestRam;
  sched: Scheduler;
}

export interface DriverStats {
  interrupts: number;
  eqes: number;
  aeqes: number;
  cqOverflows: number;
  eqOverflows: number;
  cqeErrors: number;
  /** EQEs naming a CQ the driver is not running. */
  spuriousEqes: number;
  ifcMessages: number;
  /** IFC replies the PF did not acknowledge in time. */
  ifcAckTimeouts: number;
  flrs: number;
  /** CQEs reaped by poll() rather than by an interrupt. */
  polledCqes: number;
  /** CQEs reaped by the EQ interrupt path. */
  irqCqes: number;
}

const MSI_ADDRESS_DEFAULT = 0xfee0_0000;
const MSI_DATA_DEFAULT = 0x40;
/** Time the guest waits after initiating an FLR before touching the function (PCIe: 100 ms). */
export const FLR_WAIT_NS = 100_000_000;
/**
 * Interrupt-vector passes one bottom-half run makes before it yields to the scheduler, as a
 * Linux threaded handler or NAPI poll returns after its budget and is requeued.
 */
export const BH_PASS_BUDGET = 16;
/** Default bound on waiting for one request. */
export const JOB_TIMEOUT_NS = 10_000_000_000;

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

export class QmVfDriver implements QpHost {
  readonly io: GuestPciIo;
  readonly ram: GuestRam;
  readonly sched: Scheduler;
  readonly mailbox: VfMailbox;
  readonly pollMode: boolean;
  readonly stats: DriverStats = {
    interrupts: 0, eqes: 0, aeqes: 0, cqOverflows: 0, eqOverflows: 0, cqeErrors: 0,
    spuriousEqes: 0, ifcMessages: 0, ifcAckTimeouts: 0, flrs: 0, polledCqes: 0, irqCqes: 0,
  };
  state: DriverState = 'probed';
  /** Set when probe finished; undefined only while probing. */
  info!: QmVfInfo;
  tagField!: TagField;
  ctxBuf = 0;

  private readonly opts: QmVfDriverOptions;
  private funcMem = 0;
  private funcBytes = 0;
  private eq!: EventRing;
  private aeq!: EventRing;
  private sqcArray = 0;
  private cqcArray = 0;
  private readonly qps: (QueuePair | undefined)[] = [];
  private pendingVectors = 0;
  private bhQueued = false;
  private inBh = false;
  /** Queue pairs to restart after a PF-initiated reset. */
  private parked: QueuePair[] = [];
  private readonly ctxScratch = new Uint8Array(XQC_SIZE);
  private readonly bhTask = (): void => this.bottomHalf();

  private constructor(opts: QmVfDriverOptions) {
    this.opts = opts;
    this.io = opts.io;
    this.ram = opts.ram;
    this.sched = opts.sched;
    this.pollMode = (opts.completion ?? 'interrupt') === 'poll';
    this.mailbox = new VfMailbox(opts.io, opts.sched, { ...MAILBOX_TIMING, ...opts.mailbox });
  }

  /** Probes the VF; on failure every allocation is released and PCI state is left off. */
  static probe(opts: QmVfDriverOptions): QmVfDriver {
    const d = new QmVfDriver(opts);
    try {
      d.probe();
    } catch (e) {
      d.releaseMemory();
      try {
        disableMsi(d.io);
        setBusMaster(d.io, false);
      } catch {
        // best effort: the probe error is what matters
      }
      throw e;
    }
    return d;
  }

  get sqeSize(): number {
    return this.info.sqeSize;
  }

  get canStopQp(): boolean {
    return (this.info.caps & CAP_STOP_QP) !== 0;
  }

  // ---------------------------------------------------------------- probe

  private probe(): void {
    const io = this.io;
    const vendor = io.cfgRead(0x00, 2);
    const device = io.cfgRead(0x02, 2);
    const engine = VF_DEVICE_IDS[device];
    if (vendor !== HUAWEI_VENDOR || engine === undefined) {
      fail('ENODEV', `not a HiSilicon ACC VF (${vendor.toString(16)}:${device.toString(16)})`);
    }
    enableMemory(io);
    const revision = io.cfgRead(PCI_REVISION_ID, 1);
    if (io.read32(QM_BAR, MB_BASE) === 0xffffffff) fail('ENODEV', 'BAR2 reads all-ones: device not responding');
    let subVersion = 0;
    let hw: HwVersion;
    if (revision === REV_V2) {
      hw = 'v2';
    } else if (revision === REV_V3) {
      subVersion = io.read32(QM_BAR, SUB_VERSION_ID);
      hw = subVersion === 0 ? 'v3' : subVersion === REV_V4 ? 'v4' : fail('ENODEV', `unknown QM sub version 0x${subVersion.toString(16)}`);
    } else if (revision === REV_V4) {
      hw = 'v4';
    } else if (revision === REV_V1) {
      return fail('ENODEV', 'QM V1 has no VF support');
    } else {
      return fail('ENODEV', `unknown QM revision 0x${revision.toString(16)}`);
    }
    const v3 = hw !== 'v2';
    const isolation = v3 && (io.read32(QM_BAR, QUE_ISO_CFG_V) & 1) === 1;
    let caps = 0;
    if (v3) {
      caps = io.read32(QM_BAR, FUNC_CAPS);
      if ((caps & 0xff) === 0) caps = FUNC_CAPS_V3_DEFAULT;
    }
    // The mailbox needs a DMA buffer for context loads: allocate it before the first command.
    this.ctxBuf = this.ram.alloc(64, 32);
    const [vftL, vftH] = this.mailbox.send(Mb.SQC_VFT_V2, 1, 0, 0, 0);
    if (((vftH >>> 12) & 1) === 0) {
      fail('ENODEV', 'no queues assigned to this VF (VFT not programmed by the PF driver)');
    }
    const qpBase = ((vftL >>> 28) | ((vftH & 0xfff) << 4)) & 0xffff;
    const qpNum = ((vftH >>> 13) & 0x3ff) + 1;

    setBusMaster(io, true);
    const vectors = this.readVectors(v3);
    enableMsi(io, vectors.count, this.opts.msiAddress ?? MSI_ADDRESS_DEFAULT, this.opts.msiData ?? MSI_DATA_DEFAULT);

    const xeq = v3 ? io.read32(QM_BAR, XEQ_DEPTH_CAP) || XEQ_DEPTH_DEFAULT : XEQ_DEPTH_DEFAULT;
    const qpd = v3 ? io.read32(QM_BAR, QP_DEPTH_CAP) || QP_DEPTH_DEFAULT : QP_DEPTH_DEFAULT;
    const sqDepth = this.depth('sqDepth', qpd & 0xffff, 2);
    const cqDepth = this.depth('cqDepth', qpd >>> 16, 2, this.opts.sqDepth);
    const eqDepth = this.depth('eqDepth', xeq & 0xffff, 4);
    const aeqDepth = this.depth('aeqDepth', xeq >>> 16, 2);
    if (sqDepth !== cqDepth && (caps & CAP_STOP_QP) === 0) {
      fail('EINVAL', 'without STOP_QP the SQ and CQ depths must match (drain compares their tails)');
    }
    const sqeSize = SQE_SIZES[engine];
    this.info = {
      engine, hwVersion: hw, revision, subVersion, caps, qpBase, qpNum, sqeSize, sqDepth, cqDepth,
      eqDepth, aeqDepth, doorbellIsolation: isolation, vectors,
    };
    this.tagField = tagFieldFor(engine, hw);

    // EQE[eq_depth] | AEQE[aeq_depth] | SQC[qp_num] | CQC[qp_num], 32-byte aligned segments.
    const seg = (n: number) => Math.ceil(n / 32) * 32;
    const eqBytes = seg(eqDepth * EQE_SIZE);
    const aeqBytes = seg(aeqDepth * EQE_SIZE);
    const ctxBytes = seg(qpNum * XQC_SIZE);
    this.funcBytes = eqBytes + aeqBytes + 2 * ctxBytes;
    this.funcMem = this.ram.alloc(this.funcBytes, 4096);
    this.eq = new EventRing(this.funcMem, eqDepth);
    this.aeq = new EventRing(this.funcMem + eqBytes, aeqDepth);
    this.sqcArray = this.funcMem + eqBytes + aeqBytes;
    this.cqcArray = this.sqcArray + ctxBytes;
    this.ram.mem.fill(this.funcMem, this.funcBytes, 0);

    if (caps & CAP_MB_COMMAND) {
      io.write32(QM_BAR, IFC_INT_SOURCE_V, io.read32(QM_BAR, IFC_INT_SOURCE_V) | 1);
      io.write32(QM_BAR, IFC_INT_MASK, io.read32(QM_BAR, IFC_INT_MASK) & ~1);
    }
    io.onInterrupt((v) => this.onMsi(v));
    this.state = 'probed';
  }

  private readVectors(v3: boolean): QmVfInfo['vectors'] {
    if (!v3) return { count: 2, eq: 0, aeq: 1, ifc: -1 };
    const io = this.io;
    const num = io.read32(QM_BAR, IRQ_NUM_CAP) & 0xffff;
    const count = num === 0 ? 3 : num;
    const vec = (off: number, dflt: number): number => {
      const v = io.read32(QM_BAR, off);
      if (v === 0) return dflt;
      return (v >>> 16) !== 0 ? v & 0xffff : -1;
    };
    const eq = vec(EQ_IRQ_TYPE_CAP, 0);
    const aeq = vec(AEQ_IRQ_TYPE_CAP, 1);
    const ifc = vec(PF2VF_IRQ_TYPE_CAP, 2);
    for (const v of [eq, aeq, ifc]) {
      if (v >= count) fail('EINVAL', `interrupt vector ${v} beyond the ${count} the VF has`);
    }
    if (eq < 0 || aeq < 0) fail('ENODEV', 'EQ/AEQ interrupts not present');
    return { count, eq, aeq, ifc };
  }

  private depth(name: 'sqDepth' | 'cqDepth' | 'eqDepth' | 'aeqDepth', hwMax: number, min: number, fallback?: number): number {
    const want = this.opts[name] ?? fallback;
    if (want === undefined) return hwMax;
    if (!isPow2(want) || want < min || want > hwMax) {
      fail('EINVAL', `${name} ${want} must be a power of two in [${min}, ${hwMax}]`);
    }
    return want;
  }

  // ---------------------------------------------------------------- save / restore

  /**
   * Everything of the driver that lives only in JavaScript, as JSON-safe data: options,
   * probe results, ring cursors, queue pairs with their in-flight requests (each request must
   * implement `save`), statistics. Guest RAM and the device carry the rest. Take it while the
   * guest is stopped (vCPUs paused), as a VMM saves vCPU registers.
   */
  saveState(): QmVfDriverState {
    const cfg: QmVfDriverConfig = {};
    const o = this.opts;
    if (o.completion !== undefined) cfg.completion = o.completion;
    for (const k of ['sqDepth', 'cqDepth', 'eqDepth', 'aeqDepth', 'msiAddress', 'msiData'] as const) {
      if (o[k] !== undefined) cfg[k] = o[k];
    }
    if (o.mailbox !== undefined) cfg.mailbox = { ...o.mailbox };
    const ring = (r: EventRing) => ({ base: r.base, depth: r.depth, head: r.head, phase: r.phase });
    return {
      config: cfg,
      state: this.state,
      info: { ...this.info, vectors: { ...this.info.vectors } },
      stats: { ...this.stats },
      mailbox: { stats: { ...this.mailbox.stats }, lastStatus: this.mailbox.lastStatus },
      ctxBuf: this.ctxBuf,
      funcMem: this.funcMem,
      funcBytes: this.funcBytes,
      eq: ring(this.eq),
      aeq: ring(this.aeq),
      sqcArray: this.sqcArray,
      cqcArray: this.cqcArray,
      qps: this.qps.filter((q): q is QueuePair => q !== undefined).map((q) => q.saveState()),
      pendingVectors: this.pendingVectors,
      parked: this.parked.map((q) => q.qn),
    };
  }

  /**
   * Continues a saved driver over `env` (the destination's GuestPciIo, RAM view and clock):
   * no register is touched, since the device state arrived through the device's own
   * migration. Installs the interrupt handler and re-queues a bottom half for interrupts that
   * were received but not yet handled. In-flight requests stay unrevived until
   * `reviveRequests` (Accel.restore does it). EINVAL for inconsistent state.
   */
  static restore(st: QmVfDriverState, env: QmVfDriverEnv): QmVfDriver {
    if (st === null || typeof st !== 'object' || st.info === null || typeof st.info !== 'object') {
      fail('EINVAL', 'bad saved driver state');
    }
    if (!['probed', 'started', 'stopped', 'removed'].includes(st.state)) fail('EINVAL', `saved driver state ${String(st.state)}`);
    const i = st.info;
    const intIn = (v: unknown, lo: number, hi: number): boolean => Number.isSafeInteger(v) && (v as number) >= lo && (v as number) <= hi;
    const v = i.vectors;
    if (!['zip', 'sec', 'hpre'].includes(i.engine) || !['v2', 'v3', 'v4'].includes(i.hwVersion)
      || i.sqeSize !== SQE_SIZES[i.engine] || !intIn(i.qpNum, 1, 1024) || !intIn(i.qpBase, 0, 0xffff)
      || ![i.sqDepth, i.cqDepth, i.eqDepth, i.aeqDepth].every((x) => isPow2(x) && x <= 65536)
      || v === null || typeof v !== 'object' || !intIn(v.count, 1, 32) || !intIn(v.eq, 0, 31) || !intIn(v.aeq, 0, 31)
      || !intIn(v.ifc, -1, 31) || !intIn(i.caps, 0, 0xffffffff)) {
      fail('EINVAL', 'saved driver: bad probe information');
    }
    const d = new QmVfDriver({ ...st.config, io: env.io, ram: env.ram, sched: env.sched });
    d.state = st.state;
    d.info = { ...st.info, vectors: { ...st.info.vectors } };
    d.tagField = tagFieldFor(d.info.engine, d.info.hwVersion);
    Object.assign(d.stats, st.stats);
    Object.assign(d.mailbox.stats, st.mailbox.stats);
    d.mailbox.lastStatus = st.mailbox.lastStatus;
    d.ctxBuf = st.ctxBuf;
    d.funcMem = st.funcMem;
    d.funcBytes = st.funcBytes;
    const ring = (r: QmVfDriverState['eq']): EventRing => {
      if (!isPow2(r.depth) || !Number.isSafeInteger(r.base) || !Number.isInteger(r.head) || r.head < 0 || r.head >= r.depth) {
        fail('EINVAL', 'saved driver: bad event ring');
      }
      const e = new EventRing(r.base, r.depth);
      e.head = r.head;
      e.phase = r.phase & 1;
      return e;
    };
    d.eq = ring(st.eq);
    d.aeq = ring(st.aeq);
    d.sqcArray = st.sqcArray;
    d.cqcArray = st.cqcArray;
    for (const q of st.qps) {
      const qp = QueuePair.restore(d, q);
      if (qp.qn >= d.info.qpNum || d.qps[qp.qn] !== undefined) fail('EINVAL', `saved driver: bad qp ${qp.qn}`);
      d.qps[qp.qn] = qp;
    }
    d.parked = st.parked.map((qn) => d.qps[qn] ?? fail('EINVAL', `saved driver: parked qp ${qn} unknown`));
    d.pendingVectors = st.pendingVectors >>> 0;
    if (d.state !== 'removed') env.io.onInterrupt((v) => d.onMsi(v));
    if (d.pendingVectors !== 0) {
      d.bhQueued = true;
      d.sched.schedule(0, d.bhTask);
    }
    return d;
  }

  /** Rebuilds the in-flight requests of every restored queue pair. */
  reviveRequests(fn: RequestReviver): void {
    for (const qp of this.qps) qp?.revive(fn);
  }

  /** Queue pairs currently held (running or not). */
  get queuePairs(): QueuePair[] {
    return this.qps.filter((q): q is QueuePair => q !== undefined);
  }

  // ---------------------------------------------------------------- start / stop

  /** Start (section 8). Queue pairs are started separately. */
  start(): void {
    if (this.state === 'removed') fail('ENODEV', 'driver was removed');
    if (this.state === 'started') fail('EBUSY', 'already started');
    const { io, info } = this;
    const mem = this.ram.mem;
    this.clearQueueMemory();
    this.eq.reset();
    this.aeq.reset();
    const ctx = new Uint8Array(XEQC_SIZE);
    const v = new DataView(ctx.buffer);
    for (const [ring, cmd] of [[this.eq, Mb.EQC], [this.aeq, Mb.AEQC]] as const) {
      ctx.fill(0);
      v.setUint32(4, ring.base % 0x1_0000_0000, true);
      v.setUint32(8, Math.floor(ring.base / 0x1_0000_0000), true);
      v.setUint32(24, ((ring.depth - 1) | (1 << XEQC_PHASE_SHIFT)) >>> 0, true);
      mem.write(this.ctxBuf, ctx);
      this.mailbox.sendAddr(cmd, 0, 0, this.ctxBuf);
    }
    this.mailbox.sendAddr(Mb.SQC_BT, 0, 0, this.sqcArray);
    this.mailbox.sendAddr(Mb.CQC_BT, 0, 0, this.cqcArray);
    if (info.caps & CAP_SVA_PREFETCH) io.write32(QM_BAR, PAGE_SIZE_REG, 0);
    this.ringEqAeq(Db.AEQ, 0);
    this.ringEqAeq(Db.EQ, 0);
    io.write32(QM_BAR, VF_EQ_INT_MASK, 0);
    io.write32(QM_BAR, VF_AEQ_INT_MASK, 0);
    io.write32(QM_BAR, VF_STATE, 0);
    this.state = 'started';
  }

  /**
   * Stop: FLUSH_QM when the function has it, stop every running qp (their completions are
   * delivered, the rest fails with ECANCELED), mask EQ/AEQ, clear the queue memory. Runs to
   * the end even when a step fails, then throws the first failure.
   */
  stop(): void {
    if (this.state !== 'started') return;
    let first: unknown;
    const running = this.qps.filter((q): q is QueuePair => q !== undefined && (q.running || q.state === 'error'));
    if ((this.info.caps & CAP_STOP_FUNC) && running.length > 0) {
      try {
        this.mailbox.send(Mb.FLUSH_QM, 0, 0, 0, 0);
      } catch (e) {
        first ??= e;
      }
    }
    for (const qp of running) {
      try {
        qp.stop();
      } catch (e) {
        first ??= e;
      }
    }
    this.io.write32(QM_BAR, VF_EQ_INT_MASK, 1);
    this.io.write32(QM_BAR, VF_AEQ_INT_MASK, 1);
    this.clearQueueMemory();
    this.state = 'stopped';
    if (first !== undefined) throw first;
  }

  /** Uninit: stop, mask IFC, write the context cache back, QM_VF_STATE 1, release everything. */
  uninit(): void {
    if (this.state === 'removed') return;
    let first: unknown;
    try {
      this.stop();
    } catch (e) {
      first = e;
    }
    const io = this.io;
    io.write32(QM_BAR, IFC_INT_MASK, io.read32(QM_BAR, IFC_INT_MASK) | 1);
    io.write32(QM_BAR, CACHE_WB_START, 1);
    if (!pollUntil(this.sched, () => (io.read32(QM_BAR, CACHE_WB_DONE) & 1) === 1, 10_000, 1_000_000)) {
      first ??= new KernelError('ETIMEDOUT', 'QM cache write-back did not finish');
    }
    io.write32(QM_BAR, VF_STATE, 1);
    for (const qp of this.qps) qp?.release();
    this.qps.length = 0;
    this.releaseMemory();
    disableMsi(io);
    setBusMaster(io, false);
    io.onInterrupt(() => {});
    this.state = 'removed';
    if (first !== undefined) throw first;
  }

  /**
   * Function Level Reset: stop, reset the function through its PCIe capability, wait,
   * restore the PCI setup (bus mastering, MSI), start, restart the qps that were running.
   */
  flr(): void {
    if (this.state === 'removed') fail('ENODEV', 'driver was removed');
    const before = this.state;
    const wasStarted = before === 'started';
    const restart = this.qps.filter((q): q is QueuePair => q !== undefined && (q.running || q.state === 'error'));
    try {
      this.stop();
    } catch {
      // The reset below clears whatever the stop could not.
    }
    for (const qp of restart) qp.markLost(new KernelError('ECANCELED', 'function reset'));
    this.state = 'stopped';
    initiateFlr(this.io);
    this.sched.advance(FLR_WAIT_NS);
    this.stats.flrs++;
    this.restorePci();
    if (wasStarted) {
      this.start();
      for (const qp of restart) qp.start();
    } else {
      this.state = before;
    }
  }

  /** After a reset the function forgot its PCI setup: memory, bus mastering, MSI. */
  private restorePci(): void {
    enableMemory(this.io);
    setBusMaster(this.io, true);
    const vec = this.info.vectors;
    enableMsi(this.io, vec.count, this.opts.msiAddress ?? MSI_ADDRESS_DEFAULT, this.opts.msiData ?? MSI_DATA_DEFAULT);
    if (this.info.caps & CAP_MB_COMMAND) {
      this.io.write32(QM_BAR, IFC_INT_MASK, this.io.read32(QM_BAR, IFC_INT_MASK) & ~1);
    }
  }

  private clearQueueMemory(): void {
    this.ram.mem.fill(this.funcMem, this.funcBytes, 0);
  }

  private releaseMemory(): void {
    if (this.funcMem) this.ram.free(this.funcMem);
    if (this.ctxBuf) this.ram.free(this.ctxBuf);
    this.funcMem = 0;
    this.funcBytes = 0;
    this.ctxBuf = 0;
  }

  // ---------------------------------------------------------------- queue pairs

  /** Takes the lowest free qp and starts it with `algType` (SQC w13). EBUSY when none is free. */
  createQp(algType = 0): QueuePair {
    if (this.state !== 'started') fail('EIO', `cannot create a qp while ${this.state}`);
    let qn = 0;
    while (qn < this.info.qpNum && this.qps[qn] !== undefined) qn++;
    if (qn >= this.info.qpNum) fail('EBUSY', `all ${this.info.qpNum} queue pairs are in use`);
    const qp = new QueuePair(this, qn, algType, this.info.sqDepth, this.info.cqDepth);
    this.qps[qn] = qp;
    try {
      qp.start();
    } catch (e) {
      this.qps[qn] = undefined;
      qp.release();
      throw e;
    }
    return qp;
  }

  /** Stops (if needed) and releases a qp. */
  releaseQp(qp: QueuePair): void {
    if (this.qps[qp.qn] !== qp) fail('EINVAL', `qp ${qp.qn} does not belong to this driver`);
    try {
      if (this.state === 'started') qp.stop();
    } finally {
      this.qps[qp.qn] = undefined;
      qp.release();
    }
  }

  qp(qn: number): QueuePair | undefined {
    return this.qps[qn];
  }

  /** SQ/CQ doorbell: BAR2 0x1000, or the qp's own BAR4 page under doorbell isolation. */
  ringSqCq(qn: number, cmd: number, index: number, priority: number): void {
    const lo = ((qn & 0xfff) | (cmd << 12)) >>> 0;
    const hi = ((index & 0xffff) | (priority << 16)) >>> 0;
    if (this.info.doorbellIsolation) this.io.write64(QM_DB_BAR, qn * DB_ISO_STRIDE + DB_ISO_SQ_CQ, lo, hi);
    else this.io.write64(QM_BAR, DB_SQ_CQ, lo, hi);
  }

  private ringEqAeq(cmd: number, index: number): void {
    this.io.write64(QM_BAR, DB_EQ_AEQ, (cmd << 12) >>> 0, index & 0xffff);
  }

  // ---------------------------------------------------------------- completion

  /**
   * Reaps completions without waiting for an interrupt: the AEQ, then every running qp's CQ.
   * Returns the number of CQEs consumed.
   */
  poll(): number {
    if (this.state !== 'started') return 0;
    this.processAeq();
    let n = 0;
    for (const qp of this.qps) if (qp !== undefined && qp.running) n += qp.consume();
    this.stats.polledCqes += n;
    return n;
  }

  /**
   * Lets the device (and interrupts) run until `done()` holds. In poll mode the CQs are reaped
   * between scheduler steps. False when nothing is left to run or the time bound passed.
   */
  waitFor(done: () => boolean, timeoutNs = JOB_TIMEOUT_NS): boolean {
    if (!this.pollMode) return runUntilDone(this.sched, done, timeoutNs);
    const deadline = this.sched.now + timeoutNs;
    for (;;) {
      if (done()) return true;
      this.poll();
      if (done()) return true;
      if (this.sched.now > deadline) return false;
      if (!this.sched.step()) {
        this.poll();
        return done();
      }
    }
  }

  /** waitFor(() => req.done): the per-request wait of the synchronous API, allocation-free. */
  waitForRequest(req: Settles, timeoutNs = JOB_TIMEOUT_NS): boolean {
    if (!this.pollMode) return runUntilSettled(this.sched, req, timeoutNs);
    const deadline = this.sched.now + timeoutNs;
    for (;;) {
      if (req.done) return true;
      this.poll();
      if (req.done) return true;
      if (this.sched.now > deadline) return false;
      if (!this.sched.step()) {
        this.poll();
        return req.done;
      }
    }
  }

  private onMsi(vector: number): void {
    this.stats.interrupts++;
    if (vector < 0 || vector > 31) return;
    this.pendingVectors = (this.pendingVectors | (1 << vector)) >>> 0;
    if (this.bhQueued) return;
    this.bhQueued = true;
    this.sched.schedule(0, this.bhTask);
  }

  private bottomHalf(): void {
    this.bhQueued = false;
    if (this.inBh) return;
    this.inBh = true;
    try {
      const vec = this.info.vectors;
      // A device that re-raises an interrupt from the handler's own doorbell write would keep
      // an unbounded loop here forever; after the budget the rest waits for a fresh run.
      for (let pass = 0; this.pendingVectors !== 0; pass++) {
        if (pass === BH_PASS_BUDGET) {
          if (!this.bhQueued) {
            this.bhQueued = true;
            this.sched.schedule(0, this.bhTask);
          }
          break;
        }
        const p = this.pendingVectors;
        this.pendingVectors = 0;
        if (this.state === 'started') {
          if ((p >>> vec.eq) & 1) this.processEq();
          if ((p >>> vec.aeq) & 1) this.processAeq();
        }
        if (vec.ifc >= 0 && ((p >>> vec.ifc) & 1)) this.processIfc();
      }
    } finally {
      this.inBh = false;
    }
  }

  /** EQ: each EQE names a CQ to reap; at most eq_depth/2-1 per pass, then the EQ doorbell. */
  private processEq(): void {
    const mem = this.ram.mem;
    const limit = Math.max(1, (this.eq.depth >> 1) - 1);
    let n = 0;
    while (n < limit) {
      const e = this.eq.peek(mem);
      if (e < 0) break;
      this.eq.advance();
      n++;
      this.stats.eqes++;
      const qp = this.qps[e & 0xffff];
      if (qp !== undefined && qp.running) this.stats.irqCqes += qp.consume();
      else this.stats.spuriousEqes++;
    }
    this.ringEqAeq(DB_EQ, this.eq.head);
  }

  /** AEQ: CQ overflow -> reap that CQ; EQ overflow -> reap every CQ; CQE error -> fail the qp. */
  private processAeq(): void {
    const mem = this.ram.mem;
    let n = 0;
    for (;;) {
      const e = this.aeq.peek(mem);
      if (e < 0) break;
      this.aeq.advance();
      n++;
      this.stats.aeqes++;
      const qp = this.qps[e & 0xffff];
      switch ((e >>> 17) & 0xf) {
        case AeqType.CQ_OVERFLOW:
          this.stats.cqOverflows++;
          if (qp?.running) qp.consume();
          break;
        case AeqType.EQ_OVERFLOW:
          this.stats.eqOverflows++;
          for (const q of this.qps) if (q?.running) q.consume();
          break;
        case AeqType.CQE_ERROR:
          this.stats.cqeErrors++;
          qp?.markError(new KernelError('EIO', `qp ${e & 0xffff}: device reported a CQE error`));
          break;
        default:
          break;
      }
    }
    if (n > 0) this.ringEqAeq(DB_AEQ, this.aeq.head);
  }

  // ---------------------------------------------------------------- PF <-> VF

  /** A PF->VF message: read it (V3 mailbox DST, V4 data register), acknowledge, act, reply. */
  private processIfc(): void {
    const io = this.io;
    if ((io.read32(QM_BAR, IFC_INT_SOURCE_V) & 1) === 0) return;
    let cmd: number;
    try {
      cmd = this.info.hwVersion === 'v4' ? io.read64(QM_BAR, PF2VF_VF_R)[0] : this.mailbox.send(Mb.DST, 0, 0, 0, 0)[0];
    } catch {
      io.write32(QM_BAR, IFC_INT_SOURCE_V, io.read32(QM_BAR, IFC_INT_SOURCE_V) | 1);
      return;
    }
    io.write32(QM_BAR, IFC_INT_SOURCE_V, io.read32(QM_BAR, IFC_INT_SOURCE_V) | 1);
    this.stats.ifcMessages++;
    switch (cmd & 0xff) {
      case Ifc.PF_FLR_PREPARE:
      case Ifc.PF_SRST_PREPARE: {
        let ok = true;
        this.parked = this.qps.filter((q): q is QueuePair => q !== undefined && (q.running || q.state === 'error'));
        try {
          this.stop();
        } catch {
          ok = false;
        }
        this.sendToPf(ok ? Ifc.VF_PREPARE_DONE : Ifc.VF_PREPARE_FAIL);
        return;
      }
      case Ifc.PF_RESET_DONE: {
        let ok = true;
        try {
          if (!busMasterEnabled(io)) this.restorePci();
          if (this.state === 'stopped') {
            this.start();
            for (const qp of this.parked) qp.start();
          }
        } catch {
          ok = false;
        }
        this.parked = [];
        this.sendToPf(ok ? Ifc.VF_START_DONE : Ifc.VF_START_FAIL);
        return;
      }
      default:
        return;
    }
  }

  /** VF->PF: store the message (V3 mailbox SRC, V4 data register), ring, wait for the PF's ack. */
  private sendToPf(cmd: number): void {
    const io = this.io;
    try {
      if (this.info.hwVersion === 'v4') io.write64(QM_BAR, VF2PF_VF_W, cmd, 0);
      else this.mailbox.send(Mb.SRC, 0, 0, cmd, 0);
    } catch {
      this.stats.ifcAckTimeouts++;
      return;
    }
    io.write32(QM_BAR, IFC_INT_SET_V, io.read32(QM_BAR, IFC_INT_SET_V) | 1);
    if (!pollUntil(this.sched, () => (io.read32(QM_BAR, IFC_INT_SET_V) & 1) === 0, 10_000, 1_000_000)) {
      this.stats.ifcAckTimeouts++;
    }
  }

  // ---------------------------------------------------------------- debug

  /** The SQC or CQC the device holds for `qn` (mailbox op1 dump), raw 32 bytes. */
  dumpContext(kind: 'sqc' | 'cqc', qn: number): Uint8Array {
    this.mailbox.sendAddr(kind === 'sqc' ? Mb.SQC : Mb.CQC, 1, qn, this.ctxBuf);
    this.ram.mem.read(this.ctxBuf, this.ctxScratch);
    return this.ctxScratch.slice();
  }
}
