/**
 * One QM device (one PF and its VFs). Owns what the functions share: the VFT, the single
 * mailbox engine, the PF-only registers, the IFC hub and the device-wide fault switches.
 *
 * The device starts with an empty VFT (no function owns queues), as hardware out of reset.
 * The host PF driver programs it; `applyDefaultVft(numVfs)` does what that driver does at
 * probe and SR-IOV enable (qm-hardware.md section 4), through the PF VFT registers.
 *
 * A PF reset (`pf.reset()`, FLR of the PF) resets the whole device: PF registers, VFT, IFC
 * and every function's state. A VF reset touches only that VF.
 */
import { KernelError } from '../../uapi/errno.js';
import type { Scheduler } from '../../sim/scheduler.js';
import type { DeviceProfile } from '../profile.js';
import type { Engine } from './engine-contract.js';
import type { EventQueue } from './eq.js';
import { DeviceFaults } from './faults.js';
import { type IfcHost, IfcHub } from './ifc.js';
import { MailboxEngine } from './mailbox.js';
import { type PfRegsHost, PfRegisters } from './pf-regs.js';
import { type FunctionSnapshot, QmFunction, type QmLatencies } from './qm-function.js';
import {
  QM_VFT_CFG, QM_VFT_CFG_DATA_H, QM_VFT_CFG_DATA_L, QM_VFT_CFG_OP_ENABLE, QM_VFT_CFG_OP_WR,
  QM_VFT_CFG_RDY, QM_VFT_CFG_TYPE, VftType,
} from './registers.js';
import {
  type VftEntry, VFT_FUNCTIONS, VftConfigRegs, VftTable, decodeSqcVft, encodeCqcVft,
  encodeSqcVft, planVftAssignment,
} from './vft.js';

export type { QmLatencies } from './qm-function.js';

export interface QmDeviceOptions {
  profile: DeviceProfile;
  scheduler: Scheduler;
  engine: Engine;
  latencies?: Partial<QmLatencies>;
  /** Power-on QM_QUE_ISO_CFG bit0 (a firmware setting): SQ/CQ doorbells in BAR4. */
  doorbellIsolation?: boolean;
}

export interface DeviceSnapshot {
  profile: string;
  queIsoCfg: number;
  migRegionInPf: boolean;
  mailboxBacklog: number;
  vft: { fn: number; base: number; num: number; valid: boolean }[];
  functions: FunctionSnapshot[];
}

export class QmDevice implements PfRegsHost, IfcHost {
  readonly profile: DeviceProfile;
  readonly scheduler: Scheduler;
  readonly engine: Engine;
  readonly latencies: Readonly<QmLatencies>;
  readonly faults: DeviceFaults;
  readonly vft: VftTable;
  readonly vftRegs: VftConfigRegs;
  readonly ifc: IfcHub;
  readonly mailboxEngine: MailboxEngine;
  readonly pfRegs: PfRegisters;
  readonly pf: QmFunction;
  private readonly vfs: (QmFunction | undefined)[] = new Array(VFT_FUNCTIONS);
  private readonly engineCaps = new Map<number, number>();

  constructor(opts: QmDeviceOptions) {
    this.profile = opts.profile;
    this.scheduler = opts.scheduler;
    this.engine = opts.engine;
    const l = opts.latencies ?? {};
    this.latencies = Object.freeze({
      processNs: Math.max(0, l.processNs ?? 0),
      mailboxNs: Math.max(0, l.mailboxNs ?? 0),
      irqNs: Math.max(0, l.irqNs ?? 0),
      wbNs: Math.max(0, l.wbNs ?? 0),
    });
    for (const [k, v] of Object.entries(opts.profile.caps.engine ?? {})) {
      const off = Number.parseInt(k, 16);
      if (Number.isInteger(off)) this.engineCaps.set(off, Number(v) >>> 0);
    }
    this.faults = new DeviceFaults(() => this.mailboxEngine.pump());
    this.mailboxEngine = new MailboxEngine(this.scheduler, this.latencies.mailboxNs, this.faults);
    this.vft = new VftTable((fn) => this.functionAt(fn)?.onVftChanged());
    this.vftRegs = new VftConfigRegs(this.vft);
    this.ifc = new IfcHub(this);
    this.pfRegs = new PfRegisters(this, opts.doorbellIsolation ? 1 : 0);
    this.pf = new QmFunction(this, 0);
  }

  // ---------------------------------------------------------------- functions

  /** Creates VF `index` (1-based, as `pci_iov_vf_id()+1`). */
  addVf(index: number): QmFunction {
    const max = Math.min(this.profile.sriov.totalVfs, VFT_FUNCTIONS - 1);
    if (!Number.isInteger(index) || index < 1 || index > max) {
      throw new KernelError('EINVAL', `VF index ${index} outside 1..${max}`);
    }
    if (this.vfs[index]) throw new KernelError('EEXIST', `VF ${index} already exists`);
    const fn = new QmFunction(this, index);
    this.vfs[index] = fn;
    return fn;
  }

  removeVf(index: number): void {
    const fn = Number.isInteger(index) ? this.vfs[index] : undefined;
    if (!fn || index < 1) throw new KernelError('ENODEV', `no VF ${index}`);
    fn.markRemoved();
    this.ifc.resetVf(index);
    this.vfs[index] = undefined;
  }

  vf(index: number): QmFunction | undefined {
    return Number.isInteger(index) && index >= 1 && index < VFT_FUNCTIONS ? this.vfs[index] : undefined;
  }

  /** The function with number `fn` (0 = PF). */
  functionAt(fn: number): QmFunction | undefined {
    if (fn === 0) return this.pf;
    return this.vf(fn);
  }

  *vfIndices(): Iterable<number> {
    for (let i = 1; i < VFT_FUNCTIONS; i++) if (this.vfs[i]) yield i;
  }

  hasVf(n: number): boolean {
    return this.vf(n) !== undefined;
  }

  get vfCount(): number {
    let n = 0;
    for (let i = 1; i < VFT_FUNCTIONS; i++) if (this.vfs[i]) n++;
    return n;
  }

  // ---------------------------------------------------------------- host hooks

  raise(fn: number, vector: number): void {
    this.functionAt(fn)?.raise(vector);
  }

  raisePf(vector: number): void {
    this.pf.raise(vector);
  }

  vfQueues(n: number): { eq: EventQueue; aeq: EventQueue } | null {
    const f = this.vf(n);
    return f ? { eq: f.eq, aeq: f.aeq } : null;
  }

  /** Engine capability registers 0x3124-0x317C from the profile; absent ones read 0. */
  engineCap(off: number): number {
    return this.engineCaps.get(off) ?? 0;
  }

  /** Whole-device reset (PF FLR / power-on). */
  resetDevice(): void {
    this.pfRegs.reset();
    this.vftRegs.reset();
    this.ifc.reset();
    this.vft.clear();
    this.pf.resetState();
    for (const i of this.vfIndices()) this.vfs[i]!.resetState();
  }

  // ---------------------------------------------------------------- PF driver helpers

  /**
   * Programs one function's SQC and CQC VFT words the way the PF driver does: poll RDY,
   * OP_WR=0, TYPE, CFG=function, DATA_L/H, RDY=0, OP_ENABLE=1, poll RDY. `num` 0 clears.
   */
  programVft(fn: number, base: number, num: number): void {
    const [sl, sh] = encodeSqcVft(base, num);
    const [cl, ch] = encodeCqcVft(num);
    this.vftAccess(VftType.SQC, fn, 0, sl, sh);
    this.vftAccess(VftType.CQC, fn, 0, cl, ch);
  }

  /** Reads a function's SQC VFT through the PF registers (what the vendor driver does). */
  readVft(fn: number): VftEntry {
    const [lo, hi] = this.vftAccess(VftType.SQC, fn, 1, 0, 0);
    return decodeSqcVft(lo, hi);
  }

  /** The PF driver's queue split for `numVfs` VFs (section 4), programmed into the VFT. */
  applyDefaultVft(numVfs: number): { fn: number; base: number; num: number }[] {
    const q = this.profile.qm;
    const plan = planVftAssignment(q.totalQps, q.pfQNum, q.maxQpsPerFunction, numVfs);
    for (const e of plan) this.programVft(e.fn, e.base, e.num);
    return plan;
  }

  private vftAccess(type: number, fn: number, read: 0 | 1, lo: number, hi: number): [number, number] {
    const bar = this.pf.bar2;
    const rdy = () => bar.read(QM_VFT_CFG_RDY, 4, 'pf') & 1;
    if (!rdy()) throw new KernelError('EBUSY', 'VFT configuration not ready');
    bar.write(QM_VFT_CFG_OP_WR, 4, read, 'pf');
    bar.write(QM_VFT_CFG_TYPE, 4, type, 'pf');
    bar.write(QM_VFT_CFG, 4, fn, 'pf');
    if (!read) {
      bar.write(QM_VFT_CFG_DATA_L, 4, lo, 'pf');
      bar.write(QM_VFT_CFG_DATA_H, 4, hi, 'pf');
    }
    bar.write(QM_VFT_CFG_RDY, 4, 0, 'pf');
    bar.write(QM_VFT_CFG_OP_ENABLE, 4, 1, 'pf');
    if (!rdy()) throw new KernelError('ETIMEDOUT', 'VFT configuration did not complete');
    return [bar.read(QM_VFT_CFG_DATA_L, 4, 'pf'), bar.read(QM_VFT_CFG_DATA_H, 4, 'pf')];
  }

  // ---------------------------------------------------------------- debug

  debugSnapshot(): DeviceSnapshot {
    const vft: DeviceSnapshot['vft'] = [];
    for (let fn = 0; fn < VFT_FUNCTIONS; fn++) {
      const e = this.vft.sqc(fn);
      if (e.valid) vft.push({ fn, ...e });
    }
    const functions = [this.pf.debugSnapshot()];
    for (const i of this.vfIndices()) functions.push(this.vfs[i]!.debugSnapshot());
    return {
      profile: this.profile.name,
      queIsoCfg: this.pfRegs.queIsoCfg,
      migRegionInPf: this.pfRegs.migRegionInPf,
      mailboxBacklog: this.mailboxEngine.backlog,
      vft,
      functions,
    };
  }
}
