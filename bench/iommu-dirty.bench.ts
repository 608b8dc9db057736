/**
 * IOMMU dirty-bitmap harvest (IommuDomain.readAndClearDirty) versus copying the same number
 * of bitmap bytes with Uint8Array.set. Target (task B): a dense 8 TiB harvest (256 MiB of
 * bitmap) within 2x of the copy; sparse harvests cost little beyond the zero scan.
 *
 * Every iteration first restores the dirty pattern into the domain's bitmap and zeroes the
 * output buffer (what a VMM does before GET_BITMAP); the baseline does the same two steps, so
 * the difference between the cases is harvest versus plain copy.
 */
import type { BenchSuite } from './harness.js';
import { IommuDomain, IOMMU_READ, IOMMU_WRITE } from '../src/iommu/domain.js';
import type { Bitmap } from '../src/mem/bitmap.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { Rng } from '../src/sim/scheduler.js';

const GiB = 2 ** 30;
const TiB = 2 ** 40;

interface State {
  domain: IommuDomain;
  size: number;
  bitmap: Bitmap;
  pattern: Uint32Array;
  patternBytes: Uint8Array;
  out: Uint8Array;
}

// One state at a time: an 8 TiB suite holds three 256 MiB buffers.
let state: State | null = null;

function makePattern(words: number, density: 'dense' | '0.1%' | '50%'): Uint32Array {
  const p = new Uint32Array(words);
  const rng = new Rng(0x5eed);
  if (density === 'dense') {
    p.fill(0xffffffff);
  } else if (density === '50%') {
    for (let i = 0; i < words; i++) p[i] = rng.u32();
  } else {
    const bits = words * 32;
    for (let n = Math.floor(bits / 1000); n > 0; n--) {
      const b = rng.int(bits);
      p[b >>> 5]! |= 1 << (b & 31);
    }
  }
  return p;
}

function setup(size: number, density: 'dense' | '0.1%' | '50%'): void {
  state = null;
  const domain = new IommuDomain({ gaw: 48 });
  domain.map(0, size, new SparseMemory(size), 0, IOMMU_READ | IOMMU_WRITE);
  domain.setDirtyTracking(true);
  const bitmap = domain.dirtyBitmapAt(0)!;
  const pattern = makePattern(bitmap.words.length, density);
  state = {
    domain,
    size,
    bitmap,
    pattern,
    patternBytes: new Uint8Array(pattern.buffer),
    out: new Uint8Array(bitmap.bytes.length),
  };
}

function harvest(): void {
  const s = state!;
  s.bitmap.words.set(s.pattern);
  s.out.fill(0);
  s.domain.readAndClearDirty(0, s.size, s.out);
}

function copyBaseline(): void {
  const s = state!;
  s.bitmap.words.set(s.pattern);
  s.out.fill(0);
  s.out.set(s.patternBytes);
}

const sizes: Array<[string, number, boolean]> = [
  ['1 GiB', GiB, true],
  ['64 GiB', 64 * GiB, true],
  ['1 TiB', TiB, false],
  ['8 TiB', 8 * TiB, false],
];
const densities = ['dense', '50%', '0.1%'] as const;

export const suites: BenchSuite[] = sizes.flatMap(([label, size, quick]) =>
  densities.map((density) => ({
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
