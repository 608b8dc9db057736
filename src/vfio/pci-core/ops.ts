/**
 * The variant-driver ops table: what a vendor driver built on vfio-pci-core may override,
 * in the shape of Linux `vfio_device_ops` + `vfio_migration_ops` + `vfio_log_ops`.
 *
 * Every hook is optional. A hook that wraps core behaviour receives `next`, the core's own
 * implementation, so a driver overrides only the cases it cares about (hisi-acc-vfio-pci
 * narrows BAR2 and passes everything else on). Hooks signal failure by throwing KernelError;
 * the device fd turns that into -errno.
 */
import type { VfioFile } from '../fd.js';
import type { VfioPciCoreDevice } from './core-device.js';

/** One region as VFIO_DEVICE_GET_REGION_INFO reports it. */
export interface VfioRegionInfo {
  index: number;
  /** VFIO_REGION_INFO_FLAG_READ | WRITE | MMAP (CAPS is added by the core when caps exist). */
  flags: number;
  size: number;
  /** Device fd offset of the region: VFIO_PCI_INDEX_TO_OFFSET(index). */
  offset: number;
  /** Encoded capabilities, each starting with vfio_info_cap_header (see regions.ts builders). */
  caps: Uint8Array[];
}

/**
 * An mmap of (part of) a region. Accesses are offsets from the start of the mapping. A
 * mapped BAR behaves like device memory behind a user mapping: while the function's memory
 * decoding is off, after unmap() or past `length`, reads give all-ones and writes are dropped
 * and counted in `faults` (the SIGBUS/SIGSEGV a process would take).
 */
export interface VfioMapping {
  readonly index: number;
  /** Offset of the mapping inside its region. */
  readonly offset: number;
  readonly length: number;
  readonly mapped: boolean;
  readonly faults: number;
  read8(off: number): number;
  read16(off: number): number;
  read32(off: number): number;
  /** One 8-byte access; [lo, hi]. */
  read64(off: number): [number, number];
  write8(off: number, v: number): void;
  write16(off: number, v: number): void;
  write32(off: number, v: number): void;
  write64(off: number, lo: number, hi: number): void;
  unmap(): void;
}

/** A device-specific region (index >= VFIO_PCI_NUM_REGIONS), vfio_pci_core_register_dev_region. */
export interface VfioPciDeviceRegion {
  readonly type: number;
  readonly subtype: number;
  readonly size: number;
  readonly flags: number;
  /** Read or write `buf.length` bytes at `offset` inside the region; returns bytes done. */
  rw(core: VfioPciCoreDevice, buf: Uint8Array, offset: number, write: boolean): number;
  /** Only consulted when flags has VFIO_REGION_INFO_FLAG_MMAP. */
  mmap?(core: VfioPciCoreDevice, offset: number, length: number): VfioMapping;
  /** Capabilities beyond the CAP_TYPE the core always adds. */
  caps?(core: VfioPciCoreDevice): Uint8Array[];
  /** Called when the device is closed (the region is dropped). */
  release?(core: VfioPciCoreDevice): void;
}

/** A DMA logging range as the user passed it (iova, length are page-size aligned). */
export interface DmaLoggingRange {
  iova: number;
  length: number;
}

/** vfio_migration_ops. The driver owns the state; the core only carries the uAPI. */
export interface VfioMigrationOps {
  /** VFIO_MIGRATION_* flags; must include STOP_COPY. */
  readonly flags: number;
  /**
   * Moves the device to `target` (the driver walks migGetNextState arc by arc itself).
   * Returns the data file when the target is a saving or resuming state that opens one,
   * else null. Throws KernelError on failure; the driver decides the state it is left in.
   */
  setState(core: VfioPciCoreDevice, target: number): VfioFile | null;
  getState(core: VfioPciCoreDevice): number;
  /** Estimated STOP_COPY stream length (VFIO_DEVICE_FEATURE_MIG_DATA_SIZE). */
  getDataSize(core: VfioPciCoreDevice): number;
}

/** vfio_log_ops: device DMA dirty logging. */
export interface VfioLogOps {
  /**
   * Starts logging `ranges` (validated, sorted, non-overlapping) at `pageSize`; returns the
   * page size actually used (reported back to the user). Use combineIovaRanges to fit a
   * tracker with fewer slots.
   */
  start(core: VfioPciCoreDevice, ranges: readonly DmaLoggingRange[], pageSize: number): number;
  stop(core: VfioPciCoreDevice): void;
  /**
   * Reads and clears the dirty bits of [iova, iova+length): bit i of `out` (u64 words,
   * little-endian) is the page at iova + i*pageSize. `out` arrives zeroed.
   */
  report(core: VfioPciCoreDevice, iova: number, length: number, pageSize: number, out: Uint8Array): void;
}

export type IoctlArg = Uint8Array | number | undefined;

export interface VfioPciVariantOps {
  readonly name: string;
  /** After the core enabled the device (first open). Throwing fails the open; the core undoes its enable. */
  open?(core: VfioPciCoreDevice): void;
  /** Before the core disables the device (last close). */
  close?(core: VfioPciCoreDevice): void;
  /** Every device ioctl except VFIO_DEVICE_FEATURE (which the VFIO core dispatches itself). */
  ioctl?(
    core: VfioPciCoreDevice,
    request: number,
    arg: IoctlArg,
    next: (request: number, arg: IoctlArg) => number | void,
  ): number | void;
  read?(core: VfioPciCoreDevice, buf: Uint8Array, pos: number, next: (buf: Uint8Array, pos: number) => number): number;
  write?(core: VfioPciCoreDevice, buf: Uint8Array, pos: number, next: (buf: Uint8Array, pos: number) => number): number;
  mmap?(
    core: VfioPciCoreDevice,
    index: number,
    offset: number,
    length: number,
    next: (index: number, offset: number, length: number) => VfioMapping,
  ): VfioMapping;
  /** GET_REGION_INFO contents for one index. The core's own bounds checks keep using the BAR sizes. */
  regionInfo?(core: VfioPciCoreDevice, index: number, next: (index: number) => VfioRegionInfo): VfioRegionInfo;
  /** After any function reset of the device (pci_error_handlers.reset_done). */
  reset?(core: VfioPciCoreDevice): void;
  migration?: VfioMigrationOps;
  log?: VfioLogOps;
}
