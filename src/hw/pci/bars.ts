import type { ConfigSpace } from './config-space.js';
import { PCI_BASE_ADDRESS_MEM_PREFETCH, PCI_BASE_ADDRESS_MEM_TYPE_64 } from './regs.js';

/**
 * Memory BAR flavour used by every HiSilicon ACC function here: 64-bit, non-prefetchable.
 * No public lspci dump of these engines states the prefetch bit, and BAR4 holds doorbells
 * (writes with side effects), so the conservative non-prefetchable type is used.
 */
export const ACC_BAR_FLAGS = PCI_BASE_ADDRESS_MEM_TYPE_64;

const TWO32 = 2 ** 32;

/** The smallest BAR size the PCI spec allows for a memory BAR. */
export const MIN_MEM_BAR_SIZE = 16;

export function isPowerOfTwo(n: number): boolean {
  if (!Number.isSafeInteger(n) || n <= 0) return false;
  // Exact for any safe integer: a power of two has a single set bit in its binary string.
  return n < TWO32 ? (n & (n - 1)) === 0 : n.toString(2).lastIndexOf('1') === 0;
}

/**
 * Programs a 64-bit memory BAR pair at `reg` (low dword) and `reg + 4` (high dword) so that
 * writing all-ones reads back the size mask with the type bits, as hardware does. A size of
 * 0 makes both registers read-only zero (no such BAR).
 */
export function defineMemBar64(cfg: ConfigSpace, reg: number, size: number, flags = ACC_BAR_FLAGS): void {
  if (size === 0) {
    cfg.define(reg, 4, 0);
    cfg.define(reg + 4, 4, 0);
    return;
  }
  const { lo, hi } = barMasks(size);
  cfg.define(reg, 4, flags & 0xf, lo);
  cfg.define(reg + 4, 4, 0, hi);
}

/**
 * Programs a 32-bit memory BAR at `reg`. No ACC function has one; it exists for other
 * config spaces built on ConfigSpace (the host's emulated BARs). Size is at most 2 GiB.
 */
export function defineMemBar32(cfg: ConfigSpace, reg: number, size: number, prefetchable = false): void {
  if (size === 0) {
    cfg.define(reg, 4, 0);
    return;
  }
  const { lo } = barMasks(size);
  if (size > 2 ** 31) throw new RangeError(`32-bit BAR size ${size} exceeds 2 GiB`);
  cfg.define(reg, 4, prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0, lo);
}

/** Writable address bits of a 64-bit BAR of `size` bytes, split into dwords. */
export function barMasks(size: number): { lo: number; hi: number } {
  if (!isPowerOfTwo(size) || size < MIN_MEM_BAR_SIZE) {
    throw new RangeError(`BAR size ${size} is not a power of two >= ${MIN_MEM_BAR_SIZE}`);
  }
  if (size < TWO32) {
    return { lo: (~(size - 1) & 0xfffffff0) >>> 0, hi: 0xffffffff };
  }
  return { lo: 0, hi: (~(size / TWO32 - 1)) >>> 0 };
}

/**
 * Re-sizes an existing BAR pair (SR-IOV VF BARs grow with the System Page Size): changes the
 * writable bits and drops address bits that are now below the size.
 */
export function resizeMemBar64(cfg: ConfigSpace, reg: number, size: number): void {
  const { lo, hi } = barMasks(size);
  const flags = cfg.get(reg, 4) & 0xf;
  cfg.setMasks(reg, 4, lo);
  cfg.setMasks(reg + 4, 4, hi);
  cfg.set(reg, 4, ((cfg.get(reg, 4) & lo) | flags) >>> 0);
  cfg.set(reg + 4, 4, (cfg.get(reg + 4, 4) & hi) >>> 0);
}

/** The address currently programmed into a 64-bit BAR pair. */
export function readBarAddress64(cfg: ConfigSpace, reg: number): number {
  return cfg.get(reg + 4, 4) * TWO32 + ((cfg.get(reg, 4) & 0xfffffff0) >>> 0);
}
