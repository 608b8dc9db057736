/**
 * The simulated host: accelerators on a PCI bus, the driver core, sysfs and /dev/vfio in a
 * memfs tree, the IOMMU groups and the VFIO registry, plus the one user process (the VMM)
 * whose address space and fd table VFIO works with.
 *
 * Host-side DMA (what a host driver's own queues would use) goes through one identity
 * IOMMU domain that maps the host's RAM (`memory`) 1:1 at IOVA 0 — the iommu.passthrough
 * setup common on these servers. Every function starts on that path; a VFIO container
 * replaces it while a group is attached, and the host restores it when the device's driver
 * is unbound.
 *
 * Entry points for "user space" (sysfsRead/Write, openDev, registerDriver...) return a value
 * or -errno and never throw for bad input.
 */
import { AccDevice } from '../hw/acc-device.js';
import type { Engine } from '../hw/qm/engine-contract.js';
import type { QmLatencies } from '../hw/qm/qm-function.js';
import type { DeviceProfile, EngineKind } from '../hw/profile.js';
import { formatBdf, parseBdf } from '../hw/pci/bdf.js';
import { IOMMU_READ, IOMMU_WRITE, IommuDomain } from '../iommu/domain.js';
import { SparseMemory } from '../mem/sparse-memory.js';
import { UserAddressSpace } from '../mem/user-space.js';
import { Scheduler } from '../sim/scheduler.js';
import { FdTable } from '../vfio/fd.js';
import { VfioContainer } from '../vfio/container.js';
import { VfioGroup } from '../vfio/group.js';
import { syscall } from '../uapi/errno.js';
import { createHisiQmPfDrivers, type HisiQmPfDriverOptions } from '../drivers/hisi-qm/pf-driver.js';
import type { HostPciDriver } from './driver.js';
import { IommuGroups } from './iommu-groups.js';
import { HostPciBus } from './pci-bus.js';
import type { HostPciDevice } from './pci-device.js';
import { PciSysfs } from './pci-sysfs.js';
import { PseudoFs } from './pseudo-fs.js';
import { HostVfio, type VfioBackend, type VfioProcess } from './vfio-registry.js';

export interface HostDeviceSpec {
  /** A profile object or a firmware name such as "zip-v3". */
  profile: DeviceProfile | string;
  /** PF address; by default the engine's usual slot (ZIP 75:00.0, SEC 76:00.0, HPRE 79:00.0). */
  bdf?: string;
  latencies?: Partial<QmLatencies>;
  doorbellIsolation?: boolean;
  engine?: Engine;
}

export interface HostOptions {
  scheduler?: Scheduler;
  /** Accelerators to install at boot. */
  devices?: readonly (string | HostDeviceSpec)[];
  /** The VMM process (created when absent). */
  user?: UserAddressSpace;
  fds?: FdTable;
  /** VFIO behind /dev/vfio: the src/vfio implementation by default, `null` for none (opens give ENXIO). */
  vfio?: VfioBackend | null;
  /** Host RAM behind the identity DMA domain (sparse; default 4 GiB). */
  hostMemoryBytes?: number;
  /** PF driver options, or false to boot without the hisi PF drivers. */
  pfDriver?: HisiQmPfDriverOptions | false;
}

/** The real src/vfio group and type1 container behind /dev/vfio (tests may pass their own). */
function vfioBackend(proc: VfioProcess): VfioBackend {
  return {
    createGroup: (id, iommuBacked) => new VfioGroup({ id, fds: proc.fds, iommuBacked }),
    createContainer: (p) => new VfioContainer({ user: p.user, fds: p.fds }),
  };
}

/** Where each engine's PF sits on a Kunpeng 920 socket; the second socket adds 0x80. */
const DEFAULT_BUS: Readonly<Record<EngineKind, number>> = { zip: 0x75, sec: 0x76, hpre: 0x79 };

export class Host {
  readonly scheduler: Scheduler;
  readonly fs: PseudoFs;
  readonly groups: IommuGroups;
  readonly bus: HostPciBus;
  readonly sysfs: PciSysfs;
  readonly vfio: HostVfio;
  readonly process: VfioProcess;
  /** Host RAM and its identity DMA domain. */
  readonly memory: SparseMemory;
  readonly dmaDomain: IommuDomain;
  private readonly accs: AccDevice[] = [];

  constructor(opts: HostOptions = {}) {
    this.scheduler = opts.scheduler ?? new Scheduler();
    this.fs = new PseudoFs();
    this.groups = new IommuGroups();
    this.memory = new SparseMemory(opts.hostMemoryBytes ?? 4 * 2 ** 30);
    this.dmaDomain = new IommuDomain();
    this.dmaDomain.map(0, this.memory.size, this.memory, 0, IOMMU_READ | IOMMU_WRITE);
    this.process = { user: opts.user ?? new UserAddressSpace(), fds: opts.fds ?? new FdTable() };
    this.vfio = new HostVfio(this.fs, opts.vfio === null ? undefined : (opts.vfio ?? vfioBackend(this.process)));
    this.bus = new HostPciBus({
      scheduler: this.scheduler,
      groups: this.groups,
      defaultDma: (bdf) => this.dmaDomain.port(bdf),
      host: { vfio: this.vfio, process: this.process },
    });
    this.sysfs = new PciSysfs(this.fs, this.bus);
    if (opts.pfDriver !== false) {
      for (const d of createHisiQmPfDrivers(opts.pfDriver ?? {})) this.bus.registerDriver(d);
    }
    for (const d of opts.devices ?? []) this.addAccelerator(typeof d === 'string' ? { profile: d } : d);
  }

  /** Builds an accelerator and enumerates its PF (probing the PF driver if registered). */
  addAccelerator(spec: HostDeviceSpec): AccDevice {
    const acc = new AccDevice({
      profile: spec.profile,
      scheduler: this.scheduler,
      bdf: spec.bdf ?? this.freeSlot(spec.profile),
      latencies: spec.latencies,
      doorbellIsolation: spec.doorbellIsolation,
      engine: spec.engine,
    });
    this.bus.addDevice(acc.pf);
    this.accs.push(acc);
    return acc;
  }

  private freeSlot(profile: DeviceProfile | string): string {
    const name = typeof profile === 'string' ? profile : profile.engine;
    const engine = (['zip', 'sec', 'hpre'] as const).find((e) => name.startsWith(e)) ?? 'zip';
    const used = new Set(this.accs.map((a) => (parseBdf(a.pf.bdf).routingId >> 8) & 0xff));
    let bus = DEFAULT_BUS[engine];
    for (let k = 0; used.has(bus) && k < 256; k++) bus = (DEFAULT_BUS[engine] + 0x80 + k) & 0xff;
    return formatBdf(0, bus << 8);
  }

  get accelerators(): readonly AccDevice[] {
    return this.accs;
  }

  /** The accelerator whose PF is at `bdf`. */
  accelerator(bdf: string): AccDevice | undefined {
    return this.accs.find((a) => a.pf.bdf === bdf);
  }

  device(bdf: string): HostPciDevice | undefined {
    return this.bus.device(bdf);
  }

  // ---- user-space entry points ------------------------------------------------------------

  /** Reads a sysfs attribute: its text or -errno. */
  sysfsRead(path: string): string | number {
    return this.fs.read(path);
  }

  /** Writes a sysfs attribute: 0 or -errno. */
  sysfsWrite(path: string, text: string): number {
    return this.fs.write(path, text);
  }

  sysfsReadlink(path: string): string | number {
    return this.fs.readlink(path);
  }

  sysfsList(path: string): string[] | number {
    return this.fs.list(path);
  }

  /** open(2) of /dev/vfio/vfio or /dev/vfio/<group> in the VMM process: fd or -errno. */
  openDev(path: string): number {
    return this.vfio.open(path, this.process);
  }

  /** Loads a driver module (`pci_register_driver`): 0 or -errno. */
  registerDriver(drv: HostPciDriver): number {
    return syscall(() => this.bus.registerDriver(drv));
  }

  /** Unloads a driver module: 0 or -errno. */
  unregisterDriver(name: string): number {
    return syscall(() => this.bus.unregisterDriver(name));
  }
}
