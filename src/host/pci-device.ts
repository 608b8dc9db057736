/**
 * One PCI function as the host kernel knows it (`struct pci_dev`): its address, the ids read
 * at enumeration, SR-IOV linkage, IOMMU group, the bound driver and its private data.
 *
 * Ids are captured when the device is added. A VF's vendor and device ids come from its PF
 * (vendor) and the PF's SR-IOV VF Device ID, because a VF's own registers read 0xFFFF.
 *
 * While no driver owns the device, its DMA goes through the host's default (identity) DMA
 * path and its MSI messages are routed to `irqHandler` (set by the bound driver through
 * `allocIrqVectors`). A driver that takes the DMA or MSI routing over (vfio) gets the host
 * defaults back when it is unbound.
 */
import type { DmaPort } from '../hw/dma.js';
import type { PciFunction } from '../hw/pci/function.js';
import { PciPf } from '../hw/pci/pf.js';
import { PciVf } from '../hw/pci/vf.js';
import {
  PCI_CLASS_PROG, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_MSI_ADDRESS_HI,
  PCI_MSI_ADDRESS_LO, PCI_MSI_DATA_64, PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE, PCI_MSI_FLAGS_QSIZE,
  PCI_REVISION_ID, PCI_SUBSYSTEM_ID, PCI_SUBSYSTEM_VENDOR_ID, PCI_CLASS_DEVICE,
} from '../hw/pci/regs.js';
import { fail } from '../uapi/errno.js';
import type { HostPciDriver } from './driver.js';
import type { HostLink, HostPciBus } from './pci-bus.js';
import type { PciMatchTarget } from './pci-ids.js';

/** Where the host's interrupt controller decodes MSI writes (the doorbell of an ITS/APIC). */
export const HOST_MSI_ADDRESS = 0xfee00000;

export type IrqHandler = (vector: number) => void;

export class HostPciDevice implements PciMatchTarget {
  /** The bus the device sits on (drivers reach pci_enable_sriov & co. through it). */
  readonly bus: HostPciBus;
  readonly bdf: string;
  readonly vendor: number;
  readonly device: number;
  readonly revision: number;
  readonly classCode: number;
  readonly subsystemVendor: number;
  readonly subsystemDevice: number;
  readonly isVirtfn: boolean;
  /** The PF of a VF. */
  readonly physfn: HostPciDevice | undefined;
  /** 0-based VF index under the PF (`pci_iov_vf_id`); the vendor driver's vf_id is this + 1. */
  readonly vfIndex: number | undefined;
  /** Singleton IOMMU group number (/sys/kernel/iommu_groups/<n>). */
  readonly iommuGroup: number;
  /** The host's own DMA path for this requester (identity domain). */
  readonly defaultDma: DmaPort;
  /** Driver private data (`pci_set_drvdata`); cleared when the driver is unbound. */
  drvdata: unknown;
  /** Interrupt handler of the bound driver, called with the MSI vector. */
  irqHandler: IrqHandler | undefined;
  /** PF only: probe VFs automatically when SR-IOV creates them (sriov_drivers_autoprobe). */
  sriovDriversAutoprobe = true;
  /** MSI messages that arrived with no handler installed. */
  spuriousIrqs = 0;

  private boundDriver: HostPciDriver | undefined;
  private override: string | undefined;
  private alive = true;
  private irqVectors = 0;

  constructor(
    readonly fn: PciFunction,
    opts: { bus: HostPciBus; iommuGroup: number; defaultDma: DmaPort; physfn: HostPciDevice | undefined },
  ) {
    this.bus = opts.bus;
    this.bdf = fn.bdf;
    this.vendor = fn.vendorId;
    this.device = fn.deviceId;
    this.revision = fn.configRead(PCI_REVISION_ID, 1);
    this.classCode = ((fn.configRead(PCI_CLASS_DEVICE, 2) << 8) | fn.configRead(PCI_CLASS_PROG, 1)) >>> 0;
    this.subsystemVendor = fn.configRead(PCI_SUBSYSTEM_VENDOR_ID, 2);
    this.subsystemDevice = fn.configRead(PCI_SUBSYSTEM_ID, 2);
    this.isVirtfn = fn instanceof PciVf;
    this.physfn = opts.physfn;
    this.vfIndex = fn instanceof PciVf ? fn.vfIndex - 1 : undefined;
    this.iommuGroup = opts.iommuGroup;
    this.defaultDma = opts.defaultDma;
    this.restoreHostRouting();
  }

  /** The host (VFIO registry and VMM process) of the bus, for drivers shared by hosts. */
  get host(): HostLink | undefined {
    return this.bus.host;
  }

  get isPhysfn(): boolean {
    return this.fn instanceof PciPf;
  }

  /** The SR-IOV-capable function of a PF, else undefined. */
  get pf(): PciPf | undefined {
    return this.fn instanceof PciPf ? this.fn : undefined;
  }

  get driver(): HostPciDriver | undefined {
    return this.boundDriver;
  }

  /** driver_override: the only driver name this device may bind to. */
  get driverOverride(): string | undefined {
    return this.override;
  }

  /** False once the device was removed from the bus. */
  get present(): boolean {
    return this.alive;
  }

  /** Number of VFs currently enabled under this PF (`pci_num_vf`). */
  get numVfs(): number {
    return this.fn instanceof PciPf ? this.fn.vfs.length : 0;
  }

  // ---- state owned by the bus ------------------------------------------------------------

  /** @internal */
  setDriver(drv: HostPciDriver | undefined): void {
    this.boundDriver = drv;
  }

  /** @internal */
  setOverride(name: string | undefined): void {
    this.override = name;
  }

  /** @internal */
  markRemoved(): void {
    this.alive = false;
  }

  /** @internal Host DMA and MSI routing, as after enumeration (also after an unbind). */
  restoreHostRouting(): void {
    this.fn.setUpstreamDma(this.defaultDma);
    this.fn.setMsiSink((v) => this.deliverIrq(v));
  }

  private deliverIrq(vector: number): void {
    if (this.irqHandler) this.irqHandler(vector);
    else this.spuriousIrqs++;
  }

  // ---- helpers drivers use (pci_enable_device_mem, pci_set_master, MSI allocation) ----------

  /** `pci_enable_device_mem` + `pci_set_master`. */
  enableMemoryAndMaster(): void {
    const cmd = this.fn.configRead(PCI_COMMAND, 2);
    this.fn.configWrite(PCI_COMMAND, 2, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  }

  /** `pci_clear_master` (what pci_disable_device does to the command register). */
  clearMaster(): void {
    const cmd = this.fn.configRead(PCI_COMMAND, 2);
    if (cmd & PCI_COMMAND_MASTER) this.fn.configWrite(PCI_COMMAND, 2, cmd & ~PCI_COMMAND_MASTER);
  }

  /**
   * `pci_alloc_irq_vectors(dev, n, n, PCI_IRQ_MSI)`: programs the MSI capability for `n`
   * vectors (Multiple Message Enable rounded up to a power of two) and installs `handler`.
   * EINVAL if MSI is already enabled or n < 1; ENOSPC if the function offers fewer vectors.
   */
  allocIrqVectors(n: number, handler: IrqHandler): number {
    const msi = this.fn.msi;
    if (!Number.isInteger(n) || n < 1) fail('EINVAL', `vector count ${n}`);
    if (this.irqVectors > 0 || msi.enabled) fail('EINVAL', 'MSI already enabled');
    if (n > msi.capableVectors) fail('ENOSPC', `${n} MSI vectors requested, ${msi.capableVectors} available`);
    let mme = 0;
    while (1 << mme < n) mme++;
    const off = msi.offset;
    this.fn.configWrite(off + PCI_MSI_ADDRESS_LO, 4, HOST_MSI_ADDRESS);
    this.fn.configWrite(off + PCI_MSI_ADDRESS_HI, 4, 0);
    this.fn.configWrite(off + PCI_MSI_DATA_64, 2, 0);
    this.irqHandler = handler;
    this.irqVectors = n;
    const ctrl = this.fn.configRead(off + PCI_MSI_FLAGS, 2);
    this.fn.configWrite(off + PCI_MSI_FLAGS, 2, (ctrl & ~PCI_MSI_FLAGS_QSIZE) | (mme << 4) | PCI_MSI_FLAGS_ENABLE);
    return n;
  }

  /** `pci_free_irq_vectors`: MSI disabled, handler removed. */
  freeIrqVectors(): void {
    if (this.irqVectors === 0) return;
    const off = this.fn.msi.offset;
    const ctrl = this.fn.configRead(off + PCI_MSI_FLAGS, 2);
    this.fn.configWrite(off + PCI_MSI_FLAGS, 2, ctrl & ~(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE));
    this.irqVectors = 0;
    this.irqHandler = undefined;
  }

  /** @internal Forget MSI bookkeeping without touching the (possibly dead) function. */
  dropIrqState(): void {
    this.irqVectors = 0;
    this.irqHandler = undefined;
  }
}
