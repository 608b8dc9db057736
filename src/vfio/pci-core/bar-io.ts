/**
 * BAR access through the device fd (vfio_pci_bar_rw / vfio_pci_core_do_io_rw) and through an
 * mmap of the BAR.
 *
 * read/write split a transfer into naturally aligned 8-, 4-, 2- and 1-byte accesses, largest
 * first, each one a single MMIO transaction of the function with origin 'guest' (the fd's user
 * is the VMM acting for its guest). Every access first checks memory decoding as vfio sees it
 * and fails the whole call with EIO when it is off, like the kernel.
 */
import { fail } from '../../uapi/errno.js';
import type { PciFunction } from '../../hw/pci/function.js';
import type { VfioMapping } from './ops.js';

export interface BarIoHost {
  readonly fn: PciFunction;
  readonly memoryEnabled: boolean;
}

/** Transfers `buf.length` bytes at `pos` of BAR `bar` (the caller clamped it to the BAR). */
export function barTransfer(host: BarIoHost, bar: number, pos: number, buf: Uint8Array, write: boolean): number {
  const fn = host.fn;
  const count = buf.length;
  let done = 0;
  while (done < count) {
    const off = pos + done;
    const left = count - done;
    const size = left >= 8 && off % 8 === 0 ? 8 : left >= 4 && off % 4 === 0 ? 4 : left >= 2 && off % 2 === 0 ? 2 : 1;
    if (!host.memoryEnabled) fail('EIO', 'memory decoding is disabled');
    if (size === 8) {
      if (write) {
        fn.mmioWrite64(bar, off, leGet(buf, done, 4), leGet(buf, done + 4, 4), 'guest');
      } else {
        const [lo, hi] = fn.mmioRead64(bar, off, 'guest');
        lePut(buf, done, 4, lo);
        lePut(buf, done + 4, 4, hi);
      }
    } else if (write) {
      fn.mmioWrite(bar, off, size, leGet(buf, done, size), 'guest');
    } else {
      lePut(buf, done, size, fn.mmioRead(bar, off, size, 'guest'));
    }
    done += size;
  }
  return count;
}

function leGet(b: Uint8Array, o: number, n: number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + b[o + i]!;
  return v;
}

function lePut(b: Uint8Array, o: number, n: number, v: number): void {
  for (let i = 0; i < n; i++) b[o + i] = (v >>> (8 * i)) & 0xff;
}

/**
 * A user mapping of [base, base+length) of a BAR. Each access is one MMIO transaction, no
 * allocation besides the pair read64 returns. A fault (outside the mapping, after unmap, or
 * while decoding is off) reads all-ones, drops writes and is counted.
 */
export class BarMapping implements VfioMapping {
  faults = 0;
  private live = true;

  constructor(
    private readonly host: BarIoHost,
    readonly index: number,
    readonly offset: number,
    readonly length: number,
    private readonly onUnmap: (m: BarMapping) => void,
  ) {}

  get mapped(): boolean {
    return this.live;
  }

  private ok(off: number, size: number): boolean {
    if (this.live && off >= 0 && off + size <= this.length && off % 1 === 0 && this.host.memoryEnabled) return true;
    this.faults++;
    return false;
  }

  read8(off: number): number {
    return this.ok(off, 1) ? this.host.fn.mmioRead(this.index, this.offset + off, 1, 'guest') : 0xff;
  }
  read16(off: number): number {
    return this.ok(off, 2) ? this.host.fn.mmioRead(this.index, this.offset + off, 2, 'guest') : 0xffff;
  }
  read32(off: number): number {
    return this.ok(off, 4) ? this.host.fn.mmioRead(this.index, this.offset + off, 4, 'guest') : 0xffffffff;
  }
  read64(off: number): [number, number] {
    return this.ok(off, 8) ? this.host.fn.mmioRead64(this.index, this.offset + off, 'guest') : [0xffffffff, 0xffffffff];
  }
  write8(off: number, v: number): void {
    if (this.ok(off, 1)) this.host.fn.mmioWrite(this.index, this.offset + off, 1, v & 0xff, 'guest');
  }
  write16(off: number, v: number): void {
    if (this.ok(off, 2)) this.host.fn.mmioWrite(this.index, this.offset + off, 2, v & 0xffff, 'guest');
  }
  write32(off: number, v: number): void {
    if (this.ok(off, 4)) this.host.fn.mmioWrite(this.index, this.offset + off, 4, v >>> 0, 'guest');
  }
  write64(off: number, lo: number, hi: number): void {
    if (this.ok(off, 8)) this.host.fn.mmioWrite64(this.index, this.offset + off, lo >>> 0, hi >>> 0, 'guest');
  }

  /** munmap. Idempotent. */
  unmap(): void {
    if (!this.live) return;
    this.live = false;
    this.onUnmap(this);
  }
}
