/**
 * The guest's view of a VF assigned through a VFIO device fd: a GuestPciIo served by the VMM
 * the way QEMU's vfio-pci device serves it.
 *
 * Config space: the guest's accesses go to region 7 of the device fd (vfio-pci-core filters
 * and virtualizes them), except the MSI capability, which the VMM emulates entirely: its
 * address, data, Enable and Multiple Message Enable, per-vector mask and pending bits live
 * here and never reach the device. Enabling MSI (or changing the vector count while enabled)
 * becomes VFIO_DEVICE_SET_IRQS with one eventfd per vector; disabling it is SET_IRQS
 * DATA_NONE with count 0. An eventfd signal is one MSI: it goes to the guest's handler,
 * unless the vector is masked (its pending bit is set and it is delivered on unmask) or the
 * vCPUs are paused (the interrupt controller holds it until resume).
 *
 * BARs: the VMM sizes each BAR from GET_REGION_INFO and maps the mmappable ones (fast path:
 * loads and stores go straight to the device); the rest go through pread/pwrite of the fd.
 * The guest sees a BAR exactly as large as the region: hisi-acc-vfio-pci reports BAR2 as its
 * 32 KiB functional half, so the migration-control half is absent for the guest (reads all
 * ones, writes dropped, counted as `unassigned`), as in an unassigned guest-physical range.
 *
 * Migration: `saveDeviceConfig()` returns the guest-visible config state this object owns
 * (command register, the emulated MSI capability, interrupts held while paused) as a
 * DEV_CONFIG_STATE blob; `loadDeviceConfig(blob)` on the destination's object re-programs
 * the destination device from it: command register through the fd, MSI through SET_IRQS.
 * Take the blob after the device stopped (STOP_COPY), so no interrupt arrives after it.
 */
import type { CfgSize, GuestPciIo } from '../guest/io.js';
import {
  PCI_CAPABILITY_LIST, PCI_CAP_ID_MSI, PCI_COMMAND, PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT, PCI_MSI_FLAGS_ENABLE,
  PCI_MSI_FLAGS_MASKBIT, PCI_MSI_FLAGS_QMASK, PCI_MSI_FLAGS_QSIZE, PCI_STATUS, PCI_STATUS_CAP_LIST,
} from '../hw/pci/regs.js';
import { KernelError, fail } from '../uapi/errno.js';
import { vfio_device_info, vfio_irq_info, vfio_irq_set, vfio_region_info } from '../uapi/structs.js';
import {
  VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_SET_IRQS, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INDEX_TO_OFFSET, VFIO_PCI_MSI_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
} from '../uapi/vfio.js';
import type { EventFd, FdTable, VfioFile } from '../vfio/fd.js';
import type { VfioMapping } from '../vfio/pci-core/ops.js';

/** A device fd that can be mmapped (VfioDeviceFile). */
export interface MappableDeviceFile extends VfioFile {
  mmap(offset: number, length: number): VfioMapping | number;
}

/** DEV_CONFIG_STATE blob: magic 'VGIO' little-endian, version, fixed length. */
export const DEVICE_CONFIG_MAGIC = 0x4f494756;
export const DEVICE_CONFIG_VERSION = 1;
export const DEVICE_CONFIG_SIZE = 40;

const NUM_BARS = 6;
const CFG_BASE = VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX);

interface Bar {
  /** Region size: what the guest sees of the BAR. */
  size: number;
  /** Device fd offset of the region. */
  offset: number;
  readable: boolean;
  writable: boolean;
  map: VfioMapping | null;
}

export interface VfioGuestIoStats {
  /** MSIs handed to the guest's handler, by vector. */
  delivered: number[];
  /** Eventfd signals received (MSIs from the device), by vector. */
  signalled: number[];
  /** MSIs held because the vector was masked, later delivered on unmask. */
  maskedPending: number;
  /** MSIs held because the vCPUs were paused. */
  heldWhilePaused: number;
  /** SET_IRQS calls that enabled MSI. */
  msiEnables: number;
  /** Guest accesses beyond a BAR's region (hidden or absent registers). */
  unassigned: number;
  /** BAR accesses through pread/pwrite of the fd rather than a mapping. */
  slowPath: number;
}

export interface VfioGuestIoOptions {
  /** Use pread/pwrite even for mmappable BARs (QEMU's x-no-mmap). */
  noMmap?: boolean;
}

function le(b: Uint8Array, n: number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + b[i]!;
  return v;
}

function putLe(b: Uint8Array, n: number, v: number): void {
  for (let i = 0; i < n; i++) b[i] = Math.floor(v / 2 ** (8 * i)) & 0xff;
}

export class VfioGuestIo implements GuestPciIo {
  readonly stats: VfioGuestIoStats = {
    delivered: new Array<number>(32).fill(0), signalled: new Array<number>(32).fill(0), maskedPending: 0,
    heldWhilePaused: 0, msiEnables: 0, unassigned: 0, slowPath: 0,
  };
  private readonly bars: Bar[] = [];
  private readonly cfgSize: number;
  private handler: ((vector: number) => void) | undefined;
  private paused = false;
  /** Vectors the interrupt controller holds while the vCPUs are paused. */
  private held = 0;
  private eventfds: { fd: number; file: EventFd }[] = [];
  private closed = false;
  private readonly buf = new Uint8Array(8);

  // ---- the emulated MSI capability -------------------------------------------------------
  /** Config offset of the MSI capability (0: none). */
  readonly msiCap: number;
  /** Read-only bits of the MSI control word as the device reports them (64BIT, MASKBIT, QMASK). */
  private readonly msiRoFlags: number;
  private readonly msiIs64: boolean;
  private readonly msiHasMask: boolean;
  /** Vectors the device offers (MSI irq info count). */
  readonly msiVectorsMax: number;
  /** Guest-written Enable and Multiple Message Enable. */
  private msiCtl = 0;
  private msiAddrLo = 0;
  private msiAddrHi = 0;
  private msiData = 0;
  private msiMask = 0;
  private msiPending = 0;
  /** Vectors wired with eventfds (0 while MSI is off). */
  private msiWired = 0;
  /** The command register as the guest last wrote it. */
  private command = 0;

  constructor(readonly device: MappableDeviceFile, private readonly fds: FdTable, opts: VfioGuestIoOptions = {}) {
    const info = vfio_device_info.encode({ argsz: vfio_device_info.size });
    const r = device.ioctl(VFIO_DEVICE_GET_INFO, info);
    if (r < 0) throw new KernelError(-r, 'VFIO_DEVICE_GET_INFO failed');
    if ((vfio_device_info.read(info, 'flags') & VFIO_DEVICE_FLAGS_PCI) === 0) fail('ENODEV', 'not a vfio-pci device');
    for (let i = 0; i < NUM_BARS; i++) this.bars.push(this.openBar(i, opts.noMmap === true));
    this.cfgSize = this.regionInfo(VFIO_PCI_CONFIG_REGION_INDEX).size;
    if (this.cfgSize < 0x100) fail('ENODEV', `config region of ${this.cfgSize} bytes`);
    this.command = this.rawCfgRead(PCI_COMMAND, 2);

    this.msiCap = this.findMsi();
    if (this.msiCap !== 0) {
      const flags = this.rawCfgRead(this.msiCap + PCI_MSI_FLAGS, 2);
      this.msiRoFlags = flags & (PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT | PCI_MSI_FLAGS_QMASK);
      this.msiIs64 = (flags & PCI_MSI_FLAGS_64BIT) !== 0;
      this.msiHasMask = (flags & PCI_MSI_FLAGS_MASKBIT) !== 0;
      const irq = vfio_irq_info.encode({ argsz: vfio_irq_info.size, index: VFIO_PCI_MSI_IRQ_INDEX });
      const ri = device.ioctl(VFIO_DEVICE_GET_IRQ_INFO, irq);
      this.msiVectorsMax = ri < 0 ? 0 : vfio_irq_info.read(irq, 'count');
    } else {
      this.msiRoFlags = 0;
      this.msiIs64 = false;
      this.msiHasMask = false;
      this.msiVectorsMax = 0;
    }
  }

  private regionInfo(index: number): { size: number; offset: number; flags: number } {
    const b = vfio_region_info.encode({ argsz: vfio_region_info.size, index });
    const r = this.device.ioctl(VFIO_DEVICE_GET_REGION_INFO, b);
    if (r < 0) return { size: 0, offset: VFIO_PCI_INDEX_TO_OFFSET(index), flags: 0 };
    return {
      size: Number(vfio_region_info.read(b, 'size')),
      offset: Number(vfio_region_info.read(b, 'offset')),
      flags: vfio_region_info.read(b, 'flags'),
    };
  }

  private openBar(index: number, noMmap: boolean): Bar {
    const ri = this.regionInfo(index);
    const bar: Bar = {
      size: ri.size, offset: ri.offset, readable: (ri.flags & VFIO_REGION_INFO_FLAG_READ) !== 0,
      writable: (ri.flags & VFIO_REGION_INFO_FLAG_WRITE) !== 0, map: null,
    };
    if (!noMmap && ri.size > 0 && (ri.flags & VFIO_REGION_INFO_FLAG_MMAP) !== 0) {
      const m = this.device.mmap(ri.offset, ri.size);
      // A refused mmap (e.g. 64 KiB host pages) leaves the BAR on the read/write path.
      if (typeof m !== 'number') bar.map = m;
    }
    return bar;
  }

  /** Size of BAR `index` as the guest sees it (0: absent). */
  barSize(index: number): number {
    return this.bars[index]?.size ?? 0;
  }

  /** Whether BAR `index` is reached through an mmap (fast path). */
  barMapped(index: number): boolean {
    return this.bars[index]?.map != null;
  }

  // ---- vCPU gating ---------------------------------------------------------------------

  /** vCPUs stopped: MSIs are held by the interrupt controller. */
  pause(): void {
    this.paused = true;
  }

  /** vCPUs running again: held MSIs are delivered (subject to masking). */
  resume(): void {
    this.paused = false;
    const h = this.held;
    this.held = 0;
    for (let v = 0; v < 32; v++) if ((h >>> v) & 1) this.raise(v);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Vectors held while paused (bit per vector). */
  get heldVectors(): number {
    return this.held;
  }

  private onEventfd(v: number, file: EventFd): void {
    // QEMU's handler clears the eventfd counter (event_notifier_test_and_clear).
    file.count = 0n;
    this.stats.signalled[v]!++;
    if (this.paused) {
      if (((this.held >>> v) & 1) === 0) this.stats.heldWhilePaused++;
      this.held = (this.held | (1 << v)) >>> 0;
      return;
    }
    this.raise(v);
  }

  /** An MSI for vector v at the (emulated) MSI capability. */
  private raise(v: number): void {
    if ((this.msiCtl & PCI_MSI_FLAGS_ENABLE) === 0) return;
    if (this.msiHasMask && ((this.msiMask >>> v) & 1)) {
      this.msiPending = (this.msiPending | (1 << v)) >>> 0;
      this.stats.maskedPending++;
      return;
    }
    this.stats.delivered[v]!++;
    this.handler?.(v);
  }

  // ---- config space --------------------------------------------------------------------

  private rawCfgRead(off: number, size: CfgSize): number {
    const b = this.buf.subarray(0, size);
    const r = this.device.read(b, CFG_BASE + off);
    if (r !== size) return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    return le(b, size);
  }

  private rawCfgWrite(off: number, size: CfgSize, v: number): void {
    const b = this.buf.subarray(0, size);
    putLe(b, size, v);
    this.device.write(b, CFG_BASE + off);
  }

  private findMsi(): number {
    if ((this.rawCfgRead(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) === 0) return 0;
    let off = this.rawCfgRead(PCI_CAPABILITY_LIST, 1) & 0xfc;
    for (let n = 0; off >= 0x40 && n < 48; n++) {
      if (this.rawCfgRead(off, 1) === PCI_CAP_ID_MSI) return off;
      off = this.rawCfgRead(off + 1, 1) & 0xfc;
    }
    return 0;
  }

  /** Length of the emulated MSI capability. */
  private get msiLen(): number {
    return (this.msiIs64 ? 14 : 10) + (this.msiHasMask ? 10 : 0);
  }

  private get msiDataOff(): number {
    return this.msiIs64 ? 0x0c : 0x08;
  }

  private get msiMaskOff(): number {
    return this.msiIs64 ? 0x10 : 0x0c;
  }

  /** Byte k of the emulated capability (k >= 2: id and next come from the device). */
  private msiByte(k: number): number {
    const field = (v: number, at: number, n: number): number | undefined =>
      k >= at && k < at + n ? Math.floor(v / 2 ** (8 * (k - at))) & 0xff : undefined;
    const mo = this.msiMaskOff;
    return field(this.msiRoFlags | this.msiCtl, 2, 2)
      ?? field(this.msiAddrLo, 4, 4)
      ?? (this.msiIs64 ? field(this.msiAddrHi, 8, 4) : undefined)
      ?? field(this.msiData, this.msiDataOff, 2)
      ?? (this.msiHasMask ? field(this.msiMask, mo, 4) ?? field(this.msiPending, mo + 4, 4) : undefined)
      ?? 0;
  }

  private inMsi(off: number): boolean {
    const k = off - this.msiCap;
    return this.msiCap !== 0 && k >= 2 && k < this.msiLen;
  }

  cfgRead(off: number, size: CfgSize): number {
    if (!Number.isInteger(off) || off < 0 || off + size > this.cfgSize) return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    if (!(this.inMsi(off) || this.inMsi(off + size - 1))) return this.rawCfgRead(off, size);
    const b = this.buf.subarray(0, size);
    putLe(b, size, this.rawCfgRead(off, size));
    for (let i = 0; i < size; i++) if (this.inMsi(off + i)) b[i] = this.msiByte(off + i - this.msiCap);
    return le(b, size);
  }

  cfgWrite(off: number, size: CfgSize, v: number): void {
    if (this.closed || !Number.isInteger(off) || off < 0 || off + size > this.cfgSize) return;
    const val = v >>> 0;
    let msiBytes = 0;
    for (let i = 0; i < size; i++) if (this.inMsi(off + i)) msiBytes++;
    if (msiBytes < size) {
      // Only the bytes outside the emulated MSI capability reach the device.
      if (msiBytes === 0) this.rawCfgWrite(off, size, val);
      else for (let i = 0; i < size; i++) if (!this.inMsi(off + i)) this.rawCfgWrite(off + i, 1, Math.floor(val / 2 ** (8 * i)) & 0xff);
      if (off < PCI_COMMAND + 2 && off + size > PCI_COMMAND) {
        const b = new Uint8Array(2);
        putLe(b, 2, this.command);
        for (let i = 0; i < size; i++) {
          const k = off + i - PCI_COMMAND;
          if (k === 0 || k === 1) b[k] = Math.floor(val / 2 ** (8 * i)) & 0xff;
        }
        this.command = le(b, 2);
      }
    }
    if (msiBytes > 0) this.msiWrite(off, size, val);
  }

  /** Guest store into the emulated MSI capability (PCI 3.0 section 6.8.1 write masks). */
  private msiWrite(off: number, size: CfgSize, val: number): void {
    const cap = this.msiCap;
    const before = this.msiCtl;
    const maskBefore = this.msiMask;
    for (let i = 0; i < size; i++) {
      const k = off + i - cap;
      if (k < 2 || k >= this.msiLen) continue;
      const byte = Math.floor(val / 2 ** (8 * i)) & 0xff;
      const set = (cur: number, at: number, wmask: number): number => {
        const sh = 8 * (k - at);
        const m = Math.floor(wmask / 2 ** sh) & 0xff;
        const keep = cur - (Math.floor(cur / 2 ** sh) & m) * 2 ** sh;
        return keep + (byte & m) * 2 ** sh;
      };
      if (k < 4) this.msiCtl = set(this.msiCtl, 2, PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
      else if (k < 8) this.msiAddrLo = set(this.msiAddrLo, 4, 0xfffffffc);
      else if (this.msiIs64 && k < 12) this.msiAddrHi = set(this.msiAddrHi, 8, 0xffffffff);
      else if (k >= this.msiDataOff && k < this.msiDataOff + 2) this.msiData = set(this.msiData, this.msiDataOff, 0xffff);
      else if (this.msiHasMask && k >= this.msiMaskOff && k < this.msiMaskOff + 4) {
        this.msiMask = set(this.msiMask, this.msiMaskOff, this.vectorBits(32));
      }
      // pending bits are read-only
    }
    // Multiple Message Enable above Multiple Message Capable reads back as the capable value.
    const mmc = (this.msiRoFlags & PCI_MSI_FLAGS_QMASK) >>> 1;
    if (((this.msiCtl & PCI_MSI_FLAGS_QSIZE) >>> 4) > mmc) this.msiCtl = (this.msiCtl & ~PCI_MSI_FLAGS_QSIZE) | (mmc << 4);
    if (this.msiCtl !== before) this.rewire();
    const unmasked = (maskBefore & ~this.msiMask & this.msiPending) >>> 0;
    if (unmasked !== 0) this.deliverPending(unmasked);
  }

  /** Bits of the vectors the capability offers (at most `limit`). */
  private vectorBits(limit: number): number {
    const n = Math.min(limit, 1 << ((this.msiRoFlags & PCI_MSI_FLAGS_QMASK) >>> 1));
    return n >= 32 ? 0xffffffff : (1 << n) - 1;
  }

  private deliverPending(bits: number): void {
    this.msiPending = (this.msiPending & ~bits) >>> 0;
    for (let v = 0; v < 32; v++) if ((bits >>> v) & 1) this.raise(v);
  }

  /** Vectors the guest enabled (0 when MSI is off). */
  get msiVectors(): number {
    if ((this.msiCtl & PCI_MSI_FLAGS_ENABLE) === 0) return 0;
    return 1 << ((this.msiCtl & PCI_MSI_FLAGS_QSIZE) >>> 4);
  }

  /** Makes the device's eventfds match the guest's MSI programming (QEMU vfio_msi_enable/disable). */
  private rewire(): void {
    const want = Math.min(this.msiVectors, this.msiVectorsMax);
    if (want === this.msiWired) return;
    if (this.msiWired !== 0) this.setIrqs(0);
    if (want !== 0) this.setIrqs(want);
  }

  private setIrqs(count: number): void {
    for (const e of this.eventfds) this.fds.close(e.fd);
    this.eventfds = [];
    const hdr = vfio_irq_set.size;
    const b = new Uint8Array(hdr + 4 * count);
    vfio_irq_set.encode({
      argsz: b.length,
      flags: (count > 0 ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE) | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count,
    }, b);
    const dv = new DataView(b.buffer);
    for (let v = 0; v < count; v++) {
      const e = this.fds.eventfd();
      const vec = v;
      e.file.onSignal = (f) => this.onEventfd(vec, f);
      this.eventfds.push(e);
      dv.setInt32(hdr + 4 * v, e.fd, true);
    }
    const r = this.device.ioctl(VFIO_DEVICE_SET_IRQS, b);
    if (r < 0) {
      for (const e of this.eventfds) this.fds.close(e.fd);
      this.eventfds = [];
      this.msiWired = 0;
      throw new KernelError(-r, `SET_IRQS with ${count} MSI vectors failed`);
    }
    this.msiWired = count;
    if (count > 0) this.stats.msiEnables++;
  }

  // ---- BARs ----------------------------------------------------------------------------

  private bar(index: number, off: number, n: number): Bar | null {
    const b = this.bars[index];
    if (b === undefined || !Number.isInteger(off) || off < 0 || off + n > b.size) {
      this.stats.unassigned++;
      return null;
    }
    return b;
  }

  read32(bar: number, off: number): number {
    const b = this.bar(bar, off, 4);
    if (b === null) return 0xffffffff;
    if (b.map !== null) return b.map.read32(off);
    this.stats.slowPath++;
    const t = this.buf.subarray(0, 4);
    return this.device.read(t, b.offset + off) === 4 ? le(t, 4) : 0xffffffff;
  }

  write32(bar: number, off: number, v: number): void {
    const b = this.bar(bar, off, 4);
    if (b === null || this.closed) return;
    if (b.map !== null) {
      b.map.write32(off, v);
      return;
    }
    this.stats.slowPath++;
    const t = this.buf.subarray(0, 4);
    putLe(t, 4, v >>> 0);
    this.device.write(t, b.offset + off);
  }

  read64(bar: number, off: number): [number, number] {
    const b = this.bar(bar, off, 8);
    if (b === null) return [0xffffffff, 0xffffffff];
    if (b.map !== null) return b.map.read64(off);
    this.stats.slowPath++;
    const t = this.buf;
    return this.device.read(t, b.offset + off) === 8 ? [le(t.subarray(0, 4), 4), le(t.subarray(4, 8), 4)] : [0xffffffff, 0xffffffff];
  }

  write64(bar: number, off: number, lo: number, hi: number): void {
    const b = this.bar(bar, off, 8);
    if (b === null || this.closed) return;
    if (b.map !== null) {
      b.map.write64(off, lo, hi);
      return;
    }
    this.stats.slowPath++;
    const t = this.buf;
    putLe(t.subarray(0, 4), 4, lo >>> 0);
    putLe(t.subarray(4, 8), 4, hi >>> 0);
    this.device.write(t, b.offset + off);
  }

  onInterrupt(cb: (vector: number) => void): void {
    this.handler = cb;
  }

  // ---- migration -----------------------------------------------------------------------

  /**
   * DEV_CONFIG_STATE: the guest-visible config state the VMM owns, 40 bytes little-endian:
   * u32 magic 'VGIO', u16 version 1, u16 length 40, u16 command, u16 MSI control (Enable and
   * MME), u32 MSI address lo, u32 hi, u16 data, u16 0, u32 mask, u32 pending, u32 vectors held
   * while paused, u32 MSI capability offset. Call it after the device stopped.
   */
  saveDeviceConfig(): Uint8Array {
    const b = new Uint8Array(DEVICE_CONFIG_SIZE);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, DEVICE_CONFIG_MAGIC, true);
    dv.setUint16(4, DEVICE_CONFIG_VERSION, true);
    dv.setUint16(6, DEVICE_CONFIG_SIZE, true);
    dv.setUint16(8, this.command, true);
    dv.setUint16(10, this.msiCtl, true);
    dv.setUint32(12, this.msiAddrLo, true);
    dv.setUint32(16, this.msiAddrHi, true);
    dv.setUint16(20, this.msiData, true);
    dv.setUint32(24, this.msiMask, true);
    dv.setUint32(28, this.msiPending, true);
    dv.setUint32(32, this.held, true);
    dv.setUint32(36, this.msiCap, true);
    return b;
  }

  /**
   * Applies a blob from saveDeviceConfig() (taken on the source) to this device: command
   * register through the fd, the emulated MSI capability, SET_IRQS when MSI was enabled, and
   * the interrupts still pending. Throws KernelError EINVAL (nothing changed) for a blob of
   * the wrong size, magic or version, or one from a device whose MSI capability differs.
   */
  loadDeviceConfig(blob: Uint8Array): void {
    if (!(blob instanceof Uint8Array) || blob.length !== DEVICE_CONFIG_SIZE) fail('EINVAL', 'device config blob has the wrong size');
    if (this.closed) fail('EBADF', 'guest device is closed');
    const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    if (dv.getUint32(0, true) !== DEVICE_CONFIG_MAGIC || dv.getUint16(4, true) !== DEVICE_CONFIG_VERSION
      || dv.getUint16(6, true) !== DEVICE_CONFIG_SIZE) {
      fail('EINVAL', 'not a device config blob of version 1');
    }
    if (dv.getUint32(36, true) !== this.msiCap) fail('EINVAL', 'device config is for a device with another MSI capability');
    const ctl = dv.getUint16(10, true);
    if ((ctl & ~(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE)) !== 0) fail('EINVAL', 'device config has bad MSI control bits');
    const command = dv.getUint16(8, true);
    this.rawCfgWrite(PCI_COMMAND, 2, command);
    this.command = command;
    this.msiAddrLo = dv.getUint32(12, true) & 0xfffffffc;
    this.msiAddrHi = this.msiIs64 ? dv.getUint32(16, true) : 0;
    this.msiData = dv.getUint16(20, true);
    this.msiMask = this.msiHasMask ? dv.getUint32(24, true) & this.vectorBits(32) : 0;
    this.msiPending = this.msiHasMask ? dv.getUint32(28, true) & this.vectorBits(32) : 0;
    this.held = (this.held | dv.getUint32(32, true)) >>> 0;
    this.msiCtl = ctl;
    this.rewire();
  }

  /** Releases what this object set up on the device: MSI eventfds and BAR mappings. */
  close(): void {
    if (this.closed) return;
    if (this.msiWired !== 0 && !this.device.closed) {
      try {
        this.setIrqs(0);
      } catch {
        // the device may already be gone; its eventfds are closed below either way
      }
    }
    for (const e of this.eventfds) this.fds.close(e.fd);
    this.eventfds = [];
    this.msiWired = 0;
    for (const b of this.bars) {
      b.map?.unmap();
      b.map = null;
    }
    this.closed = true;
  }
}
