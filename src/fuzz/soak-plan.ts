/**
 * What each migration of the soak varies, drawn from (seed, migration index) alone so a run
 * of N migrations is a prefix of a longer run with the same seed, and a failure at index i
 * reproduces with `--migrations i+1`.
 */
import type { EngineKind } from '../hw/profile.js';
import { Rng } from '../sim/scheduler.js';
import type { DirtyMode } from '../vmm/migration/dirty-tracker.js';

export interface MigrationPlan {
  /** The guest application's load while this migration runs (Workload options it switches to). */
  jobsPerMs: number;
  inFlight: number;
  jobBytes: number;
  dirtyPagesPerMs: number;
  /** Guest time on the current host before the migration starts, and on the new one after. */
  warmupNs: number;
  afterNs: number;
  /** Orchestrator settings. */
  precopy: boolean;
  dirty: DirtyMode;
  downtimeLimitNs: number;
  maxIterations: number;
  bandwidthBytesPerSec: number;
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)]!;
}

/** Mixes the seed and index into one 32-bit seed (so neighbouring indexes draw unrelated plans). */
export function planSeed(seed: number, index: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (index >>> 0) ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The plan of migration `index`. Dirty rates reach past the link's ~760 pages per ms at
 * 25 Gbit/s, so some migrations never converge and stop at maxIterations with a larger final
 * pass; one in four skips the device's PRE_COPY phase; one in four uses type1 dirty tracking
 * instead of device DMA logging.
 */
export function planMigration(seed: number, index: number, engine: EngineKind): MigrationPlan {
  const rng = new Rng(planSeed(seed, index));
  const hpre = engine === 'hpre';
  const plan: MigrationPlan = {
    jobsPerMs: pick(rng, hpre ? [2, 4, 8, 16] : [10, 30, 60]),
    inFlight: pick(rng, [1, 2, 4, 8, 16]),
    jobBytes: pick(rng, [512, 1024, 4096]),
    dirtyPagesPerMs: pick(rng, [0, 25, 100, 400, 1000, 2500]),
    warmupNs: 50_000 + rng.int(450_001),
    afterNs: 50_000 + rng.int(450_001),
    precopy: rng.int(4) !== 0,
    dirty: 'dma-logging',
    downtimeLimitNs: pick(rng, [300_000, 500_000, 1_000_000]),
    maxIterations: 0,
    bandwidthBytesPerSec: pick(rng, [10e9 / 8, 25e9 / 8, 100e9 / 8]),
  };
  plan.dirty = rng.int(4) === 0 ? 'type1' : 'dma-logging';
  // type1 reports every mapped page on every pass (vfio-type1-dirty.md section 4): it never
  // converges, so more passes only resend all of RAM again
  plan.maxIterations = plan.dirty === 'type1' ? pick(rng, [1, 2, 3]) : pick(rng, [4, 8, 16]);
  return plan;
}
