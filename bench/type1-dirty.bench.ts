/**
 * VFIO_IOMMU_DIRTY_PAGES GET_BITMAP through the container ioctl, over 1 GiB .. 8 TiB of
 * mapped IOVA, beside a baseline that copies the same number of bitmap bytes with
 * Uint8Array.set. Target (task G): the dense 8 TiB report (256 MiB of bitmap) within 2x of
 * the copy.
 *
 * - dense: an IOMMU-backed group that never pins, so the container is in full scope and
 *   every mapped page is reported dirty on every query (the HiSilicon VF case).
 * - 0.1% / 50%: an emulated (pinning) group, so only pinned / vfio_dma_rw pages are
 *   reported. Setup dirties pages through real pins and dma_rw; because GET_BITMAP clears
 *   the bits, each iteration then restores a density pattern into the kernel bitmaps
 *   directly (pinning 2^30 pages per iteration is not possible: pins are capped at 512 per
 *   call and tracked individually). The baseline does the same restore, so the difference
 *   between the two cases is report versus plain copy.
 *
 * Every iteration zeroes the user buffer first, as a VMM does before GET_BITMAP. Guest RAM is
 * mapped in chunks of at most 4 TiB: a mapping above DIRTY_BITMAP_PAGES_MAX (2^31-1) pages
 * cannot be tracked, so 8 TiB is two mappings (their bits land at a non-zero offset). Only
 * one suite's container is alive at a time.
 */
import type { BenchSuite } from './harness.js';
import type { Bitmap } from '../src/mem/bitmap.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { UserAddressSpace } from '../src/mem/user-space.js';
import { Rng } from '../src/sim/scheduler.js';
import { VFIO_TYPE1v2_IOMMU } from '../src/uapi/vfio.js';
import { VfioContainer } from '../src/vfio/container.js';
import { FdTable, VfioFile } from '../src/vfio/fd.js';
import { VfioGroup } from '../src/vfio/group.js';

const GiB = 2 ** 30;
const TiB = 2 ** 40;
const PAGE = 4096;
const BASE = 2 ** 44;
const MAX_MAPPING = 4 * TiB;
const TILE_WORDS = 1 << 18; // 1 MiB pattern tile

type Density = 'dense' | '50%' | '0.1%';

interface State {
  container: VfioContainer;
  size: number;
  out: Uint8Array;
  outData: number;
  bitmaps: Bitmap[];
  tile: Uint32Array | null;
}

let state: State | null = null;

class BenchDevice extends VfioFile {}

function makeTile(density: Density): Uint32Array {
  const t = new Uint32Array(TILE_WORDS);
  const rng = new Rng(0x5eed);
  if (density === '50%') {
    for (let i = 0; i < t.length; i++) t[i] = rng.u32();
  } else {
    const bits = t.length * 32;
    for (let n = Math.floor(bits / 1000); n > 0; n--) {
      const b = rng.int(bits);
      t[b >>> 5]! |= 1 << (b & 31);
    }
  }
  return t;
}

function check(r: number, what: string): void {
  if (r < 0) throw new Error(`${what} failed: ${r}`);
}

function setup(size: number, density: Density): void {
  state = null;
  const user = new UserAddressSpace();
  const fds = new FdTable();
  const container = new VfioContainer({ user, fds });
  const cfd = fds.install(container);
  const group = new VfioGroup({ id: 1, fds, iommuBacked: density === 'dense' });
  group.addMember({ name: 'bench', setIommu: () => undefined, openDevice: () => new BenchDevice() });
  check(group.openFd(), 'open group');
  check(group.setContainer(cfd), 'SET_CONTAINER');
  check(container.setIommu(VFIO_TYPE1v2_IOMMU), 'SET_IOMMU');
  for (let off = 0; off < size; off += MAX_MAPPING) {
    const len = Math.min(MAX_MAPPING, size - off);
    const mem = new SparseMemory(len);
    check(container.mapDma({ vaddr: user.mapMemory(mem, 0, len), iova: BASE + off, size: len }), 'MAP_DMA');
  }
  check(container.startDirtyTracking(), 'START');
  const bytes = Math.ceil(size / PAGE / 64) * 8;
  const outData = user.alloc(bytes);
  const out = user.view(outData, bytes);
  const t1 = container.type1!;
  const bitmaps: Bitmap[] = [];
  for (let off = 0; off < size; off += MAX_MAPPING) bitmaps.push(t1.dirtyBitmapAt(BASE + off)!);
  if (density !== 'dense') {
    // real dirtying first: a pinned page and a vfio_dma_rw write, reported by a real GET
    group.registerDmaUnmapNotifier((iova, len) => void group.unpinPages(iova, len / PAGE));
    group.pinPages(BASE + PAGE, 1, 1);
    group.dmaRw(BASE + 5 * PAGE, new Uint8Array(8), true);
    check(container.getDirtyBitmap(BASE, size, { size: bytes, data: outData }), 'GET_BITMAP');
    if (out[0] !== 0b10_0010) throw new Error(`unexpected first bitmap byte ${out[0]}`);
  }
  state = { container, size, out, outData, bitmaps, tile: density === 'dense' ? null : makeTile(density) };
}

function restorePattern(s: State): void {
  const tile = s.tile;
  if (tile === null) return;
  for (const bm of s.bitmaps) {
    const w = bm.words;
    for (let k = 0; k < w.length; k += tile.length) w.set(tile.length <= w.length - k ? tile : tile.subarray(0, w.length - k), k);
  }
}

function getBitmap(): void {
  const s = state!;
  restorePattern(s);
  s.out.fill(0);
  const r = s.container.getDirtyBitmap(BASE, s.size, { size: s.out.length, data: s.outData });
  if (r !== 0) throw new Error(`GET_BITMAP: ${r}`);
}

function copyBaseline(): void {
  const s = state!;
  restorePattern(s);
  s.out.fill(0);
  let at = 0;
  for (const bm of s.bitmaps) {
    s.out.set(bm.bytes, at);
    at += bm.bytes.length;
  }
}

const sizes: Array<[string, number, boolean]> = [
  ['1 GiB', GiB, true],
  ['64 GiB', 64 * GiB, true],
  ['1 TiB', TiB, false],
  ['8 TiB', 8 * TiB, false],
];
const densities: Density[] = ['dense', '50%', '0.1%'];
const BASELINE = 'copy bitmap bytes (Uint8Array.set)';

export const suites: BenchSuite[] = sizes.flatMap(([label, size, quick]) =>
  densities.map((density) => ({
    suite: `type1 GET_BITMAP ${label} ${density === 'dense' ? 'dense (full scope)' : `${density} (pinned scope)`}`,
    quick,
    setup: () => setup(size, density),
    teardown: () => {
      state = null;
    },
    cases: [
      { name: BASELINE, fn: copyBaseline },
      { name: 'VFIO_IOMMU_DIRTY_PAGES GET_BITMAP', baseline: BASELINE, fn: getBitmap },
    ],
  })),
);
