import { KernelError } from '../../uapi/errno.js';
import type { AccessOrigin, DmaPort, MsiSink } from '../dma.js';
import type { MmioRegion } from '../mmio.js';
import { defineMemBar64, readBarAddress64 } from './bars.js';
import { formatBdf, type PciAddress } from './bdf.js';
import { allOnes, ConfigSpace, type ConfigAccessSize } from './config-space.js';
import { MsiCapability } from './msi.js';
import { PcieCapability } from './pcie.js';
import {
  PCI_BASE_ADDRESS_0,
  PCI_CACHE_LINE_SIZE,
  PCI_CLASS_DEVICE,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_PARITY,
  PCI_COMMAND_SERR,
  PCI_DEVICE_ID,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_NORMAL,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_DETECTED_PARITY,
  PCI_STATUS_PARITY,
  PCI_STATUS_REC_MASTER_ABORT,
  PCI_STATUS_REC_TARGET_ABORT,
  PCI_STATUS_SIG_SYSTEM_ERROR,
  PCI_STATUS_SIG_TARGET_ABORT,
  PCI_STD_NUM_BARS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from './regs.js';

/** Header identity of a function as the hardware reports it. */
export interface PciIdentity {
  vendorId: number;
  deviceId: number;
  revision: number;
  /** 24-bit class code: base class [23:16], sub-class [15:8], programming interface [7:0]. */
  classCode: number;
  subsystemVendorId: number;
  subsystemId: number;
}

export interface PciFunctionOptions {
  /** BAR sizes by index (0 = absent). Memory BARs are 64-bit, so only 0/2/4 count. */
  barSizes: readonly number[];
  msiVectors: number;
}

export interface PciFunctionStats {
  /** MMIO reads while memory decoding was off (answered with all-ones). */
  mmioReadsBlocked: number;
  /** MMIO writes dropped because memory decoding was off. */
  mmioWritesDropped: number;
  /** Accesses outside the BAR (or to a BAR with no region attached): all-ones / dropped. */
  mmioOutOfBounds: number;
  /** DMA attempted with Bus Master Enable clear. */
  dmaBlocked: number;
  /** DMA attempted with bus mastering on but no upstream port (no IOMMU attached yet). */
  dmaNoUpstream: number;
  /** Function level resets performed. */
  flrs: number;
}

export interface BlockedDma {
  iova: number;
  length: number;
  write: boolean;
}

const STATUS_W1C =
  PCI_STATUS_PARITY |
  PCI_STATUS_SIG_TARGET_ABORT |
  PCI_STATUS_REC_TARGET_ABORT |
  PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_SIG_SYSTEM_ERROR |
  PCI_STATUS_DETECTED_PARITY;

const PF_COMMAND_RW =
  PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

function checkSize(size: number): asserts size is ConfigAccessSize {
  if (size !== 1 && size !== 2 && size !== 4) throw new KernelError('EINVAL', `MMIO access size ${size}`);
}

/**
 * One PCI Express function: type-0 header, PCIe capability (RCiEP, FLR), MSI capability,
 * gated BAR MMIO dispatch and a bus-master-gated DMA port. The device model attaches its
 * MmioRegions to `bars` and gets DMA through `dmaPort` and interrupts through `msi.signal`.
 *
 * Gating: Memory Space Enable clear -> MMIO reads return all-ones and writes are dropped;
 * Bus Master Enable clear -> DMA fails (recorded) and MSI messages are not sent.
 */
export class PciFunction {
  readonly domain: number;
  readonly routingId: number;
  readonly bdf: string;
  readonly isVf: boolean = false;
  readonly config = new ConfigSpace();
  readonly pcie: PcieCapability;
  readonly msi: MsiCapability;
  /** Regions the device model implements, by BAR index. */
  readonly bars: (MmioRegion | undefined)[] = new Array<MmioRegion | undefined>(PCI_STD_NUM_BARS).fill(undefined);
  readonly stats: PciFunctionStats = {
    mmioReadsBlocked: 0,
    mmioWritesDropped: 0,
    mmioOutOfBounds: 0,
    dmaBlocked: 0,
    dmaNoUpstream: 0,
    flrs: 0,
  };
  lastBlockedDma: BlockedDma | undefined;

  /** DMA as this function: checks Bus Master Enable, then forwards upstream (the IOMMU). */
  readonly dmaPort: DmaPort = {
    read: (iova: number, dst: Uint8Array): boolean => {
      const up = this.dmaPath(iova, dst.length, false);
      return up !== undefined && up.read(iova, dst);
    },
    write: (iova: number, src: Uint8Array): boolean => {
      const up = this.dmaPath(iova, src.length, true);
      return up !== undefined && up.write(iova, src);
    },
    // No stats here: a refused view is followed by read(), which counts a blocked DMA.
    readView: (iova: number, len: number): Uint8Array | null => {
      if (this.gateEpoch !== ConfigSpace.epoch) this.refreshGates();
      if (!this.masterGate || this.upstream === undefined) return null;
      return this.upstream.readView?.(iova, len) ?? null;
    },
  };

  protected barSizeList: number[];
  /** Per BAR: bytes an access may reach (region size within the BAR), 0 with no region. */
  private readonly barLimit = new Float64Array(PCI_STD_NUM_BARS);
  /** `memoryEnabled` and `busMasterEnabled` as of ConfigSpace.epoch `gateEpoch` (-1: stale). */
  private gateEpoch = -1;
  private memGate = false;
  private masterGate = false;
  protected upstream: DmaPort | undefined;
  protected resetCallbacks: (() => void)[] = [];
  private sealed = false;
  private flrRequested = false;

  constructor(addr: PciAddress, identity: PciIdentity, opts: PciFunctionOptions, isVf = false) {
    this.domain = addr.domain;
    this.routingId = addr.routingId;
    this.bdf = formatBdf(addr.domain, addr.routingId);
    this.isVf = isVf;
    this.barSizeList = normaliseBarSizes(opts.barSizes);

    const cfg = this.config;
    // SR-IOV 3.4.1: a VF's Vendor and Device ID registers read 0xFFFF; software learns the
    // real ids from the PF (vendor) and its SR-IOV capability (VF Device ID).
    cfg.define(PCI_VENDOR_ID, 2, isVf ? 0xffff : identity.vendorId);
    cfg.define(PCI_DEVICE_ID, 2, isVf ? 0xffff : identity.deviceId);
    // VF Command: only Bus Master Enable is implemented; memory decoding is the PF's VF MSE.
    cfg.define(PCI_COMMAND, 2, 0, isVf ? PCI_COMMAND_MASTER : PF_COMMAND_RW);
    cfg.define(PCI_STATUS, 2, 0, 0, STATUS_W1C);
    cfg.define(PCI_REVISION_ID, 1, identity.revision);
    cfg.define(PCI_CLASS_PROG, 1, identity.classCode & 0xff);
    cfg.define(PCI_CLASS_DEVICE, 2, (identity.classCode >>> 8) & 0xffff);
    cfg.define(PCI_CACHE_LINE_SIZE, 1, 0, isVf ? 0 : 0xff);
    cfg.define(PCI_HEADER_TYPE, 1, PCI_HEADER_TYPE_NORMAL);
    if (!isVf) {
      for (let i = 0; i < PCI_STD_NUM_BARS; i += 2) {
        defineMemBar64(cfg, PCI_BASE_ADDRESS_0 + 4 * i, this.barSizeList[i]!);
      }
    }
    cfg.define(PCI_SUBSYSTEM_VENDOR_ID, 2, identity.subsystemVendorId);
    cfg.define(PCI_SUBSYSTEM_ID, 2, identity.subsystemId);
    // No INTx: Interrupt Pin 0. Interrupt Line is a scratch register on the PF.
    cfg.define(PCI_INTERRUPT_LINE, 1, 0, isVf ? 0 : 0xff);
    cfg.define(PCI_INTERRUPT_PIN, 1, 0);

    this.pcie = new PcieCapability(cfg, isVf, () => {
      this.flrRequested = true;
    });
    this.msi = new MsiCapability(cfg, opts.msiVectors, () => this.busMasterEnabled);

    cfg.onWrite(PCI_COMMAND, 2, (old) => {
      if ((old & PCI_COMMAND_MASTER) === 0 && this.busMasterEnabled) this.msi.flushPending();
    });
  }

  /** Vendor ID as Linux knows it (for a VF: the PF's vendor). */
  get vendorId(): number {
    return this.config.get(PCI_VENDOR_ID, 2);
  }

  /** Device ID as Linux knows it (for a VF: the PF's SR-IOV VF Device ID). */
  get deviceId(): number {
    return this.config.get(PCI_DEVICE_ID, 2);
  }

  /** False once a VF has been destroyed (VF Enable cleared): it then behaves as absent. */
  get present(): boolean {
    return true;
  }

  get barSizes(): readonly number[] {
    return this.barSizeList;
  }

  get memoryEnabled(): boolean {
    return (this.config.get(PCI_COMMAND, 2) & PCI_COMMAND_MEMORY) !== 0;
  }

  get busMasterEnabled(): boolean {
    return this.present && (this.config.get(PCI_COMMAND, 2) & PCI_COMMAND_MASTER) !== 0;
  }

  /** Bus address currently assigned to a BAR (0 if unassigned or absent). */
  barAddress(bar: number): number {
    if (!Number.isInteger(bar) || bar < 0 || bar >= PCI_STD_NUM_BARS || (bar & 1) !== 0) return 0;
    return readBarAddress64(this.config, PCI_BASE_ADDRESS_0 + 4 * bar);
  }

  // ---- configuration access (software) ------------------------------------------------

  /** Config read; an absent function answers all-ones. EINVAL for a bad offset/size. */
  configRead(off: number, size: ConfigAccessSize): number {
    const v = this.config.read(off, size);
    return this.present ? v : allOnes(size);
  }

  /** Config write through the register masks; an FLR request runs once the write is done. */
  configWrite(off: number, size: ConfigAccessSize, value: number): void {
    if (!this.present) {
      this.config.read(off, size); // same argument checking as a live function
      return;
    }
    this.seal();
    this.config.write(off, size, value);
    if (this.flrRequested) {
      this.flrRequested = false;
      this.flr();
    }
  }

  // ---- MMIO ---------------------------------------------------------------------------

  attachBar(bar: number, region: MmioRegion | undefined): void {
    if (!Number.isInteger(bar) || bar < 0 || bar >= PCI_STD_NUM_BARS) {
      throw new KernelError('EINVAL', `BAR index ${bar}`);
    }
    if (region && region.size > this.barSizeList[bar]!) {
      throw new KernelError('EINVAL', `region of ${region.size} bytes exceeds BAR${bar} (${this.barSizeList[bar]} bytes)`);
    }
    this.bars[bar] = region;
    this.barLimit[bar] = region ? Math.min(region.size, this.barSizeList[bar]!) : 0;
  }

  mmioRead(bar: number, off: number, size: 1 | 2 | 4, origin: AccessOrigin): number {
    checkSize(size);
    const r = this.route(bar, off, size, false);
    return r === undefined ? allOnes(size) : r.read(off, size, origin);
  }

  mmioWrite(bar: number, off: number, size: 1 | 2 | 4, value: number, origin: AccessOrigin): void {
    checkSize(size);
    const r = this.route(bar, off, size, true);
    if (r !== undefined) r.write(off, size, value, origin);
  }

  mmioRead64(bar: number, off: number, origin: AccessOrigin): [number, number] {
    const r = this.route(bar, off, 8, false);
    return r === undefined ? [0xffffffff, 0xffffffff] : r.read64(off, origin);
  }

  mmioWrite64(bar: number, off: number, lo: number, hi: number, origin: AccessOrigin): void {
    const r = this.route(bar, off, 8, true);
    if (r !== undefined) r.write64(off, lo, hi, origin);
  }

  // ---- DMA, interrupts, reset -------------------------------------------------------------

  /** The port DMA goes to after the bus-master check (the host sets its IOMMU domain). */
  setUpstreamDma(port: DmaPort | undefined): void {
    this.upstream = port;
  }

  /** Where this function's MSI messages go (the host's interrupt routing). */
  setMsiSink(sink: MsiSink | undefined): void {
    this.msi.setSink(sink);
  }

  /** Registers a device-model reset (run on every FLR); returns an unsubscribe function. */
  onReset(cb: () => void): () => void {
    this.resetCallbacks.push(cb);
    return () => {
      const i = this.resetCallbacks.indexOf(cb);
      if (i >= 0) this.resetCallbacks.splice(i, 1);
    };
  }

  /**
   * Function Level Reset: config registers return to their reset values (except the bits
   * PCIe preserves), then every reset callback runs in registration order.
   */
  flr(): void {
    if (!this.present) return;
    this.seal();
    this.beforeReset();
    this.config.resetToImage(this.pcie.preservedAcrossFlr());
    this.afterConfigReset();
    this.stats.flrs++;
    for (const cb of [...this.resetCallbacks]) cb();
  }

  /** Subclass hook: runs before the registers are reset (the PF tears its VFs down). */
  protected beforeReset(): void {}

  /** Subclass hook: runs after the registers were reset, before the device callbacks. */
  protected afterConfigReset(): void {}

  /** The post-reset register image is whatever the constructors built; taken lazily. */
  protected seal(): void {
    if (this.sealed) return;
    this.sealed = true;
    this.config.sealResetImage();
  }

  /**
   * Memory decoding and bus mastering are re-derived from the registers only after some
   * config space changed: MMIO and DMA are the hottest paths of the model and the answers
   * rarely change.
   */
  private refreshGates(): void {
    this.memGate = this.memoryEnabled;
    this.masterGate = this.busMasterEnabled;
    this.gateEpoch = ConfigSpace.epoch;
  }

  /** Subclass hook: state behind `memoryEnabled`/`busMasterEnabled` changed outside config space. */
  protected gatesChanged(): void {
    this.gateEpoch = -1;
  }

  private route(bar: number, off: number, size: number, write: boolean): MmioRegion | undefined {
    if (this.gateEpoch !== ConfigSpace.epoch) this.refreshGates();
    if (!this.memGate) {
      if (write) this.stats.mmioWritesDropped++;
      else this.stats.mmioReadsBlocked++;
      return undefined;
    }
    const r = this.bars[bar];
    if (r === undefined || !Number.isInteger(off) || off < 0 || off + size > this.barLimit[bar]!) {
      this.stats.mmioOutOfBounds++;
      return undefined;
    }
    return r;
  }

  private dmaPath(iova: number, length: number, write: boolean): DmaPort | undefined {
    if (this.gateEpoch !== ConfigSpace.epoch) this.refreshGates();
    if (!this.masterGate) {
      this.stats.dmaBlocked++;
      this.lastBlockedDma = { iova, length, write };
      return undefined;
    }
    if (this.upstream === undefined) this.stats.dmaNoUpstream++;
    return this.upstream;
  }
}

function normaliseBarSizes(sizes: readonly number[]): number[] {
  const out = new Array<number>(PCI_STD_NUM_BARS).fill(0);
  for (let i = 0; i < PCI_STD_NUM_BARS; i++) {
    const s = sizes[i] ?? 0;
    if (s !== 0 && (i & 1) === 1) throw new RangeError(`BAR${i}: 64-bit BARs start at even indexes`);
    out[i] = s;
  }
  return out;
}
