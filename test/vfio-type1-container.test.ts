/**
 * Container ioctls and MAP_DMA (spec vfio-type1-dirty.md section 1, Linux vfio_container.c
 * and vfio_iommu_type1.c order of checks). All calls go through ioctl() with struct bytes
 * built by the uapi codecs.
 */
import { describe, expect, it } from 'vitest';
import { IOMMU_READ, IOMMU_WRITE } from '../src/iommu/domain.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { PROT_READ } from '../src/mem/user-space.js';
import { Errno } from '../src/uapi/errno.js';
import { readU16, readU32, readU64 } from '../src/uapi/codec.js';
import { vfio_iommu_type1_dma_map, vfio_iommu_type1_info } from '../src/uapi/structs.js';
import {
  VFIO_API_VERSION,
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_VADDR,
  VFIO_EEH,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_STATUS,
  VFIO_IOMMU_DISABLE,
  VFIO_IOMMU_ENABLE,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_NOIOMMU_IOMMU,
  VFIO_SET_IOMMU,
  VFIO_SPAPR_TCE_IOMMU,
  VFIO_SPAPR_TCE_v2_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1_NESTING_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  VFIO_UPDATE_VADDR,
} from '../src/uapi/vfio.js';
import { UserAddressSpace } from '../src/mem/user-space.js';
import { VfioContainer } from '../src/vfio/container.js';
import { FdTable } from '../src/vfio/fd.js';
import { B, P, PinningVendor, makeRig, mapRam } from './vfio-type1-helpers.js';

const RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

function mapBytes(f: { argsz?: number; flags?: number; vaddr?: bigint | number; iova?: bigint | number; size?: bigint | number }): Uint8Array {
  return vfio_iommu_type1_dma_map.encode({ argsz: 32, flags: RW, ...f });
}

describe('container basics', () => {
  it('GET_API_VERSION returns VFIO_API_VERSION (0) with or without an IOMMU', () => {
    const c = new VfioContainer({ user: new UserAddressSpace(), fds: new FdTable() });
    expect(VFIO_API_VERSION).toBe(0);
    expect(c.ioctl(VFIO_GET_API_VERSION)).toBe(0);
    const rig = makeRig();
    expect(rig.container.ioctl(VFIO_GET_API_VERSION)).toBe(0);
  });

  it('CHECK_EXTENSION before SET_IOMMU: type1, type1v2 and UNMAP_ALL only', () => {
    const c = new VfioContainer({ user: new UserAddressSpace(), fds: new FdTable() });
    const expected: Array<[number, number]> = [
      [VFIO_TYPE1_IOMMU, 1],
      [VFIO_TYPE1v2_IOMMU, 1],
      [VFIO_UNMAP_ALL, 1],
      [VFIO_UPDATE_VADDR, 0], // Linux 6.2+: only once the IOMMU is set
      [VFIO_DMA_CC_IOMMU, 0],
      [VFIO_TYPE1_NESTING_IOMMU, 0],
      [VFIO_NOIOMMU_IOMMU, 0],
      [VFIO_SPAPR_TCE_IOMMU, 0],
      [VFIO_SPAPR_TCE_v2_IOMMU, 0],
      [VFIO_EEH, 0],
      [0, 0],
      [77, 0],
    ];
    for (const [ext, want] of expected) expect(c.ioctl(VFIO_CHECK_EXTENSION, ext)).toBe(want);
  });

  it('CHECK_EXTENSION(UPDATE_VADDR) after SET_IOMMU is 1 without emulated groups, 0 with one', () => {
    const a = makeRig({ groups: [{ iommuBacked: true }] });
    expect(a.container.checkExtension(VFIO_UPDATE_VADDR)).toBe(1);
    expect(a.container.checkExtension(VFIO_TYPE1v2_IOMMU)).toBe(1);
    const b = makeRig({ groups: [{ iommuBacked: true }, { iommuBacked: false }] });
    expect(b.container.checkExtension(VFIO_UPDATE_VADDR)).toBe(0);
  });

  it('SET_IOMMU without a group is EINVAL; unsupported models are ENODEV; UNMAP_ALL is EINVAL', () => {
    const c = new VfioContainer({ user: new UserAddressSpace(), fds: new FdTable() });
    expect(c.ioctl(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)).toBe(-Errno.EINVAL);
    const rig = makeRig({ iommuType: null });
    // with a group: models no driver reports -> ENODEV; a reported extension type1 cannot open -> EINVAL
    expect(rig.container.ioctl(VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU)).toBe(-Errno.ENODEV);
    expect(rig.container.ioctl(VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU)).toBe(-Errno.ENODEV);
    expect(rig.container.ioctl(VFIO_SET_IOMMU, VFIO_DMA_CC_IOMMU)).toBe(-Errno.ENODEV);
    expect(rig.container.ioctl(VFIO_SET_IOMMU, VFIO_UNMAP_ALL)).toBe(-Errno.EINVAL);
    expect(rig.container.type1).toBeNull();
    expect(rig.container.ioctl(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)).toBe(0);
    // a second SET_IOMMU is EINVAL even for the same model
    expect(rig.container.ioctl(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)).toBe(-Errno.EINVAL);
    expect(rig.container.type1!.v2).toBe(true);
  });

  it('type1 ioctls before SET_IOMMU are EINVAL (vfio_fops_unl_ioctl default); unknown and group ioctls after it ENOTTY', () => {
    const rig = makeRig({ iommuType: null });
    const c = rig.container;
    expect(c.ioctl(VFIO_IOMMU_MAP_DMA, mapBytes({ vaddr: rig.ramVaddr, iova: B, size: P }))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_GET_INFO, new Uint8Array(64))).toBe(-Errno.EINVAL);
    expect(c.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
    expect(c.ioctl(VFIO_GROUP_GET_STATUS, new Uint8Array(8))).toBe(-Errno.ENOTTY);
    expect(c.ioctl(VFIO_IOMMU_ENABLE)).toBe(-Errno.ENOTTY); // SPAPR-only ioctls
    expect(c.ioctl(VFIO_IOMMU_DISABLE)).toBe(-Errno.ENOTTY);
    expect(c.ioctl(0x3b99)).toBe(-Errno.ENOTTY);
  });

  it('a closed container fd is EBADF', () => {
    const rig = makeRig();
    expect(rig.fds.close(rig.cfd)).toBe(0);
    expect(rig.container.ioctl(VFIO_GET_API_VERSION)).toBe(-Errno.EBADF);
  });
});

describe('VFIO_IOMMU_GET_INFO (spec section 6 worked example)', () => {
  it('argsz 15 is EINVAL; argsz 16 returns PGSIZES|CAPS with argsz raised to the full size', () => {
    const rig = makeRig(); // one IOMMU-backed group: the IOVA list has two ranges around the MSI window
    const small = new Uint8Array(24);
    vfio_iommu_type1_info.write(small, 'argsz', 15);
    expect(rig.container.ioctl(VFIO_IOMMU_GET_INFO, small)).toBe(-Errno.EINVAL);
    const b16 = new Uint8Array(16);
    vfio_iommu_type1_info.write(b16, 'argsz', 16);
    expect(rig.container.ioctl(VFIO_IOMMU_GET_INFO, b16)).toBe(0);
    expect(readU32(b16, 4)).toBe(VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
    // 24 (info) + 32 (migration) + 16 (dma_avail, 12 rounded to 8) + 16 + 2*16 (two iova ranges)
    expect(readU32(b16, 0)).toBe(120);
    expect(readU64(b16, 8)).toBe(0x40201000n); // SMMUv3 4K granule: 4K | 2M | 1G
  });

  it('with enough argsz the chain is MIGRATION v1, DMA_AVAIL, IOVA_RANGE with the documented values', () => {
    const rig = makeRig({ dmaEntryLimit: 100 });
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    const info = rig.container.getIommuInfo(120);
    expect(info.ret).toBe(0);
    expect(info.argsz).toBe(120);
    expect(info.capOffset).toBe(24);
    expect(info.caps.map((c) => c.id)).toEqual([
      VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
      VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
      VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
    ]);
    const b = info.bytes;
    // migration cap at 24: id 2, version 1, flags 0, pgsize_bitmap 0x1000, max 0x10000000
    expect(readU16(b, 24)).toBe(2);
    expect(readU16(b, 26)).toBe(1);
    expect(readU32(b, 28)).toBe(56);
    expect(readU32(b, 32)).toBe(0);
    expect(readU64(b, 40)).toBe(0x1000n);
    expect(readU64(b, 48)).toBe(0x10000000n);
    // dma_avail at 56: 100 - 1 mapping
    expect(readU16(b, 56)).toBe(3);
    expect(readU32(b, 60)).toBe(72);
    expect(readU32(b, 64)).toBe(99);
    // iova ranges at 72: [0, 0x7ffffff], [0x8100000, 2^48-1]
    expect(readU16(b, 72)).toBe(1);
    expect(readU32(b, 76)).toBe(0);
    expect(readU32(b, 80)).toBe(2);
    expect([readU64(b, 88), readU64(b, 96), readU64(b, 104), readU64(b, 112)]).toEqual([
      0n, 0x7ffffffn, 0x8100000n, 0xffffffffffffn,
    ]);
  });

  it('argsz 20 copies cap_offset 0 back; a buffer shorter than 16 bytes is EFAULT', () => {
    const rig = makeRig();
    const b = new Uint8Array(24).fill(0xee);
    vfio_iommu_type1_info.write(b, 'argsz', 20);
    expect(rig.container.ioctl(VFIO_IOMMU_GET_INFO, b)).toBe(0);
    expect(readU32(b, 16)).toBe(0);
    expect(readU32(b, 20)).toBe(0xeeeeeeee); // beyond argsz: untouched
    expect(rig.container.ioctl(VFIO_IOMMU_GET_INFO, new Uint8Array(12))).toBe(-Errno.EFAULT);
  });

  it('an emulated-only container has no IOVA range capability and reports PAGE_MASK sizes', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }] });
    const info = rig.container.getIommuInfo();
    expect(info.ret).toBe(0);
    expect(info.iovaPgsizes).toBe(0xfffffffffffff000n);
    expect(info.caps.map((c) => c.id)).toEqual([VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL]);
    expect(info.argsz).toBe(256);
  });
});

describe('VFIO_IOMMU_MAP_DMA checks in kernel order', () => {
  it('struct copy, argsz and flags', () => {
    const rig = makeRig();
    const c = rig.container;
    expect(c.ioctl(VFIO_IOMMU_MAP_DMA, new Uint8Array(31))).toBe(-Errno.EFAULT);
    expect(c.ioctl(VFIO_IOMMU_MAP_DMA)).toBe(-Errno.EFAULT);
    expect(c.ioctl(VFIO_IOMMU_MAP_DMA, mapBytes({ argsz: 31, vaddr: rig.ramVaddr, iova: B, size: P }))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_MAP_DMA, mapBytes({ flags: RW | 8, vaddr: rig.ramVaddr, iova: B, size: P }))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_MAP_DMA, mapBytes({ flags: 0, vaddr: rig.ramVaddr, iova: B, size: P }))).toBe(-Errno.EINVAL);
    expect(c.ioctl(VFIO_IOMMU_MAP_DMA, mapBytes({ flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_VADDR, vaddr: rig.ramVaddr, iova: B, size: P }))).toBe(-Errno.EINVAL);
    expect(c.type1!.mappings()).toEqual([]);
  });

  it('zero, unaligned and wrapping ranges are EINVAL', () => {
    const rig = makeRig();
    const v = rig.ramVaddr;
    expect(rig.container.mapDma({ vaddr: v, iova: B, size: 0 })).toBe(-Errno.EINVAL);
    expect(rig.container.mapDma({ vaddr: v, iova: B, size: 0x800 })).toBe(-Errno.EINVAL);
    expect(rig.container.mapDma({ vaddr: v, iova: B + 0x10, size: P })).toBe(-Errno.EINVAL);
    expect(rig.container.mapDma({ vaddr: v + 8, iova: B, size: P })).toBe(-Errno.EINVAL);
    expect(rig.container.mapDma({ vaddr: v, iova: 0xfffffffffffff000n, size: 0x2000 })).toBe(-Errno.EINVAL);
    expect(rig.container.mapDma({ vaddr: 0xfffffffffffff000n, iova: B, size: 0x2000 })).toBe(-Errno.EINVAL);
    expect(rig.container.type1!.mappings()).toEqual([]);
  });

  it('overlaps are EEXIST, but an unaligned overlapping request is EINVAL first', () => {
    const rig = makeRig();
    expect(mapRam(rig, B + 0x2000, 0x2000)).toBe(0);
    expect(mapRam(rig, B + 0x2000, 0x2000)).toBe(-Errno.EEXIST);
    expect(mapRam(rig, B + 0x1000, 0x2000)).toBe(-Errno.EEXIST);
    expect(mapRam(rig, B + 0x3000, 0x2000)).toBe(-Errno.EEXIST);
    expect(mapRam(rig, B, 0x8000)).toBe(-Errno.EEXIST);
    expect(mapRam(rig, B + 0x1000, 0x1800)).toBe(-Errno.EINVAL);
    expect(mapRam(rig, B + 0x1000, 0x1000)).toBe(0);
    expect(mapRam(rig, B + 0x4000, 0x1000)).toBe(0);
    expect(rig.container.type1!.mappings().map((m) => [m.iova, m.size])).toEqual([
      [B + 0x1000, 0x1000],
      [B + 0x2000, 0x2000],
      [B + 0x4000, 0x1000],
    ]);
  });

  it('dma_entry_limit gives ENOSPC, checked before the IOVA range; unmapping frees entries', () => {
    const rig = makeRig({ dmaEntryLimit: 2 });
    expect(mapRam(rig, B, P)).toBe(0);
    expect(mapRam(rig, B + P, P)).toBe(0);
    expect(mapRam(rig, B + 2 * P, P)).toBe(-Errno.ENOSPC);
    // in the MSI window and out of entries: ENOSPC comes first
    expect(rig.container.mapDma({ vaddr: rig.ramVaddr, iova: 0x8000000, size: P })).toBe(-Errno.ENOSPC);
    expect(rig.container.unmapDma({ iova: B, size: P }).ret).toBe(0);
    expect(rig.container.type1!.dmaAvail).toBe(1);
    expect(mapRam(rig, B + 2 * P, P)).toBe(0);
  });

  it('IOVA outside the valid ranges (MSI window, beyond the 48-bit aperture) is EINVAL', () => {
    const rig = makeRig();
    const v = rig.ramVaddr;
    expect(rig.container.mapDma({ vaddr: v, iova: 0x8000000, size: P })).toBe(-Errno.EINVAL);
    expect(rig.container.mapDma({ vaddr: v, iova: 0x7fff000, size: 0x2000 })).toBe(-Errno.EINVAL); // crosses into it
    expect(rig.container.mapDma({ vaddr: v, iova: 0x80ff000, size: P })).toBe(-Errno.EINVAL);
    expect(rig.container.mapDma({ vaddr: v, iova: 0x8100000, size: P })).toBe(0);
    expect(rig.container.mapDma({ vaddr: v, iova: 2 ** 48, size: P })).toBe(-Errno.EINVAL);
    expect(rig.container.mapDma({ vaddr: v, iova: 2 ** 48 - P, size: 2 * P })).toBe(-Errno.EINVAL);
    expect(rig.container.mapDma({ vaddr: v + P, iova: 2 ** 48 - P, size: P })).toBe(0);
  });

  it('user memory must be mapped with the access the mapping needs (EFAULT), only when an IOMMU needs the pages', () => {
    const rig = makeRig();
    expect(rig.container.mapDma({ vaddr: 0x1000_0000_0000, iova: B, size: P })).toBe(-Errno.EFAULT);
    // partly mapped: last page past the end of RAM
    const ramEnd = rig.ramVaddr + rig.ram.size;
    expect(rig.container.mapDma({ vaddr: ramEnd - P, iova: B, size: 2 * P })).toBe(-Errno.EFAULT);
    const ro = rig.user.alloc(2 * P, { prot: PROT_READ });
    expect(rig.container.mapDma({ vaddr: ro, iova: B, size: 2 * P, flags: RW })).toBe(-Errno.EFAULT);
    expect(rig.container.mapDma({ vaddr: ro, iova: B, size: 2 * P, flags: VFIO_DMA_MAP_FLAG_READ })).toBe(0);
    expect(rig.container.type1!.dmaAvail).toBe(65534);
    // an emulated-only container does not touch the pages at MAP time
    const emu = makeRig({ groups: [{ iommuBacked: false }] });
    expect(emu.container.mapDma({ vaddr: 0x1000_0000_0000, iova: B, size: P })).toBe(0);
  });

  it('a mapping may span two adjacent user segments; device DMA lands in both', () => {
    const rig = makeRig();
    const m1 = new SparseMemory(P);
    const m2 = new SparseMemory(P);
    const va = 0x2000_0000_0000;
    rig.user.mapMemory(m1, 0, P, { vaddr: va });
    rig.user.mapMemory(m2, 0, P, { vaddr: va + P });
    expect(rig.container.mapDma({ vaddr: va, iova: B, size: 2 * P })).toBe(0);
    const dom = rig.members[0]![0]!.domain!;
    expect(dom).toBe(rig.container.type1!.domain);
    expect(dom.port('dev1').write(B + P - 2, new Uint8Array([1, 2, 3, 4]))).toBe(true);
    expect([m1.getU8(P - 2), m1.getU8(P - 1), m2.getU8(0), m2.getU8(1)]).toEqual([1, 2, 3, 4]);
  });

  it('device DMA reaches the user memory behind the mapping with its permission', () => {
    const rig = makeRig();
    expect(mapRam(rig, B, 4 * P)).toBe(0);
    expect(mapRam(rig, B + 4 * P, P, VFIO_DMA_MAP_FLAG_READ)).toBe(0);
    const port = rig.members[0]![0]!.domain!.port('dev1');
    expect(port.write(B + 0x1234, new Uint8Array([0xab, 0xcd]))).toBe(true);
    expect(rig.ram.getU16(0x1234)).toBe(0xcdab);
    expect(port.write(B + 4 * P, new Uint8Array([1]))).toBe(false); // read-only mapping
    const dst = new Uint8Array(2);
    expect(port.read(B + 0x1234, dst)).toBe(true);
    expect([...dst]).toEqual([0xab, 0xcd]);
    const perms = rig.container.type1!.domain!.mappings().map((m) => m.perm);
    expect(perms).toEqual([IOMMU_READ | IOMMU_WRITE, IOMMU_READ]);
  });

  it('a second IOMMU-backed group joins the same domain; an emulated group gets none', () => {
    const rig = makeRig({ groups: [{ iommuBacked: true }, { iommuBacked: true }, { iommuBacked: false }] });
    const [a, b, e] = rig.members.map((m) => m[0]!);
    expect(a!.domain).not.toBeNull();
    expect(b!.domain).toBe(a!.domain);
    expect(e!.domainLog).toEqual([]);
  });
});

describe('MAP_DMA / UNMAP_DMA with FLAG_VADDR (live update)', () => {
  it('invalidate then supply a new vaddr; mismatches are ENOENT/EINVAL; pins are EBUSY meanwhile', () => {
    const rig = makeRig({ groups: [{ iommuBacked: true }, { iommuBacked: false }] });
    expect(mapRam(rig, B, 2 * P)).toBe(0);
    expect(mapRam(rig, B + 2 * P, 2 * P)).toBe(0);
    const vendor = new PinningVendor(rig.groups[1]!);
    const inv = rig.container.unmapDma({ iova: B, size: 2 * P, flags: VFIO_DMA_UNMAP_FLAG_VADDR });
    expect(inv).toEqual({ ret: 0, size: BigInt(2 * P) });
    expect(rig.container.type1!.mappings()[0]!.vaddrInvalid).toBe(true);
    expect(() => vendor.pin(B + 2 * P)).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    // invalidating an already invalid one fails and undoes the whole call
    const again = rig.container.unmapDma({ iova: B, size: 4 * P, flags: VFIO_DMA_UNMAP_FLAG_VADDR });
    expect(again.ret).toBe(-Errno.EINVAL);
    expect(rig.container.type1!.mappings().map((m) => m.vaddrInvalid)).toEqual([true, false]);
    const upd = (iova: number, size: number, vaddr: number) =>
      rig.container.mapDma({ vaddr, iova, size, flags: VFIO_DMA_MAP_FLAG_VADDR });
    expect(upd(B + 8 * P, P, rig.ramVaddr)).toBe(-Errno.ENOENT);
    expect(upd(B, P, rig.ramVaddr)).toBe(-Errno.EINVAL); // not the whole mapping
    expect(upd(B + 2 * P, 2 * P, rig.ramVaddr)).toBe(-Errno.EINVAL); // not invalidated
    expect(upd(B, 2 * P, rig.ramVaddr + 0x10000)).toBe(0);
    const m = rig.container.type1!.mappings()[0]!;
    expect([m.vaddr, m.vaddrInvalid]).toEqual([rig.ramVaddr + 0x10000, false]);
    vendor.pin(B);
    expect(rig.container.type1!.mappings()[0]!.pinnedPages).toBe(1);
  });
});

describe('ioctl argument forms', () => {
  it('MAP_DMA with a raw buffer works like the typed helper', () => {
    const rig = makeRig();
    const raw = mapBytes({ vaddr: rig.ramVaddr, iova: B, size: 2 * P });
    expect(rig.container.ioctl(VFIO_IOMMU_MAP_DMA, raw)).toBe(0);
    expect(rig.container.ioctl(VFIO_IOMMU_UNMAP_DMA, new Uint8Array(20))).toBe(-Errno.EFAULT);
    expect(rig.container.type1!.mappings()).toHaveLength(1);
  });
});
