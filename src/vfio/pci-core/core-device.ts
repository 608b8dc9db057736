/**
 * vfio-pci-core for one PCI function: what a device bound to vfio-pci (or to a variant driver
 * built on it) does when user space opens it, after Linux vfio_pci_core.c.
 *
 * Life cycle. The first open enables the device (memory decoding for a PF, a function reset
 * with the config state saved around it, the saved state kept for close, config
 * virtualization set up, MSI routed to the core) and then runs the variant's open. The last
 * close (files and mappings both count, a mapping keeps the device open like a vma keeps its
 * file) runs the variant's close, stops DMA, frees interrupts, ioeventfds, device regions and
 * migration data fds, resets the function and restores the state saved at open.
 *
 * Resets the core performs (VFIO_DEVICE_RESET, Initiate FLR written through config space, the
 * reset at open) keep the function's config state: command, BARs, PCIe control and the MSI
 * setup are saved before and written back after, as pci_try_reset_function does; then the
 * variant's reset hook runs (reset_done). A reset done to the function by anyone else also
 * reaches that hook, without the restore.
 */
import { fail, KernelError } from '../../uapi/errno.js';
import {
  VFIO_DEVICE_FEATURE,
  VFIO_MIGRATION_STOP_COPY,
  VFIO_PCI_BAR5_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_INDEX_TO_OFFSET,
  VFIO_PCI_NUM_REGIONS,
  VFIO_PCI_OFFSET_TO_INDEX,
  VFIO_PCI_ROM_REGION_INDEX,
  VFIO_PCI_VGA_REGION_INDEX,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '../../uapi/vfio.js';
import type { PciFunction } from '../../hw/pci/function.js';
import {
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP_FLR,
  PCI_STD_NUM_BARS,
} from '../../hw/pci/regs.js';
import type { IommuDomain } from '../../iommu/domain.js';
import { PAGE_SIZE } from '../../mem/sparse-memory.js';
import type { VfioFile } from '../fd.js';
import { BarMapping, barTransfer, type BarIoHost } from './bar-io.js';
import { ConfigVirt, type ConfigVirtHost } from './config-virt.js';
import { VfioDeviceFile } from './device-file.js';
import { coreDeviceIoctl } from './device-ioctls.js';
import { deviceFeature, type FeatureHost } from './feature.js';
import type { HostPciDeviceLike, VfioGroupMember, VfioProcess } from './host-types.js';
import { IoeventfdTable } from './ioeventfd.js';
import { VfioPciIrqs } from './irqs.js';
import { MigrationDataFile } from './mig-file.js';
import type {
  DmaLoggingRange,
  IoctlArg,
  VfioMapping,
  VfioPciDeviceRegion,
  VfioPciVariantOps,
  VfioRegionInfo,
} from './ops.js';
import { restorePciState, savePciState, type SavedPciState } from './pci-state.js';
import { regionTypeCap } from './region-caps.js';

export interface VfioPciCoreOptions {
  fn: PciFunction;
  /** The process whose fd table and memory the device's ioctls use. */
  process: VfioProcess;
  variant?: VfioPciVariantOps;
  /** The host's device object, for drivers that need their PF (hisi_qm_get_pf_qm). */
  hostDev?: HostPciDeviceLike;
  /** Group member name; the function's BDF by default. */
  name?: string;
}

export class VfioPciCoreDevice implements VfioGroupMember {
  readonly name: string;
  readonly fn: PciFunction;
  readonly process: VfioProcess;
  readonly variant: VfioPciVariantOps | null;
  readonly hostDev: HostPciDeviceLike | undefined;
  readonly irqs: VfioPciIrqs;
  readonly ioeventfds: IoeventfdTable;

  private users = 0;
  private readonly files = new Set<VfioDeviceFile>();
  private readonly mappings = new Set<BarMapping>();
  private regions: VfioPciDeviceRegion[] = [];
  /** Data fds handed out while open (an array: a few at a time, churned on every arc). */
  private dataFiles: VfioFile[] = [];
  private cfg: ConfigVirt | null = null;
  private resetWorks = false;
  private openState: SavedPciState | null = null;
  private inCoreReset = false;
  private removed = false;
  private enabling = false;
  private domain: IommuDomain | null = null;
  private readonly unsubscribeReset: () => void;
  private readonly barHost: BarIoHost;
  private readonly cfgHost: ConfigVirtHost;
  private readonly featureHost: FeatureHost;

  constructor(opts: VfioPciCoreOptions) {
    this.fn = opts.fn;
    this.process = opts.process;
    this.variant = opts.variant ?? null;
    this.hostDev = opts.hostDev;
    this.name = opts.name ?? opts.fn.bdf;
    validateVariant(this.variant);
    this.irqs = new VfioPciIrqs(this.fn, this.process.fds);
    const self = this;
    this.barHost = {
      fn: this.fn,
      get memoryEnabled() {
        return self.memoryEnabled;
      },
    };
    this.cfgHost = {
      fn: this.fn,
      barSize: (bar) => this.barSize(bar),
      get msiEnabled() {
        return self.irqs.msiEnabled;
      },
      get msiQmax() {
        return self.irqs.msiQmax;
      },
      resetFunction: () => this.resetFunction(),
    };
    this.ioeventfds = new IoeventfdTable({
      fn: this.fn,
      fds: this.process.fds,
      barSize: (bar) => this.barSize(bar),
      get memoryEnabled() {
        return self.memoryEnabled;
      },
    });
    this.featureHost = {
      core: this,
      migration: this.variant?.migration,
      log: this.variant?.log,
      process: this.process,
      logging: null,
      adoptDataFile: (file) => {
        const fd = this.process.fds.install(file);
        this.rememberDataFile(file);
        return fd;
      },
    };
    this.unsubscribeReset = this.fn.onReset(() => {
      if (!this.inCoreReset) this.variant?.reset?.(this);
    });
  }

  /**
   * Keeps `file` for close, in the slot of a file the user closed and the driver already
   * disabled if there is one: close would do nothing more to such a file, and a long session
   * (a data fd per save or resume) must not keep every file it ever made. Reusing a slot,
   * rather than compacting, keeps the array from reallocating on every arc.
   */
  private rememberDataFile(file: VfioFile): void {
    const files = this.dataFiles;
    let free = -1;
    for (let i = 0; i < files.length; i++) {
      const f = files[i]!;
      if (f === file) return;
      if (free < 0 && f.closed && (!(f instanceof MigrationDataFile) || f.disabled)) free = i;
    }
    if (free >= 0) files[free] = file;
    else files.push(file);
  }

  // ---- state -------------------------------------------------------------------------------

  get isOpen(): boolean {
    return this.users > 0;
  }

  /** Memory decoding as vfio sees it: a VF always decodes (its PF's VF MSE governs). */
  get memoryEnabled(): boolean {
    return this.fn.isVf || (this.cfg !== null && this.cfg.memoryBit);
  }

  /** Whether VFIO_DEVICE_RESET works (the function advertises FLR). Known after open. */
  get canReset(): boolean {
    return this.resetWorks;
  }

  /** The running DMA logging ranges (null when logging is off). */
  get dmaLogging(): readonly DmaLoggingRange[] | null {
    return this.featureHost.logging;
  }

  /** The IOMMU domain the container attached (null when detached). */
  get iommuDomain(): IommuDomain | null {
    return this.domain;
  }

  /** The virtual config space (null while closed); for debug views. */
  get vconfig(): Uint8Array | null {
    return this.cfg?.vconfig ?? null;
  }

  get numRegions(): number {
    return VFIO_PCI_NUM_REGIONS + this.regions.length;
  }

  /** Size of BAR `bar` (0..5); 0 for absent BARs and for any other index. */
  barSize(bar: number): number {
    return Number.isInteger(bar) && bar >= 0 && bar < PCI_STD_NUM_BARS ? (this.fn.barSizes[bar] ?? 0) : 0;
  }

  // ---- group member -----------------------------------------------------------------------

  setIommu(domain: IommuDomain | null): void {
    this.domain = domain;
    this.fn.setUpstreamDma(domain ? domain.port(this.name) : undefined);
  }

  openDevice(): VfioDeviceFile {
    if (this.removed) fail('ENODEV', `${this.name} is being removed`);
    if (this.users === 0) this.enable();
    this.users++;
    const f = new VfioDeviceFile(this);
    this.files.add(f);
    return f;
  }

  /** A device fd was closed. */
  releaseFile(f: VfioDeviceFile): void {
    if (!this.files.delete(f)) return;
    this.dropUser();
  }

  /**
   * Driver unbind: the host wants the device back. Signals the REQ eventfd (so a cooperative
   * user can let go), then closes what is still open: every device fd and mapping.
   */
  shutdown(): void {
    if (this.removed) return;
    this.removed = true;
    if (this.users > 0) this.irqs.signalRequest();
    for (const f of [...this.files]) f.close();
    for (const m of [...this.mappings]) m.unmap();
    this.unsubscribeReset();
    this.setIommu(null);
  }

  /**
   * vfio_pci_core_register_dev_region: adds a device-specific region (index
   * VFIO_PCI_NUM_REGIONS + n). Valid until the device is closed, so variants call it in open.
   */
  registerRegion(region: VfioPciDeviceRegion): number {
    if (!this.isOpen && !this.enabling) fail('EINVAL', 'regions are registered while the device is open');
    this.regions.push(region);
    return VFIO_PCI_NUM_REGIONS + this.regions.length - 1;
  }

  // ---- enable / disable -------------------------------------------------------------------

  private enable(): void {
    const fn = this.fn;
    if (!fn.present) fail('ENODEV', `${this.name} is gone`);
    this.enabling = true;
    try {
      // pci_enable_device: a PF gets memory decoding (a VF has no such bit).
      if (!fn.isVf) fn.configWrite(PCI_COMMAND, 2, fn.configRead(PCI_COMMAND, 2) | PCI_COMMAND_MEMORY);
      this.resetWorks = (fn.configRead(fn.pcie.offset + PCI_EXP_DEVCAP, 4) & PCI_EXP_DEVCAP_FLR) !== 0;
      if (this.resetWorks) this.resetFunction();
      this.openState = savePciState(this.fn);
      this.cfg = new ConfigVirt(this.cfgHost);
      fn.setMsiSink(this.irqs.sink);
      this.variant?.open?.(this);
    } catch (e) {
      // The open fails as a whole: undo the enable (the variant's close is not called).
      this.teardown(false);
      throw e;
    } finally {
      this.enabling = false;
    }
  }

  private dropUser(): void {
    this.users--;
    if (this.users === 0) this.teardown(true);
  }

  /** vfio_pci_core_close_device (and the undo of a failed open, without the variant's close). */
  private teardown(variantClose: boolean): void {
    const fn = this.fn;
    if (variantClose && this.variant?.close) {
      try {
        this.variant.close(this);
      } catch (e) {
        // Close cannot fail in Linux; a driver error must not leave the device half open.
        if (!(e instanceof KernelError)) throw e;
      }
    }
    if (this.featureHost.logging) {
      this.featureHost.logging = null;
      this.variant?.log?.stop(this);
    }
    fn.configWrite(PCI_COMMAND, 2, fn.configRead(PCI_COMMAND, 2) & ~PCI_COMMAND_MASTER);
    this.irqs.disableAll();
    this.ioeventfds.clear();
    const regions = this.regions;
    this.regions = [];
    for (const r of regions) r.release?.(this);
    for (const m of [...this.mappings]) m.unmap();
    const dataFiles = this.dataFiles;
    this.dataFiles = [];
    for (const f of dataFiles) if (f instanceof MigrationDataFile) f.disable();
    fn.configWrite(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    if (this.resetWorks) this.rawReset();
    if (this.openState) restorePciState(this.fn, this.openState);
    fn.configWrite(PCI_COMMAND, 2, fn.configRead(PCI_COMMAND, 2) & ~PCI_COMMAND_MASTER);
    fn.setMsiSink(undefined);
    this.cfg = null;
    this.openState = null;
  }

  // ---- reset ------------------------------------------------------------------------------

  /** pci_try_reset_function: save state, FLR, restore, then the variant's reset_done. */
  resetFunction(): void {
    if (!this.fn.present) fail('ENODEV', `${this.name} is gone`);
    const saved = savePciState(this.fn);
    this.rawReset();
    restorePciState(this.fn, saved);
    this.irqs.restorePhysical();
    this.variant?.reset?.(this);
  }

  private rawReset(): void {
    this.inCoreReset = true;
    try {
      this.fn.flr();
    } finally {
      this.inCoreReset = false;
    }
  }

  // ---- fd operations ----------------------------------------------------------------------

  ioctl(request: number, arg: IoctlArg): number | void {
    // vfio_main handles DEVICE_FEATURE itself; the driver's ioctl never sees it.
    if (request === VFIO_DEVICE_FEATURE) return deviceFeature(this.featureHost, arg);
    const v = this.variant;
    if (v?.ioctl) return v.ioctl(this, request, arg, this.coreIoctl);
    return this.coreIoctl(request, arg);
  }

  read(buf: Uint8Array, pos: number): number {
    const v = this.variant;
    return v?.read ? v.read(this, buf, pos, this.coreRead) : this.coreRead(buf, pos);
  }

  write(buf: Uint8Array, pos: number): number {
    const v = this.variant;
    return v?.write ? v.write(this, buf, pos, this.coreWrite) : this.coreWrite(buf, pos);
  }

  /** mmap of the device fd; `pos` = VFIO_PCI_INDEX_TO_OFFSET(index) + offset in the region. */
  mmap(pos: number, length: number): VfioMapping {
    if (!Number.isSafeInteger(pos) || pos < 0 || pos % PAGE_SIZE !== 0) fail('EINVAL', `mmap offset ${pos}`);
    if (!Number.isSafeInteger(length) || length <= 0) fail('EINVAL', `mmap length ${length}`);
    const index = VFIO_PCI_OFFSET_TO_INDEX(pos);
    const off = pos - VFIO_PCI_INDEX_TO_OFFSET(index);
    const v = this.variant;
    return v?.mmap ? v.mmap(this, index, off, length, this.coreMmap) : this.coreMmap(index, off, length);
  }

  /** GET_REGION_INFO contents for `index`, through the variant. */
  regionInfo(index: number): VfioRegionInfo {
    const v = this.variant;
    return v?.regionInfo ? v.regionInfo(this, index, this.coreRegionInfo) : this.coreRegionInfo(index);
  }

  /** vfio_pci_core_ioctl: what a variant's `next` reaches. */
  readonly coreIoctl = (request: number, arg: IoctlArg): number | void => coreDeviceIoctl(this, request, arg);

  readonly coreRead = (buf: Uint8Array, pos: number): number => this.rw(buf, pos, false);
  readonly coreWrite = (buf: Uint8Array, pos: number): number => this.rw(buf, pos, true);

  readonly coreMmap = (index: number, offset: number, length: number): VfioMapping => {
    if (!Number.isInteger(index) || index < 0 || index >= this.numRegions) fail('EINVAL', `region ${index}`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % PAGE_SIZE !== 0) fail('EINVAL', `offset ${offset}`);
    if (!Number.isSafeInteger(length) || length <= 0) fail('EINVAL', `length ${length}`);
    if (index >= VFIO_PCI_NUM_REGIONS) {
      const r = this.regions[index - VFIO_PCI_NUM_REGIONS]!;
      if (r.mmap && r.flags & VFIO_REGION_INFO_FLAG_MMAP) return r.mmap(this, offset, length);
      fail('EINVAL', `region ${index} cannot be mapped`);
    }
    if (index >= VFIO_PCI_ROM_REGION_INDEX) fail('EINVAL', `region ${index} cannot be mapped`);
    const size = this.barSize(index);
    if (size < PAGE_SIZE) fail('EINVAL', `BAR${index} cannot be mapped`);
    const reqLen = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    const physLen = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
    if (offset + reqLen > physLen) fail('EINVAL', `[${offset}, +${reqLen}) beyond BAR${index}`);
    const m = new BarMapping(this.barHost, index, offset, reqLen, (gone) => {
      if (this.mappings.delete(gone)) this.dropUser();
    });
    this.mappings.add(m);
    this.users++;
    return m;
  };

  /** The core's own GET_REGION_INFO answer. */
  readonly coreRegionInfo = (index: number): VfioRegionInfo => {
    const info: VfioRegionInfo = { index, flags: 0, size: 0, offset: 0, caps: [] };
    if (!Number.isInteger(index) || index < 0 || index >= this.numRegions) fail('EINVAL', `region ${index}`);
    info.offset = VFIO_PCI_INDEX_TO_OFFSET(index);
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) {
      info.size = PCI_CFG_SPACE_EXP_SIZE;
      info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    } else if (index <= VFIO_PCI_BAR5_REGION_INDEX) {
      info.size = this.barSize(index);
      if (info.size > 0) {
        info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        if (info.size >= PAGE_SIZE) info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
      }
    } else if (index === VFIO_PCI_ROM_REGION_INDEX) {
      // No function here has an option ROM: size 0, no access.
    } else if (index === VFIO_PCI_VGA_REGION_INDEX) {
      fail('EINVAL', 'not a VGA device');
    } else {
      const r = this.regions[index - VFIO_PCI_NUM_REGIONS]!;
      info.size = r.size;
      info.flags = r.flags;
      info.caps = [regionTypeCap(r.type, r.subtype), ...(r.caps?.(this) ?? [])];
    }
    return info;
  };

  private rw(buf: Uint8Array, pos: number, write: boolean): number {
    if (buf.length === 0) return 0;
    if (!Number.isSafeInteger(pos) || pos < 0) fail('EINVAL', `position ${pos}`);
    const cfg = this.cfg;
    if (!cfg) fail('ENODEV', 'device is not open');
    const index = VFIO_PCI_OFFSET_TO_INDEX(pos);
    const off = pos - VFIO_PCI_INDEX_TO_OFFSET(index);
    if (index >= this.numRegions) fail('EINVAL', `region ${index}`);
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) return cfg.rw(buf, off, write);
    if (index <= VFIO_PCI_BAR5_REGION_INDEX) return this.barRw(index, off, buf, write);
    // No ROM (nothing to read, never writable) and no VGA.
    if (index === VFIO_PCI_ROM_REGION_INDEX || index === VFIO_PCI_VGA_REGION_INDEX) fail('EINVAL', `region ${index}`);
    return this.regions[index - VFIO_PCI_NUM_REGIONS]!.rw(this, buf, off, write);
  }

  private barRw(bar: number, off: number, buf: Uint8Array, write: boolean): number {
    const size = this.barSize(bar);
    if (size === 0) fail('EINVAL', `BAR${bar} does not exist`);
    if (off >= size) fail('EINVAL', `offset ${off} beyond BAR${bar}`);
    const n = Math.min(buf.length, size - off);
    return barTransfer(this.barHost, bar, off, n === buf.length ? buf : buf.subarray(0, n), write);
  }
}

function validateVariant(v: VfioPciVariantOps | null): void {
  const m = v?.migration;
  if (m) {
    const complete = typeof m.setState === 'function' && typeof m.getState === 'function' && typeof m.getDataSize === 'function';
    if (!complete || (m.flags & VFIO_MIGRATION_STOP_COPY) === 0) fail('EINVAL', `${v!.name}: migration ops need STOP_COPY and all three callbacks`);
  }
  const l = v?.log;
  if (l && !(typeof l.start === 'function' && typeof l.stop === 'function' && typeof l.report === 'function')) {
    fail('EINVAL', `${v!.name}: log ops need start, stop and report`);
  }
}
