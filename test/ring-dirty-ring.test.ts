import { describe, expect, it } from 'vitest';
import {
  DirtyRingSet,
  DirtyWrite,
  KVM_DIRTY_GFN_F_DIRTY,
  KVM_DIRTY_GFN_F_RESET,
  KVM_EXIT_DIRTY_RING_FULL,
  ringUsed,
} from '../src/mem/dirty-ring.js';
import { Errno, KernelError } from '../src/uapi/errno.js';

/** A VM with a 256-entry ring (4096 bytes), 64 reserved, WITH_BITMAP and slot 0 of `npages`. */
function vm(npages = 1024, withBitmap = true): DirtyRingSet {
  const set = new DirtyRingSet();
  expect(set.enableRing(4096)).toBe(0);
  if (withBitmap) expect(set.enableWithBitmap()).toBe(0);
  expect(set.addSlot(0, 0x1000, npages)).toBe(0);
  return set;
}

function collect(ring: { harvest(v: (s: number, o: number) => void): number }): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  ring.harvest((s, o) => out.push([s, o]));
  return out;
}

describe('spec §2 ring enable rules', () => {
  it('size must be a power of two (EINVAL)', () => {
    const s = new DirtyRingSet();
    expect(s.enableRing(0)).toBe(-Errno.EINVAL);
    expect(s.enableRing(4096 + 16)).toBe(-Errno.EINVAL);
    expect(s.enableRing(12288)).toBe(-Errno.EINVAL);
    expect(s.enableRing(4096.5)).toBe(-Errno.EINVAL);
    expect(s.enableRing(-4096)).toBe(-Errno.EINVAL);
    expect(s.ringSizeBytes).toBe(0);
  });

  it('size must be >= max(reserved*16, PAGE_SIZE) (EINVAL)', () => {
    const s = new DirtyRingSet();
    expect(s.enableRing(2048)).toBe(-Errno.EINVAL); // below a page even though 2048 >= 64*16
    const big = new DirtyRingSet({ reserved: 512 }); // 512*16 = 8192 > page size
    expect(big.enableRing(4096)).toBe(-Errno.EINVAL);
    expect(big.enableRing(16384)).toBe(0);
    expect(big.createVcpu().softLimit).toBe(1024 - 512);
  });

  it('size must be <= 65536 entries * 16 bytes (E2BIG)', () => {
    const s = new DirtyRingSet();
    expect(s.enableRing(2 * 1024 * 1024)).toBe(-Errno.E2BIG);
    expect(s.enableRing(2 ** 40)).toBe(-Errno.E2BIG);
    expect(s.ringSizeBytes).toBe(0);
    expect(s.enableRing(1024 * 1024)).toBe(0);
    expect(s.ringEntries).toBe(65536);
  });

  it('allowed once, and only before any vCPU exists (EINVAL)', () => {
    const s = new DirtyRingSet();
    expect(s.enableRing(4096)).toBe(0);
    expect(s.enableRing(8192)).toBe(-Errno.EINVAL);
    expect(s.ringSizeBytes).toBe(4096);
    const t = new DirtyRingSet();
    t.createVcpu();
    expect(t.enableRing(4096)).toBe(-Errno.EINVAL);
    expect(t.ringSizeBytes).toBe(0);
  });

  it('reserved below 64 is rejected', () => {
    expect(() => new DirtyRingSet({ reserved: 63 })).toThrow(KernelError);
    expect(new DirtyRingSet({ reserved: 100 }).reserved).toBe(100);
  });

  it('WITH_BITMAP needs the ring first and no memory slot (EINVAL)', () => {
    const s = new DirtyRingSet();
    expect(s.enableWithBitmap()).toBe(-Errno.EINVAL);
    expect(s.enableRing(4096)).toBe(0);
    expect(s.addSlot(0, 0, 16)).toBe(0);
    expect(s.enableWithBitmap()).toBe(-Errno.EINVAL);
    expect(s.withBitmap).toBe(false);
    expect(s.deleteSlot(0)).toBe(0);
    expect(s.enableWithBitmap()).toBe(0);
    expect(s.withBitmap).toBe(true);
  });

  it('GET_DIRTY_LOG with the ring on and WITH_BITMAP off -> ENXIO', () => {
    const s = vm(64, false);
    const buf = new Uint8Array(8);
    expect(s.getDirtyLog(0, buf)).toBe(-Errno.ENXIO);
    expect(() => s.takeDirtyLog(0)).toThrow(/ENXIO/);
    // the same VM with WITH_BITMAP answers
    expect(vm(64, true).getDirtyLog(0, buf)).toBe(0);
  });
});

describe('spec §2 worked examples', () => {
  it('256-entry ring, 64 reserved: pushes 1..191 run on, push 192 -> DIRTY_RING_FULL', () => {
    const s = vm();
    const v = s.createVcpu();
    expect(v.size).toBe(256);
    expect(v.softLimit).toBe(192);
    for (let i = 1; i <= 191; i++) {
      expect(v.markPageDirty(0, i)).toBe(DirtyWrite.OK);
      expect(v.run()).toBe(0);
    }
    expect(v.markPageDirty(0, 192)).toBe(DirtyWrite.EXIT_FULL);
    expect(v.used).toBe(192);
    expect(v.run()).toBe(KVM_EXIT_DIRTY_RING_FULL);
    // refused while full: nothing pushed, even for a new page
    expect(v.markPageDirty(0, 500)).toBe(DirtyWrite.REFUSED_FULL);
    expect(v.dirtyIndex).toBe(192);
    expect(v.pushes).toBe(192);
    // harvest + reset brings used below the limit and the vCPU runs again
    expect(v.harvest()).toBe(192);
    expect(v.run()).toBe(KVM_EXIT_DIRTY_RING_FULL); // harvest alone is not enough
    expect(s.resetAll()).toBe(192);
    expect(v.used).toBe(0);
    expect(v.run()).toBe(0);
    expect(v.markPageDirty(0, 500)).toBe(DirtyWrite.OK);
  });

  it('entries 0-2 dirty, consumer flags 0 and 2 harvested -> reset clears 1, reset_index stops at 1', () => {
    const s = vm();
    const v = s.createVcpu();
    v.markPageDirty(0, 10);
    v.markPageDirty(0, 11);
    v.markPageDirty(0, 12);
    const g = v.gfns;
    g[0] = g[0]! | KVM_DIRTY_GFN_F_RESET; // the consumer writes flags through the mapping
    g[8] = g[8]! | KVM_DIRTY_GFN_F_RESET;
    expect(v.reset()).toBe(1);
    expect(v.resetIndex).toBe(1);
    expect(v.used).toBe(2);
    expect(Array.from(g.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    expect(g[4]).toBe(KVM_DIRTY_GFN_F_DIRTY);
    expect(g[8]).toBe(KVM_DIRTY_GFN_F_DIRTY | KVM_DIRTY_GFN_F_RESET);
  });

  it('dirty_index 2, reset_index 0xfffffffe -> used 4 (u32 wrap)', () => {
    expect(ringUsed(2, 0xfffffffe)).toBe(4);
    const s = vm();
    const v = s.createVcpu({ startIndex: 0xfffffffe });
    for (let i = 0; i < 4; i++) expect(v.markPageDirty(0, 100 + i)).toBe(DirtyWrite.OK);
    expect(v.dirtyIndex).toBe(2);
    expect(v.resetIndex).toBe(0xfffffffe);
    expect(v.used).toBe(4);
    // slots idx & (size-1): 254, 255, 0, 1
    expect(v.gfns[254 * 4 + 2]).toBe(100);
    expect(v.gfns[255 * 4 + 2]).toBe(101);
    expect(v.gfns[0 * 4 + 2]).toBe(102);
    expect(v.gfns[1 * 4 + 2]).toBe(103);
    expect(collect(v)).toEqual([[0, 100], [0, 101], [0, 102], [0, 103]]);
    expect(s.resetAll()).toBe(4);
    expect(v.resetIndex).toBe(2);
    expect(v.used).toBe(0);
  });

  it('offsets 5,6,7,70 in one slot -> reprotect (5, 0b111) and (70, 0b1)', () => {
    const s = vm();
    const v = s.createVcpu();
    for (const o of [5, 6, 7, 70]) v.markPageDirty(0, o);
    v.harvest();
    const groups: Array<[number, number, bigint, boolean]> = [];
    expect(s.resetAll((slot, off, mask, ok) => groups.push([slot, off, mask, ok]))).toBe(4);
    expect(groups).toEqual([
      [0, 5, 0b111n, true],
      [0, 70, 0b1n, true],
    ]);
  });
});

describe('spec §2 reset merging and invalid entries', () => {
  it('a page just below the group slides the window down', () => {
    const s = vm();
    const v = s.createVcpu();
    for (const o of [10, 8, 73, 9]) v.markPageDirty(0, o);
    v.harvest();
    const groups: Array<[number, bigint]> = [];
    s.resetAll((_s, off, mask) => groups.push([off, mask]));
    // 10; 8 -> (8, 0b101); 73 - 8 = 65 starts a new group; 9 is below 73 but 73-9 = 64 is too far
    expect(groups).toEqual([
      [8, 0b101n],
      [73, 1n],
      [9, 1n],
    ]);
  });

  it('a group spans exactly 64 pages: delta 63 merges, delta 64 starts a new group', () => {
    const s = vm();
    const v = s.createVcpu();
    for (const o of [100, 163, 164]) v.markPageDirty(0, o);
    v.harvest();
    const groups: Array<[number, bigint]> = [];
    s.resetAll((_s, off, mask) => groups.push([off, mask]));
    expect(groups).toEqual([
      [100, (1n << 63n) | 1n],
      [164, 1n],
    ]);
    // every page is protected again: each new write pushes
    for (const o of [100, 163, 164]) v.markPageDirty(0, o);
    expect(v.used).toBe(3);
  });

  it('the last page of a slot is re-protected (fls = highest set bit index)', () => {
    const s = vm(64);
    const v = s.createVcpu();
    v.markPageDirty(0, 60);
    v.markPageDirty(0, 63);
    v.harvest();
    const groups: Array<[number, bigint, boolean]> = [];
    s.resetAll((_s, off, mask, ok) => groups.push([off, mask, ok]));
    expect(groups).toEqual([[60, 0b1001n, true]]);
    expect(v.markPageDirty(0, 63)).toBe(DirtyWrite.OK);
    expect(v.pushes).toBe(3); // protected again, so the write pushed
  });

  it('bad slot or offset+fls(mask) >= npages: ignored, still cleared and counted', () => {
    const s = vm(64);
    const v = s.createVcpu();
    for (const o of [1, 2, 3, 4]) v.markPageDirty(0, o);
    const g = v.gfns;
    g[0 * 4 + 1] = 1 << 16; // as_id 1 does not exist
    g[1 * 4 + 1] = 7; // no slot 7
    g[3 * 4 + 2] = 64; // page 4's entry now says 64: beyond the slot, merged with page 3's entry
    v.harvest();
    const groups: Array<[number, number, bigint, boolean]> = [];
    expect(s.resetAll((slot, off, mask, ok) => groups.push([slot, off, mask, ok]))).toBe(4);
    expect(groups).toEqual([
      [1 << 16, 1, 1n, false],
      [7, 2, 1n, false],
      [0, 3, (1n << 61n) | 1n, false],
    ]);
    expect(v.used).toBe(0);
    expect(Array.from(g.subarray(0, 16)).every((w) => w === 0)).toBe(true);
    // the ignored group left pages 3 and 4 writable: KVM semantics, a new write pushes nothing
    const before = v.pushes;
    expect(v.markPageDirty(0, 3)).toBe(DirtyWrite.OK);
    expect(v.pushes).toBe(before);
  });

  it('entries of a deleted slot are ignored at reset', () => {
    const s = new DirtyRingSet();
    s.enableRing(4096);
    s.addSlot(3, 0, 32);
    const v = s.createVcpu();
    v.markPageDirty(3, 5);
    v.harvest();
    expect(s.deleteSlot(3)).toBe(0);
    const oks: boolean[] = [];
    expect(s.resetAll((_a, _b, _c, ok) => oks.push(ok))).toBe(1);
    expect(oks).toEqual([false]);
  });
});

describe('spec §2 write protection and entry layout', () => {
  it('the first write after reset pushes one entry; later writes push nothing until reset', () => {
    const s = vm();
    const a = s.createVcpu();
    const b = s.createVcpu();
    expect(a.markPageDirty(0, 42)).toBe(DirtyWrite.OK);
    expect(a.markPageDirty(0, 42)).toBe(DirtyWrite.OK);
    expect(b.markPageDirty(0, 42)).toBe(DirtyWrite.OK); // page is writable VM-wide
    expect(a.dirtyIndex).toBe(1);
    expect(b.dirtyIndex).toBe(0);
    expect(collect(a)).toEqual([[0, 42]]);
    b.markPageDirty(0, 42); // harvested but not yet reset: still writable
    expect(b.dirtyIndex).toBe(0);
    expect(s.resetAll()).toBe(1);
    expect(b.markPageDirty(0, 42)).toBe(DirtyWrite.OK);
    expect(collect(b)).toEqual([[0, 42]]);
  });

  it('kvm_dirty_gfn is 16 bytes: u32 flags, u32 slot, u64 offset (little endian)', () => {
    const s = new DirtyRingSet();
    s.enableRing(4096);
    s.addSlot(5, 0x80000, 2 ** 31 - 1);
    const v = s.createVcpu();
    v.markPageDirty(5, 0x7ffffff0);
    v.markPageDirty(5, 3);
    const dv = new DataView(v.bytes.buffer);
    expect(v.bytes.length).toBe(256 * 16);
    expect(dv.getUint32(0, true)).toBe(KVM_DIRTY_GFN_F_DIRTY);
    expect(dv.getUint32(4, true)).toBe(5);
    expect(dv.getBigUint64(8, true)).toBe(0x7ffffff0n);
    expect(dv.getUint32(16, true)).toBe(KVM_DIRTY_GFN_F_DIRTY);
    expect(dv.getBigUint64(24, true)).toBe(3n);
    v.harvest();
    expect(dv.getUint32(0, true)).toBe(KVM_DIRTY_GFN_F_DIRTY | KVM_DIRTY_GFN_F_RESET);
  });

  it('harvest stops at the first entry without DIRTY and resumes from its cursor', () => {
    const s = vm();
    const v = s.createVcpu();
    v.markPageDirty(0, 1);
    v.markPageDirty(0, 2);
    expect(collect(v)).toEqual([[0, 1], [0, 2]]);
    expect(collect(v)).toEqual([]);
    v.markPageDirty(0, 3);
    expect(collect(v)).toEqual([[0, 3]]);
    expect(v.fetchIndex).toBe(3);
  });

  it('a step may dirty up to `reserved` pages; the ring never goes hard-full', () => {
    const s = vm();
    const v = s.createVcpu();
    for (let i = 0; i < 191; i++) v.markPageDirty(0, i);
    expect(v.markRangeDirty(0, 500, 65)).toBe(-Errno.EINVAL);
    expect(v.markRangeDirty(0, 1000, 64)).toBe(-Errno.EFAULT); // 1000+64 > 1024
    expect(v.dirtyIndex).toBe(191);
    expect(v.markRangeDirty(0, 500, 64)).toBe(DirtyWrite.EXIT_FULL);
    expect(v.used).toBe(255);
    expect(v.markRangeDirty(0, 600, 1)).toBe(DirtyWrite.REFUSED_FULL);
    expect(v.used).toBe(255);
  });

  it('writes outside every slot give -EFAULT and change nothing', () => {
    const s = vm(16);
    const v = s.createVcpu();
    expect(v.markPageDirty(0, 16)).toBe(-Errno.EFAULT);
    expect(v.markPageDirty(0, -1)).toBe(-Errno.EFAULT);
    expect(v.markPageDirty(0, 1.5)).toBe(-Errno.EFAULT);
    expect(v.markPageDirty(9, 0)).toBe(-Errno.EFAULT);
    expect(v.markPageDirty(Number.NaN, 0)).toBe(-Errno.EFAULT);
    expect(v.markPageDirty(0.5, 0)).toBe(-Errno.EFAULT);
    expect(s.markDirtyNoVcpu(-0.25, 0)).toBe(-Errno.EFAULT);
    expect(v.markGfnDirty(0x1000 + 16)).toBe(-Errno.EFAULT);
    expect(s.markDirtyNoVcpu(0, 16)).toBe(-Errno.EFAULT);
    expect(v.dirtyIndex).toBe(0);
    expect(v.markGfnDirty(0x1000 + 15)).toBe(DirtyWrite.OK);
    expect(collect(v)).toEqual([[0, 15]]);
  });
});

describe('spec §2 WITH_BITMAP backup and final collection', () => {
  it('no-vCPU writes land in the slot bitmap in the kernel dirty-bitmap layout; GET_DIRTY_LOG clears', () => {
    const s = vm(128);
    expect(s.markDirtyNoVcpu(0, 5)).toBe(0);
    expect(s.markGfnDirtyNoVcpu(0x1000 + 70)).toBe(0);
    const buf = new Uint8Array(16).fill(0xee);
    expect(s.getDirtyLog(0, buf)).toBe(0);
    const expected = new Uint8Array(16);
    expected[0] = 1 << 5;
    expected[8] = 1 << 6; // page 70 = u64 word 1, bit 6
    expect(buf).toEqual(expected);
    expect(s.getDirtyLog(0, buf)).toBe(0);
    expect(buf).toEqual(new Uint8Array(16));
  });

  it('GET_DIRTY_LOG errors: bad slot EINVAL, missing ENOENT, short buffer EFAULT', () => {
    const s = vm(128);
    s.markDirtyNoVcpu(0, 100);
    expect(s.getDirtyLog(1 << 16, new Uint8Array(16))).toBe(-Errno.EINVAL);
    expect(s.getDirtyLog(40000, new Uint8Array(16))).toBe(-Errno.EINVAL);
    expect(s.getDirtyLog(2, new Uint8Array(16))).toBe(-Errno.ENOENT);
    expect(s.getDirtyLog(0, new Uint8Array(8))).toBe(-Errno.EFAULT);
    expect(s.takeDirtyLog(0).nextSet(0)).toBe(100); // the failed calls kept the bit
  });

  it('ring on without WITH_BITMAP: a no-vCPU write cannot be logged -> ENXIO, counted', () => {
    const s = vm(16, false);
    expect(s.markDirtyNoVcpu(0, 1)).toBe(-Errno.ENXIO);
    expect(s.unloggedWrites).toBe(1);
  });

  it('without a ring, vCPU writes use the classic bitmap and reset is EINVAL', () => {
    const s = new DirtyRingSet();
    s.addSlot(0, 0, 40);
    const v = s.createVcpu();
    expect(v.size).toBe(0);
    expect(v.markPageDirty(0, 33)).toBe(DirtyWrite.OK);
    expect(v.run()).toBe(0);
    expect(s.resetAll()).toBe(-Errno.EINVAL);
    const bm = s.takeDirtyLog(0);
    expect(bm.nextSet(0)).toBe(33);
    expect(bm.popcount()).toBe(1);
  });

  it('finalCollect harvests+resets rings before reading bitmaps, then traps late writes', () => {
    const s = vm(128);
    const v = s.createVcpu();
    v.markPageDirty(0, 1);
    v.markPageDirty(0, 2);
    s.markDirtyNoVcpu(0, 50);
    const pages: number[] = [];
    const res = s.finalCollect((_slot, off) => {
      pages.push(off);
      // a device side effect while the rings are drained must still be in the bitmap
      s.markDirtyNoVcpu(0, 99);
    });
    expect(pages).toEqual([1, 2]);
    expect(res.ringEntries).toBe(2);
    expect(res.resetEntries).toBe(2);
    const bm = res.bitmaps.get(0)!;
    const bits: number[] = [];
    bm.forEachSet((i) => bits.push(i));
    expect(bits).toEqual([50, 99]);
    expect(s.lateWrites).toBe(0);
    expect(s.armed).toBe(true);
    expect(v.markPageDirty(0, 7)).toBe(DirtyWrite.OK);
    s.markDirtyNoVcpu(0, 8);
    expect(s.lateWrites).toBe(2);
    expect(s.firstLateWrite).toEqual({ slot: 0, offset: 7, vcpu: 0 });
    s.disarm();
    v.markPageDirty(0, 9);
    expect(s.lateWrites).toBe(2);
  });
});

describe('memory slots', () => {
  it('validates ids, sizes and overlap; identical re-registration is a no-op', () => {
    const s = new DirtyRingSet();
    expect(s.addSlot(0, 100, 50)).toBe(0);
    expect(s.addSlot(0, 100, 50)).toBe(0);
    expect(s.addSlot(0, 100, 60)).toBe(-Errno.EINVAL);
    expect(s.addSlot(1, 149, 10)).toBe(-Errno.EEXIST);
    expect(s.addSlot(1, 90, 11)).toBe(-Errno.EEXIST);
    expect(s.addSlot(1, 150, 10)).toBe(0);
    expect(s.addSlot(2, 0, 0)).toBe(-Errno.EINVAL);
    expect(s.addSlot(1 << 16, 0, 1)).toBe(-Errno.EINVAL);
    expect(s.addSlot(32767, 0, 1)).toBe(-Errno.EINVAL);
    expect(s.addSlot(2, 2 ** 52, 1)).toBe(-Errno.EINVAL);
    expect(s.deleteSlot(2)).toBe(-Errno.EINVAL);
    expect(s.findGfn(155)).toEqual({ slot: 1, offset: 5 });
    expect(s.findGfn(160)).toBeNull();
  });
});
