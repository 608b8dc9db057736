import { describe, expect, it } from 'vitest';
import { DevIotlb } from '../src/iommu/dev-iotlb.js';
import { IOMMU_DIRTY_NO_CLEAR, IOMMU_READ, IOMMU_WRITE, IommuDomain } from '../src/iommu/domain.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { KernelError } from '../src/uapi/errno.js';

const P = 4096;
const RW = IOMMU_READ | IOMMU_WRITE;

function errOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return 'none';
}

function setup(entries = 16) {
  const domain = new IommuDomain();
  const mem = new SparseMemory(1 << 24);
  const tlb = new DevIotlb(domain, 'vf0', { entries });
  return { domain, mem, tlb };
}

describe('DevIotlb (iommu-notifiers-and-dirty-ring.md §1: no stale translation after unmap)', () => {
  it('caches translations, then faults after unmap without reading the old page', () => {
    const { domain, mem, tlb } = setup();
    mem.fill(0x5000, P, 0xab);
    domain.map(0x100000, P, mem, 0x5000, RW);
    const buf = new Uint8Array(16);
    expect(tlb.read(0x100010, buf)).toBe(true);
    expect(buf.every((x) => x === 0xab)).toBe(true);
    expect(tlb.read(0x100020, buf)).toBe(true);
    expect(tlb.stats).toEqual({ hits: 1, misses: 1, invalidated: 0 });
    expect(tlb.cached).toBe(1);

    expect(domain.unmap(0x100000, P)).toBe(P);
    expect(tlb.cached).toBe(0);
    const after = new Uint8Array(16).fill(0x11);
    expect(tlb.read(0x100010, after)).toBe(false);
    expect(after.every((x) => x === 0x11)).toBe(true); // the old page (still 0xab) was not read
    expect(domain.faults).toEqual([{ requesterId: 'vf0', iova: 0x100010, write: false, reason: 'unmapped' }]);
    expect(tlb.write(0x100000, new Uint8Array([1]))).toBe(false);
    expect(mem.getU8(0x5000)).toBe(0xab);
  });

  it('a remapped IOVA reaches the new page, never the old one', () => {
    const { domain, mem, tlb } = setup();
    mem.setU32(0x1000, 0x01010101);
    mem.setU32(0x9000, 0x02020202);
    domain.map(0x200000, P, mem, 0x1000, RW);
    const b = new Uint8Array(4);
    tlb.read(0x200000, b);
    expect(new DataView(b.buffer).getUint32(0, true)).toBe(0x01010101);
    domain.unmap(0x200000, P);
    domain.map(0x200000, P, mem, 0x9000, RW);
    tlb.read(0x200000, b);
    expect(new DataView(b.buffer).getUint32(0, true)).toBe(0x02020202);
  });

  it('a partial unmap drops exactly the unmapped pages', () => {
    const { domain, mem, tlb } = setup(64);
    domain.map(0, 8 * P, mem, 0, RW);
    for (let p = 0; p < 8; p++) tlb.read(p * P, new Uint8Array(1));
    expect(tlb.cached).toBe(8);
    domain.unmap(2 * P, 3 * P);
    expect(tlb.cached).toBe(5);
    expect(tlb.stats.invalidated).toBe(3);
    const misses = tlb.stats.misses;
    tlb.read(P, new Uint8Array(1));
    tlb.read(6 * P, new Uint8Array(1));
    expect(tlb.stats.misses).toBe(misses);
  });

  it('device-IOTLB invalidations drop their decoded range only', () => {
    const { domain, mem, tlb } = setup(64);
    domain.map(0, 0x40000, mem, 0, RW);
    for (let p = 0; p < 0x40; p++) tlb.read(p * P, new Uint8Array(1));
    expect(tlb.cached).toBe(0x40);
    domain.invalidateDeviceIotlb(0x17000n, 1); // [0x10000, 0x1ffff]
    expect(tlb.cached).toBe(0x30);
    domain.invalidateDeviceIotlb(0x3f000n, 0); // one page
    expect(tlb.cached).toBe(0x2f);
    domain.invalidateDeviceIotlb((1n << 64n) - 1n, 1); // everything
    expect(tlb.cached).toBe(0);
    expect(domain.mappedBytes).toBe(0x40000); // invalidation is not unmapping
  });

  it('checks permission per page before moving any byte, also for accesses longer than the cache', () => {
    const { domain, mem, tlb } = setup(4);
    domain.map(0, 10 * P, mem, 0x100000, RW);
    domain.map(10 * P, P, mem, 0x200000, IOMMU_READ);
    const data = Uint8Array.from({ length: 10 * P }, (_, i) => (i * 13) & 0xff);
    expect(tlb.write(0, data)).toBe(true);
    expect(Buffer.compare(mem.readBytes(0x100000, 10 * P), data)).toBe(0);
    const back = new Uint8Array(10 * P);
    expect(tlb.read(0, back)).toBe(true);
    expect(Buffer.compare(back, data)).toBe(0);
    expect(tlb.write(9 * P, new Uint8Array(2 * P).fill(0xff))).toBe(false);
    expect(mem.getU8(0x100000 + 9 * P)).toBe(data[9 * P]);
    expect(domain.faults.at(-1)).toEqual({ requesterId: 'vf0', iova: 10 * P, write: true, reason: 'permission' });
  });

  it('writes through the cache still mark pages dirty every time', () => {
    const { domain, mem, tlb } = setup();
    domain.map(0, 4 * P, mem, 0, RW);
    domain.setDirtyTracking(true);
    tlb.write(P + 5, new Uint8Array(1));
    const out = new Uint8Array(8);
    domain.readAndClearDirty(0, 4 * P, out);
    expect(out[0]).toBe(0b10);
    tlb.write(P + 6, new Uint8Array(1)); // cached translation now
    const out2 = new Uint8Array(8);
    domain.readAndClearDirty(0, 4 * P, out2, 0, IOMMU_DIRTY_NO_CLEAR);
    expect(out2[0]).toBe(0b10);
  });

  it('rejects a bad size; after dispose it stops listening and refuses access', () => {
    const { domain, mem, tlb } = setup();
    expect(errOf(() => new DevIotlb(domain, 'x', { entries: 3 }))).toBe('EINVAL');
    domain.map(0, P, mem, 0, RW);
    tlb.dispose();
    expect(tlb.read(0, new Uint8Array(1))).toBe(false);
    expect(domain.faults.at(-1)!.reason).toBe('invalid');
  });
});
