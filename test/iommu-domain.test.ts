import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IOMMU_DIRTY_NO_CLEAR, IOMMU_READ, IOMMU_WRITE, IommuDomain, FAULT_LOG_SIZE } from '../src/iommu/domain.js';
import { IOMMUNotifierFlag } from '../src/iommu/notifier.js';
import type { IOMMUNotifier, IOMMUTLBEvent } from '../src/iommu/notifier.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { KernelError } from '../src/uapi/errno.js';

function errOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return 'none';
}

const P = 4096;
const RW = IOMMU_READ | IOMMU_WRITE;
const U64_MAX = (1n << 64n) - 1n;

function recorder(flags: number, start = 0n, end = U64_MAX): IOMMUNotifier & { got: Array<[number, bigint, bigint, bigint, number]> } {
  const got: Array<[number, bigint, bigint, bigint, number]> = [];
  return {
    got, flags, start, end,
    notify: (ev: IOMMUTLBEvent) => got.push([ev.type, ev.entry.iova, ev.entry.addrMask, ev.entry.translatedAddr, ev.entry.perm]),
  };
}

/** Set bit indices of a u64-LE byte bitmap (byte i>>3, mask 1<<(i&7)). */
function bitsOf(bytes: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes.length * 8; i++) if ((bytes[i >> 3]! >> (i & 7)) & 1) out.push(i);
  return out;
}

describe('IommuDomain.map validation', () => {
  it('rejects bad requests with the right errno and changes nothing', () => {
    const d = new IommuDomain({ gaw: 39 });
    const mem = new SparseMemory(1 << 24);
    d.map(0x10000, 0x4000, mem, 0, RW);
    const before = d.mappings();
    expect(errOf(() => d.map(0x100, P, mem, 0, RW))).toBe('EINVAL');
    expect(errOf(() => d.map(0x20000, 0x800, mem, 0, RW))).toBe('EINVAL');
    expect(errOf(() => d.map(0x20000, 0, mem, 0, RW))).toBe('EINVAL');
    expect(errOf(() => d.map(2 ** 39 - P, 2 * P, mem, 0, RW))).toBe('EINVAL'); // past the aperture
    expect(errOf(() => d.map(0x20000, P, mem, 0, 0))).toBe('EINVAL');
    expect(errOf(() => d.map(0x20000, P, mem, 0, 4))).toBe('EINVAL');
    expect(errOf(() => d.map(0x20000, P, mem, 123, RW))).toBe('EINVAL');
    expect(errOf(() => d.map(0x20000, 2 * P, mem, (1 << 24) - P, RW))).toBe('EFAULT');
    expect(errOf(() => d.map(0x13000, 2 * P, mem, 0, RW))).toBe('EEXIST');
    expect(errOf(() => d.map(0xf000, 2 * P, mem, 0, RW))).toBe('EEXIST');
    expect(errOf(() => new IommuDomain({ gaw: 53 }))).toBe('EINVAL');
    expect(d.mappings()).toEqual(before);
    expect(d.mappedBytes).toBe(0x4000);
  });
});

describe('IommuDomain notifier events', () => {
  it('map announces naturally aligned MAP chunks with their translation', () => {
    const d = new IommuDomain();
    const n = recorder(IOMMUNotifierFlag.ALL);
    d.registerNotifier(n);
    const mem = new SparseMemory(1 << 20);
    d.map(0x1000, 0x7000, mem, 0x20000, IOMMU_READ);
    expect(n.got).toEqual([
      [IOMMUNotifierFlag.MAP, 0x1000n, 0xfffn, 0x20000n, 1],
      [IOMMUNotifierFlag.MAP, 0x2000n, 0x1fffn, 0x21000n, 1],
      [IOMMUNotifierFlag.MAP, 0x4000n, 0x3fffn, 0x23000n, 1],
    ]);
  });

  it('unmap announces exactly the removed pages, split like the spec example, and skips holes', () => {
    const d = new IommuDomain();
    const mem = new SparseMemory(1 << 20);
    d.map(0x0, 0x3000, mem, 0, RW);
    d.map(0x3000, 0x5000, mem, 0x10000, RW);
    d.map(0x20000, 0x1000, mem, 0x30000, RW);
    const n = recorder(IOMMUNotifierFlag.UNMAP);
    d.registerNotifier(n);
    // [0x1000, 0x7fff] spans two mappings (one split) and is followed by a hole
    expect(d.unmap(0x1000, 0x10000)).toBe(0x7000);
    expect(n.got).toEqual([
      [IOMMUNotifierFlag.UNMAP, 0x1000n, 0xfffn, 0n, 0],
      [IOMMUNotifierFlag.UNMAP, 0x2000n, 0x1fffn, 0n, 0],
      [IOMMUNotifierFlag.UNMAP, 0x4000n, 0x3fffn, 0n, 0],
    ]);
    expect(d.mappings().map((m) => [m.iova, m.size, m.memOffset])).toEqual([[0, 0x1000, 0], [0x20000, 0x1000, 0x30000]]);
    n.got.length = 0;
    expect(d.unmap(0x40000, 0x10000)).toBe(0);
    expect(n.got).toEqual([]);
  });

  it('replay sends MAP for present mappings only, cropped, and nothing to UNMAP-only notifiers', () => {
    const d = new IommuDomain();
    const mem = new SparseMemory(1 << 20);
    d.map(0x4000, 0x4000, mem, 0x8000, RW);
    d.map(0x10000, 0x1000, mem, 0, IOMMU_WRITE);
    d.unmap(0x5000, 0x1000);
    const all = recorder(IOMMUNotifierFlag.MAP);
    d.replay(all);
    expect(all.got).toEqual([
      [IOMMUNotifierFlag.MAP, 0x4000n, 0xfffn, 0x8000n, 3],
      [IOMMUNotifierFlag.MAP, 0x6000n, 0x1fffn, 0xa000n, 3],
      [IOMMUNotifierFlag.MAP, 0x10000n, 0xfffn, 0n, 2],
    ]);
    const cropped = recorder(IOMMUNotifierFlag.MAP, 0x7000n, 0x7fffn);
    d.replay(cropped);
    expect(cropped.got).toEqual([[IOMMUNotifierFlag.MAP, 0x7000n, 0xfffn, 0xb000n, 3]]);
    const unmapOnly = recorder(IOMMUNotifierFlag.UNMAP);
    d.replay(unmapOnly);
    expect(unmapOnly.got).toEqual([]);
  });

  it('device-IOTLB invalidations reach DEVIOTLB notifiers only', () => {
    const d = new IommuDomain();
    const dev = recorder(IOMMUNotifierFlag.DEVIOTLB_EVENTS);
    const iotlb = recorder(IOMMUNotifierFlag.IOTLB_EVENTS);
    d.registerNotifier(dev);
    d.registerNotifier(iotlb);
    d.invalidateDeviceIotlb(0x17000n, 1);
    expect(dev.got).toEqual([[IOMMUNotifierFlag.DEVIOTLB_UNMAP, 0x10000n, 0xffffn, 0n, 0]]);
    expect(iotlb.got).toEqual([]);
    expect(d.unregisterNotifier(dev)).toBe(true);
    expect(d.unregisterNotifier(dev)).toBe(false);
  });
});

describe('IommuDomain DMA ports', () => {
  it('reads and writes translate across adjacent mappings of different memories', () => {
    const d = new IommuDomain();
    const a = new SparseMemory(1 << 20);
    const b = new SparseMemory(1 << 20);
    d.map(0x100000, 0x2000, a, 0x5000, RW);
    d.map(0x102000, 0x1000, b, 0x0, RW);
    const port = d.port('0000:01:00.1');
    const data = Uint8Array.from({ length: 0x1400 }, (_, i) => (i * 7 + 1) & 0xff);
    expect(port.write(0x101c00, data)).toBe(true);
    expect(Buffer.compare(a.readBytes(0x6c00, 0x400), data.subarray(0, 0x400))).toBe(0);
    expect(Buffer.compare(b.readBytes(0, 0x1000), data.subarray(0x400, 0x1400))).toBe(0);
    const back = new Uint8Array(0x1400);
    expect(port.read(0x101c00, back)).toBe(true);
    expect(Buffer.compare(back, data)).toBe(0);
    // one byte more reaches the unmapped page after b's mapping
    expect(port.write(0x101c00, new Uint8Array(0x1401))).toBe(false);
    expect(d.faults).toEqual([{ requesterId: '0000:01:00.1', iova: 0x103000, write: true, reason: 'unmapped' }]);
    d.clearFaults();
    expect(d.translate(0x102010, true)).toEqual({ mem: b, offset: 0x10, perm: RW, length: 0xff0 });
    expect(d.faultCount).toBe(0);
    expect(d.port('0000:01:00.1')).toBe(port);
  });

  it('failed accesses are recorded as faults, return false, and move no byte', () => {
    const d = new IommuDomain({ gaw: 39 });
    const mem = new SparseMemory(1 << 20);
    d.map(0x0, 0x2000, mem, 0, RW);
    d.map(0x2000, 0x1000, mem, 0x2000, IOMMU_READ);
    d.map(0x4000, 0x1000, mem, 0x4000, IOMMU_WRITE);
    const port = d.port('vf1');
    mem.fill(0, 0x5000, 0x11);

    // runs into a read-only page: nothing written, not even the writable first part
    expect(port.write(0x1800, new Uint8Array(0x1000).fill(0xee))).toBe(false);
    expect(mem.isZero(0, 1)).toBe(false);
    expect(mem.readBytes(0x1800, 0x1000).every((x) => x === 0x11)).toBe(true);
    // runs into a hole
    const dst = new Uint8Array(0x2000).fill(0x99);
    expect(port.read(0x2800, dst)).toBe(false);
    expect(dst.every((x) => x === 0x99)).toBe(true);
    expect(port.read(0x4000, dst.subarray(0, 4))).toBe(false); // write-only page
    expect(port.read(2 ** 39, dst.subarray(0, 4))).toBe(false);
    expect(port.write(-4096, new Uint8Array(1))).toBe(false);
    expect(d.faults).toEqual([
      { requesterId: 'vf1', iova: 0x2000, write: true, reason: 'permission' },
      { requesterId: 'vf1', iova: 0x3000, write: false, reason: 'unmapped' },
      { requesterId: 'vf1', iova: 0x4000, write: false, reason: 'permission' },
      { requesterId: 'vf1', iova: 2 ** 39, write: false, reason: 'aperture' },
      { requesterId: 'vf1', iova: -4096, write: true, reason: 'invalid' },
    ]);
  });

  it('the fault log keeps the newest entries and counts them all', () => {
    const d = new IommuDomain();
    const seen: number[] = [];
    d.onFault = (f) => seen.push(f.iova);
    const port = d.port('x');
    const n = FAULT_LOG_SIZE + 44;
    for (let i = 0; i < n; i++) port.read(i * P, new Uint8Array(1));
    expect(d.faultCount).toBe(n);
    expect(d.faults).toHaveLength(FAULT_LOG_SIZE);
    expect(d.faults[0]!.iova).toBe(44 * P);
    expect(d.faults[FAULT_LOG_SIZE - 1]!.iova).toBe((n - 1) * P);
    expect(seen).toHaveLength(n);
    d.clearFaults();
    expect(d.faults).toEqual([]);
  });

  it('unmap splitting keeps the surviving pieces translating to the same bytes', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 1, max: 16 }), (first, n) => {
      const d = new IommuDomain();
      const mem = new SparseMemory(1 << 20);
      for (let p = 0; p < 16; p++) mem.setU32(0x40000 + p * P, 0xabc00 + p);
      d.map(0x800000, 16 * P, mem, 0x40000, RW);
      const count = Math.min(n, 16 - first);
      expect(d.unmap(0x800000 + first * P, count * P)).toBe(count * P);
      const port = d.port('r');
      for (let p = 0; p < 16; p++) {
        const b = new Uint8Array(4);
        const ok = port.read(0x800000 + p * P, b);
        const gone = p >= first && p < first + count;
        expect(ok).toBe(!gone);
        if (ok) expect(new DataView(b.buffer).getUint32(0, true)).toBe(0xabc00 + p);
      }
      expect(d.mappedBytes).toBe((16 - count) * P);
    }), { numRuns: 50 });
  });
});

describe('IommuDomain dirty tracking (HTTU-like read-and-clear)', () => {
  it('needs tracking on, and validates its arguments', () => {
    const d = new IommuDomain();
    const mem = new SparseMemory(1 << 20);
    d.map(0, 0x10000, mem, 0, RW);
    const out = new Uint8Array(8);
    expect(errOf(() => d.readAndClearDirty(0, 0x10000, out))).toBe('EINVAL');
    d.setDirtyTracking(true);
    expect(errOf(() => d.readAndClearDirty(0, 0x10000, out, 0, 2))).toBe('EINVAL');
    expect(errOf(() => d.readAndClearDirty(0x800, 0x10000, out))).toBe('EINVAL');
    expect(errOf(() => d.readAndClearDirty(0, 0, out))).toBe('EINVAL');
    expect(errOf(() => d.readAndClearDirty(0, 65 * P, out))).toBe('EINVAL'); // 65 bits in 8 bytes
    expect(errOf(() => d.readAndClearDirty(0, 8 * P, out, 57))).toBe('EINVAL');
    d.readAndClearDirty(0, 64 * P, out);
    expect(bitsOf(out)).toEqual([]);
  });

  it('DMA writes set one bit per touched page; reading clears unless NO_CLEAR', () => {
    const d = new IommuDomain();
    const mem = new SparseMemory(1 << 20);
    d.map(0x100000, 0x10000, mem, 0, RW);
    d.setDirtyTracking(true);
    const port = d.port('vf');
    port.write(0x100000, new Uint8Array(1));
    port.write(0x103ffe, new Uint8Array(4)); // pages 3 and 4
    port.read(0x109000, new Uint8Array(10)); // reads do not dirty
    port.write(0x10f000, new Uint8Array(0)); // nor do empty writes
    const peek = new Uint8Array(8);
    d.readAndClearDirty(0x100000, 0x10000, peek, 0, IOMMU_DIRTY_NO_CLEAR);
    expect(bitsOf(peek)).toEqual([0, 3, 4]);
    const out = new Uint8Array(8);
    d.readAndClearDirty(0x100000, 0x10000, out);
    expect(bitsOf(out)).toEqual([0, 3, 4]);
    const again = new Uint8Array(8);
    d.readAndClearDirty(0x100000, 0x10000, again);
    expect(bitsOf(again)).toEqual([]);
  });

  it('holes stay 0, bits land at the output offset and OR into existing ones (vfio-type1-dirty.md §6 shapes)', () => {
    const d = new IommuDomain();
    const mem = new SparseMemory(1 << 24);
    const B = 0x100000;
    d.setDirtyTracking(true);
    // only [B+0x1000, +0x1000) and [B+0x3000, +0x2000) mapped
    d.map(B + 0x1000, 0x1000, mem, 0, RW);
    d.map(B + 0x3000, 0x2000, mem, 0x10000, RW);
    const port = d.port('vf');
    port.write(B + 0x1000, new Uint8Array(0x1000));
    port.write(B + 0x3000, new Uint8Array(0x2000));
    const out = new Uint8Array(16);
    out[0] = 0x80; // an unrelated bit already set by the caller
    d.readAndClearDirty(B, 0x6000, out, 5);
    // pages 1, 3, 4 of the range, shifted by 5
    expect(bitsOf(out)).toEqual([6, 7, 8, 9]);
    // a range starting inside a mapping reads just its part
    port.write(B + 0x4000, new Uint8Array(1));
    const part = new Uint8Array(8);
    d.readAndClearDirty(B + 0x4000, 0x1000, part);
    expect(bitsOf(part)).toEqual([0]);
  });

  it('markDirty covers CPU-side writers and ignores holes; tracking off drops bits, on again keeps them', () => {
    const d = new IommuDomain();
    const mem = new SparseMemory(1 << 20);
    d.map(0, 4 * P, mem, 0, RW);
    d.map(8 * P, 4 * P, mem, 4 * P, RW);
    d.markDirty(0, 100); // no-op while off
    d.setDirtyTracking(true);
    d.markDirty(3 * P + 10, 6 * P); // pages 3..9, of which 4..7 are a hole
    d.setDirtyTracking(true);
    const out = new Uint8Array(8);
    d.readAndClearDirty(0, 12 * P, out, 0, IOMMU_DIRTY_NO_CLEAR);
    expect(bitsOf(out)).toEqual([3, 8, 9]);
    d.setDirtyTracking(false);
    expect(d.dirtyTracking).toBe(false);
    d.setDirtyTracking(true);
    const out2 = new Uint8Array(8);
    d.readAndClearDirty(0, 12 * P, out2);
    expect(bitsOf(out2)).toEqual([]);
    expect(errOf(() => d.markDirty(-1, 1))).toBe('EINVAL');
  });

  it('mapping while tracking gets a bitmap; splitting by unmap keeps the survivors\' bits', () => {
    const d = new IommuDomain();
    const mem = new SparseMemory(1 << 20);
    d.setDirtyTracking(true);
    d.map(0, 10 * P, mem, 0, RW);
    d.markDirty(0, 10 * P);
    d.unmap(4 * P, 2 * P);
    const out = new Uint8Array(8);
    d.readAndClearDirty(0, 10 * P, out);
    expect(bitsOf(out)).toEqual([0, 1, 2, 3, 6, 7, 8, 9]);
  });

  it('matches a per-page model for random writes over random mappings', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 30 })), { maxLength: 12 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 230 * P }), fc.integer({ min: 1, max: 3 * P })), { maxLength: 20 }),
      fc.integer({ min: 0, max: 100 }), fc.integer({ min: 1, max: 230 }), fc.integer({ min: 0, max: 70 }),
      (maps, writes, q0, qn, bitOff) => {
        const d = new IommuDomain();
        const mem = new SparseMemory(1 << 24);
        const mapped = new Uint8Array(240);
        d.setDirtyTracking(true);
        for (const [p, n] of maps) {
          let free = true;
          for (let i = p; i < p + n; i++) if (mapped[i]) free = false;
          if (!free) continue;
          d.map(p * P, n * P, mem, p * P, RW);
          mapped.fill(1, p, p + n);
        }
        const dirty = new Uint8Array(240);
        const port = d.port('f');
        for (const [a, len] of writes) {
          const ok = port.write(a, new Uint8Array(len));
          let all = true;
          for (let pg = Math.floor(a / P); pg <= Math.floor((a + len - 1) / P); pg++) if (!mapped[pg]) all = false;
          expect(ok).toBe(all);
          if (ok) dirty.fill(1, Math.floor(a / P), Math.floor((a + len - 1) / P) + 1);
        }
        const out = new Uint8Array(Math.ceil((bitOff + qn) / 64) * 8);
        d.readAndClearDirty(q0 * P, qn * P, out, bitOff);
        const want: number[] = [];
        for (let i = 0; i < qn; i++) if (dirty[q0 + i]) want.push(bitOff + i);
        expect(bitsOf(out)).toEqual(want);
      },
    ), { numRuns: 100 });
  });

  it('8 TiB mapping: DMA at both ends shows up at the right bits of a 256 MiB bitmap', () => {
    const TiB = 2 ** 40;
    const d = new IommuDomain({ gaw: 48 });
    const ram = new SparseMemory(8 * TiB);
    d.map(0, 8 * TiB, ram, 0, RW);
    d.setDirtyTracking(true);
    const port = d.port('vf');
    expect(port.write(8 * TiB - 2, new Uint8Array([1, 2]))).toBe(true);
    expect(port.write(5 * TiB + 0x1ffe, new Uint8Array(4))).toBe(true);
    expect(ram.getU16(8 * TiB - 2)).toBe(0x0201);
    const out = new Uint8Array(2 ** 28);
    d.readAndClearDirty(0, 8 * TiB, out);
    const last = 2 ** 31 - 1;
    const mid = 5 * 2 ** 28 + 1;
    expect(out[last >> 3]).toBe(0x80);
    expect(out[mid >> 3]).toBe(1 << (mid & 7) | 1 << ((mid + 1) & 7));
    let nonzero = 0;
    for (let i = 0; i < out.length; i += 65536) if (!Buffer.from(out.buffer, i, 65536).equals(Buffer.alloc(65536))) nonzero++;
    expect(nonzero).toBe(2);
    const again = new Uint8Array(2 ** 28);
    d.readAndClearDirty(0, 8 * TiB, again);
    expect(again[last >> 3]).toBe(0);
  });
});
