/**
 * A guest's PCI access to a VF assigned through VFIO, served the way a VMM serves it: config
 * space and BARs through pread/pwrite of the device fd, MSI through SET_IRQS with one eventfd
 * per vector. Enabling MSI in config space is virtual under vfio-pci (the write only reaches
 * the shadow), so, like QEMU, this layer watches the guest's MSI control writes and turns
 * them into SET_IRQS calls. The fuzz campaigns use it for the witness VF (whose jobs must keep
 * completing) and for the hostile guest (whose MMIO reaches the device the same way).
 *
 * Accesses that the fd refuses raise KernelError(EIO), which is what a guest driver sees as
 * a dead device.
 */
import type { CfgSize, GuestPciIo } from '../guest/io.js';
import {
  PCI_CAPABILITY_LIST, PCI_CAP_ID_MSI, PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE, PCI_MSI_FLAGS_QSIZE,
} from '../hw/pci/regs.js';
import { KernelError } from '../uapi/errno.js';
import {
  VFIO_DEVICE_SET_IRQS, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INDEX_TO_OFFSET, VFIO_PCI_MSI_IRQ_INDEX,
} from '../uapi/vfio.js';
import type { EventFd, FdTable, VfioFile } from '../vfio/fd.js';

const CFG = VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX);
/** The guest-owned bits of the MSI control word (low byte): Enable and Multiple Message Enable. */
const MSI_CTRL_BITS = PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE;

export class FdPciIo implements GuestPciIo {
  private handler: ((vector: number) => void) | undefined;
  private msiCap = -1;
  private msiCtrl = 0;
  /** Eventfds this VMM installed for MSI, by vector. */
  readonly eventfds: { fd: number; file: EventFd }[] = [];
  private readonly b8 = new Uint8Array(8);
  private readonly dv = new DataView(this.b8.buffer);

  constructor(readonly file: VfioFile, private readonly fds: FdTable) {}

  /** fd numbers this adapter owns (the device fd is the caller's). */
  get ownedFds(): number[] {
    return this.eventfds.map((e) => e.fd);
  }

  private xfer(pos: number, n: number, write: boolean): void {
    const buf = this.b8.subarray(0, n);
    const r = write ? this.file.write(buf, pos) : this.file.read(buf, pos);
    if (r !== n) throw new KernelError('EIO', `${write ? 'pwrite' : 'pread'} of ${n} at 0x${pos.toString(16)} returned ${r}`);
  }

  cfgRead(off: number, size: CfgSize): number {
    this.xfer(CFG + off, size, false);
    this.overlayMsiControl(off, size);
    return size === 1 ? this.dv.getUint8(0) : size === 2 ? this.dv.getUint16(0, true) : this.dv.getUint32(0, true);
  }

  cfgWrite(off: number, size: CfgSize, v: number): void {
    if (size === 1) this.dv.setUint8(0, v & 0xff);
    else if (size === 2) this.dv.setUint16(0, v & 0xffff, true);
    else this.dv.setUint32(0, v >>> 0, true);
    const cap = this.findMsi();
    const at = cap + PCI_MSI_FLAGS;
    const touches = cap > 0 && off <= at && off + size > at;
    const written = touches ? (v >>> (8 * (at - off))) & 0xffff : 0;
    this.xfer(CFG + off, size, true);
    if (touches) {
      this.msiCtrl = written & MSI_CTRL_BITS;
      this.msiControl(this.msiCtrl);
    }
  }

  /**
   * vfio-pci keeps MSI Enable clear until SET_IRQS and caps MME; the guest must see what it
   * wrote, so the VMM emulates those bits (QEMU's emulated MSI capability does the same).
   */
  private overlayMsiControl(off: number, size: number): void {
    const cap = this.msiCap;
    if (cap <= 0) return;
    const at = cap + PCI_MSI_FLAGS;
    if (off > at || off + size <= at) return;
    const i = at - off;
    const lo = this.dv.getUint8(i);
    this.dv.setUint8(i, (lo & ~MSI_CTRL_BITS) | (this.msiCtrl & MSI_CTRL_BITS));
  }

  read32(bar: number, off: number): number {
    this.xfer(VFIO_PCI_INDEX_TO_OFFSET(bar) + off, 4, false);
    return this.dv.getUint32(0, true);
  }

  write32(bar: number, off: number, v: number): void {
    this.dv.setUint32(0, v >>> 0, true);
    this.xfer(VFIO_PCI_INDEX_TO_OFFSET(bar) + off, 4, true);
  }

  read64(bar: number, off: number): [number, number] {
    this.xfer(VFIO_PCI_INDEX_TO_OFFSET(bar) + off, 8, false);
    return [this.dv.getUint32(0, true), this.dv.getUint32(4, true)];
  }

  write64(bar: number, off: number, lo: number, hi: number): void {
    this.dv.setUint32(0, lo >>> 0, true);
    this.dv.setUint32(4, hi >>> 0, true);
    this.xfer(VFIO_PCI_INDEX_TO_OFFSET(bar) + off, 8, true);
  }

  onInterrupt(cb: (vector: number) => void): void {
    this.handler = cb;
  }

  private findMsi(): number {
    if (this.msiCap >= 0) return this.msiCap;
    let at = this.cfgRead(PCI_CAPABILITY_LIST, 1) & 0xfc;
    for (let hops = 0; at !== 0 && hops < 48; hops++) {
      if (this.cfgRead(at, 1) === PCI_CAP_ID_MSI) return (this.msiCap = at);
      at = this.cfgRead(at + 1, 1) & 0xfc;
    }
    return (this.msiCap = 0);
  }

  /** The guest wrote the MSI control word: mirror Enable / Multiple Message Enable with SET_IRQS. */
  private msiControl(ctrl: number): void {
    const enable = (ctrl & PCI_MSI_FLAGS_ENABLE) !== 0;
    if (!enable) {
      if (this.eventfds.length > 0) {
        this.setIrqs(VFIO_IRQ_SET_DATA_NONE, []);
        this.dropEventfds();
      }
      return;
    }
    const vectors = 1 << ((ctrl & PCI_MSI_FLAGS_QSIZE) >> 4);
    if (this.eventfds.length === vectors) return;
    if (this.eventfds.length > 0) {
      this.setIrqs(VFIO_IRQ_SET_DATA_NONE, []);
      this.dropEventfds();
    }
    for (let v = 0; v < vectors; v++) {
      const e = this.fds.eventfd();
      const vector = v;
      e.file.onSignal = (f) => {
        f.count = 0n;
        this.handler?.(vector);
      };
      this.eventfds.push(e);
    }
    this.setIrqs(VFIO_IRQ_SET_DATA_EVENTFD, this.eventfds.map((e) => e.fd));
  }

  private setIrqs(dataType: number, fds: number[]): void {
    const buf = new Uint8Array(20 + 4 * fds.length);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, buf.length, true);
    dv.setUint32(4, dataType | VFIO_IRQ_SET_ACTION_TRIGGER, true);
    dv.setUint32(8, VFIO_PCI_MSI_IRQ_INDEX, true);
    dv.setUint32(12, 0, true);
    dv.setUint32(16, fds.length, true);
    fds.forEach((fd, i) => dv.setInt32(20 + 4 * i, fd, true));
    const r = this.file.ioctl(VFIO_DEVICE_SET_IRQS, buf);
    if (r !== 0) throw new KernelError('EIO', `SET_IRQS returned ${r}`);
  }

  private dropEventfds(): void {
    for (const e of this.eventfds) this.fds.close(e.fd);
    this.eventfds.length = 0;
  }
}
