import type { DeviceProfile } from '../profile.js';
import { parseBdf, type PciAddress } from './bdf.js';
import { PciFunction, type PciIdentity } from './function.js';
import { PCI_STD_NUM_BARS } from './regs.js';
import { SriovCapability } from './sriov.js';
import { PciVf, type VfParent } from './vf.js';

export type VfEnableCallback = (vfs: readonly PciVf[]) => void;
export type VfDisableCallback = (vfs: readonly PciVf[]) => void;

/** BAR sizes from a profile's `{ "2": size, ... }` map as a 6-entry array. */
export function barSizesFromProfile(map: Record<string, number>): number[] {
  const out = new Array<number>(PCI_STD_NUM_BARS).fill(0);
  for (const [k, v] of Object.entries(map)) out[Number(k)] = v;
  return out;
}

/**
 * A Physical Function built from a device profile: the PciFunction header plus the SR-IOV
 * extended capability. VF Enable creates `NumVFs` PciVf objects (routing id = PF + First VF
 * Offset + VF Stride * (i-1)) and hands them to the `onVfEnable` callbacks so the device
 * model can attach its QM functions; clearing VF Enable (or an FLR of the PF, which clears
 * VF Enable per SR-IOV 2.2.2) runs the `onVfDisable` callbacks and destroys them.
 */
export class PciPf extends PciFunction implements VfParent {
  readonly profile: DeviceProfile;
  readonly sriov: SriovCapability;
  private vfList: PciVf[] = [];
  private readonly enableCbs: VfEnableCallback[] = [];
  private readonly disableCbs: VfDisableCallback[] = [];

  constructor(profile: DeviceProfile, address: string | PciAddress) {
    const addr = typeof address === 'string' ? parseBdf(address) : address;
    super(addr, identityOf(profile, profile.pci.pfDeviceId), {
      barSizes: barSizesFromProfile(profile.bars.pf),
      msiVectors: profile.msi.pfVectors,
    });
    this.profile = profile;
    this.sriov = new SriovCapability(
      this.config,
      {
        totalVfs: profile.sriov.totalVfs,
        vfOffset: profile.sriov.vfOffset,
        vfStride: profile.sriov.vfStride,
        vfDeviceId: profile.pci.vfDeviceId,
        vfBarSizes: barSizesFromProfile(profile.bars.vf),
      },
      { enable: (n) => this.createVfs(n), disable: () => this.destroyVfs() },
    );
  }

  /** VFs currently enabled, VF 1 first. */
  get vfs(): readonly PciVf[] {
    return this.vfList;
  }

  /** VF by 1-based index, or undefined. */
  vf(index: number): PciVf | undefined {
    return this.vfList[index - 1];
  }

  get vfDeviceId(): number {
    return this.sriov.vfDeviceId;
  }

  get vfMemoryEnabled(): boolean {
    return this.sriov.vfEnabled && this.sriov.vfMemoryEnabled;
  }

  vfBarAddress(vfIndex: number, bar: number): number {
    return this.sriov.vfBarAddress(vfIndex, bar);
  }

  onVfEnable(cb: VfEnableCallback): () => void {
    return subscribe(this.enableCbs, cb);
  }

  onVfDisable(cb: VfDisableCallback): () => void {
    return subscribe(this.disableCbs, cb);
  }

  protected override beforeReset(): void {
    if (this.sriov.vfEnabled) this.destroyVfs();
  }

  protected override afterConfigReset(): void {
    this.sriov.syncBarMasks();
  }

  private createVfs(n: number): boolean {
    const last = this.sriov.vfRoutingId(this.routingId, n);
    if (n > 0 && last > 0xffff) return false; // VFs would fall off the end of the bus space
    this.seal();
    const identity = identityOf(this.profile, this.profile.pci.vfDeviceId);
    const sizes = this.sriov.vfBarSizes();
    const vfs: PciVf[] = [];
    for (let i = 1; i <= n; i++) {
      const addr = { domain: this.domain, routingId: this.sriov.vfRoutingId(this.routingId, i) };
      vfs.push(new PciVf(this, i, addr, identity, sizes, this.profile.msi.vfVectors));
    }
    this.vfList = vfs;
    for (const cb of [...this.enableCbs]) cb(vfs);
    return true;
  }

  private destroyVfs(): void {
    const vfs = this.vfList;
    this.vfList = [];
    for (const cb of [...this.disableCbs]) cb(vfs);
    for (const vf of vfs) vf.destroy();
  }
}

function identityOf(p: DeviceProfile, deviceId: number): PciIdentity {
  return {
    vendorId: p.pci.vendorId,
    deviceId,
    revision: p.pci.revision,
    classCode: p.pci.classCode,
    subsystemVendorId: p.pci.subsystemVendorId,
    subsystemId: p.pci.subsystemId,
  };
}

function subscribe<T>(list: T[], cb: T): () => void {
  list.push(cb);
  return () => {
    const i = list.indexOf(cb);
    if (i >= 0) list.splice(i, 1);
  };
}
