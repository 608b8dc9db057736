/**
 * Tunables of a live migration, with QEMU-like meanings: the link bandwidth converts stream
 * bytes into simulated transfer time (the guest runs for that long while pre-copy data is on
 * the wire), and pre-copy stops when the remaining dirty set could be sent within the
 * downtime limit, or after `maxIterations` passes.
 */
import type { DirtyMode } from './dirty-tracker.js';

export interface MigrationOptions {
  /** Link bandwidth in bytes per second (default 25 Gbit/s = 3.125e9 B/s). */
  bandwidthBytesPerSec?: number;
  /** Largest acceptable downtime in simulated ns for switching over (default 500 us). */
  downtimeLimitNs?: number;
  /** Pre-copy passes before giving up on convergence (default 30). */
  maxIterations?: number;
  /** Device dirty tracking wanted (default 'dma-logging'; falls back to type1 when a device lacks it). */
  dirty?: DirtyMode;
  /** Use the device's pre-copy phase when it has one (default true). */
  precopy?: boolean;
  /** Pages per RAM section of the stream (default 256 = 1 MiB of data). */
  pagesPerSection?: number;
  /** Progress callback (the demo's progress bar). */
  onProgress?: (p: MigrationProgress) => void;
  /** Called right after the vCPUs stopped, before the devices do (e.g. to count jobs in flight). */
  onVcpusStopped?: () => void;
  /** Hash guest RAM after the final collection, for the verification (default true). */
  hashRam?: boolean;
}

export interface MigrationProgress {
  phase: 'setup' | 'precopy' | 'stop-copy' | 'switchover' | 'done' | 'failed';
  iteration: number;
  /** Pages sent so far in total and pages still dirty. */
  pagesSent: number;
  pagesDirty: number;
  ramPages: number;
}

export interface ResolvedMigrationOptions {
  bandwidthBytesPerSec: number;
  downtimeLimitNs: number;
  maxIterations: number;
  dirty: DirtyMode;
  precopy: boolean;
  pagesPerSection: number;
  onProgress: ((p: MigrationProgress) => void) | null;
  onVcpusStopped: (() => void) | null;
  hashRam: boolean;
}

export const DEFAULT_BANDWIDTH = 25e9 / 8;
export const DEFAULT_DOWNTIME_NS = 500_000;
export const DEFAULT_MAX_ITERATIONS = 30;

function positive(v: number | undefined, dflt: number, what: string, integer = false): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0 || (integer && !Number.isInteger(x))) {
    throw new RangeError(`${what} must be a positive ${integer ? 'integer' : 'number'} (got ${String(v)})`);
  }
  return x;
}

export function resolveMigrationOptions(o: MigrationOptions = {}): ResolvedMigrationOptions {
  const dirty = o.dirty ?? 'dma-logging';
  if (dirty !== 'dma-logging' && dirty !== 'type1') throw new RangeError(`dirty tracking must be dma-logging or type1 (got ${String(dirty)})`);
  const pps = positive(o.pagesPerSection, 256, 'pagesPerSection', true);
  if (pps > 8192) throw new RangeError('pagesPerSection must be at most 8192 (32 MiB sections)');
  return {
    bandwidthBytesPerSec: positive(o.bandwidthBytesPerSec, DEFAULT_BANDWIDTH, 'bandwidth'),
    downtimeLimitNs: positive(o.downtimeLimitNs, DEFAULT_DOWNTIME_NS, 'downtime limit'),
    maxIterations: positive(o.maxIterations, DEFAULT_MAX_ITERATIONS, 'maxIterations', true),
    dirty,
    precopy: o.precopy ?? true,
    pagesPerSection: pps,
    onProgress: o.onProgress ?? null,
    onVcpusStopped: o.onVcpusStopped ?? null,
    hashRam: o.hashRam ?? true,
  };
}

/** Simulated ns to move `bytes` over the link. */
export function transferNs(bytes: number, bandwidthBytesPerSec: number): number {
  return Math.ceil((bytes * 1e9) / bandwidthBytesPerSec);
}
