import type { AccessOrigin } from './dma.js';

/**
 * One memory-mapped BAR (or a window of one) as the device model implements it. The PCI
 * layer dispatches CPU accesses here after its own gating (memory-space enable, BAR bounds).
 *
 * Sub-dword accesses go to `read`/`write` with their size so a register with side effects
 * (write-1-to-clear, doorbells, the mailbox latch) sees the access the CPU made, never a
 * read-modify-write synthesised by the bus. 64-bit accesses travel as two u32 halves so the
 * hot paths (doorbells) need no BigInt.
 */
export interface MmioRegion {
  readonly size: number;
  /** Unsigned value of a 1-, 2- or 4-byte read at `off` (bytes from the BAR start). */
  read(off: number, size: 1 | 2 | 4, origin: AccessOrigin): number;
  write(off: number, size: 1 | 2 | 4, value: number, origin: AccessOrigin): void;
  /** A single 8-byte read; returns the value as [lo, hi] u32 halves. */
  read64(off: number, origin: AccessOrigin): [number, number];
  /** A single 8-byte write (one bus transaction, not two dword writes). */
  write64(off: number, lo: number, hi: number, origin: AccessOrigin): void;
}
