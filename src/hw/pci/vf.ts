import type { PciAddress } from './bdf.js';
import { PciFunction, type PciIdentity } from './function.js';

/** What a VF needs from its PF (kept as an interface so vf.ts does not import pf.ts). */
export interface VfParent {
  readonly vendorId: number;
  readonly vfDeviceId: number;
  /** The PF's SR-IOV VF Memory Space Enable. */
  readonly vfMemoryEnabled: boolean;
  vfBarAddress(vfIndex: number, bar: number): number;
}

/**
 * A Virtual Function. Its config space follows SR-IOV 3.4: Vendor/Device ID read 0xFFFF,
 * BARs read 0 (the PF's SR-IOV capability describes them), Command implements only Bus
 * Master Enable, and memory decoding follows the PF's VF MSE bit. `vendorId`/`deviceId`
 * return the ids Linux derives from the PF.
 *
 * A VF exists from VF Enable until VF Enable is cleared (or the PF is reset); after that
 * it is destroyed: config reads return all-ones, MMIO is all-ones, DMA and MSI are blocked,
 * and its attachments (BAR regions, upstream port, sink, reset callbacks) are dropped.
 */
export class PciVf extends PciFunction {
  /** 1-based index under the PF (`pci_iov_vf_id() + 1`, the vendor driver's vf_id). */
  readonly vfIndex: number;
  private alive = true;

  constructor(
    private readonly parent: VfParent,
    vfIndex: number,
    addr: PciAddress,
    identity: PciIdentity,
    barSizes: readonly number[],
    msiVectors: number,
  ) {
    super(addr, identity, { barSizes, msiVectors }, true);
    this.vfIndex = vfIndex;
  }

  override get vendorId(): number {
    return this.parent.vendorId;
  }

  override get deviceId(): number {
    return this.parent.vfDeviceId;
  }

  override get present(): boolean {
    return this.alive;
  }

  override get memoryEnabled(): boolean {
    return this.alive && this.parent.vfMemoryEnabled;
  }

  override barAddress(bar: number): number {
    if (!Number.isInteger(bar) || bar < 0 || bar > 5) return 0;
    return this.parent.vfBarAddress(this.vfIndex, bar);
  }

  /** Called by the PF when VF Enable is cleared. */
  destroy(): void {
    this.alive = false;
    this.gatesChanged();
    this.bars.fill(undefined);
    this.upstream = undefined;
    this.setMsiSink(undefined);
    this.resetCallbacks.length = 0;
  }
}
