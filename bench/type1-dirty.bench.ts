/**
 * VFIO_IOMMU_DIRTY_PAGES GET_BITMAP through the container ioctl, over 1 GiB .. 8 TiB of
 * mapped IOVA, beside a baseline that copies the same number of bitmap bytes with
 * Uint8Array.set. Target (task G): the dense 8 TiB report (256 MiB of bitmap) within 2x of
 * the copy.
 *
 * - dense: an IOMMU-backed group that never pins, so the container is in full scope and
 *   every mapped page is reported dirty on every query (the HiSilicon VF case).
 * - 50%, 0.1%, 0.001%, 0.1% clustered (bench/dirty-patterns.ts): an emulated (pinning)
 *   group, so only pinned / vfio_dma_rw pages are reported. Setup dirties pages through real
 *   pins and dma_rw; because GET_BITMAP clears the bits, each iteration then restores the
 *   pattern into the kernel bitmaps (pinning 2^30 pages per iteration is not possible: pins
 *   are capped at 512 per call). The baseline does the same restore, so the difference
 *   between the two cases is report versus plain copy.
 *
 * The baseline zeroes the user buffer and copies every bitmap byte, as before. The report
 * case zeroes what the previous report wrote: the whole buffer for dense and 50%, only the
 * pattern's words for the sparse patterns (a VMM that consumed the bits clears them), so
 * a sparse iteration measures the report's own cost, which should follow the dirty pages.
 * Guest RAM is mapped in chunks of at most 4 TiB: a mapping above DIRTY_BITMAP_PAGES_MAX
 * (2^31-1) pages cannot be tracked, so 8 TiB is two mappings (their bits land at a non-zero
 * offset). Only one suite's container is alive at a time.
 */
import type { BenchSuite } from './harness.js';
import type { Bitmap } from '../src/mem/bitmap.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { UserAddressSpace } from '../src/mem/user-space.js';
import { VFIO_TYPE1v2_IOMMU } from '../src/uapi/vfio.js';
import { VfioContainer } from '../src/vfio/container.js';
import { FdTable, VfioFile } from '../src/vfio/fd.js';
import { VfioGroup } from '../src/vfio/group.js';
import { isSparse, makePattern, resetOutput, restore, verifyDelivered } from './dirty-patterns.js';
import type { Density, Pattern } from './dirty-patterns.js';

const GiB = 2 ** 30;
const TiB = 2 ** 40;
const PAGE = 4096;
const BASE = 2 ** 44;
const MAX_MAPPING = 4 * TiB;

interface State {
  container: VfioContainer;
  size: number;
  out: Uint8Array;
  out32: Uint32Array;
  outData: number;
  bitmaps: Bitmap[];
  pattern: Pattern | null;
}

let state: State | null = null;

class BenchDevice extends VfioFile {}

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
    out[0] = 0;
  }
  // every mapping's bitmap has the same word count except possibly the last; patterns are
  // built per bitmap size
  const pattern = density === 'dense' ? null : makePattern(bitmaps[0]!.words.length, density);
  state = {
    container,
    size,
    out,
    out32: new Uint32Array(out.buffer, out.byteOffset, out.length / 4),
    outData,
    bitmaps,
    pattern,
  };
  if (pattern !== null) {
    getBitmap();
    for (let m = 0; m < bitmaps.length; m++) verifyDelivered(state.out32, pattern, m * (MAX_MAPPING / PAGE / 32));
  }
}

function restorePattern(s: State): void {
  const p = s.pattern;
  if (p === null) return;
  // dirtyBitmapAt also tells the mapping its bitmap may hold bits again (a report that found
  // it clean lets the next one skip it)
  const t1 = s.container.type1!;
  for (let m = 0; m < s.bitmaps.length; m++) restore(t1.dirtyBitmapAt(BASE + m * MAX_MAPPING)!, p);
}

function getBitmap(): void {
  const s = state!;
  restorePattern(s);
  if (s.pattern === null || !isSparse(s.pattern.density)) {
    s.out.fill(0);
  } else {
    for (let m = 0; m < s.bitmaps.length; m++) resetOutput(s.out32, s.pattern, m * (MAX_MAPPING / PAGE / 32));
  }
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
/** The sparse patterns that show proportionality run where the bitmap is large. */
function densitiesFor(size: number): Density[] {
  return size >= 64 * GiB ? ['dense', '50%', '0.1%', '0.001%', '0.1% clustered'] : ['dense', '50%', '0.1%'];
}
const BASELINE = 'copy bitmap bytes (Uint8Array.set)';

export const suites: BenchSuite[] = sizes.flatMap(([label, size, quick]) =>
  densitiesFor(size).map((density) => ({
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
