/**
 * The engine contract between the QM and the algorithm cores. The QM owns queues, doorbells
 * and completion; an engine only sees one SQE at a time, reaches memory through the
 * function's DmaPort, and reports every outcome in the SQE's own result fields, the way the
 * hardware writes the SQE back in place before the CQE (qm-hardware.md 3, behaviour 2).
 */
import type { DmaPort } from '../dma.js';
import type { EngineKind, HwVersion } from '../profile.js';
import { HpreEngine } from './hpre.js';
import { SecEngine } from './sec.js';
import { ZipEngine } from './zip.js';

export interface EngineContext {
  dma: DmaPort;
  /** SQC w13 [11:8]. ZIP: 0 = compress queue, 1 = decompress queue; SEC/HPRE ignore it. */
  algType: number;
  hwVersion: HwVersion;
}

export interface Engine {
  readonly kind: EngineKind;
  /** ZIP 128, SEC 128, HPRE 64. */
  readonly sqeSize: number;
  /**
   * Executes one SQE. Results (status, lengths, done flags) are written into `sqe` in place,
   * never the tag bytes. Never throws: bad addresses, bad lengths and unsupported algorithms
   * become error statuses. Returns false when the SQE reports an error.
   */
  process(sqe: Uint8Array, ctx: EngineContext): boolean;
  /** Stable SQE tag used to match completions (ZIP dw13/dw26, SEC tag field, HPRE @32). */
  tagOf(sqe: Uint8Array): number;
}

export function createEngine(kind: EngineKind): Engine {
  switch (kind) {
    case 'zip':
      return new ZipEngine();
    case 'sec':
      return new SecEngine();
    case 'hpre':
      return new HpreEngine();
  }
}

