/**
 * `HisiQmPf`: the PF QM driver's per-device state (what Linux keeps in `struct hisi_qm` for
 * a PF) and the PF register protocols other drivers build on — the vendor VFIO driver reaches
 * it through `getPfQm(vf)`, like `hisi_acc_get_pf_qm`.
 *
 * Every register access goes through the PF's BAR2 with origin 'pf'. Waits are bounded polls
 * on simulated time (10 us period, 1 ms timeout) that let the Scheduler run the device's
 * delayed work between reads.
 *
 * Errors are KernelErrors: EBUSY (mailbox busy before a command), ETIMEDOUT (mailbox or
 * VFT operation never completed), EIO (mailbox status non-zero), EINVAL (bad argument).
 */
import type { EngineKind } from '../../hw/profile.js';
import type { HostPciDevice } from '../../host/pci-device.js';
import { fail } from '../../uapi/errno.js';
import { PfIfc } from './pf-ifc.js';
import { type RegReader, pollMasked } from './poll.js';
import {
  POLL_PERIOD_NS, POLL_TIMEOUT_NS, QM_CAP_MB_COMMAND, QM_CQC_VFT_VALID, QM_FUNC_CAPS_REG,
  QM_FUNC_CAPS_V3_DEFAULT, QM_HW_V2, QM_HW_V3, QM_MAX_VFS_NUM_V2, QM_MB_BUSY,
  QM_MB_CMD_DATA_ADDR_H, QM_MB_CMD_DATA_ADDR_L, QM_MB_CMD_SEND_BASE, QM_MB_OP_SHIFT,
  QM_MB_STATUS_MASK, QM_MB_STATUS_SHIFT, QM_MIG_REGION_SEL, QM_QUE_ISO_CFG, QM_SQC_VFT_BASE_SHIFT,
  QM_SQC_VFT_NUM_SHIFT, QM_SQC_VFT_VALID, QM_SUB_VERSION_ID, QM_TOTAL_QP, QM_VFT_CFG,
  QM_VFT_CFG_DATA_H, QM_VFT_CFG_DATA_L, QM_VFT_CFG_OP_ENABLE, QM_VFT_CFG_OP_WR, QM_VFT_CFG_RDY,
  QM_VFT_CFG_TYPE, QmMbCmd, QmVftType,
} from '../common/qm-regs.js';
import { planVfQueues } from './vf-queues.js';

/** Queues the PF keeps by default (the drivers' pf_q_num module parameters). */
export const DEFAULT_PF_Q_NUM: Readonly<Record<EngineKind, number>> = { zip: 64, sec: 256, hpre: 64 };
/** V2 parts have no QM_TOTAL_QP register: 1024 queues, 1024 per function. */
const QM_QNUM_V2 = 1024;
/** Functions a VFT describes: the PF and 63 VFs. */
const VFT_FUNCTIONS = 64;
const PF_BAR = 2;

export interface VftSlice {
  base: number;
  num: number;
}

/** A 64-bit VFT / mailbox data word as two u32 halves. */
export interface Word64 {
  lo: number;
  hi: number;
}

export interface HisiQmPfOptions {
  /** Queues the PF keeps (2..QM_TOTAL_QP); the engine's default when absent. */
  pfQNum?: number;
}

/** The data argument of a VFT read (not written anywhere). */
const NO_DATA: Word64 = Object.freeze({ lo: 0, hi: 0 });

function u64Halves(v: bigint): Word64 {
  return { lo: Number(v & 0xffffffffn), hi: Number((v >> 32n) & 0xffffffffn) };
}

export class HisiQmPf implements RegReader {
  readonly dev: HostPciDevice;
  readonly engine: EngineKind;
  /** The PCI revision the function reports. */
  readonly revision: number;
  /** `qm->ver`: the revision, replaced by QM_SUB_VERSION_ID on a 0x30 part when non-zero. */
  readonly ver: number;
  /** QM_FUNC_CAPS_REG (the V3 defaults when cap_ver is 0); 0 on V2, which has none. */
  readonly caps: number;
  /** QM_TOTAL_QP [10:0]: queues in the whole device. */
  readonly ctrlQpNum: number;
  /** QM_TOTAL_QP [21:11]: most queues one function may own. */
  readonly maxQpNum: number;
  readonly qpBase = 0;
  /** pf_q_num: queues the PF keeps for itself. */
  readonly qpNum: number;
  /** VFs the driver enabled (qm->vfs_num). */
  vfsNum = 0;
  readonly stats = { mailboxCommands: 0, mailboxFailures: 0, vftWrites: 0, abnormalIrqs: 0 };
  /** PF<->VF messaging (V3+ with MB_COMMAND). */
  readonly ifc: PfIfc;
  private readonly shadow: (VftSlice | undefined)[] = new Array<VftSlice | undefined>(VFT_FUNCTIONS);
  private mailboxDepth = 0;

  /** Reads the device's identity and sizes (the probe's first half); see `init`. */
  constructor(dev: HostPciDevice, engine: EngineKind, opts: HisiQmPfOptions = {}) {
    this.dev = dev;
    this.engine = engine;
    this.revision = dev.revision;
    if (this.revision < QM_HW_V2) fail('ENODEV', `QM revision 0x${this.revision.toString(16)} is not supported`);
    let ver = this.revision;
    if (this.revision === QM_HW_V3) {
      const sub = this.readReg(QM_SUB_VERSION_ID);
      if (sub !== 0 && sub !== 0xffffffff) ver = sub;
    }
    this.ver = ver;
    if (ver === QM_HW_V2) {
      this.caps = 0;
      this.ctrlQpNum = QM_QNUM_V2;
      this.maxQpNum = QM_QNUM_V2;
    } else {
      const caps = this.readReg(QM_FUNC_CAPS_REG);
      this.caps = (caps & 0xff) === 0 ? QM_FUNC_CAPS_V3_DEFAULT : caps;
      const total = this.readReg(QM_TOTAL_QP);
      this.ctrlQpNum = total & 0x7ff;
      this.maxQpNum = (total >>> 11) & 0x7ff;
    }
    const q = opts.pfQNum ?? DEFAULT_PF_Q_NUM[engine];
    if (!Number.isInteger(q) || q < 2 || q > this.ctrlQpNum || q > this.maxQpNum) {
      fail('EINVAL', `pf_q_num ${q} outside 2..${Math.min(this.ctrlQpNum, this.maxQpNum)}`);
    }
    this.qpNum = q;
    this.ifc = new PfIfc(this);
  }

  /** The probe's second half: the PF's own VFT (base 0, pf_q_num queues), as hisi_qm_start. */
  init(): void {
    this.setVft(0, this.qpBase, this.qpNum);
  }

  hasCap(bit: number): boolean {
    return ((this.caps >>> bit) & 1) === 1;
  }

  /** Whether PF<->VF messages (IFC through the mailbox) are available. */
  get supportsIfc(): boolean {
    return this.ver >= QM_HW_V3 && this.hasCap(QM_CAP_MB_COMMAND);
  }

  // ---- raw PF register access ----------------------------------------------------------------

  private checkOff(off: number, width: number): void {
    const size = this.dev.fn.barSizes[PF_BAR] ?? 0;
    if (!Number.isInteger(off) || off < 0 || off % 4 !== 0 || off + width > size) {
      fail('EINVAL', `PF register offset ${off}`);
    }
  }

  readReg(off: number): number {
    this.checkOff(off, 4);
    return this.dev.fn.mmioRead(PF_BAR, off, 4, 'pf') >>> 0;
  }

  writeReg(off: number, value: number): void {
    this.checkOff(off, 4);
    this.dev.fn.mmioWrite(PF_BAR, off, 4, value >>> 0, 'pf');
  }

  readReg64(off: number): Word64 {
    this.checkOff(off, 8);
    const [lo, hi] = this.dev.fn.mmioRead64(PF_BAR, off, 'pf');
    return { lo: lo >>> 0, hi: hi >>> 0 };
  }

  writeReg64(off: number, lo: number, hi: number): void {
    this.checkOff(off, 8);
    this.dev.fn.mmioWrite64(PF_BAR, off, lo >>> 0, hi >>> 0, 'pf');
  }

  /** RegReader: `readReg`. */
  readReg32(off: number): number {
    return this.readReg(off);
  }

  /** Polls until `(reg & mask) === want`; one read when that already holds. */
  private poll(off: number, mask: number, want: number): number | null {
    return pollMasked(this.dev.bus.scheduler, this, off, mask, want, POLL_PERIOD_NS, POLL_TIMEOUT_NS);
  }

  // ---- VFT (qm-hardware.md section 4) -------------------------------------------------------

  private checkVftTarget(fn: number, type: number): void {
    if (!Number.isInteger(fn) || fn < 0 || fn >= VFT_FUNCTIONS) fail('EINVAL', `VFT function ${fn}`);
    if (type !== QmVftType.SQC && type !== QmVftType.CQC && type !== QmVftType.SHAPER) fail('EINVAL', `VFT type ${type}`);
  }

  /** One VFT_CFG operation: poll RDY, OP_WR, TYPE, CFG, [DATA], RDY=0, OP_ENABLE, poll RDY. */
  private vftOp(fn: number, type: number, read: boolean, data: Word64): Word64 {
    if (this.poll(QM_VFT_CFG_RDY, 1, 1) === null) fail('ETIMEDOUT', 'VFT configuration not ready');
    this.writeReg(QM_VFT_CFG_OP_WR, read ? 1 : 0);
    this.writeReg(QM_VFT_CFG_TYPE, type);
    this.writeReg(QM_VFT_CFG, fn);
    if (!read) {
      this.writeReg(QM_VFT_CFG_DATA_L, data.lo);
      this.writeReg(QM_VFT_CFG_DATA_H, data.hi);
    }
    this.writeReg(QM_VFT_CFG_RDY, 0);
    this.writeReg(QM_VFT_CFG_OP_ENABLE, 1);
    if (this.poll(QM_VFT_CFG_RDY, 1, 1) === null) fail('ETIMEDOUT', 'VFT operation did not complete');
    return read ? { lo: this.readReg(QM_VFT_CFG_DATA_L), hi: this.readReg(QM_VFT_CFG_DATA_H) } : data;
  }

  /** The raw VFT word of function `fn` (0 = PF) and `type` (0 SQC, 1 CQC, 2 shaper). */
  vftRead(fn: number, type: number): Word64 {
    this.checkVftTarget(fn, type);
    return this.vftOp(fn, type, true, NO_DATA);
  }

  /** Writes a raw VFT word (the shaper word has its own encoding, so it is only raw). */
  vftWriteRaw(fn: number, type: number, word: Word64): void {
    this.checkVftTarget(fn, type);
    this.vftOp(fn, type, false, { lo: word.lo >>> 0, hi: word.hi >>> 0 });
    this.stats.vftWrites++;
  }

  /**
   * Programs the SQC or CQC VFT of `fn` with `num` queues from `base` (V2+ encodings:
   * SQC `base<<28 | 1<<44 | (num-1)<<45`, CQC `1<<28`); num 0 writes the clearing word.
   */
  vftWrite(fn: number, type: number, base: number, num: number): void {
    if (type === QmVftType.SHAPER) fail('EINVAL', 'the shaper VFT is not a base/num pair');
    if (!Number.isInteger(base) || base < 0 || base > 0xffff) fail('EINVAL', `VFT base ${base}`);
    if (!Number.isInteger(num) || num < 0 || num > 1024) fail('EINVAL', `VFT queue count ${num}`);
    let word = 0n;
    if (num > 0) {
      word = type === QmVftType.SQC
        ? (BigInt(base) << QM_SQC_VFT_BASE_SHIFT) | QM_SQC_VFT_VALID | (BigInt(num - 1) << QM_SQC_VFT_NUM_SHIFT)
        : QM_CQC_VFT_VALID;
    }
    this.vftWriteRaw(fn, type, u64Halves(word));
  }

  /**
   * `hisi_qm_set_vft`: SQC then CQC. If the CQC write fails after the SQC word was set, the
   * SQC word is cleared again so the function is never left half-programmed.
   */
  setVft(fn: number, base: number, num: number): void {
    this.checkVftTarget(fn, QmVftType.SQC);
    this.shadow[fn] = undefined;
    this.vftWrite(fn, QmVftType.SQC, base, num);
    try {
      this.vftWrite(fn, QmVftType.CQC, base, num);
    } catch (e) {
      if (num > 0) {
        try {
          this.vftWrite(fn, QmVftType.SQC, 0, 0);
        } catch {
          // the hardware is not answering; the first error is the one to report
        }
      }
      throw e;
    }
    if (num > 0) this.shadow[fn] = { base, num };
  }

  /** A function's queues read back from the hardware SQC VFT ({0, 0} when not valid). */
  getVft(fn: number): VftSlice {
    const w = this.vftRead(fn, QmVftType.SQC);
    const v = (BigInt(w.hi) << 32n) | BigInt(w.lo);
    if ((v & QM_SQC_VFT_VALID) === 0n) return { base: 0, num: 0 };
    return { base: Number((v >> QM_SQC_VFT_BASE_SHIFT) & 0xffffn), num: Number((v >> QM_SQC_VFT_NUM_SHIFT) & 0x3ffn) + 1 };
  }

  /** What the driver programmed for a function (its own record, no hardware access). */
  vftOf(fn: number): VftSlice | undefined {
    const s = Number.isInteger(fn) ? this.shadow[fn] : undefined;
    return s ? { ...s } : undefined;
  }

  // ---- mailbox (qm-hardware.md section 2) ----------------------------------------------------

  /** True while a PF mailbox command is in progress (callers from scheduled work must wait). */
  get mailboxBusy(): boolean {
    return this.mailboxDepth > 0;
  }

  /**
   * One PF mailbox command: wait for busy clear (EBUSY), one 16-byte write as two 64-bit
   * stores, wait for busy clear (ETIMEDOUT), status -> EIO. Returns the data words at
   * 0x304/0x308 afterwards (the result of read commands).
   */
  mailbox(cmd: number, queue: number, base: bigint | number, op: 0 | 1): Word64 {
    if (!Number.isInteger(cmd) || cmd < 0 || cmd > 0xff) fail('EINVAL', `mailbox command ${cmd}`);
    if (!Number.isInteger(queue) || queue < 0 || queue > 0xffff) fail('EINVAL', `mailbox queue ${queue}`);
    if (op !== 0 && op !== 1) fail('EINVAL', `mailbox op ${String(op)}`);
    const b = typeof base === 'bigint' ? base : Number.isSafeInteger(base) && base >= 0 ? BigInt(base) : -1n;
    if (b < 0n || b >= 1n << 64n) fail('EINVAL', 'mailbox data outside 64 bits');
    if (this.mailboxDepth > 0) fail('EBUSY', 'PF mailbox already in use');
    this.mailboxDepth++;
    try {
      return this.mailboxLocked(cmd, queue, u64Halves(b), op);
    } finally {
      this.mailboxDepth--;
    }
  }

  private mailboxLocked(cmd: number, queue: number, data: Word64, op: 0 | 1): Word64 {
    this.stats.mailboxCommands++;
    if (this.poll(QM_MB_CMD_SEND_BASE, QM_MB_BUSY, 0) === null) {
      this.stats.mailboxFailures++;
      fail('EBUSY', 'QM mailbox is busy to start');
    }
    const w0 = (cmd | (op << QM_MB_OP_SHIFT) | QM_MB_BUSY) >>> 0;
    this.writeReg64(QM_MB_CMD_SEND_BASE, (w0 | (queue << 16)) >>> 0, data.lo);
    this.writeReg64(QM_MB_CMD_DATA_ADDR_H, data.hi, 0);
    const done = this.poll(QM_MB_CMD_SEND_BASE, QM_MB_BUSY, 0);
    if (done === null) {
      this.stats.mailboxFailures++;
      fail('ETIMEDOUT', 'QM mailbox operation timeout');
    }
    if (((done >>> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK) !== 0) {
      this.stats.mailboxFailures++;
      fail('EIO', `QM mailbox command 0x${cmd.toString(16)} failed`);
    }
    return { lo: this.readReg(QM_MB_CMD_DATA_ADDR_L), hi: this.readReg(QM_MB_CMD_DATA_ADDR_H) };
  }

  /** The PF's own SQC VFT as a VF would learn it (mailbox SQC_VFT_V2, op 1). */
  mailboxOwnVft(): VftSlice {
    const w = this.mailbox(QmMbCmd.SQC_VFT_V2, 0, 0, 1);
    const v = (BigInt(w.hi) << 32n) | BigInt(w.lo);
    return { base: Number((v >> QM_SQC_VFT_BASE_SHIFT) & 0xffffn), num: Number((v >> QM_SQC_VFT_NUM_SHIFT) & 0x3ffn) + 1 };
  }

  // ---- PF-only controls used by the vendor driver ----------------------------------------------

  /** PF QM_QUE_ISO_CFG (0x301154): bit0 = doorbells isolated in BAR4. */
  queIsoCfg(): number {
    return this.readReg(QM_QUE_ISO_CFG);
  }

  /**
   * QM_MIG_REGION_SEL bit0 (V4, "PF control" mode): VF migration registers move into the PF
   * BAR2. EOPNOTSUPP before V4; EIO if the bit does not take.
   */
  setMigRegionSel(on: boolean): void {
    if (this.ver <= QM_HW_V3) fail('EOPNOTSUPP', `QM version 0x${this.ver.toString(16)} has no migration region select`);
    const v = this.readReg(QM_MIG_REGION_SEL);
    this.writeReg(QM_MIG_REGION_SEL, on ? v | 1 : v & ~1);
    if (((this.readReg(QM_MIG_REGION_SEL) & 1) === 1) !== on) fail('EIO', 'QM_MIG_REGION_SEL did not change');
  }

  /** Whether VF migration registers currently live in the PF BAR2. */
  get migRegionInPf(): boolean {
    return this.ver > QM_HW_V3 && (this.readReg(QM_MIG_REGION_SEL) & 1) === 1;
  }

  // ---- SR-IOV (hisi_qm_sriov_enable / hisi_qm_sriov_disable) -------------------------------

  /**
   * Enables `n` VFs: queue split and VFT programming (section 4), then SR-IOV. Returns n;
   * 0 when VFs already exist. ERANGE above 63 VFs, EINVAL when the queues do not stretch.
   * A failure undoes the VFTs already written.
   */
  sriovEnable(n: number): number {
    if (this.dev.numVfs > 0) {
      this.dev.bus.log.print(this.dev.bdf, `${this.dev.numVfs} VFs already enabled. Please disable pre-enabled VFs!`);
      return 0;
    }
    if (!Number.isInteger(n) || n < 1) fail('EINVAL', `VF count ${n}`);
    if (n > QM_MAX_VFS_NUM_V2) fail('ERANGE', `${n} VFs exceed ${QM_MAX_VFS_NUM_V2}`);
    const plan = planVfQueues(this.ctrlQpNum, this.qpNum, this.maxQpNum, n);
    const done: number[] = [];
    try {
      for (const s of plan) {
        this.setVft(s.vf, s.base, s.num);
        done.push(s.vf);
      }
      this.vfsNum = n;
      this.dev.bus.enableSriov(this.dev, n);
    } catch (e) {
      this.vfsNum = 0;
      for (const vf of done) {
        try {
          this.setVft(vf, 0, 0);
        } catch {
          // keep the original error
        }
      }
      throw e;
    }
    return n;
  }

  /** Removes the VFs (their drivers are unbound first) and clears their VFTs. Returns 0. */
  sriovDisable(): number {
    const count = Math.max(this.vfsNum, this.dev.numVfs);
    this.dev.bus.disableSriov(this.dev);
    this.vfsNum = 0;
    for (let vf = 1; vf <= count; vf++) this.setVft(vf, 0, 0);
    return 0;
  }
}
