/**
 * Interrupt storm guard, the simulator's version of the host kernel's spurious-IRQ detector
 * that disables a line nobody handles. Every guest driver in the fuzz worlds gets its MSIs
 * through one: after `limit` deliveries within one fuzz input the rest are dropped and the
 * storm is reported. A device that re-raises an interrupt from the handler's own doorbell
 * write, with a handler that rings again without consuming anything, would otherwise keep
 * the single-threaded simulation inside one MMIO write forever.
 */
import type { GuestPciIo } from '../guest/io.js';
import type { Recorder } from './runner.js';

/** MSIs one guest may take within one input before the guard drops the rest. */
export const STORM_LIMIT = 2_000;

export class StormGuard {
  delivered = 0;
  storm = false;

  constructor(readonly name: string, readonly limit = STORM_LIMIT) {}

  /** Wraps `io.onInterrupt` so every handler registered from now on goes through the guard. */
  wrap<T extends GuestPciIo>(io: T): T {
    const register = io.onInterrupt.bind(io);
    io.onInterrupt = (cb) => {
      register((vector) => {
        if (++this.delivered > this.limit) {
          this.storm = true;
          return;
        }
        cb(vector);
      });
    };
    return io;
  }

  reset(): void {
    this.delivered = 0;
    this.storm = false;
  }
}

export function resetGuards(guards: readonly StormGuard[]): void {
  for (const g of guards) g.reset();
}

/** Reports (and clears) every guard that saw a storm since its last reset. */
export function checkGuards(guards: readonly StormGuard[], rec: Recorder): void {
  for (const g of guards) {
    if (!g.storm) continue;
    rec.violation('livelock', `interrupt storm: more than ${g.limit} MSIs delivered to the ${g.name} guest within one input`);
    g.reset();
  }
}
