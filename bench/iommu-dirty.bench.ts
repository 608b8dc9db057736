/**
 * IOMMU dirty-bitmap harvest (IommuDomain.readAndClearDirty) versus copying the same number
 * of bitmap bytes with Uint8Array.set. Target (task B): a dense 8 TiB harvest (256 MiB of
 * bitmap) within 2x of the copy; sparse harvests cost what their dirty pages cost.
 *
 * Every iteration first restores the dirty pattern (bench/dirty-patterns.ts) into the
 * domain's bitmap. The baseline then zeroes the output and copies every bitmap byte; the
 * harvest zeroes what the previous harvest wrote (everything for dense and 50%, only the
 * pattern's words for the sparse patterns) and harvests, so a sparse iteration measures the
 * harvest's own cost.
 */
import type { BenchSuite } from './harness.js';
import { IommuDomain, IOMMU_READ, IOMMU_WRITE } from '../src/iommu/domain.js';
import type { Bitmap } from '../src/mem/bitmap.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { makePattern, resetOutput, restore, verifyDelivered } from './dirty-patterns.js';
import type { Density, Pattern } from './dirty-patterns.js';

const GiB = 2 ** 30;
const TiB = 2 ** 40;

interface State {
  domain: IommuDomain;
  size: number;
  bitmap: Bitmap;
  pattern: Pattern;
  out: Uint8Array;
  out32: Uint32Array;
}

// One state at a time: an 8 TiB suite holds two 256 MiB buffers.
let state: State | null = null;

function setup(size: number, density: Density): void {
  state = null;
  const domain = new IommuDomain({ gaw: 48 });
  domain.map(0, size, new SparseMemory(size), 0, IOMMU_READ | IOMMU_WRITE);
  domain.setDirtyTracking(true);
  const bitmap = domain.dirtyBitmapAt(0)!;
  const out = new Uint8Array(bitmap.bytes.length);
  state = {
    domain,
    size,
    bitmap,
    pattern: makePattern(bitmap.words.length, density),
    out,
    out32: new Uint32Array(out.buffer),
  };
  harvest();
  verifyDelivered(state.out32, state.pattern);
}

function harvest(): void {
  const s = state!;
  restore(s.bitmap, s.pattern);
  resetOutput(s.out32, s.pattern);
  s.domain.readAndClearDirty(0, s.size, s.out);
}

function copyBaseline(): void {
  const s = state!;
  restore(s.bitmap, s.pattern);
  s.out.fill(0);
  s.out.set(s.bitmap.bytes);
}

const sizes: Array<[string, number, boolean]> = [
  ['1 GiB', GiB, true],
  ['64 GiB', 64 * GiB, true],
  ['1 TiB', TiB, false],
  ['8 TiB', 8 * TiB, false],
];
function densitiesFor(size: number): Density[] {
  return size >= 64 * GiB ? ['dense', '50%', '0.1%', '0.001%', '0.1% clustered'] : ['dense', '50%', '0.1%'];
}

export const suites: BenchSuite[] = sizes.flatMap(([label, size, quick]) =>
  densitiesFor(size).map((density) => ({
    suite: `iommu dirty read-and-clear ${label} ${density}`,
    quick,
    setup: () => setup(size, density),
    teardown: () => {
      state = null;
    },
    cases: [
      { name: 'copy bitmap bytes (Uint8Array.set)', fn: copyBaseline },
      { name: 'readAndClearDirty', baseline: 'copy bitmap bytes (Uint8Array.set)', fn: harvest },
    ],
  })),
);
