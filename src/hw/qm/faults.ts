/**
 * Fault-injection switches. Each one reproduces a hardware misbehaviour the vendor driver
 * has an error path for (qm-hardware.md section 1, hisi-acc-vfio-pci.md sections 4-5):
 *
 * device-wide
 * - `rasStatus`: QM_ABNORMAL_INT_STATUS reads this value whatever the real state (a stuck
 *   RAS error; the vendor driver's stop path must give up with EBUSY);
 * - `engineStatus`: the engine's INT_STATUS register (SEC 0x301008, HPRE 0x301800,
 *   ZIP 0x3010AC) reads this value;
 * - `mailboxHang`: the shared mailbox engine stops completing commands; every function's
 *   busy bit stays set. Clearing it lets the queued commands run;
 * - `vftNotReady`: QM_VFT_CFG_RDY (0x10006C) bit0 never reads 1 (qm-hardware.md section 4:
 *   the PF driver polls it before and after each VFT access and times out). Only the status
 *   bit is stuck: an access software starts anyway still happens.
 *
 * per function
 * - `mailboxHang`: this function's commands stay busy (the engine serves other functions);
 * - `writebackHang`: QM_CACHE_WB_DONE never rises after QM_CACHE_WB_START;
 * - `notReady`: QM_VF_STATE reads 1 (QM_NOT_READY) whatever was written;
 * - `ifcStatusStuck`: an IFC interrupt that never clears (V3+, hisi-acc-vfio-pci.md section 4:
 *   the stop polls both registers for 0, else EBUSY): QM_IFC_INT_STATUS (0x28) bit0 reads 1
 *   and/or, on a VF, QM_IFC_INT_SET_V (0x2C) bit0 reads 1 (a VF->PF interrupt the PF never
 *   acks). Reads only: no interrupt is raised and nothing is latched.
 *
 * Zero / false means "no fault". Clearing a hang fault resumes the stalled work.
 *
 * The fault tap (`tap`) lets a fault matrix fire a fault at the N-th event of a run without
 * touching model code: the model calls it synchronously at each event below, before the
 * event takes effect, so a switch flipped inside the callback applies to that very event.
 */
import type { AccessOrigin } from '../dma.js';

/**
 * - `mailbox`: a function's mailbox latched a command (before it is submitted to the engine);
 * - `writeback-start`: QM_CACHE_WB_START was written with bit0 set (before the write-back starts);
 * - `status-read`: a non-guest read of a status register a driver polls (before the value is
 *   computed).
 */
export type FaultPointKind = 'mailbox' | 'writeback-start' | 'status-read';

/**
 * One tapped event. The model reuses a single object per device: it is valid only during the
 * callback (copy what you keep). Fields that do not apply to a kind read 0 / null.
 */
export interface FaultPoint {
  kind: FaultPointKind;
  /** 1-based number of this event since the tap was installed (across all kinds). */
  seq: number;
  /** Function number: 0 = PF, n = VF n. */
  fn: number;
  /** mailbox: command (MbCmd), op (0 = to hardware / write, 1 = from hardware / read), queue. */
  cmd: number;
  op: 0 | 1;
  queue: number;
  /** True for a mailbox write command (op 0) and for writeback-start. */
  write: boolean;
  /** status-read: BAR2 offset (function-relative; PF-only registers at their PF BAR2 offset). */
  reg: number;
  /** status-read: who reads ('driver', 'pf', 'vmm', 'test'; never 'guest'). */
  origin: AccessOrigin | null;
}

export type FaultTap = (ev: FaultPoint) => void;

export class DeviceFaults {
  private ras = 0;
  private engine = 0;
  private mbHang = false;
  private vftStuck = false;
  /** @internal The installed tap, read by the model's hot paths (set it through `tap`). */
  tapFn: FaultTap | null = null;
  private tapSeq = 0;
  private readonly point: FaultPoint = {
    kind: 'mailbox', seq: 0, fn: 0, cmd: 0, op: 0, queue: 0, write: false, reg: 0, origin: null,
  };

  constructor(private readonly onMailboxResume: () => void) {}

  /** The fault tap; null (default) costs the model one branch per tapped path. */
  get tap(): FaultTap | null { return this.tapFn; }
  /** Installing (or clearing) a tap restarts `seq` at 1. */
  set tap(fn: FaultTap | null) {
    this.tapFn = fn;
    this.tapSeq = 0;
  }
  /** Events delivered to the current tap so far. */
  get tapEvents(): number { return this.tapSeq; }

  /** @internal Called by the model when `tap` is set. */
  tapMailbox(fn: number, cmd: number, op: 0 | 1, queue: number): void {
    const p = this.fill('mailbox', fn);
    p.cmd = cmd;
    p.op = op;
    p.queue = queue;
    p.write = op === 0;
    this.deliver(p);
  }

  /** @internal */
  tapWritebackStart(fn: number): void {
    const p = this.fill('writeback-start', fn);
    p.write = true;
    this.deliver(p);
  }

  /** @internal */
  tapStatusRead(fn: number, reg: number, origin: AccessOrigin): void {
    const p = this.fill('status-read', fn);
    p.reg = reg;
    p.origin = origin;
    this.deliver(p);
  }

  private fill(kind: FaultPointKind, fn: number): FaultPoint {
    const p = this.point;
    p.kind = kind;
    p.seq = ++this.tapSeq;
    p.fn = fn;
    p.cmd = 0;
    p.op = 0;
    p.queue = 0;
    p.write = false;
    p.reg = 0;
    p.origin = null;
    return p;
  }

  private deliver(p: FaultPoint): void {
    const t = this.tapFn;
    if (t !== null) t(p);
  }

  get rasStatus(): number { return this.ras; }
  get engineStatus(): number { return this.engine; }
  get mailboxHang(): boolean { return this.mbHang; }
  get vftNotReady(): boolean { return this.vftStuck; }

  setRasStatus(value: number): void { this.ras = value >>> 0; }
  setEngineStatus(value: number): void { this.engine = value >>> 0; }
  setMailboxHang(on: boolean): void {
    const was = this.mbHang;
    this.mbHang = on;
    if (was && !on) this.onMailboxResume();
  }
  setVftNotReady(on: boolean): void { this.vftStuck = on; }

  clearAll(): void {
    this.setRasStatus(0);
    this.setEngineStatus(0);
    this.setMailboxHang(false);
    this.setVftNotReady(false);
  }
}

/** Which IFC status registers `ifcStatusStuck` holds at "interrupt pending". */
export type IfcStuck = 'none' | 'status' | 'set-v' | 'both';

/** Bit0 of QM_IFC_INT_STATUS / QM_IFC_INT_SET_V (the only defined bit of each). */
const IFC_PENDING = 1;

export interface FunctionFaultHooks {
  onMailboxResume(): void;
  onWritebackResume(): void;
}

export class FunctionFaults {
  private mbHang = false;
  private wbHang = false;
  private stuckNotReady = false;
  private ifcStuck: IfcStuck = 'none';
  /**
   * @internal What QM_IFC_INT_STATUS / QM_IFC_INT_SET_V read while stuck: IFC_PENDING, or 0 for
   * "not stuck" (the model ORs it into the real value, so off costs one OR).
   */
  ifcStatusForce = 0;
  /** @internal */
  ifcSetForce = 0;

  constructor(private readonly hooks: FunctionFaultHooks) {}

  get mailboxHang(): boolean { return this.mbHang; }
  get writebackHang(): boolean { return this.wbHang; }
  get notReady(): boolean { return this.stuckNotReady; }
  /** Which IFC status registers read a pending interrupt that never clears ('none' = off). */
  get ifcStatusStuck(): IfcStuck { return this.ifcStuck; }

  setMailboxHang(on: boolean): void {
    const was = this.mbHang;
    this.mbHang = on;
    if (was && !on) this.hooks.onMailboxResume();
  }
  setWritebackHang(on: boolean): void {
    const was = this.wbHang;
    this.wbHang = on;
    if (was && !on) this.hooks.onWritebackResume();
  }
  setNotReady(on: boolean): void { this.stuckNotReady = on; }
  /**
   * Holds QM_IFC_INT_STATUS ('status'), QM_IFC_INT_SET_V ('set-v') or both at bit0 = 1;
   * `true` means 'both', `false` 'none'.
   */
  setIfcStatusStuck(which: IfcStuck | boolean): void {
    const w: IfcStuck = which === true ? 'both' : which === false ? 'none' : which;
    this.ifcStuck = w;
    this.ifcStatusForce = w === 'status' || w === 'both' ? IFC_PENDING : 0;
    this.ifcSetForce = w === 'set-v' || w === 'both' ? IFC_PENDING : 0;
  }

  clearAll(): void {
    this.setMailboxHang(false);
    this.setWritebackHang(false);
    this.setNotReady(false);
    this.setIfcStatusStuck('none');
  }
}
