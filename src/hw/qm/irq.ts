/**
 * A function's interrupt outputs (qm-hardware.md section 5): vector 0 EQ, 1 AEQ, 2 IFC (V3+),
 * 3 abnormal (PF only). Each has a QM-level mask (0xC, 0x4, 0x24 bit0; the PF abnormal
 * vector uses QM_ABNORMAL_INT_MASK). An interrupt raised while masked is held pending and
 * delivered when the mask is cleared [inference]; repeated raises while masked coalesce into
 * one. Delivery goes to the MsiSink the PCI layer attached, which applies MSI-capability
 * masking on its own. With `irqNs` > 0 the message leaves that long after the event.
 */
import type { MsiSink } from '../dma.js';
import type { Scheduler } from '../../sim/scheduler.js';

export const VECTORS = 4;

export interface IrqCounters {
  sent: number;
  /** Raised while masked (and held pending). */
  heldPending: number;
  /** Dropped: no MSI sink attached, or vector beyond the function's vector count. */
  dropped: number;
}

export class IrqLines {
  private readonly masked = new Uint8Array(VECTORS);
  private readonly pending = new Uint8Array(VECTORS);
  /** The event latch behind QM_VF_{EQ,AEQ}_INT_SOURCE style registers. */
  private readonly source = new Uint8Array(VECTORS);
  private sink: MsiSink | null = null;
  private epoch = 0;
  readonly counters: IrqCounters = { sent: 0, heldPending: 0, dropped: 0 };
  readonly perVector = new Float64Array(VECTORS);

  constructor(
    private readonly scheduler: Scheduler,
    private readonly irqNs: number,
    private readonly vectorCount: number,
  ) {
    this.reset();
  }

  attach(sink: MsiSink | null): void {
    this.sink = sink;
  }

  /** Back to reset: every vector masked, nothing pending; scheduled deliveries are dropped. */
  reset(): void {
    this.masked.fill(1);
    this.pending.fill(0);
    this.source.fill(0);
    this.epoch++;
  }

  isMasked(vec: number): boolean {
    return this.masked[vec] === 1;
  }

  isPending(vec: number): boolean {
    return this.pending[vec] === 1;
  }

  sourceBit(vec: number): number {
    return this.source[vec]!;
  }

  clearSource(vec: number): void {
    this.source[vec] = 0;
  }

  setMasked(vec: number, masked: boolean): void {
    this.masked[vec] = masked ? 1 : 0;
    if (!masked && this.pending[vec] === 1) {
      this.pending[vec] = 0;
      this.send(vec);
    }
  }

  raise(vec: number): void {
    this.source[vec] = 1;
    if (this.irqNs > 0) {
      const ep = this.epoch;
      this.scheduler.schedule(this.irqNs, () => { if (ep === this.epoch) this.deliver(vec); });
    } else {
      this.deliver(vec);
    }
  }

  private deliver(vec: number): void {
    if (this.masked[vec] === 1) {
      if (this.pending[vec] === 0) this.counters.heldPending++;
      this.pending[vec] = 1;
      return;
    }
    this.send(vec);
  }

  private send(vec: number): void {
    if (this.sink === null || vec >= this.vectorCount) {
      this.counters.dropped++;
      return;
    }
    this.counters.sent++;
    this.perVector[vec]! += 1;
    this.sink(vec);
  }
}
