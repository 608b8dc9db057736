/**
 * Registers only the PF BAR2 has (qm-hardware.md section 1, "PF-only registers"): the RAS
 * block, VFT configuration, IFC PF side, QM_TOTAL_QP, doorbell timeout, the engine's
 * interrupt status, QM_QUE_ISO_CFG, QM_MIG_REGION_SEL and the V4 per-VF migration windows.
 *
 * QM_ABNORMAL_INT_*: SOURCE latches error bits (W1C), MASK (1 = masked) resets to 0x7FFF,
 * STATUS = SOURCE & ~MASK (read-only), SET injects bits into SOURCE (RAS error injection).
 * A STATUS that becomes non-zero raises the PF's abnormal vector 3. The model's own
 * operation never sets error bits: guest mistakes are reported in the guest's own function.
 */
import type { DeviceProfile } from '../profile.js';
import type { EventQueue } from './eq.js';
import type { DeviceFaults } from './faults.js';
import type { IfcHub } from './ifc.js';
import { migWindowRead, migWindowWrite } from './migration-window.js';
import type { DwordRegs } from './mmio-access.js';
import {
  HPRE_HAC_INT_STATUS, HZIP_CORE_INT_STATUS, QM_ABNORMAL_INF00, QM_ABNORMAL_INF02,
  QM_ABNORMAL_INT_MASK, QM_ABNORMAL_INT_MASK_VALUE, QM_ABNORMAL_INT_SET, QM_ABNORMAL_INT_SOURCE,
  QM_ABNORMAL_INT_STATUS, QM_AEQC_PF_DW0, QM_DB_TIMEOUT_CFG, QM_EQC_PF_DW0, QM_IFC_INT_CFG,
  QM_IFC_INT_SET_P, QM_IFC_INT_SOURCE_P, QM_IFC_READY_STATUS, QM_MIG_REGION_OFFSET,
  QM_MIG_REGION_SEL, QM_MIG_REGION_SIZE, QM_PF2VF_PF_W, QM_QUE_ISO_CFG, QM_TOTAL_QP,
  QM_VF2PF_PF_R, QM_VF2PF_REG_SIZE, QM_VFT_CFG_RDY, SEC_CORE_INT_STATUS, Vector,
} from './registers.js';
import type { VftConfigRegs } from './vft.js';

export interface PfRegsHost {
  readonly profile: DeviceProfile;
  readonly faults: DeviceFaults;
  readonly ifc: IfcHub;
  readonly vftRegs: VftConfigRegs;
  raisePf(vector: number): void;
  /** EQ/AEQ of VF n, or null if there is no such VF. */
  vfQueues(n: number): { eq: EventQueue; aeq: EventQueue } | null;
}

/** Lowest PF BAR2 offset served by this block. */
export const PF_REGS_BASE = 0x100000;
const MIG_WINDOWS_END = QM_MIG_REGION_OFFSET + 64 * QM_MIG_REGION_SIZE;

/**
 * The stored bits of a masked dword write. A plain function on purpose: a closure made per
 * write costs more than the whole register access under the tsx/vitest transforms (keepNames
 * wraps every named closure in a defineProperty call).
 */
function merge(cur: number, value: number, mask: number): number {
  return ((cur & ~mask) | (value & mask)) >>> 0;
}

export class PfRegisters implements DwordRegs {
  private abnSource = 0;
  private abnMask = QM_ABNORMAL_INT_MASK_VALUE;
  private dbTimeoutCfg = 0;
  private queIso = 0;
  private migSel = 0;
  /** The engine's INT_STATUS offset in the PF BAR2 (SEC/HPRE/ZIP differ). */
  readonly engineStatusOff: number;
  private readonly v3plus: boolean;
  private readonly v4: boolean;

  constructor(private readonly host: PfRegsHost, private readonly isoDefault: number) {
    const p = host.profile;
    this.engineStatusOff = p.engine === 'sec' ? SEC_CORE_INT_STATUS
      : p.engine === 'hpre' ? HPRE_HAC_INT_STATUS : HZIP_CORE_INT_STATUS;
    this.v3plus = p.hwVersion !== 'v2';
    this.v4 = p.hwVersion === 'v4';
    this.reset();
  }

  reset(): void {
    this.abnSource = 0;
    this.abnMask = QM_ABNORMAL_INT_MASK_VALUE;
    this.dbTimeoutCfg = 0;
    this.queIso = this.isoDefault & 1;
    this.migSel = 0;
  }

  /** QM_QUE_ISO_CFG bit0: SQ/CQ doorbells of every function live in BAR4. */
  get doorbellIsolation(): boolean {
    return (this.queIso & 1) === 1;
  }

  get queIsoCfg(): number {
    return this.queIso;
  }

  /** V4 PF-control mode: VF migration windows are in the PF BAR2. */
  get migRegionInPf(): boolean {
    return this.v4 && (this.migSel & 1) === 1;
  }

  private abnStatus(): number {
    return (this.abnSource & ~this.abnMask & QM_ABNORMAL_INT_MASK_VALUE) >>> 0;
  }

  readDw(off: number): number {
    if (off >= QM_MIG_REGION_OFFSET && off < MIG_WINDOWS_END) return this.windowRead(off);
    switch (off) {
      case QM_ABNORMAL_INT_SOURCE: return this.abnSource;
      case QM_ABNORMAL_INT_MASK: return this.abnMask;
      case QM_ABNORMAL_INT_STATUS: {
        const stuck = this.host.faults.rasStatus;
        return stuck !== 0 ? stuck : this.abnStatus();
      }
      case QM_ABNORMAL_INT_SET: return 0;
      case QM_DB_TIMEOUT_CFG: return this.dbTimeoutCfg;
      case QM_TOTAL_QP: {
        const q = this.host.profile.qm;
        return ((q.totalQps & 0x7ff) | ((q.maxQpsPerFunction & 0x7ff) << 11)) >>> 0;
      }
      case QM_QUE_ISO_CFG: return this.queIso;
      case QM_MIG_REGION_SEL: return this.v4 ? this.migSel : 0;
      case this.engineStatusOff: return this.host.faults.engineStatus;
      default: break;
    }
    if (this.host.vftRegs.handles(off)) {
      // faults.ts vftNotReady: RDY bit0 is stuck at 0; the rest of the block reads as it is
      if (off === QM_VFT_CFG_RDY && this.host.faults.vftNotReady) return this.host.vftRegs.read(off) & ~1;
      return this.host.vftRegs.read(off);
    }
    if (off >= QM_ABNORMAL_INF00 && off <= QM_ABNORMAL_INF02) return 0;
    if (this.v3plus) {
      const ifc = this.host.ifc;
      switch (off) {
        case QM_IFC_READY_STATUS: return ifc.readyStatusWord(0);
        case QM_IFC_READY_STATUS + 4: return ifc.readyStatusWord(1);
        case QM_IFC_INT_SET_P: return 0;
        case QM_IFC_INT_CFG: return ifc.intCfg;
        case QM_IFC_INT_SOURCE_P: return ifc.pfSourceWord(0);
        case QM_IFC_INT_SOURCE_P + 4: return ifc.pfSourceWord(1);
        default: break;
      }
    }
    if (this.v4) {
      if (off === QM_PF2VF_PF_W) return this.host.ifc.pf2vfRead(0);
      if (off === QM_PF2VF_PF_W + 4) return this.host.ifc.pf2vfRead(1);
      if (off >= QM_VF2PF_PF_R && off < QM_VF2PF_PF_R + 64 * QM_VF2PF_REG_SIZE) {
        return this.host.ifc.vf2pfForPf((off - QM_VF2PF_PF_R) / QM_VF2PF_REG_SIZE);
      }
    }
    return 0;
  }

  writeDw(off: number, value: number, mask: number): void {
    if (off >= QM_MIG_REGION_OFFSET && off < MIG_WINDOWS_END) {
      this.windowWrite(off, value, mask);
      return;
    }
    switch (off) {
      case QM_ABNORMAL_INT_SOURCE:
        this.abnSource = (this.abnSource & ~(value & mask)) >>> 0;
        return;
      case QM_ABNORMAL_INT_MASK: {
        const before = this.abnStatus();
        this.abnMask = merge(this.abnMask, value, mask) & QM_ABNORMAL_INT_MASK_VALUE;
        if (before === 0 && this.abnStatus() !== 0) this.host.raisePf(Vector.ABNORMAL);
        return;
      }
      case QM_ABNORMAL_INT_SET: {
        const before = this.abnStatus();
        this.abnSource = (this.abnSource | (value & mask & QM_ABNORMAL_INT_MASK_VALUE)) >>> 0;
        if (before === 0 && this.abnStatus() !== 0) this.host.raisePf(Vector.ABNORMAL);
        return;
      }
      case QM_DB_TIMEOUT_CFG: this.dbTimeoutCfg = merge(this.dbTimeoutCfg, value, mask); return;
      case QM_QUE_ISO_CFG: this.queIso = merge(this.queIso, value, mask) & 1; return;
      case QM_MIG_REGION_SEL: if (this.v4) this.migSel = merge(this.migSel, value, mask) & 1; return;
      default: break;
    }
    if (this.host.vftRegs.handles(off)) {
      this.host.vftRegs.write(off, merge(this.host.vftRegs.read(off), value, mask));
      return;
    }
    if (this.v3plus) {
      const ifc = this.host.ifc;
      switch (off) {
        case QM_IFC_INT_SET_P: ifc.pfTrigger(value & mask); return;
        case QM_IFC_INT_CFG: ifc.intCfg = merge(ifc.intCfg, value, mask); return;
        case QM_IFC_INT_SOURCE_P: ifc.pfAck(0, value & mask); return;
        case QM_IFC_INT_SOURCE_P + 4: ifc.pfAck(1, value & mask); return;
        default: break;
      }
    }
    if (this.v4) {
      if (off === QM_PF2VF_PF_W) this.host.ifc.pf2vfWrite(0, value, mask);
      else if (off === QM_PF2VF_PF_W + 4) this.host.ifc.pf2vfWrite(1, value, mask);
    }
  }

  private windowOf(off: number): { rel: number; q: { eq: EventQueue; aeq: EventQueue } } | null {
    if (!this.migRegionInPf) return null;
    const rel = off - QM_MIG_REGION_OFFSET;
    const n = Math.floor(rel / QM_MIG_REGION_SIZE);
    const q = n >= 1 ? this.host.vfQueues(n) : null;
    return q ? { rel: rel - n * QM_MIG_REGION_SIZE, q } : null;
  }

  private windowRead(off: number): number {
    const w = this.windowOf(off);
    return w ? migWindowRead(w.q.eq, w.q.aeq, w.rel, QM_EQC_PF_DW0, QM_AEQC_PF_DW0) : 0;
  }

  private windowWrite(off: number, value: number, mask: number): void {
    const w = this.windowOf(off);
    if (w) migWindowWrite(w.q.eq, w.q.aeq, w.rel, QM_EQC_PF_DW0, QM_AEQC_PF_DW0, value, mask);
  }
}
