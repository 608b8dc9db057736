/**
 * Zero-copy source reads (DmaPort.readView): the IOMMU lends a live view only when the whole
 * range is one readable extent, and a refusal has no side effect (the engine's read() that
 * follows does the access and records any fault).
 */
import { describe, expect, it } from 'vitest';
import { IOMMU_READ, IOMMU_WRITE, IommuDomain } from '../src/iommu/domain.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';

const KiB = 1024;

function setup() {
  const d = new IommuDomain({ gaw: 39 });
  const mem = new SparseMemory(1024 * KiB);
  mem.write(0, new Uint8Array(256 * KiB).fill(7));
  d.map(0x100000, 128 * KiB, mem, 0, IOMMU_READ | IOMMU_WRITE);
  d.map(0x120000, 64 * KiB, mem, 128 * KiB, IOMMU_READ | IOMMU_WRITE);
  d.map(0x200000, 64 * KiB, mem, 0, IOMMU_WRITE);
  return { d, mem, port: d.port('vf') };
}

describe('IommuDomain readView', () => {
  it('lends a live view of the mapped memory inside one extent', () => {
    const { mem, port } = setup();
    const v = port.readView!(0x100000 + 64 * KiB, 4 * KiB);
    expect(v).not.toBeNull();
    expect(v!.length).toBe(4 * KiB);
    expect(v![0]).toBe(7);
    // Live: a store into guest memory shows through the view.
    mem.write(64 * KiB, new Uint8Array([42]));
    expect(v![0]).toBe(42);
  });

  it('refuses ranges across extents, unmapped, write-only or malformed, and records no fault', () => {
    const { d, port } = setup();
    const before = d.faultCount;
    expect(port.readView!(0x120000 - 16, 32)).toBeNull(); // straddles two extents
    expect(port.readView!(0x300000, 16)).toBeNull(); // unmapped
    expect(port.readView!(0x200000, 16)).toBeNull(); // write-only
    expect(port.readView!(0x100000, 0)).toBeNull();
    expect(port.readView!(-1, 16)).toBeNull();
    expect(port.readView!(1048576.5, 16)).toBeNull();
    expect(d.faultCount).toBe(before);
    // The fallback read still faults where it should.
    expect(port.read(0x300000, new Uint8Array(16))).toBe(false);
    expect(d.faultCount).toBe(before + 1);
  });
});
