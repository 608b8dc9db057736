/**
 * A guest's view of a VF assigned through VFIO: the GuestPciIo the guest driver uses, served
 * by a VMM over the device fd, the way QEMU's vfio-pci device does it. Used by the save CLI,
 * the vendor-driver tests and benches to run the real guest driver against a VF bound to
 * hisi-acc-vfio-pci.
 *
 * - Config space goes through the fd's config region. The MSI capability's control word is
 *   emulated here, as QEMU does: when the guest enables MSI, the VMM calls SET_IRQS with one
 *   eventfd per vector; the eventfds deliver to the guest's handler.
 * - BAR accesses go through mmaps of the fd when the driver allows them (the low 32 KiB of
 *   BAR2, BAR4), and through pread/pwrite of the fd otherwise (64 KiB host pages).
 * - pause()/resume() stop and restart the vCPUs: while paused, interrupts are held (the
 *   irqchip keeps them pending) and delivered on resume.
 * - A migrated guest keeps its io object: `attach` moves it to the destination's device fd
 *   and replays the config state the guest had programmed (command register, MSI), as the
 *   VMM restores a device's config space; held interrupts travel with it.
 */
import type { GuestPciIo, CfgSize } from '../../guest/io.js';
import {
  PCI_CAPABILITY_LIST, PCI_CAP_ID_MSI, PCI_COMMAND, PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE,
  PCI_MSI_FLAGS_QSIZE, PCI_STATUS, PCI_STATUS_CAP_LIST,
} from '../../hw/pci/regs.js';
import { fail } from '../../uapi/errno.js';
import {
  VFIO_DEVICE_SET_IRQS, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INDEX_TO_OFFSET, VFIO_PCI_MSI_IRQ_INDEX,
} from '../../uapi/vfio.js';
import type { EventFd, FdTable } from '../../vfio/fd.js';
import type { VfioDeviceFile } from '../../vfio/pci-core/device-file.js';
import type { VfioMapping } from '../../vfio/pci-core/ops.js';

const CFG = VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX);

interface Backend {
  file: VfioDeviceFile;
  fds: FdTable;
  maps: Map<number, VfioMapping>;
  eventfds: { fd: number; file: EventFd }[];
}

/** The (offset, size) of config writes the VMM replays on a new device, oldest first. */
interface CfgWrite {
  off: number;
  size: CfgSize;
  v: number;
}

function le(b: Uint8Array, n: number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + b[i]!;
  return v;
}

function put(b: Uint8Array, n: number, v: number): void {
  for (let i = 0; i < n; i++) b[i] = Math.floor(v / 2 ** (8 * i)) & 0xff;
}

export class VfioPciIo implements GuestPciIo {
  private be: Backend | null = null;
  private handler: ((vector: number) => void) | undefined;
  private paused = false;
  private held = 0;
  private msiCap = 0;
  private msiFlags = 0;
  private readonly replay: CfgWrite[] = [];
  private readonly buf8 = new Uint8Array(8);
  /** Interrupts delivered to the guest. */
  delivered = 0;

  /** Attaches to a device fd (the guest's current host); replays the config state the guest set up. */
  attach(file: VfioDeviceFile, fds: FdTable, opts: { bars?: { index: number; length: number }[] } = {}): void {
    if (this.be) this.detach();
    const maps = new Map<number, VfioMapping>();
    for (const b of opts.bars ?? [{ index: 2, length: 0x8000 }]) {
      const m = file.mmap(VFIO_PCI_INDEX_TO_OFFSET(b.index), b.length);
      if (typeof m !== 'number') maps.set(b.index, m);
    }
    this.be = { file, fds, maps, eventfds: [] };
    this.msiCap = this.findMsi();
    this.msiFlags = 0;
    const writes = this.replay.splice(0);
    for (const w of writes) this.cfgWrite(w.off, w.size, w.v);
  }

  /** Drops the device: mappings, eventfds (the device keeps nothing of this guest). */
  detach(): void {
    const be = this.be;
    if (!be) return;
    this.setIrqs(0);
    for (const m of be.maps.values()) m.unmap();
    this.be = null;
  }

  get attached(): boolean {
    return this.be !== null;
  }

  /** Whether BAR `index` is reached through an mmap (false: through pread/pwrite). */
  mapped(index: number): boolean {
    return this.be?.maps.has(index) ?? false;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    const held = this.held;
    this.held = 0;
    for (let v = 0; v < 32; v++) if ((held >>> v) & 1) this.deliver(v);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  private dev(): Backend {
    return this.be ?? fail('ENODEV', 'guest device is not attached');
  }

  private deliver(vector: number): void {
    if (this.paused) {
      this.held = (this.held | (1 << vector)) >>> 0;
      return;
    }
    this.delivered++;
    this.handler?.(vector);
  }

  private findMsi(): number {
    if ((this.rawCfgRead(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) === 0) return 0;
    let off = this.rawCfgRead(PCI_CAPABILITY_LIST, 1) & 0xfc;
    for (let n = 0; off !== 0 && n < 48; n++) {
      if (this.rawCfgRead(off, 1) === PCI_CAP_ID_MSI) return off;
      off = this.rawCfgRead(off + 1, 1) & 0xfc;
    }
    return 0;
  }

  private rawCfgRead(off: number, size: CfgSize): number {
    const b = this.buf8.subarray(0, size);
    const r = this.dev().file.read(b, CFG + off);
    if (r !== size) fail('EIO', `config read at 0x${off.toString(16)}: ${r}`);
    return le(b, size);
  }

  private rawCfgWrite(off: number, size: CfgSize, v: number): void {
    const b = this.buf8.subarray(0, size);
    put(b, size, v);
    const r = this.dev().file.write(b, CFG + off);
    if (r !== size) fail('EIO', `config write at 0x${off.toString(16)}: ${r}`);
  }

  /** Number of vectors the MSI control word enables (0 when disabled). */
  private msiVectors(flags: number): number {
    return flags & PCI_MSI_FLAGS_ENABLE ? 1 << ((flags & PCI_MSI_FLAGS_QSIZE) >> 4) : 0;
  }

  private setIrqs(count: number): void {
    const be = this.dev();
    for (const e of be.eventfds) be.fds.close(e.fd);
    be.eventfds = [];
    const hdr = 20;
    const buf = new Uint8Array(hdr + 4 * count);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, buf.length, true);
    dv.setUint32(4, (count > 0 ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE) | VFIO_IRQ_SET_ACTION_TRIGGER, true);
    dv.setUint32(8, VFIO_PCI_MSI_IRQ_INDEX, true);
    dv.setUint32(12, 0, true);
    dv.setUint32(16, count, true);
    for (let v = 0; v < count; v++) {
      const e = be.fds.eventfd();
      e.file.onSignal = () => {
        e.file.count = 0n;
        this.deliver(v);
      };
      be.eventfds.push(e);
      dv.setInt32(hdr + 4 * v, e.fd, true);
    }
    const r = be.file.ioctl(VFIO_DEVICE_SET_IRQS, buf);
    if (r < 0) fail('EIO', `SET_IRQS for ${count} MSI vectors: ${r}`);
  }

  // ---- GuestPciIo -------------------------------------------------------------------------

  cfgRead(off: number, size: CfgSize): number {
    const f = this.msiCap + PCI_MSI_FLAGS;
    if (this.msiCap === 0 || off + size <= f || off >= f + 2) return this.rawCfgRead(off, size);
    // Enable and Multiple Message Enable are the VMM's: patch them over what the fd returned.
    const b = this.buf8.subarray(0, size);
    put(b, size, this.rawCfgRead(off, size));
    const own = PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE;
    for (let i = 0; i < size; i++) {
      const k = off + i - f;
      if (k !== 0 && k !== 1) continue;
      const m = (own >>> (8 * k)) & 0xff;
      b[i] = (b[i]! & ~m) | ((this.msiFlags >>> (8 * k)) & m);
    }
    return le(b, size);
  }

  cfgWrite(off: number, size: CfgSize, v: number): void {
    const end = off + size;
    const touchesCommand = off < PCI_COMMAND + 2 && end > PCI_COMMAND;
    const cap = this.msiCap;
    const touchesMsi = cap !== 0 && off < cap + 24 && end > cap;
    if (touchesCommand || touchesMsi) {
      const i = this.replay.findIndex((w) => w.off === off && w.size === size);
      if (i >= 0) this.replay.splice(i, 1);
      this.replay.push({ off, size, v });
    }
    this.rawCfgWrite(off, size, v);
    const f = cap + PCI_MSI_FLAGS;
    if (cap !== 0 && off <= f && f + 2 <= end) {
      // A write covering the whole control word decides the vectors (the guest writes it as a u16).
      const flags = Math.floor(v / 2 ** (8 * (f - off))) & 0xffff;
      const before = this.msiVectors(this.msiFlags);
      const after = this.msiVectors(flags);
      this.msiFlags = flags;
      if (after !== before) this.setIrqs(after);
    }
  }

  read32(bar: number, off: number): number {
    const m = this.be?.maps.get(bar);
    if (m && off + 4 <= m.length) return m.read32(off);
    const b = this.buf8.subarray(0, 4);
    const r = this.dev().file.read(b, VFIO_PCI_INDEX_TO_OFFSET(bar) + off);
    return r === 4 ? le(b, 4) : 0xffffffff;
  }

  write32(bar: number, off: number, v: number): void {
    const m = this.be?.maps.get(bar);
    if (m && off + 4 <= m.length) {
      m.write32(off, v);
      return;
    }
    const b = this.buf8.subarray(0, 4);
    put(b, 4, v >>> 0);
    this.dev().file.write(b, VFIO_PCI_INDEX_TO_OFFSET(bar) + off);
  }

  read64(bar: number, off: number): [number, number] {
    const m = this.be?.maps.get(bar);
    if (m && off + 8 <= m.length) return m.read64(off);
    const b = this.buf8;
    const r = this.dev().file.read(b, VFIO_PCI_INDEX_TO_OFFSET(bar) + off);
    return r === 8 ? [le(b.subarray(0, 4), 4), le(b.subarray(4, 8), 4)] : [0xffffffff, 0xffffffff];
  }

  write64(bar: number, off: number, lo: number, hi: number): void {
    const m = this.be?.maps.get(bar);
    if (m && off + 8 <= m.length) {
      m.write64(off, lo, hi);
      return;
    }
    const b = this.buf8;
    put(b.subarray(0, 4), 4, lo >>> 0);
    put(b.subarray(4, 8), 4, hi >>> 0);
    this.dev().file.write(b, VFIO_PCI_INDEX_TO_OFFSET(bar) + off);
  }

  onInterrupt(cb: (vector: number) => void): void {
    this.handler = cb;
  }
}
