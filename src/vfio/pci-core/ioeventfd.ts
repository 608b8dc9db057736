/**
 * VFIO_DEVICE_IOEVENTFD (Linux vfio_pci_ioeventfd): "when this eventfd is signalled, write
 * `data` of this size at this BAR offset". A VMM wires guest doorbell writes it has trapped to
 * an eventfd so they reach the device without a round trip through the VMM.
 *
 * An ioeventfd is identified by (BAR, offset, size, data); registering the same tuple twice is
 * EEXIST, fd -1 removes it (ENODEV if it does not exist). Each signal consumes the eventfd
 * counter and performs one write; a signal already pending at registration fires at once.
 * While memory decoding is off (a PF whose user cleared Memory Space Enable) the write is
 * dropped, as the kernel handler does.
 */
import { fail } from '../../uapi/errno.js';
import type { PciFunction } from '../../hw/pci/function.js';
import { VFIO_PCI_BAR5_REGION_INDEX, VFIO_PCI_OFFSET_SHIFT } from '../../uapi/vfio.js';
import { EventFd, type FdTable } from '../fd.js';
import { watchEventFd } from './eventfd-watch.js';

/** VFIO_PCI_IOEVENTFD_MAX */
export const VFIO_PCI_IOEVENTFD_MAX = 1000;

export interface IoeventfdHost {
  readonly fn: PciFunction;
  readonly fds: FdTable;
  barSize(bar: number): number;
  /** Memory decoding as vfio sees it (the virtual Memory Space Enable). */
  readonly memoryEnabled: boolean;
}

interface Entry {
  readonly bar: number;
  readonly pos: number;
  readonly size: 1 | 2 | 4 | 8;
  readonly data: bigint;
  readonly lo: number;
  readonly hi: number;
  readonly unwatch: () => void;
}

export class IoeventfdTable {
  private readonly entries: Entry[] = [];
  /** Writes performed on behalf of signalled eventfds (and dropped ones, memory off). */
  writes = 0;
  dropped = 0;

  constructor(private readonly host: IoeventfdHost) {}

  get size(): number {
    return this.entries.length;
  }

  /** The ioctl after its header checks: `offset` is the device fd offset, `size` 1/2/4/8. */
  handle(offset: bigint, data: bigint, size: 1 | 2 | 4 | 8, fd: number): void {
    const bar = Number(offset >> BigInt(VFIO_PCI_OFFSET_SHIFT));
    const pos = Number(offset & ((1n << BigInt(VFIO_PCI_OFFSET_SHIFT)) - 1n));
    if (bar > VFIO_PCI_BAR5_REGION_INDEX) fail('EINVAL', 'ioeventfds only go to BARs');
    if (pos + size > this.host.barSize(bar)) fail('EINVAL', `[${pos}, +${size}) outside BAR${bar}`);
    // The tuple keeps the full u64; the write uses its low `size` bytes.
    const masked = size === 8 ? data : data & ((1n << BigInt(8 * size)) - 1n);
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e.pos === pos && e.bar === bar && e.data === data && e.size === size) {
        if (fd !== -1) fail('EEXIST', 'ioeventfd already registered');
        e.unwatch();
        this.entries.splice(i, 1);
        return;
      }
    }
    if (fd < 0) fail('ENODEV', 'no such ioeventfd');
    if (this.entries.length >= VFIO_PCI_IOEVENTFD_MAX) fail('ENOSPC', 'too many ioeventfds');
    const efd = this.host.fds.getAs(fd, EventFd);
    const lo = Number(masked & 0xffffffffn);
    const hi = Number(masked >> 32n);
    const fire = (): void => {
      efd.count = 0n;
      this.fire(bar, pos, size, lo, hi);
    };
    const entry: Entry = { bar, pos, size, data, lo, hi, unwatch: watchEventFd(efd, fire) };
    this.entries.push(entry);
    if (efd.count > 0n) fire();
  }

  clear(): void {
    for (const e of this.entries) e.unwatch();
    this.entries.length = 0;
  }

  private fire(bar: number, pos: number, size: 1 | 2 | 4 | 8, lo: number, hi: number): void {
    if (!this.host.memoryEnabled) {
      this.dropped++;
      return;
    }
    this.writes++;
    if (size === 8) this.host.fn.mmioWrite64(bar, pos, lo, hi, 'guest');
    else this.host.fn.mmioWrite(bar, pos, size, lo, 'guest');
  }
}
