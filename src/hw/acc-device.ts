/**
 * One HiSilicon ACC accelerator as it sits on the PCI bus: the PF's PCI function (config
 * space, MSI, PCIe, SR-IOV) joined to the QM model and its engine. VFs come and go with the
 * PF's SR-IOV VF Enable bit, exactly as on hardware: enabling N VFs creates N PCI functions
 * and N QM functions, wired the same way as the PF.
 */
import type { Scheduler } from '../sim/scheduler.js';
import type { DeviceProfile } from './profile.js';
import { loadProfile } from './firmware.js';
import { PciPf } from './pci/pf.js';
import type { PciFunction } from './pci/function.js';
import type { PciVf } from './pci/vf.js';
import { QmDevice, type QmFunction, type QmLatencies } from './qm/index.js';
import { createEngine, type Engine } from './engines/engine.js';

export interface AccDeviceOptions {
  /** A profile object or the name of a firmware/*.json file, e.g. "zip-v3". */
  profile: DeviceProfile | string;
  scheduler: Scheduler;
  /** PF address; VFs follow at the SR-IOV offset/stride. */
  bdf?: string;
  latencies?: Partial<QmLatencies>;
  /** Power-on doorbell isolation (QM_QUE_ISO_CFG bit0). */
  doorbellIsolation?: boolean;
  /** Replaces the profile's engine (tests). */
  engine?: Engine;
}

export class AccDevice {
  readonly profile: DeviceProfile;
  readonly pf: PciPf;
  readonly qm: QmDevice;

  constructor(opts: AccDeviceOptions) {
    this.profile = typeof opts.profile === 'string' ? loadProfile(opts.profile) : opts.profile;
    this.pf = new PciPf(this.profile, opts.bdf ?? '0000:75:00.0');
    this.qm = new QmDevice({
      profile: this.profile,
      scheduler: opts.scheduler,
      engine: opts.engine ?? createEngine(this.profile.engine),
      latencies: opts.latencies,
      doorbellIsolation: opts.doorbellIsolation,
    });
    wire(this.pf, this.qm.pf);
    // A PF FLR resets the whole QM (VFs are torn down by the PCI layer first).
    this.pf.onReset(() => this.qm.resetDevice());
    this.pf.onVfEnable((vfs) => {
      for (const vf of vfs) wire(vf, this.qm.addVf(vf.vfIndex));
    });
    this.pf.onVfDisable((vfs) => {
      for (const vf of vfs) if (this.qm.hasVf(vf.vfIndex)) this.qm.removeVf(vf.vfIndex);
    });
  }

  /** The PCI function of VF `index` (1-based), if enabled. */
  vf(index: number): PciVf | undefined {
    return this.pf.vf(index);
  }
}

function wire(fn: PciFunction, q: QmFunction): void {
  q.attach({ dma: fn.dmaPort, msi: (v) => fn.msi.signal(v) });
  fn.attachBar(2, q.bar2);
  if ((fn.barSizes[4] ?? 0) > 0) fn.attachBar(4, q.bar4);
  fn.onReset(() => q.reset());
}
