/**
 * VFIO_IOMMU_DIRTY_PAGES (spec vfio-type1-dirty.md section 3), dirty scope (section 4), the
 * vendor API (vfio_pin_pages / vfio_unpin_pages / vfio_dma_rw), the section 6 worked
 * examples that use GET_BITMAP, and review finding 6. Default rig: type1v2, B = 0x100000.
 */
import { describe, expect, it } from 'vitest';
import { Errno } from '../src/uapi/errno.js';
import { VfioGroup } from '../src/vfio/group.js';
import { readU64 } from '../src/uapi/codec.js';
import { vfio_iommu_type1_dirty_bitmap, vfio_iommu_type1_dirty_bitmap_get } from '../src/uapi/structs.js';
import {
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  VFIO_TYPE1_IOMMU,
} from '../src/uapi/vfio.js';
import { B, IOMMU_R, IOMMU_W, P, PinningVendor, bitsOf, getBits, makeRig, mapRam, range, userBuffer } from './vfio-type1-helpers.js';

const START = VFIO_IOMMU_DIRTY_PAGES_FLAG_START;
const STOP = VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP;
const GETBM = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;

function dirtyBytes(argsz: number, flags: number, range?: { iova: number | bigint; size: number | bigint; pgsize: number | bigint; bsize: number | bigint; data: number | bigint }, len?: number): Uint8Array {
  const buf = new Uint8Array(range ? 48 : 8);
  vfio_iommu_type1_dirty_bitmap.encode({ argsz, flags }, buf);
  if (range) {
    vfio_iommu_type1_dirty_bitmap_get.encode(
      { iova: range.iova, size: range.size, bitmap: { pgsize: range.pgsize, size: range.bsize, data: range.data } },
      buf,
      8,
    );
  }
  return len === undefined ? buf : buf.slice(0, len);
}

describe('DIRTY_PAGES checks in order (spec section 3)', () => {
  it('plain type1 is EACCES before the struct is read', () => {
    const rig = makeRig({ iommuType: VFIO_TYPE1_IOMMU });
    expect(rig.container.ioctl(VFIO_IOMMU_DIRTY_PAGES)).toBe(-Errno.EACCES);
    expect(rig.container.ioctl(VFIO_IOMMU_DIRTY_PAGES, dirtyBytes(0, 0))).toBe(-Errno.EACCES);
    expect(rig.container.startDirtyTracking()).toBe(-Errno.EACCES);
  });

  it('struct copy EFAULT; argsz < 8, unknown flags, zero or several flags EINVAL; STOP always 0', () => {
    const rig = makeRig();
    const c = rig.container;
    expect(c.ioctl(VFIO_IOMMU_DIRTY_PAGES, new Uint8Array(7))).toBe(-Errno.EFAULT);
    expect(c.ioctl(VFIO_IOMMU_DIRTY_PAGES, dirtyBytes(7, START))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_DIRTY_PAGES, dirtyBytes(8, 8))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_DIRTY_PAGES, dirtyBytes(8, 0))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_DIRTY_PAGES, dirtyBytes(8, START | STOP))).toBe(-Errno.EINVAL);
    expect(c.type1!.dirtyTracking).toBe(false);
    expect(c.ioctl(VFIO_IOMMU_DIRTY_PAGES, dirtyBytes(8, STOP))).toBe(0);
    expect(c.ioctl(VFIO_IOMMU_DIRTY_PAGES, dirtyBytes(8, START))).toBe(0);
    expect(c.type1!.dirtyTracking).toBe(true);
    expect(c.ioctl(VFIO_IOMMU_DIRTY_PAGES, dirtyBytes(8, STOP))).toBe(0);
    expect(c.type1!.dirtyTracking).toBe(false);
  });

  it('GET_BITMAP: argsz, copy, wrap, access_ok, bitmap size, pgsize, alignment, tracking, split, copy fault', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 65 * P)).toBe(0);
    const buf = userBuffer(rig.user, 16);
    const c = rig.container;
    const good = { iova: B, size: 65 * P, pgsize: P, bsize: 16, data: buf.data };
    const call = (argsz: number, r: typeof good, len?: number) => c.ioctl(VFIO_IOMMU_DIRTY_PAGES, dirtyBytes(argsz, GETBM, r, len));
    // tracking is off, but every earlier check still comes first
    expect(call(47, good)).toBe(-Errno.EINVAL);
    expect(call(47, good, 8)).toBe(-Errno.EINVAL); // argsz before the range copy
    expect(call(48, good, 40)).toBe(-Errno.EFAULT);
    expect(call(48, good)).toBe(-Errno.EINVAL); // tracking off
    expect(c.startDirtyTracking()).toBe(0);
    expect(call(48, { ...good, iova: 0xfffffffffffff000n as unknown as number, size: 0x2000 })).toBe(-Errno.EINVAL); // wraps
    expect(call(48, { ...good, data: 2 ** 47 - 8 })).toBe(-Errno.EINVAL); // access_ok
    // worked example: a 65-page range needs 16 bytes; 8, 0 and 2^28+1 are EINVAL
    expect(call(48, { ...good, bsize: 8 })).toBe(-Errno.EINVAL);
    expect(call(48, { ...good, bsize: 0 })).toBe(-Errno.EINVAL);
    expect(call(48, { ...good, bsize: 2 ** 28 + 1 })).toBe(-Errno.EINVAL);
    expect(call(48, { ...good, pgsize: 0x2000 })).toBe(-Errno.EINVAL);
    expect(call(48, { ...good, iova: B + 0x10 })).toBe(-Errno.EINVAL);
    expect(call(48, { ...good, size: 65 * P + 0x10 })).toBe(-Errno.EINVAL);
    expect(call(48, { ...good, size: 64 * P })).toBe(-Errno.EINVAL); // splits the mapping
    expect(call(48, { ...good, iova: B + P, size: 64 * P })).toBe(-Errno.EINVAL);
    expect(call(48, { ...good, data: 0x3000_0000_0000 })).toBe(-Errno.EFAULT); // unmapped user buffer
    expect(bitsOf(buf.view)).toEqual([]);
    expect(call(48, good)).toBe(0);
    expect(bitsOf(buf.view)).toEqual(range(0, 65));
    expect(call(4096, good)).toBe(0); // a larger argsz is fine
  });

  it('a range without mappings: 0 and the buffer untouched', () => {
    const rig = makeRig();
    expect(mapRam(rig, B + 16 * P, P)).toBe(0);
    rig.container.startDirtyTracking();
    const buf = userBuffer(rig.user, 8);
    buf.view.fill(0x3c);
    expect(rig.container.getDirtyBitmap(B, 16 * P, { size: 8, data: buf.data })).toBe(0);
    expect([...buf.view]).toEqual(new Array(8).fill(0x3c));
  });
});

describe('START and STOP', () => {
  it('START refuses a mapping above DIRTY_BITMAP_PAGES_MAX (EINVAL, tracking stays off)', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] }); // emulated: no pinning at MAP time
    expect(rig.container.mapDma({ vaddr: 0x1000, iova: B, size: P })).toBe(0);
    expect(rig.container.mapDma({ vaddr: 0x1000, iova: 2 ** 44, size: 2 ** 43 })).toBe(0); // 2^31 pages
    expect(rig.container.startDirtyTracking()).toBe(-Errno.EINVAL);
    expect(rig.container.type1!.dirtyTracking).toBe(false);
    expect(rig.container.type1!.dirtyBitmapAt(B)).toBeNull();
    expect(getBits(rig, B, P).ret).toBe(-Errno.EINVAL);
    // one page less fits
    expect(rig.container.unmapDma({ iova: 2 ** 44, size: 2 ** 43 }).ret).toBe(0);
    expect(rig.container.mapDma({ vaddr: 0x1000, iova: 2 ** 44, size: 2 ** 43 - P })).toBe(0);
    expect(rig.container.startDirtyTracking()).toBe(0);
    expect(rig.container.type1!.dirtyBitmapAt(2 ** 44)!.nbits).toBe(2 ** 31 - 1);
  });

  it('MAP while tracking allocates a bitmap; a mapping that cannot have one is refused and removed', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    rig.container.startDirtyTracking();
    expect(rig.container.mapDma({ vaddr: 0x1000, iova: 2 ** 44, size: 2 ** 43 })).toBe(-Errno.EINVAL);
    expect(rig.container.type1!.mappings()).toEqual([]);
    expect(rig.container.type1!.dmaAvail).toBe(65535);
    expect(mapRam(rig, B, 3 * P)).toBe(0);
    expect(rig.container.type1!.dirtyBitmapAt(B)!.nbits).toBe(3);
  });

  it('finding 6: START sizes bitmaps from mappings; a huge query touches only the words mappings need', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, P)).toBe(0);
    const vendor = new PinningVendor(rig.groups[0]!);
    rig.container.startDirtyTracking();
    vendor.pin(B);
    const bm = rig.container.type1!.dirtyBitmapAt(B)!;
    expect([bm.nbits, bm.bytes.length]).toEqual([1, 8]);
    // an 8 TiB query whose bitmap claims 256 MiB, of which only one page is real user memory:
    // it succeeds because only the mapping's word is written
    const buf = userBuffer(rig.user, P);
    const before = process.memoryUsage().arrayBuffers;
    expect(rig.container.getDirtyBitmap(B, 2 ** 43, { size: 2 ** 28, data: buf.data })).toBe(0);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 2 ** 20);
    expect(bitsOf(buf.view)).toEqual([0]);
  });

  it('START again keeps the bits; STOP drops them; a new START begins from the pinned pages', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 8 * P)).toBe(0);
    const g = rig.groups[0]!;
    const vendor = new PinningVendor(g);
    vendor.pin(B + 7 * P);
    rig.container.startDirtyTracking();
    g.dmaRw(B + P, new Uint8Array(1), true);
    rig.container.startDirtyTracking();
    expect(getBits(rig, B, 8 * P).bits).toEqual([1, 7]);
    g.dmaRw(B + 2 * P, new Uint8Array(1), true);
    rig.container.stopDirtyTracking();
    rig.container.startDirtyTracking();
    expect(getBits(rig, B, 8 * P).bits).toEqual([7]);
  });
});

describe('GET_BITMAP worked examples (spec section 6)', () => {
  it('emulated device: pin 3, START, pin 5 -> {3,5}; unpin 5; {3,5}; {3}', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 16 * P)).toBe(0);
    const vendor = new PinningVendor(rig.groups[0]!);
    vendor.pin(B + 3 * P);
    expect(rig.container.startDirtyTracking()).toBe(0);
    vendor.pin(B + 5 * P);
    expect(getBits(rig, B, 16 * P)).toMatchObject({ ret: 0, bits: [3, 5] });
    vendor.unpin(B + 5 * P);
    expect(getBits(rig, B, 16 * P).bits).toEqual([3, 5]);
    expect(getBits(rig, B, 16 * P).bits).toEqual([3]);
  });

  it('emulated device: vfio_dma_rw of 2 bytes at B+0x1FFF -> {1,2}; next GET -> {}', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 16 * P)).toBe(0);
    new PinningVendor(rig.groups[0]!);
    rig.container.startDirtyTracking();
    rig.groups[0]!.dmaRw(B + 0x1fff, new Uint8Array([0x11, 0x22]), true);
    expect(getBits(rig, B, 16 * P).bits).toEqual([1, 2]);
    expect(getBits(rig, B, 16 * P).bits).toEqual([]);
    expect([rig.ram.getU8(0x1fff), rig.ram.getU8(0x2000)]).toEqual([0x11, 0x22]);
  });

  it('full scope: every page of every IOMMU-mapped mapping, at the right bit offsets', () => {
    const rig = makeRig();
    expect(mapRam(rig, B + 3 * P, 5 * P)).toBe(0);
    expect(mapRam(rig, B + 70 * P, 3 * P)).toBe(0);
    rig.container.startDirtyTracking();
    const r = getBits(rig, B, 128 * P);
    expect(r.ret).toBe(0);
    expect(r.bits).toEqual([...range(3, 5), 70, 71, 72]);
    expect(getBits(rig, B, 128 * P).bits).toEqual([...range(3, 5), 70, 71, 72]); // on every query
  });

  it('a hole at the start of the range (finding 1) in pinned scope', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B + 65 * P, 4 * P)).toBe(0);
    new PinningVendor(rig.groups[0]!);
    rig.container.startDirtyTracking();
    rig.groups[0]!.dmaRw(B + 66 * P, new Uint8Array(P + 1), true);
    const r = getBits(rig, B, 69 * P);
    expect(r.bits).toEqual([66, 67]);
    expect(readU64(r.bytes, 8)).toBe(0b1100n);
  });

  it('the user buffer is OR-ed into, not overwritten', () => {
    const rig = makeRig();
    expect(mapRam(rig, B + 2 * P, 2 * P)).toBe(0);
    rig.container.startDirtyTracking();
    const buf = userBuffer(rig.user, 8);
    buf.view[0] = 0b1000_0001;
    expect(rig.container.getDirtyBitmap(B, 8 * P, { size: 8, data: buf.data })).toBe(0);
    expect(buf.view[0]).toBe(0b1000_1101);
  });
});

describe('dirty scope (spec section 4)', () => {
  it('emulated groups are pinned-scope from attach; IOMMU-backed ones full-scope until they pin', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }, { iommuBacked: true }] });
    const t = rig.container.type1!;
    expect(t.pinnedScopeOf(rig.groups[0]!)).toBe(true);
    expect(t.pinnedScopeOf(rig.groups[1]!)).toBe(false);
    expect(t.fullScope).toBe(true);
    expect(mapRam(rig, B, 8 * P)).toBe(0);
    rig.container.startDirtyTracking();
    expect(getBits(rig, B, 8 * P).bits).toEqual(range(0, 8));
    // the IOMMU-backed group's driver pins once: the container becomes pinned-scope for good
    const v = new PinningVendor(rig.groups[1]!);
    v.pin(B + 6 * P);
    v.unpin(B + 6 * P);
    expect(t.fullScope).toBe(false);
    expect(getBits(rig, B, 8 * P).bits).toEqual([6]);
    // device DMA is no longer reported (the kernel trusts the pinning driver)
    expect(rig.members[1]![0]!.domain!.port('x').write(B, new Uint8Array(8))).toBe(true);
    expect(getBits(rig, B, 8 * P).bits).toEqual([]);
  });

  it('attaching an IOMMU-backed group makes the container full-scope at once', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    rig.container.startDirtyTracking();
    expect(getBits(rig, B, 4 * P).bits).toEqual([]);
    const g2 = new VfioGroup({ id: 9, fds: rig.fds, iommuBacked: true });
    g2.addMember({ name: 'x', setIommu: () => undefined, openDevice: () => { throw new Error('unused'); } });
    expect(g2.openFd()).toBeGreaterThan(0);
    expect(g2.setContainer(rig.cfd)).toBe(0);
    expect(rig.container.type1!.fullScope).toBe(true);
    expect(getBits(rig, B, 4 * P).bits).toEqual([0, 1, 2, 3]);
  });

  it('detaching a non-pinned group while tracking marks everything dirty once', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }, { iommuBacked: true }] });
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    expect(mapRam(rig, B + 8 * P, 2 * P)).toBe(0);
    const vendor = new PinningVendor(rig.groups[0]!);
    vendor.pin(B + P);
    rig.container.startDirtyTracking();
    expect(getBits(rig, B, 16 * P).bits).toEqual([0, 1, 2, 3, 8, 9]);
    expect(rig.groups[1]!.unsetContainer()).toBe(0);
    expect(rig.members[1]![0]!.domain).toBeNull();
    expect(rig.container.type1!.fullScope).toBe(false);
    expect(rig.container.type1!.mappings().map((m) => m.iommuMapped)).toEqual([false, false]);
    expect(getBits(rig, B, 16 * P).bits).toEqual([0, 1, 2, 3, 8, 9]); // once
    expect(getBits(rig, B, 16 * P).bits).toEqual([1]); // then only what is pinned
  });

  it('detaching a pinned-scope group changes nothing', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }, { iommuBacked: false }] });
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    rig.container.startDirtyTracking();
    expect(rig.groups[1]!.unsetContainer()).toBe(0);
    expect(getBits(rig, B, 4 * P).bits).toEqual([]);
  });
});

describe('vfio_pin_pages / vfio_unpin_pages', () => {
  it('errno order: EINVAL npage/alignment, E2BIG, EINVAL multi-device group, EINVAL without notifier', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }, { iommuBacked: false, members: ['a', 'b'] }] });
    expect(mapRam(rig, B, 1024 * P)).toBe(0);
    const g = rig.groups[0]!;
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as { code: string }).code;
      }
      return 'none';
    };
    expect(err(() => g.pinPages(B, 1, IOMMU_R))).toBe('EINVAL'); // no notifier registered anywhere
    expect(err(() => g.pinPages(B, 513, IOMMU_R))).toBe('E2BIG'); // E2BIG comes before that
    expect(err(() => g.pinPages(B, 0, IOMMU_R))).toBe('EINVAL');
    expect(err(() => rig.groups[1]!.pinPages(B, 1, IOMMU_R))).toBe('EINVAL'); // two devices
    const vendor = new PinningVendor(rig.groups[1]!); // a notifier of another group counts (container-wide list)
    void vendor;
    expect(g.pinPages(B, 512, IOMMU_R)).toHaveLength(512);
    expect(err(() => g.pinPages(B + 1, 1, IOMMU_R))).toBe('EINVAL');
    expect(err(() => g.pinPages(B, 513, IOMMU_R))).toBe('E2BIG');
    expect(err(() => rig.groups[1]!.pinPages(B, 1, IOMMU_R))).toBe('EINVAL');
  });

  it('per-page errors unwind the pages this call pinned; EPERM for missing permission; EFAULT for gone memory', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 3 * P)).toBe(0);
    expect(mapRam(rig, B + 3 * P, P, VFIO_DMA_MAP_FLAG_READ)).toBe(0);
    expect(rig.container.mapDma({ vaddr: 0x7000_0000_0000, iova: B + 8 * P, size: P })).toBe(0); // nothing there
    const vendor = new PinningVendor(rig.groups[0]!);
    vendor.pin(B);
    const pinned = () => rig.container.type1!.mappings().map((m) => m.pinnedPages);
    expect(() => rig.groups[0]!.pinPages(B, 5, IOMMU_R)).toThrow(expect.objectContaining({ code: 'EINVAL' })); // page 4 unmapped
    expect(pinned()).toEqual([1, 0, 0]);
    expect(() => rig.groups[0]!.pinPages(B + 2 * P, 2, IOMMU_R | IOMMU_W)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    expect(() => rig.groups[0]!.pinPages(B + 8 * P, 1, IOMMU_R)).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    expect(pinned()).toEqual([1, 0, 0]);
    // the earlier pin of page 0 got one extra reference during the failed call; it was dropped again
    vendor.unpin(B);
    expect(pinned()).toEqual([0, 0, 0]);
  });

  it('pinned pages are the host memory behind the mapping; pins are counted', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    new PinningVendor(rig.groups[0]!);
    const pages = rig.groups[0]!.pinPages(B + P, 2, IOMMU_R | IOMMU_W);
    expect(pages.map((p) => [p.iova, p.offset])).toEqual([
      [B + P, P],
      [B + 2 * P, 2 * P],
    ]);
    expect(pages[0]!.mem).toBe(rig.ram);
    rig.groups[0]!.pinPages(B + P, 1, IOMMU_R);
    expect(rig.groups[0]!.unpinPages(B + P, 2)).toBe(2);
    expect(rig.container.type1!.mappings()[0]!.pinnedPages).toBe(1);
    expect(rig.groups[0]!.unpinPages(B + P, 1)).toBe(1);
    expect(rig.container.type1!.mappings()[0]!.pinnedPages).toBe(0);
    expect(() => rig.groups[0]!.unpinPages(B + 8 * P, 1)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => rig.groups[0]!.unpinPages(B, 513)).toThrow(expect.objectContaining({ code: 'E2BIG' }));
  });

  it('plain type1 refuses pinning with EACCES; a group outside any container with EINVAL', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }], iommuType: VFIO_TYPE1_IOMMU });
    expect(mapRam(rig, B, P)).toBe(0);
    expect(() => new PinningVendor(rig.groups[0]!).pin(B)).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(rig.groups[0]!.unsetContainer()).toBe(0);
    expect(() => rig.groups[0]!.pinPages(B, 1, IOMMU_R)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});

describe('vfio_dma_rw', () => {
  it('reads and writes across adjacent mappings through the user memory', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, P)).toBe(0);
    expect(mapRam(rig, B + P, P)).toBe(0);
    const g = rig.groups[0]!;
    g.dmaRw(B + P - 2, new Uint8Array([9, 8, 7, 6]), true);
    expect([rig.ram.getU8(P - 2), rig.ram.getU8(P + 1)]).toEqual([9, 6]);
    const back = new Uint8Array(4);
    g.dmaRw(B + P - 2, back, false);
    expect([...back]).toEqual([9, 8, 7, 6]);
  });

  it('EINVAL unmapped/empty, EPERM without READ or without WRITE for writes; earlier chunks stay written', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, P)).toBe(0);
    expect(mapRam(rig, B + P, P, VFIO_DMA_MAP_FLAG_READ)).toBe(0);
    expect(mapRam(rig, B + 2 * P, P, VFIO_DMA_MAP_FLAG_WRITE)).toBe(0);
    const g = rig.groups[0]!;
    rig.container.startDirtyTracking();
    const code = (fn: () => void) => {
      try {
        fn();
        return 'none';
      } catch (e) {
        return (e as { code: string }).code;
      }
    };
    expect(code(() => g.dmaRw(B + 8 * P, new Uint8Array(1), false))).toBe('EINVAL');
    expect(code(() => g.dmaRw(B, new Uint8Array(0), false))).toBe('EINVAL');
    expect(code(() => g.dmaRw(B + 2 * P, new Uint8Array(1), true))).toBe('EPERM'); // write-only mapping: READ is required too
    expect(code(() => g.dmaRw(B + P - 1, new Uint8Array([5, 5]), true))).toBe('EPERM'); // second chunk read-only
    expect(rig.ram.getU8(P - 1)).toBe(5);
    expect(getBits(rig, B, 3 * P).bits).toEqual([0]);
    expect(code(() => g.dmaRw(B + P, new Uint8Array(1), false))).toBe('none');
  });

  it('writes while tracking is off leave no bits behind', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 2 * P)).toBe(0);
    rig.groups[0]!.dmaRw(B, new Uint8Array(1), true);
    rig.container.startDirtyTracking();
    expect(getBits(rig, B, 2 * P).bits).toEqual([]);
  });

  it('with an IOMMU-backed group mapping the pages, dma_rw still goes through the user mapping', () => {
    const rig = makeRig({ groups: [{ iommuBacked: true }] });
    expect(mapRam(rig, B, 2 * P)).toBe(0);
    rig.groups[0]!.dmaRw(B + 8, new Uint8Array([0x42]), true);
    const dst = new Uint8Array(1);
    expect(rig.members[0]![0]!.domain!.port('d').read(B + 8, dst)).toBe(true);
    expect(dst[0]).toBe(0x42);
  });
});

describe('the IOMMU goes away with the last group', () => {
  it('unsetting the last group tears down type1: mappings gone, type1 ioctls EINVAL, SET_IOMMU needed again', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    rig.container.startDirtyTracking();
    const dom = rig.container.type1!.domain!;
    expect(rig.groups[0]!.unsetContainer()).toBe(0);
    expect(rig.container.type1).toBeNull();
    expect(dom.mappedBytes).toBe(0);
    expect(rig.members[0]![0]!.domain).toBeNull();
    expect(rig.container.startDirtyTracking()).toBe(-Errno.EINVAL);
    expect(rig.groups[0]!.setContainer(rig.cfd)).toBe(0);
    expect(rig.container.setIommu(3)).toBe(0);
    expect(rig.container.type1!.mappings()).toEqual([]);
    expect(rig.container.type1!.dirtyTracking).toBe(false);
  });

  it('attaching the first IOMMU-backed group replays existing mappings; a vanished vaddr fails the attach', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(mapRam(rig, B, 2 * P)).toBe(0);
    const seen: unknown[] = [];
    const g2 = new VfioGroup({ id: 5, fds: rig.fds, iommuBacked: true });
    g2.addMember({ name: 'm', setIommu: (d) => seen.push(d), openDevice: () => { throw new Error('unused'); } });
    g2.openFd();
    expect(g2.setContainer(rig.cfd)).toBe(0);
    expect(rig.container.type1!.mappings()[0]!.iommuMapped).toBe(true);
    expect(seen).toEqual([rig.container.type1!.domain]);
    expect(g2.unsetContainer()).toBe(0);
    expect(rig.container.mapDma({ vaddr: 0x7000_0000_0000, iova: B + 4 * P, size: P })).toBe(0);
    expect(g2.setContainer(rig.cfd)).toBe(-Errno.EFAULT);
    expect(rig.container.type1!.domain).toBeNull();
    expect(rig.container.type1!.mappings().map((m) => m.iommuMapped)).toEqual([false, false]);
    expect(g2.container).toBeNull();
  });

  it('attaching an IOMMU-backed group whose reserved region holds a mapping is EINVAL', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    expect(rig.container.mapDma({ vaddr: rig.ramVaddr, iova: 0x8000000, size: P })).toBe(0);
    const g2 = new VfioGroup({ id: 5, fds: rig.fds, iommuBacked: true });
    g2.addMember({ name: 'm', setIommu: () => undefined, openDevice: () => { throw new Error('unused'); } });
    g2.openFd();
    expect(g2.setContainer(rig.cfd)).toBe(-Errno.EINVAL);
    const g3 = new VfioGroup({ id: 6, fds: rig.fds, iommuBacked: true, reservedRegions: [] });
    g3.addMember({ name: 'n', setIommu: () => undefined, openDevice: () => { throw new Error('unused'); } });
    g3.openFd();
    expect(g3.setContainer(rig.cfd)).toBe(0);
  });
});
