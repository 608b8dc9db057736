import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KernelError } from '../src/uapi/errno.js';
import {
  buildCapChain,
  buildInfoWithCaps,
  capChainSize,
  findCap,
  walkCapChain,
  writeInfoReply,
} from '../src/uapi/capchain.js';
import * as S from '../src/uapi/structs.js';
import {
  VFIO_DEVICE_FLAGS_CAPS,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  VFIO_REGION_INFO_CAP_SPARSE_MMAP,
  VFIO_REGION_INFO_CAP_TYPE,
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  VFIO_REGION_TYPE_MIGRATION,
  VFIO_REGION_SUBTYPE_MIGRATION,
} from '../src/uapi/vfio.js';

const u32 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(o, true);
const u16 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(o, true);

function errnoOf(fn: () => unknown): number | string {
  try {
    fn();
    return 'no error';
  } catch (e) {
    return e instanceof KernelError ? e.errno : `non-kernel ${String(e)}`;
  }
}

/** A region type cap (16 bytes), a dma_avail cap (12 -> padded 16), a migration cap (32). */
function sampleCaps(): Uint8Array[] {
  return [
    S.vfio_region_info_cap_type.encode({
      header: { id: VFIO_REGION_INFO_CAP_TYPE, version: 1, next: 0xdead },
      type: VFIO_REGION_TYPE_MIGRATION,
      subtype: VFIO_REGION_SUBTYPE_MIGRATION,
    }),
    S.vfio_iommu_type1_info_dma_avail.encode({ header: { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1 }, avail: 65535 }),
    S.vfio_iommu_type1_info_cap_migration.encode({
      header: { id: VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, version: 1 },
      pgsize_bitmap: 4096,
      max_dirty_bitmap_size: 1 << 28,
    }),
  ];
}

describe('buildCapChain (vfio.h capability chain; vfio_info_cap_add pads each cap to 8)', () => {
  it('places caps back to back from base with absolute next offsets, last next 0', () => {
    const chain = buildCapChain(sampleCaps(), 24);
    // hand layout: cap0 @24 (16 bytes), cap1 @40 (12 -> 16), cap2 @56 (32) -> 64 bytes
    expect(chain.length).toBe(64);
    expect(capChainSize(sampleCaps())).toBe(64);
    expect([u16(chain, 0), u32(chain, 4)]).toEqual([VFIO_REGION_INFO_CAP_TYPE, 40]);
    expect([u16(chain, 16), u32(chain, 20)]).toEqual([VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 56]);
    expect([u16(chain, 32), u32(chain, 36)]).toEqual([VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 0]);
    expect(u32(chain, 24)).toBe(65535);
    expect(chain.subarray(28, 32)).toEqual(new Uint8Array(4)); // padding
    expect(new DataView(chain.buffer).getBigUint64(32 + 24, true)).toBe(1n << 28n);
  });

  it('a cap shorter than its header is EINVAL', () => {
    expect(errnoOf(() => buildCapChain([new Uint8Array(4)], 32))).toBe(22);
  });

  it('an empty list is an empty chain', () => {
    expect(buildCapChain([], 32).length).toBe(0);
  });
});

describe('buildInfoWithCaps (uapi spec 1: argsz rules of GET_REGION_INFO / GET_INFO)', () => {
  const region = (argsz: number, caps: Uint8Array[], cap_offset = 0) =>
    buildInfoWithCaps(
      S.vfio_region_info,
      { flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, index: 9, size: 0x2000n, offset: 9 * 2 ** 40, cap_offset },
      caps,
      argsz,
      { minsz: S.VFIO_REGION_INFO_MINSZ, capsFlag: VFIO_REGION_INFO_FLAG_CAPS },
    );
  const typeCap = () => [sampleCaps()[0]!];

  it('argsz < minsz -> EINVAL', () => {
    expect(errnoOf(() => region(31, typeCap()))).toBe(22);
    expect(errnoOf(() => region(0, []))).toBe(22);
    expect(errnoOf(() => region(-1, []))).toBe(22);
  });

  it('caps that do not fit: CAPS flag, argsz raised to the needed size, cap_offset 0, only minsz copied', () => {
    const r = region(32, typeCap());
    expect(r.info.flags).toBe(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_CAPS);
    expect(r.info.argsz).toBe(48);
    expect(r.info.cap_offset).toBe(0);
    expect(r.head.length).toBe(32);
    expect(r.caps.length).toBe(0);
    const user = new Uint8Array(32).fill(0xee);
    writeInfoReply(r, user);
    expect(u32(user, 0)).toBe(48);
    expect(u32(user, 12)).toBe(0);
    expect(new DataView(user.buffer).getBigUint64(24, true)).toBe(9n << 40n);
  });

  it('caps that fit: chain right after the struct, cap_offset = sizeof, argsz unchanged', () => {
    const r = region(64, typeCap());
    expect(r.info.argsz).toBe(64);
    expect(r.info.cap_offset).toBe(32);
    expect(r.capsAt).toBe(32);
    const user = new Uint8Array(64).fill(0xee);
    writeInfoReply(r, user);
    expect(u32(user, 12)).toBe(32);
    expect([u16(user, 32), u16(user, 34), u32(user, 36)]).toEqual([VFIO_REGION_INFO_CAP_TYPE, 1, 0]);
    expect([u32(user, 40), u32(user, 44)]).toEqual([VFIO_REGION_TYPE_MIGRATION, VFIO_REGION_SUBTYPE_MIGRATION]);
    expect(user.subarray(48).every((b) => b === 0xee)).toBe(true); // beyond the chain: untouched
  });

  it('no caps: no CAPS flag, cap_offset echoes the given value, argsz unchanged', () => {
    const r = region(100, [], 7);
    expect(r.info).toMatchObject({ argsz: 100, flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, cap_offset: 7 });
    expect(r.caps.length).toBe(0);
  });

  it('type1 GET_INFO: copies min(argsz, sizeof), minsz 16 (type1 spec 1)', () => {
    const caps = [sampleCaps()[2]!, sampleCaps()[1]!];
    const build = (argsz: number) =>
      buildInfoWithCaps(S.vfio_iommu_type1_info, { flags: VFIO_IOMMU_INFO_PGSIZES, iova_pgsizes: 0x40201000n }, caps, argsz, {
        minsz: S.VFIO_IOMMU_TYPE1_INFO_MINSZ,
        capsFlag: VFIO_IOMMU_INFO_CAPS,
        copyLen: Math.min(argsz, S.vfio_iommu_type1_info.size),
      });
    expect(errnoOf(() => build(15))).toBe(22);
    const small = build(16);
    expect(small.head.length).toBe(16);
    expect(small.info).toMatchObject({ argsz: 24 + 32 + 16, flags: 3, cap_offset: 0 });
    const full = build(72);
    const user = new Uint8Array(72);
    writeInfoReply(full, user);
    expect(u32(user, 16)).toBe(24);
    const walk = walkCapChain(user, u32(user, 16), { minOffset: 24, end: 72 });
    expect(walk.ok).toBe(true);
    expect(walk.caps.map((c) => [c.id, c.offset, c.next])).toEqual([
      [VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 24, 56],
      [VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 56, 0],
    ]);
    const mig = S.vfio_iommu_type1_info_cap_migration.decode(walk.caps[0]!.bytes);
    expect(mig).toEqual({ header: { id: 2, version: 1, next: 56 }, flags: 0, pgsize_bitmap: 4096n, max_dirty_bitmap_size: 1n << 28n });
  });

  it('device GET_INFO: chain starts at sizeof = 20 (4-byte aligned absolute, 8 relative)', () => {
    const sparse = new Uint8Array(S.vfio_region_info_cap_sparse_mmap.size + 16);
    S.vfio_region_info_cap_sparse_mmap.encode({ header: { id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1 }, nr_areas: 1 }, sparse);
    const r = buildInfoWithCaps(
      S.vfio_device_info,
      { flags: VFIO_DEVICE_FLAGS_PCI, num_regions: 9, num_irqs: 5 },
      [sparse, sampleCaps()[1]!],
      100,
      { minsz: S.VFIO_DEVICE_INFO_MINSZ, capsFlag: VFIO_DEVICE_FLAGS_CAPS, copyLen: S.VFIO_DEVICE_INFO_CAPSZ },
    );
    expect(r.info.cap_offset).toBe(20);
    const user = new Uint8Array(100);
    writeInfoReply(r, user);
    const walk = walkCapChain(user, 20, { minOffset: 20, end: 100 });
    expect(walk.ok && walk.caps.map((c) => c.offset)).toEqual([20, 52]);
  });

  it('writeInfoReply: EFAULT and nothing written when the user buffer is too small', () => {
    const r = region(64, typeCap());
    const user = new Uint8Array(40).fill(1);
    expect(errnoOf(() => writeInfoReply(r, user))).toBe(14);
    expect(user.every((b) => b === 1)).toBe(true);
  });

  it('property: any caps round-trip through build, copy and walk', () => {
    const capArb = fc.record({
      id: fc.integer({ min: 0, max: 0xffff }),
      version: fc.integer({ min: 0, max: 0xffff }),
      body: fc.uint8Array({ minLength: 0, maxLength: 40 }),
    });
    fc.assert(
      fc.property(fc.array(capArb, { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: 300 }), (specs, extra) => {
        const caps = specs.map((s) => {
          const b = new Uint8Array(8 + s.body.length);
          S.vfio_info_cap_header.encode({ id: s.id, version: s.version, next: 0xffffffff }, b);
          b.set(s.body, 8);
          return b;
        });
        const needed = 32 + caps.reduce((n, c) => n + Math.ceil(c.length / 8) * 8, 0);
        const argsz = 32 + extra;
        const r = region(argsz, caps);
        if (argsz < needed) {
          expect(r.info.argsz).toBe(needed);
          expect(r.caps.length).toBe(0);
          return;
        }
        const user = new Uint8Array(argsz);
        writeInfoReply(r, user);
        const walk = walkCapChain(user, S.vfio_region_info.read(user, 'cap_offset'), { minOffset: 32, end: argsz });
        expect(walk.ok).toBe(true);
        expect(walk.caps.length).toBe(specs.length);
        walk.caps.forEach((c, i) => {
          expect([c.id, c.version]).toEqual([specs[i]!.id, specs[i]!.version]);
          expect((c.offset - 32) % 8).toBe(0);
          expect(c.bytes.subarray(8, 8 + specs[i]!.body.length)).toEqual(specs[i]!.body);
        });
      }),
    );
  });
});

describe('walkCapChain: malformed chains are errors, never hangs', () => {
  /** A 64-byte "info" buffer with fixed part 16 and caps at the given offsets/next values. */
  function withHeaders(hdrs: [at: number, id: number, next: number][], len = 64): Uint8Array {
    const b = new Uint8Array(len);
    for (const [at, id, next] of hdrs) S.vfio_info_cap_header.encode({ id, version: 1, next }, b, at);
    return b;
  }
  const opts = { minOffset: 16 };

  it('cap_offset 0 is an empty chain', () => {
    expect(walkCapChain(new Uint8Array(8), 0)).toEqual({ ok: true, caps: [] });
  });

  it.each([
    ['self loop', withHeaders([[16, 1, 16]]), 16],
    ['two-cap cycle', withHeaders([[16, 1, 32], [32, 2, 16]]), 16],
    ['next inside the current header', withHeaders([[16, 1, 20]]), 16],
    ['first cap inside the fixed struct', withHeaders([[8, 1, 0]]), 8],
    ['misaligned cap', withHeaders([[18, 1, 0]]), 18],
    ['header past the end', withHeaders([[16, 1, 60]]), 16],
    ['cap_offset past the end', withHeaders([]), 4096],
  ])('%s -> EINVAL', (_name, buf, first) => {
    const w = walkCapChain(buf, first, opts);
    expect(w.ok).toBe(false);
    if (!w.ok) expect(w.errno).toBe(22);
  });

  it('keeps the well-linked caps read before the fault (not the one with the bad link)', () => {
    const w = walkCapChain(withHeaders([[16, 7, 32], [32, 8, 16]]), 16, opts);
    expect(w.ok).toBe(false);
    expect(w.caps.map((c) => c.id)).toEqual([7]);
  });

  it('end limits the walk to the reported argsz even when the buffer is bigger', () => {
    const b = withHeaders([[16, 1, 40], [40, 2, 0]]);
    expect(walkCapChain(b, 16, { minOffset: 16, end: 44 }).ok).toBe(false);
    expect(walkCapChain(b, 16, { minOffset: 16, end: 48 }).ok).toBe(true);
  });

  it('findCap returns the cap, null when absent, throws EINVAL on a malformed chain', () => {
    const b = withHeaders([[16, 1, 32], [32, 2, 0]]);
    expect(findCap(b, 16, 2, opts)?.offset).toBe(32);
    expect(findCap(b, 16, 3, opts)).toBeNull();
    expect(errnoOf(() => findCap(withHeaders([[16, 1, 16]]), 16, 1, opts))).toBe(22);
  });

  it('property: random bytes and offsets always terminate with strictly increasing offsets', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 256 }),
        fc.oneof(fc.integer({ min: 0, max: 300 }), fc.constantFrom(16, 24, 32)),
        (buf, first) => {
          // bias the walk towards long chains: plant small "next" values
          for (let o = 16; o + 8 <= buf.length; o += 8) if (buf[o]! & 1) buf.set([o + 8 + (buf[o]! & 8), 0, 0, 0], o + 4);
          const w = walkCapChain(buf, first, opts);
          expect(w.ok || w.errno === 22).toBe(true);
          expect(w.caps.length).toBeLessThanOrEqual(buf.length / 8);
          for (let i = 1; i < w.caps.length; i++) expect(w.caps[i]!.offset).toBeGreaterThan(w.caps[i - 1]!.offset);
        },
      ),
      { numRuns: 300 },
    );
  });
});
