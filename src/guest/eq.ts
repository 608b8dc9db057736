/**
 * Software side of the EQ and AEQ rings (qm-hardware.md 3): 4-byte entries the device writes
 * with a phase bit (bit 16) that starts at 1 and flips on every wrap, so an entry is new
 * exactly when its phase equals the ring's current phase.
 */
import type { GuestMemory } from './io.js';
import * as R from './regs.js';

// Module-local binding: under the tsx/vitest transforms an imported binding is a getter call.
const { EQE_SIZE } = R;

export class EventRing {
  head = 0;
  phase = 1;

  constructor(readonly base: number, readonly depth: number) {}

  reset(): void {
    this.head = 0;
    this.phase = 1;
  }

  /** The entry at the head if the device has written it (phase matches), else -1. */
  peek(mem: GuestMemory): number {
    const v = mem.getU32(this.base + this.head * EQE_SIZE);
    return ((v >>> 16) & 1) === this.phase ? v : -1;
  }

  advance(): void {
    if (++this.head === this.depth) {
      this.head = 0;
      this.phase ^= 1;
    }
  }
}
