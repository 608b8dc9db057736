/**
 * VFIO_IOMMU_UNMAP_DMA, plain and with GET_DIRTY_BITMAP: spec vfio-type1-dirty.md section 2
 * (checks in order, [M] behaviour), the section 6 worked examples that unmap, and the
 * section 5 review findings as regression tests. Default rig: type1v2, pgsize 4096,
 * B = 0x100000, zeroed user buffers.
 */
import { describe, expect, it } from 'vitest';
import { Errno } from '../src/uapi/errno.js';
import { readU64 } from '../src/uapi/codec.js';
import { vfio_bitmap, vfio_iommu_type1_dma_unmap } from '../src/uapi/structs.js';
import {
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_TYPE1_IOMMU,
} from '../src/uapi/vfio.js';
import { B, P, PinningVendor, bitsOf, makeRig, mapRam, range, unmapWithBits, userBuffer } from './vfio-type1-helpers.js';
import type { Rig } from './vfio-type1-helpers.js';

const GET = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;

/** Raw UNMAP_DMA bytes: header, then optionally a vfio_bitmap at 24. */
function unmapBytes(h: { argsz: number; flags: number; iova: number | bigint; size: number | bigint }, bm?: { pgsize: number | bigint; size: number | bigint; data: number | bigint }, len?: number): Uint8Array {
  const buf = new Uint8Array(bm ? 48 : 24);
  vfio_iommu_type1_dma_unmap.encode(h, buf);
  if (bm) vfio_bitmap.encode(bm, buf, 24);
  // a shorter buffer models user memory that ends inside the struct
  return len === undefined ? buf : buf.slice(0, len);
}

function mapped(rig: Rig): Array<[number, number]> {
  return rig.container.type1!.mappings().map((m) => [m.iova, m.size]);
}

describe('UNMAP_DMA checks in order (spec section 2)', () => {
  it('step 1: short struct EFAULT, argsz < 24 / unknown flags EINVAL, GET_DIRTY with ALL or VADDR EINVAL', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    rig.container.startDirtyTracking();
    const buf = userBuffer(rig.user, 8);
    const bm = { pgsize: P, size: 8, data: buf.data };
    const c = rig.container;
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, new Uint8Array(23))).toBe(-Errno.EFAULT);
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes({ argsz: 23, flags: 0, iova: B, size: 4 * P }))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes({ argsz: 24, flags: 8, iova: B, size: 4 * P }))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes({ argsz: 48, flags: GET | VFIO_DMA_UNMAP_FLAG_ALL, iova: 0, size: 0 }, bm))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes({ argsz: 48, flags: GET | VFIO_DMA_UNMAP_FLAG_VADDR, iova: B, size: 4 * P }, bm))).toBe(-Errno.EINVAL);
    expect(mapped(rig)).toEqual([[B, 4 * P]]);
  });

  it('step 2: argsz < 48 EINVAL before the bitmap copy; copy fault EFAULT; pgsize and bitmap size EINVAL', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 65 * P)).toBe(0);
    rig.container.startDirtyTracking();
    const buf = userBuffer(rig.user, 16);
    const c = rig.container;
    const hdr = { argsz: 48, flags: GET, iova: B, size: 65 * P };
    // argsz 47 fails even though the buffer is too short to hold a vfio_bitmap (EINVAL wins over EFAULT)
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes({ ...hdr, argsz: 47 }, undefined, 24))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes(hdr, undefined, 24))).toBe(-Errno.EFAULT);
    // the EFAULT of the struct copy comes before bitmap checks (a bogus pgsize is not looked at)
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes(hdr, { pgsize: 0x2000, size: 16, data: buf.data }, 40))).toBe(-Errno.EFAULT);
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes(hdr, { pgsize: 0x2000, size: 16, data: buf.data }))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes(hdr, { pgsize: 0, size: 16, data: buf.data }))).toBe(-Errno.EINVAL);
    // worked example: 65 pages need DIRTY_BITMAP_BYTES(65) = 16 bytes
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes(hdr, { pgsize: P, size: 8, data: buf.data }))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes(hdr, { pgsize: P, size: 0, data: buf.data }))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes(hdr, { pgsize: P, size: 2 ** 28 + 1, data: buf.data }))).toBe(-Errno.EINVAL);
    // a bitmap reaching beyond the user address space (access_ok)
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, unmapBytes(hdr, { pgsize: P, size: 16, data: 2n ** 47n - 8n }))).toBe(-Errno.EINVAL);
    expect(mapped(rig)).toEqual([[B, 65 * P]]);
    const ok = unmapBytes(hdr, { pgsize: P, size: 16, data: buf.data });
    expect(c.ioctl(VFIO_IOMMU_UNMAP_DMA, ok)).toBe(0);
    expect(readU64(ok, 16)).toBe(BigInt(65 * P));
    expect(bitsOf(buf.view)).toEqual(range(0, 65)); // IOMMU-backed, never pinned: all dirty
  });

  it('step 3: unaligned iova/size, size 0, wrap, FLAG_ALL with iova or size', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    const c = rig.container;
    expect(c.unmapDma({ iova: B + 1, size: 4 * P }).ret).toBe(-Errno.EINVAL);
    expect(c.unmapDma({ iova: B, size: 4 * P + 1 }).ret).toBe(-Errno.EINVAL);
    expect(c.unmapDma({ iova: B, size: 0 }).ret).toBe(-Errno.EINVAL);
    expect(c.unmapDma({ iova: 0xfffffffffffff000n, size: 0x2000 }).ret).toBe(-Errno.EINVAL);
    expect(c.unmapDma({ iova: B, size: 0, flags: VFIO_DMA_UNMAP_FLAG_ALL }).ret).toBe(-Errno.EINVAL);
    expect(c.unmapDma({ iova: 0, size: P, flags: VFIO_DMA_UNMAP_FLAG_ALL }).ret).toBe(-Errno.EINVAL);
    // reaching exactly the top of the 64-bit space is not a wrap for UNMAP
    expect(c.unmapDma({ iova: 0xfffffffffffff000n, size: 0x1000 })).toEqual({ ret: 0, size: 0n });
    expect(mapped(rig)).toEqual([[B, 4 * P]]);
  });

  it('step 4 (worked example): unmapping part of a mapping is EINVAL and leaves it intact', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 0x4000)).toBe(0);
    const r = rig.container.unmapDma({ iova: B + 0x1000, size: 0x1000 });
    expect(r).toEqual({ ret: -Errno.EINVAL, size: 0x1000n });
    expect(rig.container.unmapDma({ iova: B, size: 0x2000 }).ret).toBe(-Errno.EINVAL); // crosses the end
    expect(rig.container.unmapDma({ iova: B - 0x1000, size: 0x2000 }).ret).toBe(-Errno.EINVAL);
    expect(mapped(rig)).toEqual([[B, 0x4000]]);
    expect(rig.container.unmapDma({ iova: B - 0x1000, size: 0x6000 })).toEqual({ ret: 0, size: 0x4000n });
  });

  it('step 5: GET_DIRTY_BITMAP while tracking is off is EINVAL and unmaps nothing', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    const r = unmapWithBits(rig, B, 4 * P);
    expect(r.ret).toBe(-Errno.EINVAL);
    expect(r.bits).toEqual([]);
    expect(mapped(rig)).toEqual([[B, 4 * P]]);
  });

  it('first failing check wins: bisecting range with a faulting bitmap is EINVAL, not EFAULT', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    rig.container.startDirtyTracking();
    const unmappedUser = 0x3000_0000_0000; // nothing mapped there: a bitmap copy would fault
    const r = rig.container.unmapDma({ iova: B + P, size: P, bitmap: { size: 8, data: unmappedUser } });
    expect(r.ret).toBe(-Errno.EINVAL);
    const r2 = rig.container.unmapDma({ iova: B, size: 4 * P, bitmap: { size: 8, data: unmappedUser } });
    expect(r2.ret).toBe(-Errno.EFAULT);
  });

  it('FLAG_ALL removes every mapping and reports the total size', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 2 * P)).toBe(0);
    expect(mapRam(rig, B + 8 * P, 3 * P)).toBe(0);
    expect(rig.container.mapDma({ vaddr: rig.ramVaddr, iova: 0x1_0000_0000, size: P })).toBe(0);
    expect(rig.container.unmapDma({ iova: 0, size: 0, flags: VFIO_DMA_UNMAP_FLAG_ALL })).toEqual({ ret: 0, size: BigInt(6 * P) });
    expect(mapped(rig)).toEqual([]);
    expect(rig.container.type1!.domain!.mappedBytes).toBe(0);
    expect(rig.container.unmapDma({ iova: 0, size: 0, flags: VFIO_DMA_UNMAP_FLAG_ALL })).toEqual({ ret: 0, size: 0n });
  });

  it('type1v2 unmaps whole mappings inside the range; holes give size 0', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 2 * P)).toBe(0);
    expect(mapRam(rig, B + 4 * P, 2 * P)).toBe(0);
    expect(rig.container.unmapDma({ iova: B + 2 * P, size: 2 * P })).toEqual({ ret: 0, size: 0n });
    expect(rig.container.unmapDma({ iova: B, size: 8 * P })).toEqual({ ret: 0, size: BigInt(4 * P) });
    const dom = rig.container.type1!.domain!;
    expect(dom.translate(B)).toBeNull();
  });

  it('unmapping a run of mappings removes exactly their pages from the IOMMU domain', () => {
    const rig = makeRig();
    for (let i = 0; i < 6; i += 1) expect(mapRam(rig, B + i * 2 * P, P)).toBe(0); // pages 0,2,4,6,8,10
    expect(rig.container.unmapDma({ iova: B + 2 * P, size: 7 * P })).toEqual({ ret: 0, size: BigInt(4 * P) });
    const dom = rig.container.type1!.domain!;
    expect(dom.mappings().map((m) => [m.iova, m.size])).toEqual([
      [B, P],
      [B + 10 * P, P],
    ]);
    expect(dom.mappedBytes).toBe(2 * P);
  });

  it('plain type1 (v1): an unmap inside a mapping succeeds with size 0; covering its start removes all of it', () => {
    const rig = makeRig({ iommuType: VFIO_TYPE1_IOMMU });
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    expect(rig.container.unmapDma({ iova: B + P, size: P })).toEqual({ ret: 0, size: 0n });
    expect(rig.container.unmapDma({ iova: B, size: P })).toEqual({ ret: 0, size: BigInt(4 * P) });
    expect(mapped(rig)).toEqual([]);
  });
});

describe('UNMAP_DMA + GET_DIRTY_BITMAP worked examples (spec section 6)', () => {
  it('IOMMU-backed non-pinning device, 16-page mapping, exact unmap: bytes 0-1 = 0xFF, 2-7 = 0', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 16 * P)).toBe(0);
    expect(rig.container.startDirtyTracking()).toBe(0);
    const r = unmapWithBits(rig, B, 16 * P);
    expect(r.ret).toBe(0);
    expect(r.size).toBe(0x10000n);
    expect([...r.bytes]).toEqual([0xff, 0xff, 0, 0, 0, 0, 0, 0]);
  });

  it('adjacent mappings [B,+0x3000) and [B+0x3000,+0x2000), one unmap of 0x5000: word0 = 0x1F', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 0x3000)).toBe(0);
    expect(mapRam(rig, B + 0x3000, 0x2000)).toBe(0);
    rig.container.startDirtyTracking();
    const r = unmapWithBits(rig, B, 0x5000);
    expect([r.ret, r.size]).toEqual([0, 0x5000n]);
    expect(readU64(r.bytes, 0)).toBe(0x1fn);
  });

  it('only [B+0x1000,+0x1000) mapped, unmap [B,B+0x2000): size 0x1000, word0 = 0x2 (finding 1: hole at range start)', () => {
    const rig = makeRig();
    expect(mapRam(rig, B + 0x1000, 0x1000)).toBe(0);
    rig.container.startDirtyTracking();
    const r = unmapWithBits(rig, B, 0x2000);
    expect([r.ret, r.size]).toEqual([0, 0x1000n]);
    expect(readU64(r.bytes, 0)).toBe(0x2n);
  });

  it('a range with no mapping at all: 0, size 0, buffer untouched', () => {
    const rig = makeRig();
    rig.container.startDirtyTracking();
    const buf = userBuffer(rig.user, 8);
    buf.view.fill(0xa5);
    const r = rig.container.unmapDma({ iova: B, size: 0x4000, bitmap: { size: 8, data: buf.data } });
    expect(r).toEqual({ ret: 0, size: 0n });
    expect([...buf.view]).toEqual(new Array(8).fill(0xa5));
  });
});

describe('review findings (spec section 5)', () => {
  it('finding 2: 512 single-page mappings unmapped as one 2 MiB range give 64 bytes of 0xFF', () => {
    const rig = makeRig();
    for (let i = 0; i < 512; i++) expect(mapRam(rig, B + i * P, P)).toBe(0);
    rig.container.startDirtyTracking();
    const r = unmapWithBits(rig, B, 0x200000);
    expect([r.ret, r.size]).toEqual([0, 0x200000n]);
    expect(r.bytes.length).toBe(64);
    expect([...r.bytes]).toEqual(new Array(64).fill(0xff));
    expect(mapped(rig)).toEqual([]);
  });

  it('finding 2: only even pages mapped gives bytes of 0x55', () => {
    const rig = makeRig();
    for (let i = 0; i < 512; i += 2) expect(mapRam(rig, B + i * P, P)).toBe(0);
    rig.container.startDirtyTracking();
    const r = unmapWithBits(rig, B, 0x200000);
    expect([r.ret, r.size]).toEqual([0, 0x100000n]);
    expect([...r.bytes]).toEqual(new Array(64).fill(0x55));
  });

  it('finding 3: a copy fault is EFAULT; mappings reported before it stay removed, later ones stay mapped', () => {
    const base = 0x40000000;
    const rig = makeRig({ ramIova: base, ramSize: 256 * 2 ** 20 });
    expect(mapRam(rig, base, P)).toBe(0);
    expect(mapRam(rig, base + 2 * P, P)).toBe(0);
    // page 32768 is bit 32768: byte 4096 of the bitmap, past the single writable page below
    expect(mapRam(rig, base + 32768 * P, P)).toBe(0);
    rig.container.startDirtyTracking();
    const buf = userBuffer(rig.user, P); // the next page is an unmapped guard page
    const size = 32769 * P;
    const r = rig.container.unmapDma({ iova: base, size, bitmap: { size: 4104, data: buf.data } });
    expect(r.ret).toBe(-Errno.EFAULT);
    expect(r.size).toBe(BigInt(size)); // not written back on error
    expect(mapped(rig)).toEqual([[base + 32768 * P, P]]);
    expect(buf.view[0]).toBe(0b101); // the two mappings before the fault were reported
  });

  it('finding 4: bits set by vfio_dma_rw survive the vendor unpin (collected once, after unpinning)', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 8 * P)).toBe(0);
    const vendor = new PinningVendor(rig.groups[0]!);
    rig.container.startDirtyTracking();
    vendor.pin(B);
    rig.groups[0]!.dmaRw(B + 2 * P + 100, new Uint8Array([1, 2, 3]), true);
    const seen: boolean[] = [];
    vendor.onNotify = () => seen.push(rig.container.type1!.mappings().length === 1);
    const r = unmapWithBits(rig, B, 8 * P);
    expect([r.ret, r.size]).toEqual([0, BigInt(8 * P)]);
    expect(r.bits).toEqual([0, 2]);
    expect(vendor.notified).toEqual([[B, 8 * P]]);
    expect(seen).toEqual([true]); // notified while the mapping still existed
    expect(vendor.pins.size).toBe(0);
    expect(rig.ram.getU8(2 * P + 101)).toBe(2);
  });

  it('finding 5: a pgsize other than the smallest is EINVAL and unmaps nothing', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 8 * P)).toBe(0);
    rig.container.startDirtyTracking();
    const buf = userBuffer(rig.user, 8);
    const r = rig.container.unmapDma({ iova: B, size: 8 * P, bitmap: { pgsize: 0x2000, size: 8, data: buf.data } });
    expect(r.ret).toBe(-Errno.EINVAL);
    expect(mapped(rig)).toEqual([[B, 8 * P]]);
  });
});

describe('DMA_UNMAP notifier for pinned pages', () => {
  it('mappings without pins are removed without notifying; pinned ones notify with the whole mapping', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 2 * P)).toBe(0);
    expect(mapRam(rig, B + 2 * P, 4 * P)).toBe(0);
    const vendor = new PinningVendor(rig.groups[0]!);
    vendor.pin(B + 3 * P, 2);
    expect(rig.container.unmapDma({ iova: B, size: 6 * P })).toEqual({ ret: 0, size: BigInt(6 * P) });
    expect(vendor.notified).toEqual([[B + 2 * P, 4 * P]]);
  });

  it('a vendor that keeps its pins makes the unmap fail with EBUSY after retries; earlier mappings are gone', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, P)).toBe(0);
    expect(mapRam(rig, B + P, P)).toBe(0);
    const vendor = new PinningVendor(rig.groups[0]!);
    vendor.pin(B + P);
    vendor.cooperative = false;
    const r = rig.container.unmapDma({ iova: B, size: 2 * P });
    expect(r.ret).toBe(-Errno.EBUSY);
    expect(vendor.notified.length).toBe(11); // first notification + 10 retries
    expect(mapped(rig)).toEqual([[B + P, P]]);
  });
});

describe("legacy: 'v16' (opt-in reproduction of the posted series)", () => {
  it('GET_DIRTY_BITMAP only for one exact mapping; tracking off still unmaps and returns 0', () => {
    const rig = makeRig({ legacy: 'v16' });
    expect(mapRam(rig, B, 0x3000)).toBe(0);
    expect(mapRam(rig, B + 0x3000, 0x2000)).toBe(0);
    rig.container.startDirtyTracking();
    expect(unmapWithBits(rig, B, 0x5000).ret).toBe(-Errno.EINVAL);
    const one = unmapWithBits(rig, B, 0x3000);
    expect([one.ret, one.size, readU64(one.bytes, 0)]).toEqual([0, 0x3000n, 0x7n]);
    rig.container.stopDirtyTracking();
    const off = unmapWithBits(rig, B + 0x3000, 0x2000);
    expect([off.ret, off.size, off.bits]).toEqual([0, 0x2000n, []]);
    expect(mapped(rig)).toEqual([]);
  });

  it('the default ([M]) rejects the same tracking-off request', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 0x2000)).toBe(0);
    expect(unmapWithBits(rig, B, 0x2000).ret).toBe(-Errno.EINVAL);
    expect(mapped(rig)).toEqual([[B, 0x2000]]);
  });
});
