/**
 * The event queue (EQ) and asynchronous event queue (AEQ) of one function. The live state is
 * the 7-dword EQC/AEQC itself (qm-hardware.md sections 1 and 3): DW0 head|tail<<16, DW1/DW2
 * base, DW3, DW4-5 reserved, DW6 (depth-1)|phase<<16. Keeping the dwords as the state makes
 * the migration window (0x8000 / 0x8020) a plain view: reads return the live context, writes
 * change it, and the mailbox EQC/AEQC load and dump copy the same bytes.
 *
 * Ring rule: one slot stays empty, so the queue is full when (tail+1) % depth == head.
 */
import type { DmaPort } from '../dma.js';
import * as Ctx from './contexts.js';
import * as Regs from './registers.js';

// Imported values are bound to module-local constants: under the tsx/vitest module
// transforms every access to an imported binding is a getter call, too slow for the hot paths.
const {
  XEQC_DW_BASE_H, XEQC_DW_BASE_L, XEQC_DW_DEPTH_PHASE, XEQC_DW_HEAD_TAIL, XEQC_PHASE_BIT,
  XEQC_SIZE, dmaAddr,
} = Ctx;
const { QM_XEQC_DWORDS } = Regs;

/** Outcome of writing an event entry. BROKEN: head or tail at or beyond the depth (a corrupted context); nothing is written. */
export const PushResult = { OK: 0, FULL: 1, BROKEN: 2, DMA_FAULT: 3 } as const;
export type PushResult = (typeof PushResult)[keyof typeof PushResult];

export class EventQueue {
  readonly dw = new Uint32Array(QM_XEQC_DWORDS);
  /** One overflow report per full episode; cleared when the doorbell moves the head. */
  overflowReported = false;
  private readonly entry = new Uint8Array(4);
  private readonly entryView = new DataView(this.entry.buffer);
  readonly counters = { written: 0, full: 0, broken: 0, dmaFaults: 0, badDoorbells: 0 };

  get head(): number { return this.dw[XEQC_DW_HEAD_TAIL]! & 0xffff; }
  get tail(): number { return this.dw[XEQC_DW_HEAD_TAIL]! >>> 16; }
  get depth(): number { return (this.dw[XEQC_DW_DEPTH_PHASE]! & 0xffff) + 1; }
  get phase(): number { return (this.dw[XEQC_DW_DEPTH_PHASE]! >>> 16) & 1; }
  get base(): number { return dmaAddr(this.dw[XEQC_DW_BASE_L]!, this.dw[XEQC_DW_BASE_H]!); }

  /** Entries written and not yet acknowledged by a doorbell. */
  get outstanding(): number {
    const d = this.depth;
    return (this.tail - this.head + d) % d;
  }

  reset(): void {
    this.dw.fill(0);
    this.overflowReported = false;
  }

  /** Mailbox EQC/AEQC op0: the context comes from 28 bytes of guest memory. */
  load(bytes: Uint8Array): void {
    const v = new DataView(bytes.buffer, bytes.byteOffset, XEQC_SIZE);
    for (let i = 0; i < QM_XEQC_DWORDS; i++) this.dw[i] = v.getUint32(i * 4, true);
    this.overflowReported = false;
  }

  /** Mailbox EQC/AEQC op1: the live context as 28 bytes. */
  dump(out: Uint8Array): void {
    const v = new DataView(out.buffer, out.byteOffset, XEQC_SIZE);
    for (let i = 0; i < QM_XEQC_DWORDS; i++) v.setUint32(i * 4, this.dw[i]!, true);
  }

  readDword(i: number): number {
    return this.dw[i]!;
  }

  /** A write through the migration window: the live context changes immediately. */
  writeDword(i: number, value: number): void {
    this.dw[i] = value >>> 0;
    if (i === XEQC_DW_HEAD_TAIL) this.overflowReported = false;
  }

  /** Doorbell: software consumed up to `index`. False if the index is outside the ring. */
  setHead(index: number): boolean {
    if (index >= this.depth) {
      this.counters.badDoorbells++;
      return false;
    }
    this.dw[XEQC_DW_HEAD_TAIL] = ((this.dw[XEQC_DW_HEAD_TAIL]! & 0xffff0000) | index) >>> 0;
    this.overflowReported = false;
    return true;
  }

  /** Writes one entry (`value` without the phase bit) at the tail and advances. */
  push(value: number, dma: DmaPort): PushResult {
    const depth = this.depth;
    const head = this.head;
    const tail = this.tail;
    if (head >= depth || tail >= depth) {
      this.counters.broken++;
      return PushResult.BROKEN;
    }
    if ((tail + 1) % depth === head) {
      this.counters.full++;
      return PushResult.FULL;
    }
    const phase = this.phase;
    this.entryView.setUint32(0, (value | (phase << 16)) >>> 0, true);
    if (!dma.write(this.base + tail * 4, this.entry)) {
      this.counters.dmaFaults++;
      return PushResult.DMA_FAULT;
    }
    this.counters.written++;
    let next = tail + 1;
    if (next === depth) {
      next = 0;
      this.dw[XEQC_DW_DEPTH_PHASE] = (this.dw[XEQC_DW_DEPTH_PHASE]! ^ XEQC_PHASE_BIT) >>> 0;
    }
    this.dw[XEQC_DW_HEAD_TAIL] = ((next << 16) | head) >>> 0;
    return PushResult.OK;
  }
}
