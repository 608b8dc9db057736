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
 *   busy bit stays set. Clearing it lets the queued commands run.
 *
 * per function
 * - `mailboxHang`: this function's commands stay busy (the engine serves other functions);
 * - `writebackHang`: QM_CACHE_WB_DONE never rises after QM_CACHE_WB_START;
 * - `notReady`: QM_VF_STATE reads 1 (QM_NOT_READY) whatever was written.
 *
 * Zero / false means "no fault". Clearing a hang fault resumes the stalled work.
 */
export class DeviceFaults {
  private ras = 0;
  private engine = 0;
  private mbHang = false;

  constructor(private readonly onMailboxResume: () => void) {}

  get rasStatus(): number { return this.ras; }
  get engineStatus(): number { return this.engine; }
  get mailboxHang(): boolean { return this.mbHang; }

  setRasStatus(value: number): void { this.ras = value >>> 0; }
  setEngineStatus(value: number): void { this.engine = value >>> 0; }
  setMailboxHang(on: boolean): void {
    const was = this.mbHang;
    this.mbHang = on;
    if (was && !on) this.onMailboxResume();
  }

  clearAll(): void {
    this.setRasStatus(0);
    this.setEngineStatus(0);
    this.setMailboxHang(false);
  }
}

export interface FunctionFaultHooks {
  onMailboxResume(): void;
  onWritebackResume(): void;
}

export class FunctionFaults {
  private mbHang = false;
  private wbHang = false;
  private stuckNotReady = false;

  constructor(private readonly hooks: FunctionFaultHooks) {}

  get mailboxHang(): boolean { return this.mbHang; }
  get writebackHang(): boolean { return this.wbHang; }
  get notReady(): boolean { return this.stuckNotReady; }

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

  clearAll(): void {
    this.setMailboxHang(false);
    this.setWritebackHang(false);
    this.setNotReady(false);
  }
}
