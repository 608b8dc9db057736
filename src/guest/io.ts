/**
 * The only ways the guest driver touches its device and its memory. Keeping this surface
 * small lets the same driver run bare-metal style over a PciFunction (here) or inside a VM
 * over a VFIO device fd (the VMM's adapter).
 */
import type { PciFunction } from '../hw/pci/function.js';

export type CfgSize = 1 | 2 | 4;

export interface GuestPciIo {
  cfgRead(off: number, size: CfgSize): number;
  cfgWrite(off: number, size: CfgSize, v: number): void;
  read32(bar: number, off: number): number;
  write32(bar: number, off: number, v: number): void;
  /** One 8-byte load, as [lo, hi] u32 halves. */
  read64(bar: number, off: number): [number, number];
  /** One 8-byte store (a single bus transaction, never two dword stores). */
  write64(bar: number, off: number, lo: number, hi: number): void;
  /** Installs the MSI handler (replacing any previous one); called with the vector number. */
  onInterrupt(cb: (vector: number) => void): void;
}

/**
 * The guest-physical memory operations the driver performs. A SparseMemory addressed by GPA
 * satisfies it; a VMM supplies its own view so that every store is a logged vCPU write.
 */
export interface GuestMemory {
  read(addr: number, dst: Uint8Array): void;
  write(addr: number, src: Uint8Array): void;
  fill(addr: number, len: number, byte: number): void;
  getU16(addr: number): number;
  getU32(addr: number): number;
}

/** Guest RAM as the driver sees it: GPA == IOVA as seen by the device (no vIOMMU). */
export interface GuestRam {
  mem: GuestMemory;
  /** Reserves `size` bytes aligned to `align` (a power of two); throws ENOMEM when full. */
  alloc(size: number, align?: number): number;
  /** Returns a block from alloc(); EINVAL for anything else. */
  free(addr: number): void;
}

/**
 * Bare-metal access to one PCI function: MMIO with origin 'guest', MSI messages straight to
 * the handler. A VF's Vendor/Device ID registers read 0xFFFF on the wire (SR-IOV 3.4.1);
 * like the Linux PCI core and vfio-pci, this view reports the ids derived from the PF.
 */
export function directPciIo(fn: PciFunction): GuestPciIo {
  let handler: ((vector: number) => void) | undefined;
  fn.setMsiSink((v) => handler?.(v));
  // Vendor ID (0x00) and Device ID (0x02) share the first dword.
  const ids = (off: number, size: CfgSize): number | undefined => {
    if (!fn.isVf || off >= 4 || off + size > 4) return undefined;
    const dword = ((fn.deviceId << 16) | fn.vendorId) >>> 0;
    const v = dword >>> (8 * off);
    return size === 4 ? v >>> 0 : v & (size === 2 ? 0xffff : 0xff);
  };
  return {
    cfgRead: (off, size) => ids(off, size) ?? fn.configRead(off, size),
    cfgWrite: (off, size, v) => fn.configWrite(off, size, v),
    read32: (bar, off) => fn.mmioRead(bar, off, 4, 'guest'),
    write32: (bar, off, v) => fn.mmioWrite(bar, off, 4, v, 'guest'),
    read64: (bar, off) => fn.mmioRead64(bar, off, 'guest'),
    write64: (bar, off, lo, hi) => fn.mmioWrite64(bar, off, lo, hi, 'guest'),
    onInterrupt: (cb) => { handler = cb; },
  };
}
