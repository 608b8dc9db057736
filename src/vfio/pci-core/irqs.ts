/**
 * Interrupts of a vfio-pci device: VFIO_DEVICE_GET_IRQ_INFO counts and VFIO_DEVICE_SET_IRQS,
 * after Linux vfio_pci_intrs.c and vfio_set_irqs_validate_and_prepare.
 *
 * MSI is the only message type the QM functions have (no INTx pin, no MSI-X). Enabling it
 * does what the host kernel's MSI layer does to the hardware: program the capability with the
 * host's doorbell address/data and Multiple Message Enable for the vectors allocated, mask
 * every vector, then unmask each one as an eventfd is attached (request_irq) and mask it
 * again when the eventfd is detached (free_irq). A vector without an eventfd is therefore
 * masked in the device, which holds the message pending; attaching an eventfd later delivers
 * it. The device's messages arrive through the function's MSI sink and signal the eventfd of
 * their vector.
 *
 * MASK/UNMASK on MSI are ENOTTY, as in Linux (vfio never exported MSI masking; the device's
 * per-vector mask bits are reachable through config space instead). ERR and REQ hold one
 * eventfd each: REQ is signalled when the host wants the device back (driver unbind); ERR
 * exists because the functions are PCIe, but nothing in the model reports AER errors.
 */
import { fail } from '../../uapi/errno.js';
import type { PciFunction } from '../../hw/pci/function.js';
import {
  PCI_MSI_ADDRESS_HI,
  PCI_MSI_ADDRESS_LO,
  PCI_MSI_DATA_64,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_ENABLE,
  PCI_MSI_FLAGS_QMASK,
  PCI_MSI_FLAGS_QSIZE,
  PCI_MSI_MASK_64,
  PCI_INTERRUPT_PIN,
} from '../../hw/pci/regs.js';
import {
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_REQ_IRQ_INDEX,
} from '../../uapi/vfio.js';
import { readS32 } from '../../uapi/codec.js';
import { EventFd, type FdTable } from '../fd.js';

/**
 * What the host's interrupt controller puts in the MSI capability. The model routes messages
 * by vector number, so these only make config reads look like a host-programmed device
 * (an arm64 GICv3 ITS doorbell, GITS_TRANSLATER, and a base event id).
 */
export const HOST_MSI_ADDRESS = 0x0_2020_0040;
export const HOST_MSI_DATA = 0x0040;

const IRQ_NONE = VFIO_PCI_NUM_IRQS;
const U32_MAX = 0xffffffff;

export interface IrqSetHeader {
  argsz: number;
  flags: number;
  index: number;
  start: number;
  count: number;
}

/** vfio_set_irqs_validate_and_prepare: returns the payload size in bytes. */
export function validateIrqSet(hdr: IrqSetHeader, numIrqs: number, minsz: number): number {
  if (
    hdr.argsz < minsz ||
    hdr.index >= VFIO_PCI_NUM_IRQS ||
    hdr.count >= U32_MAX - hdr.start ||
    (hdr.flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) !== 0
  ) {
    fail('EINVAL', 'bad irq set header');
  }
  if (hdr.start >= numIrqs || hdr.start + hdr.count > numIrqs) fail('EINVAL', `irqs [${hdr.start}, +${hdr.count}) beyond ${numIrqs}`);
  let size: number;
  switch (hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_NONE:
      size = 0;
      break;
    case VFIO_IRQ_SET_DATA_BOOL:
      size = 1;
      break;
    case VFIO_IRQ_SET_DATA_EVENTFD:
      size = 4;
      break;
    default:
      fail('EINVAL', 'exactly one data type is required');
  }
  if (size !== 0 && hdr.argsz - minsz < hdr.count * size) fail('EINVAL', 'argsz does not cover the data');
  return hdr.count * size;
}

export class VfioPciIrqs {
  /** VFIO_PCI_*_IRQ_INDEX of the enabled interrupt type, VFIO_PCI_NUM_IRQS when none. */
  irqType = IRQ_NONE;
  /** log2 of the vectors last allocated (vfio's msi_qmax; kept after disable like Linux). */
  msiQmax = 0;
  private triggers: (EventFd | null)[] = [];
  private errTrigger: EventFd | null = null;
  private reqTrigger: EventFd | null = null;
  /** Multiple Message Enable the host programmed, and which vectors it keeps masked. */
  private mme = 0;
  private hostMask = 0;

  /** Where the function's MSI messages go while the device is open. */
  readonly sink = (vector: number): void => {
    const t = this.triggers[vector];
    if (t) t.signal();
  };

  constructor(
    private readonly fn: PciFunction,
    private readonly fds: FdTable,
  ) {}

  get msiEnabled(): boolean {
    return this.irqType === VFIO_PCI_MSI_IRQ_INDEX;
  }

  /** Vectors SET_IRQS allocated (vfio's num_ctx). */
  get vectors(): number {
    return this.triggers.length;
  }

  /** The eventfd attached to an MSI vector, if any. */
  trigger(vector: number): EventFd | null {
    return this.triggers[vector] ?? null;
  }

  /** vfio_pci_get_irq_count. */
  count(index: number): number {
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        if (this.fn.isVf) return 0;
        return this.fn.configRead(PCI_INTERRUPT_PIN, 1) !== 0 ? 1 : 0;
      case VFIO_PCI_MSI_IRQ_INDEX: {
        const flags = this.fn.configRead(this.fn.msi.offset + PCI_MSI_FLAGS, 2);
        return 1 << ((flags & PCI_MSI_FLAGS_QMASK) >> 1);
      }
      case VFIO_PCI_ERR_IRQ_INDEX:
      case VFIO_PCI_REQ_IRQ_INDEX:
        return 1;
      default:
        return 0;
    }
  }

  /** VFIO_DEVICE_GET_IRQ_INFO contents for a valid index (EINVAL otherwise). */
  info(index: number): { flags: number; count: number } {
    if (!Number.isInteger(index) || index < 0 || index >= VFIO_PCI_NUM_IRQS) fail('EINVAL', `irq index ${index}`);
    let flags = VFIO_IRQ_INFO_EVENTFD;
    flags |= index === VFIO_PCI_INTX_IRQ_INDEX ? VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED : VFIO_IRQ_INFO_NORESIZE;
    return { flags, count: this.count(index) };
  }

  /** vfio_pci_set_irqs_ioctl, after validation. `data` is the payload (count * size bytes). */
  set(flags: number, index: number, start: number, count: number, data: Uint8Array): void {
    const action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    switch (index) {
      case VFIO_PCI_MSI_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER) return this.setMsiTrigger(flags, start, count, data);
        break;
      case VFIO_PCI_ERR_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER) return this.setSingle('err', flags, start, count, data);
        break;
      case VFIO_PCI_REQ_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER) return this.setSingle('req', flags, start, count, data);
        break;
      default:
        // INTx and MSI-X have no vectors on these functions; validation already refused them.
        break;
    }
    // MSI MASK/UNMASK, any action on INTx/MSI-X, and zero or several actions at once.
    fail('ENOTTY', `action ${action} not supported on irq index ${index}`);
  }

  /** Drops every trigger and disables MSI (device close). */
  disableAll(): void {
    if (this.irqType === VFIO_PCI_MSI_IRQ_INDEX) this.msiDisable();
    this.errTrigger = null;
    this.reqTrigger = null;
  }

  /** Signals the REQ eventfd (the host asks for the device back); false if none is set. */
  signalRequest(): boolean {
    if (!this.reqTrigger) return false;
    this.reqTrigger.signal();
    return true;
  }

  /** Signals the ERR eventfd, as AER recovery would; false if none is set. */
  signalError(): boolean {
    if (!this.errTrigger) return false;
    this.errTrigger.signal();
    return true;
  }

  /** pci_restore_msi_state after a function reset: reprogram what the host had set up. */
  restorePhysical(): void {
    if (this.irqType !== VFIO_PCI_MSI_IRQ_INDEX) return;
    this.programMsi(true);
  }

  // ---- MSI -------------------------------------------------------------------------------

  private setMsiTrigger(flags: number, start: number, count: number, data: Uint8Array): void {
    const isMsi = this.irqType === VFIO_PCI_MSI_IRQ_INDEX;
    if (isMsi && count === 0 && (flags & VFIO_IRQ_SET_DATA_NONE)) {
      this.msiDisable();
      return;
    }
    if (!(isMsi || this.irqType === IRQ_NONE)) fail('EINVAL', 'another interrupt type is enabled');
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      if (isMsi) {
        this.setBlock(start, count, data);
        return;
      }
      this.msiEnable(start + count);
      try {
        this.setBlock(start, count, data);
      } catch (e) {
        this.msiDisable();
        throw e;
      }
      return;
    }
    if (!isMsi) fail('EINVAL', 'MSI is not enabled');
    // Loopback: DATA_NONE signals every vector in range, DATA_BOOL those with a true byte.
    for (let i = start; i < start + count; i++) {
      const t = this.triggers[i];
      if (!t) continue;
      if (flags & VFIO_IRQ_SET_DATA_NONE) t.signal();
      else if (data[i - start] !== 0) t.signal();
    }
  }

  private msiEnable(nvec: number): void {
    if (this.irqType !== IRQ_NONE) fail('EINVAL', 'interrupts already enabled');
    // pci_alloc_irq_vectors(pdev, 1, nvec): fewer than one vector is a range error.
    if (nvec < 1) fail('ERANGE', 'no vectors requested');
    this.triggers = new Array<EventFd | null>(nvec).fill(null);
    this.mme = 31 - Math.clz32(nvec * 2 - 1);
    this.msiQmax = this.mme;
    this.irqType = VFIO_PCI_MSI_IRQ_INDEX;
    this.hostMask = this.capableMask();
    this.programMsi(false);
  }

  private msiDisable(): void {
    for (let v = 0; v < this.triggers.length; v++) this.setVector(v, -1);
    // pci_msi_shutdown: MSI off, and the device left with every vector unmasked.
    const off = this.fn.msi.offset;
    const ctrl = this.fn.configRead(off + PCI_MSI_FLAGS, 2);
    this.fn.configWrite(off + PCI_MSI_FLAGS, 2, ctrl & ~PCI_MSI_FLAGS_ENABLE);
    this.hostMask = 0;
    this.fn.configWrite(off + PCI_MSI_MASK_64, 4, 0);
    // Freeing the vectors deactivates their IRQ domain entries, which writes a zero message:
    // a disabled function keeps no host doorbell address in its capability.
    this.fn.configWrite(off + PCI_MSI_ADDRESS_LO, 4, 0);
    this.fn.configWrite(off + PCI_MSI_ADDRESS_HI, 4, 0);
    this.fn.configWrite(off + PCI_MSI_DATA_64, 2, 0);
    this.triggers = [];
    this.irqType = IRQ_NONE;
  }

  /** vfio_msi_set_block: on any failure every vector of the block is detached again. */
  private setBlock(start: number, count: number, data: Uint8Array): void {
    const n = this.triggers.length;
    if (start >= n || start + count > n) fail('EINVAL', `vectors [${start}, +${count}) beyond the ${n} allocated`);
    let j = start;
    try {
      for (let i = 0; i < count; i++, j++) this.setVector(j, data.length >= 4 * (i + 1) ? readS32(data, 4 * i) : -1);
    } catch (e) {
      for (let k = j; k >= start; k--) this.setVector(k, -1);
      throw e;
    }
  }

  /** vfio_msi_set_vector_signal: detach the old eventfd (mask), attach the new one (unmask). */
  private setVector(vector: number, fd: number): void {
    if (vector < 0 || vector >= this.triggers.length) fail('EINVAL', `vector ${vector}`);
    if (this.triggers[vector]) {
      this.triggers[vector] = null;
      this.setHostMask(this.hostMask | (1 << vector));
    }
    if (fd < 0) return;
    const efd = this.fds.getAs(fd, EventFd);
    this.triggers[vector] = efd;
    this.setHostMask(this.hostMask & ~(1 << vector));
  }

  private setHostMask(mask: number): void {
    this.hostMask = mask >>> 0;
    this.fn.configWrite(this.fn.msi.offset + PCI_MSI_MASK_64, 4, this.hostMask);
  }

  /** Every vector the capability can carry (msi_multi_mask). */
  private capableMask(): number {
    const capable = this.fn.msi.capableVectors;
    return capable >= 32 ? 0xffffffff : (1 << capable) - 1;
  }

  /** What the host kernel writes when it sets MSI up (or restores it after a reset). */
  private programMsi(restore: boolean): void {
    const off = this.fn.msi.offset;
    let ctrl = this.fn.configRead(off + PCI_MSI_FLAGS, 2);
    if (restore) this.fn.configWrite(off + PCI_MSI_FLAGS, 2, ctrl & ~PCI_MSI_FLAGS_ENABLE);
    ctrl = (ctrl & ~(PCI_MSI_FLAGS_QSIZE | PCI_MSI_FLAGS_ENABLE)) | (this.mme << 4);
    this.fn.configWrite(off + PCI_MSI_MASK_64, 4, this.hostMask);
    this.fn.configWrite(off + PCI_MSI_FLAGS, 2, ctrl);
    this.fn.configWrite(off + PCI_MSI_ADDRESS_LO, 4, HOST_MSI_ADDRESS % 2 ** 32);
    this.fn.configWrite(off + PCI_MSI_ADDRESS_HI, 4, Math.floor(HOST_MSI_ADDRESS / 2 ** 32));
    this.fn.configWrite(off + PCI_MSI_DATA_64, 2, HOST_MSI_DATA);
    this.fn.configWrite(off + PCI_MSI_FLAGS, 2, ctrl | PCI_MSI_FLAGS_ENABLE);
  }

  // ---- ERR / REQ -------------------------------------------------------------------------

  /** vfio_pci_set_ctx_trigger_single. */
  private setSingle(which: 'err' | 'req', flags: number, start: number, count: number, data: Uint8Array): void {
    if (start !== 0 || count > 1) fail('EINVAL', 'single-vector interrupt');
    const cur = which === 'err' ? this.errTrigger : this.reqTrigger;
    const put = (t: EventFd | null): void => {
      if (which === 'err') this.errTrigger = t;
      else this.reqTrigger = t;
    };
    if (flags & VFIO_IRQ_SET_DATA_NONE) {
      if (cur) {
        if (count) cur.signal();
        else put(null);
        return;
      }
    } else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
      if (!count) fail('EINVAL', 'no data');
      if (data[0] && cur) cur.signal();
      return;
    } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      if (!count) fail('EINVAL', 'no data');
      const fd = readS32(data, 0);
      if (fd === -1) put(null);
      else if (fd >= 0) put(this.fds.getAs(fd, EventFd));
      return;
    }
    fail('EINVAL', 'nothing to disable');
  }
}
