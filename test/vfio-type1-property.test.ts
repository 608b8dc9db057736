/**
 * Random sequences of MAP / UNMAP (with and without GET_DIRTY_BITMAP, FLAG_ALL) / pin / unpin /
 * vfio_dma_rw / START / STOP / GET_BITMAP / attach-detach of an IOMMU-backed group, over a
 * 16-page IOVA window, checked step by step against a reference model written here: one
 * plain record per page, the spec's rules (sections 2-4) applied literally.
 *
 * The container holds an emulated group whose vendor driver pins (and unpins on DMA_UNMAP),
 * plus an IOMMU-backed group that never pins: while it is attached every report is "all
 * pages of each mapping"; detaching it while tracking marks everything dirty once.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Errno, KernelError } from '../src/uapi/errno.js';
import { VFIO_DMA_UNMAP_FLAG_ALL } from '../src/uapi/vfio.js';
import { B, P, getBits, makeRig, unmapWithBits } from './vfio-type1-helpers.js';
import type { Rig } from './vfio-type1-helpers.js';

const N = 16;

type Op =
  | { k: 'map'; start: number; n: number; prot: number }
  | { k: 'unmap'; start: number; n: number; flag: boolean }
  | { k: 'unmapAll' }
  | { k: 'pin'; start: number; n: number; prot: number }
  | { k: 'unpin'; start: number; n: number }
  | { k: 'rw'; off: number; len: number; write: boolean; seed: number }
  | { k: 'start' }
  | { k: 'stop' }
  | { k: 'get'; start: number; n: number }
  | { k: 'toggleIommu' };

interface PageRec {
  /** id of the mapping covering the page, or 0 */
  map: number;
  prot: number;
  pins: number;
  dirty: boolean;
}

interface MapRec {
  id: number;
  start: number;
  n: number;
  prot: number;
}

/** The reference: the spec's rules, one record per page. */
class Model {
  pages: PageRec[] = Array.from({ length: N }, () => ({ map: 0, prot: 0, pins: 0, dirty: false }));
  maps: MapRec[] = [];
  tracking = false;
  iommuAttached = true;
  mem = new Uint8Array(N * P);
  private nextId = 1;

  private mapAt(p: number): MapRec | undefined {
    const id = this.pages[p]?.map ?? 0;
    return id === 0 ? undefined : this.maps.find((m) => m.id === id);
  }

  map(start: number, n: number, prot: number): number {
    for (let p = start; p < start + n; p++) if (this.pages[p]!.map !== 0) return -Errno.EEXIST;
    const m = { id: this.nextId++, start, n, prot };
    this.maps.push(m);
    for (let p = start; p < start + n; p++) this.pages[p] = { map: m.id, prot, pins: 0, dirty: false };
    return 0;
  }

  private bisects(start: number, n: number): boolean {
    const head = this.mapAt(start);
    if (head && head.start !== start) return true;
    const tail = this.mapAt(start + n - 1);
    return tail !== undefined && tail.start + tail.n !== start + n;
  }

  private report(m: MapRec, base: number, out: Set<number>): void {
    for (let p = m.start; p < m.start + m.n; p++) {
      if (this.iommuAttached || this.pages[p]!.dirty) out.add(p - base);
    }
  }

  private remove(m: MapRec): void {
    this.maps = this.maps.filter((x) => x !== m);
    for (let p = m.start; p < m.start + m.n; p++) this.pages[p] = { map: 0, prot: 0, pins: 0, dirty: false };
  }

  unmap(start: number, n: number, flag: boolean): { ret: number; size: number; bits: number[] } {
    if (flag && !this.tracking) return { ret: -Errno.EINVAL, size: 0, bits: [] };
    if (this.bisects(start, n)) return { ret: -Errno.EINVAL, size: 0, bits: [] };
    const inside = this.maps.filter((m) => m.start >= start && m.start < start + n).sort((a, b) => a.start - b.start);
    const bits = new Set<number>();
    let size = 0;
    for (const m of inside) {
      // the vendor unpins first, then the bits are collected once
      for (let p = m.start; p < m.start + m.n; p++) this.pages[p]!.pins = 0;
      if (flag) this.report(m, start, bits);
      size += m.n * P;
      this.remove(m);
    }
    return { ret: 0, size, bits: [...bits].sort((a, b) => a - b) };
  }

  unmapAll(): number {
    let size = 0;
    for (const m of [...this.maps]) {
      size += m.n * P;
      this.remove(m);
    }
    return size;
  }

  pin(start: number, n: number, prot: number): number {
    const done: number[] = [];
    for (let p = start; p < start + n; p++) {
      const rec = this.pages[p];
      let err = 0;
      if (rec === undefined || rec.map === 0) err = -Errno.EINVAL;
      else if ((rec.prot & prot) !== prot) err = -Errno.EPERM;
      if (err !== 0) {
        for (const q of done) this.pages[q]!.pins--;
        return err;
      }
      if (rec!.pins === 0 && this.tracking) rec!.dirty = true;
      rec!.pins++;
      done.push(p);
    }
    return 0;
  }

  unpin(start: number, n: number): number {
    let i = 0;
    for (; i < n; i++) {
      const rec = this.pages[start + i];
      if (rec === undefined || rec.map === 0) break;
      if (rec.pins > 0) rec.pins--;
    }
    return i === 0 ? -Errno.EINVAL : i;
  }

  rw(off: number, data: Uint8Array, write: boolean): { ret: number; read: Uint8Array } {
    const read = new Uint8Array(data.length);
    let pos = 0;
    while (pos < data.length) {
      const a = off + pos;
      const m = this.mapAt(Math.floor(a / P));
      if (a >= N * P || m === undefined) return { ret: -Errno.EINVAL, read };
      if ((write && (m.prot & 2) === 0) || (m.prot & 1) === 0) return { ret: -Errno.EPERM, read };
      const n = Math.min(data.length - pos, (m.start + m.n) * P - a);
      if (write) {
        this.mem.set(data.subarray(pos, pos + n), a);
        if (this.tracking) for (let p = Math.floor(a / P); p <= Math.floor((a + n - 1) / P); p++) this.pages[p]!.dirty = true;
      } else {
        read.set(this.mem.subarray(a, a + n), pos);
      }
      pos += n;
    }
    return { ret: 0, read };
  }

  start(): void {
    if (this.tracking) return;
    this.tracking = true;
    for (const r of this.pages) r.dirty = r.map !== 0 && r.pins > 0;
  }

  stop(): void {
    this.tracking = false;
    for (const r of this.pages) r.dirty = false;
  }

  get(start: number, n: number): { ret: number; bits: number[] } {
    if (!this.tracking || this.bisects(start, n)) return { ret: -Errno.EINVAL, bits: [] };
    const bits = new Set<number>();
    for (const m of this.maps) {
      if (m.start < start || m.start >= start + n) continue;
      this.report(m, start, bits);
      for (let p = m.start; p < m.start + m.n; p++) this.pages[p]!.dirty = this.pages[p]!.pins > 0;
    }
    return { ret: 0, bits: [...bits].sort((a, b) => a - b) };
  }

  toggleIommu(): void {
    if (this.iommuAttached && this.tracking) for (const m of this.maps) for (let p = m.start; p < m.start + m.n; p++) this.pages[p]!.dirty = true;
    this.iommuAttached = !this.iommuAttached;
  }
}

function errnoOf(fn: () => unknown): number {
  try {
    const r = fn();
    return typeof r === 'number' ? r : 0;
  } catch (e) {
    if (e instanceof KernelError) return -e.errno;
    throw e;
  }
}

/** The system under test: the real container driven through ioctls and the vendor API. */
class Real {
  readonly rig: Rig;
  /** The emulated vendor's pins (what it must unpin on DMA_UNMAP). */
  readonly pins = new Map<number, number>();
  constructor() {
    this.rig = makeRig({ groups: [{ iommuBacked: false }, { iommuBacked: true }] });
    this.rig.groups[0]!.registerDmaUnmapNotifier((iova, size) => {
      for (const [a, n] of [...this.pins]) {
        if (a < iova || a >= iova + size) continue;
        for (let k = 0; k < n; k++) this.rig.groups[0]!.unpinPages(a, 1);
        this.pins.delete(a);
      }
    });
  }
  get emu() {
    return this.rig.groups[0]!;
  }
  pin(start: number, n: number, prot: number): number {
    const r = errnoOf(() => this.emu.pinPages(B + start * P, n, prot));
    if (r === 0) for (let i = 0; i < n; i++) this.pins.set(B + (start + i) * P, (this.pins.get(B + (start + i) * P) ?? 0) + 1);
    return r;
  }
  unpin(start: number, n: number): number {
    const r = errnoOf(() => this.emu.unpinPages(B + start * P, n));
    for (let i = 0; i < r; i++) {
      const a = B + (start + i) * P;
      const c = (this.pins.get(a) ?? 0) - 1;
      if (c > 0) this.pins.set(a, c);
      else this.pins.delete(a);
    }
    return r;
  }
  toggleIommu(): void {
    const g = this.rig.groups[1]!;
    const r = g.container ? g.unsetContainer() : g.setContainer(this.rig.cfd);
    if (r !== 0) throw new Error(`toggle failed: ${r}`);
  }
}

function pattern(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const page = fc.integer({ min: 0, max: N - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ k: fc.constant('map' as const), start: page, n: fc.integer({ min: 1, max: 4 }), prot: fc.constantFrom(1, 2, 3) }), weight: 4 },
  { arbitrary: fc.record({ k: fc.constant('unmap' as const), start: page, n: fc.integer({ min: 1, max: N }), flag: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant('unmapAll' as const) }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('pin' as const), start: page, n: fc.integer({ min: 1, max: 3 }), prot: fc.constantFrom(1, 3) }), weight: 4 },
  { arbitrary: fc.record({ k: fc.constant('unpin' as const), start: page, n: fc.integer({ min: 1, max: 3 }) }), weight: 2 },
  {
    arbitrary: fc.record({
      k: fc.constant('rw' as const),
      off: fc.integer({ min: 0, max: N * P - 1 }),
      len: fc.integer({ min: 1, max: 2 * P }),
      write: fc.boolean(),
      seed: fc.integer(),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ k: fc.constant('start' as const) }), weight: 2 },
  { arbitrary: fc.record({ k: fc.constant('stop' as const) }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('get' as const), start: page, n: fc.integer({ min: 1, max: N }) }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant('toggleIommu' as const) }), weight: 1 },
);

function clampN(start: number, n: number): number {
  return Math.min(n, N - start);
}

function step(real: Real, model: Model, op: Op): void {
  const c = real.rig.container;
  switch (op.k) {
    case 'map': {
      const n = clampN(op.start, op.n);
      const iova = B + op.start * P;
      expect(c.mapDma({ vaddr: real.rig.va(iova), iova, size: n * P, flags: op.prot })).toBe(model.map(op.start, n, op.prot));
      break;
    }
    case 'unmap': {
      const n = clampN(op.start, op.n);
      const want = model.unmap(op.start, n, op.flag);
      if (op.flag) {
        const got = unmapWithBits(real.rig, B + op.start * P, n * P);
        expect(got.ret).toBe(want.ret);
        if (want.ret === 0) {
          expect(got.size).toBe(BigInt(want.size));
          expect(got.bits).toEqual(want.bits);
        }
      } else {
        const got = c.unmapDma({ iova: B + op.start * P, size: n * P });
        expect(got.ret).toBe(want.ret);
        if (want.ret === 0) expect(got.size).toBe(BigInt(want.size));
      }
      break;
    }
    case 'unmapAll':
      expect(c.unmapDma({ iova: 0, size: 0, flags: VFIO_DMA_UNMAP_FLAG_ALL })).toEqual({ ret: 0, size: BigInt(model.unmapAll()) });
      break;
    case 'pin': {
      const n = clampN(op.start, op.n);
      expect(real.pin(op.start, n, op.prot)).toBe(model.pin(op.start, n, op.prot));
      break;
    }
    case 'unpin': {
      const n = clampN(op.start, op.n);
      expect(real.unpin(op.start, n)).toBe(model.unpin(op.start, n));
      break;
    }
    case 'rw': {
      const data = op.write ? pattern(op.seed, op.len) : new Uint8Array(op.len);
      const want = model.rw(op.off, data, op.write);
      const got = errnoOf(() => real.emu.dmaRw(B + op.off, data, op.write));
      expect(got).toBe(want.ret);
      if (!op.write && want.ret === 0) expect(data).toEqual(want.read);
      break;
    }
    case 'start':
      model.start();
      expect(c.startDirtyTracking()).toBe(0);
      break;
    case 'stop':
      model.stop();
      expect(c.stopDirtyTracking()).toBe(0);
      break;
    case 'get': {
      const n = clampN(op.start, op.n);
      const want = model.get(op.start, n);
      const got = getBits(real.rig, B + op.start * P, n * P);
      expect(got.ret).toBe(want.ret);
      if (want.ret === 0) expect(got.bits).toEqual(want.bits);
      break;
    }
    case 'toggleIommu':
      model.toggleIommu();
      real.toggleIommu();
      break;
  }
  // invariants after every step: same mappings, same pinned pages, same tracking state
  const t = c.type1!;
  expect(t.mappings().map((m) => [m.iova, m.size, m.prot, m.pinnedPages])).toEqual(
    [...model.maps]
      .sort((a, b) => a.start - b.start)
      .map((m) => {
        let pinned = 0;
        for (let p = m.start; p < m.start + m.n; p++) if (model.pages[p]!.pins > 0) pinned++;
        return [B + m.start * P, m.n * P, m.prot, pinned];
      }),
  );
  expect(t.dirtyTracking).toBe(model.tracking);
  expect(t.fullScope).toBe(model.iommuAttached);
}

describe('type1 against a per-page reference model (fast-check)', () => {
  it('random operation sequences agree on every result, bit and mapping', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
        const real = new Real();
        const model = new Model();
        for (const op of ops) step(real, model, op);
      }),
      { numRuns: 250, seed: 0x7e1 },
    );
  });
});
