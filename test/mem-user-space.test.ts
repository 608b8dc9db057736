import { describe, expect, it } from 'vitest';
import { Bitmap } from '../src/mem/bitmap.js';
import { PAGE_SIZE, SparseMemory } from '../src/mem/sparse-memory.js';
import { PROT_READ, PROT_WRITE, USER_MIN_ADDR, UserAddressSpace } from '../src/mem/user-space.js';
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

describe('UserAddressSpace anonymous memory', () => {
  it('alloc gives page-aligned zeroed memory, usable in place', () => {
    const us = new UserAddressSpace();
    const a = us.alloc(100);
    const b = us.alloc(5000);
    expect(a % PAGE_SIZE).toBe(0);
    expect(b % PAGE_SIZE).toBe(0);
    expect(a).toBeGreaterThanOrEqual(USER_MIN_ADDR);
    // a whole page was reserved for the 100-byte request, and segments do not touch
    expect(b >= a + PAGE_SIZE + PAGE_SIZE || a >= b + 2 * PAGE_SIZE + PAGE_SIZE).toBe(true);
    expect(us.copyFromUser(a, PAGE_SIZE).every((x) => x === 0)).toBe(true);
    const v = us.view(b + 10, 4);
    v.set([1, 2, 3, 4]);
    expect(us.readU32(b + 10)).toBe(0x04030201);
    us.copyToUser(b + 12, new Uint8Array([9]));
    expect(v[2]).toBe(9);
    us.writeU64(a + 8, 0xfedcba9876543210n);
    expect(us.readU64(a + 8)).toBe(0xfedcba9876543210n);
    expect(us.readU32(a + 12)).toBe(0xfedcba98);
  });
});

describe('UserAddressSpace EFAULT cases (vfio-type1-dirty.md §1: bad user pointers give EFAULT)', () => {
  it('NULL is never mapped', () => {
    const us = new UserAddressSpace();
    us.alloc(PAGE_SIZE);
    expect(errOf(() => us.copyFromUser(0, 8))).toBe('EFAULT');
    expect(errOf(() => us.copyToUser(0, new Uint8Array(8)))).toBe('EFAULT');
    expect(errOf(() => us.view(0, 8))).toBe('EFAULT');
    expect(errOf(() => us.resolve(0, 8))).toBe('EFAULT');
    expect(errOf(() => us.alloc(PAGE_SIZE, { vaddr: 0 }))).toBe('EPERM');
  });

  it('unmapped and freed addresses fault', () => {
    const us = new UserAddressSpace();
    const a = us.alloc(PAGE_SIZE);
    expect(errOf(() => us.copyFromUser(a + PAGE_SIZE, 1))).toBe('EFAULT');
    expect(errOf(() => us.copyFromUser(a + PAGE_SIZE - 1, 2))).toBe('EFAULT');
    us.unmap(a);
    expect(errOf(() => us.copyFromUser(a, 1))).toBe('EFAULT');
    expect(errOf(() => us.unmap(a))).toBe('EINVAL');
  });

  it('resolve and view refuse a range crossing two segments; copies span adjacent ones', () => {
    const us = new UserAddressSpace();
    const base = 0x10_0000_0000;
    us.alloc(PAGE_SIZE, { vaddr: base });
    us.alloc(PAGE_SIZE, { vaddr: base + PAGE_SIZE });
    expect(errOf(() => us.resolve(base + PAGE_SIZE - 4, 8))).toBe('EFAULT');
    expect(errOf(() => us.view(base + PAGE_SIZE - 4, 8))).toBe('EFAULT');
    us.copyToUser(base + PAGE_SIZE - 2, new Uint8Array([1, 2, 3, 4]));
    expect(Array.from(us.copyFromUser(base + PAGE_SIZE - 2, 4))).toEqual([1, 2, 3, 4]);
    expect(us.resolve(base + PAGE_SIZE, 4).offset).toBe(0);
  });

  it('a write that reaches a gap writes nothing at all', () => {
    const us = new UserAddressSpace();
    const base = 0x20_0000_0000;
    us.alloc(PAGE_SIZE, { vaddr: base });
    us.alloc(PAGE_SIZE, { vaddr: base + 2 * PAGE_SIZE });
    expect(errOf(() => us.copyToUser(base + PAGE_SIZE - 4, new Uint8Array(8).fill(7)))).toBe('EFAULT');
    expect(us.copyFromUser(base, PAGE_SIZE).every((x) => x === 0)).toBe(true);
  });

  it('read-only memory can be read but not written', () => {
    const us = new UserAddressSpace();
    const a = us.alloc(PAGE_SIZE);
    us.copyToUser(a, new Uint8Array([5, 6]));
    us.mprotect(a, PROT_READ);
    expect(Array.from(us.copyFromUser(a, 2))).toEqual([5, 6]);
    expect(errOf(() => us.copyToUser(a, new Uint8Array([1])))).toBe('EFAULT');
    expect(errOf(() => us.view(a, 2))).toBe('EFAULT');
    expect(us.view(a, 2, PROT_READ)[1]).toBe(6);
    const bm = new Bitmap(8);
    bm.set(0);
    expect(errOf(() => us.bitmapOrToUser(a, 8, bm, 0, 0, 8))).toBe('EFAULT');
    expect(Array.from(us.copyFromUser(a, 2))).toEqual([5, 6]);
    const ro = us.alloc(PAGE_SIZE, { prot: PROT_READ });
    expect(errOf(() => us.writeU32(ro, 1))).toBe('EFAULT');
  });
});

describe('UserAddressSpace mappings of SparseMemory', () => {
  it('mapMemory exposes guest memory at a user address', () => {
    const us = new UserAddressSpace();
    const ram = new SparseMemory(2 ** 40);
    const va = us.mapMemory(ram, 2 ** 30, 2 ** 32);
    us.copyToUser(va + 100, new Uint8Array([0xaa, 0xbb]));
    expect(ram.getU16(2 ** 30 + 100)).toBe(0xbbaa);
    const r = us.resolve(va + 4096, 16);
    expect(r.mem).toBe(ram);
    expect(r.offset).toBe(2 ** 30 + 4096);
    expect(errOf(() => us.view(va, 16))).toBe('EFAULT'); // not a flat segment
    expect(ram.backedBytes).toBe(65536);
  });

  it('rejects bad mappings with the mmap errno and keeps the old ones', () => {
    const us = new UserAddressSpace();
    const ram = new SparseMemory(1 << 20);
    const fixed = 0x30_0000_0000;
    expect(us.mapMemory(ram, 0, 1 << 16, { vaddr: fixed })).toBe(fixed);
    expect(errOf(() => us.mapMemory(ram, 0, PAGE_SIZE, { vaddr: fixed + PAGE_SIZE }))).toBe('EEXIST');
    expect(errOf(() => us.mapMemory(ram, 100, PAGE_SIZE))).toBe('EINVAL');
    expect(errOf(() => us.mapMemory(ram, 0, 100))).toBe('EINVAL');
    expect(errOf(() => us.mapMemory(ram, 0, PAGE_SIZE, { vaddr: fixed + 1 }))).toBe('EINVAL');
    expect(errOf(() => us.mapMemory(ram, 1 << 20, PAGE_SIZE))).toBe('EINVAL');
    expect(errOf(() => us.alloc(PAGE_SIZE, { prot: 8 }))).toBe('EINVAL');
    expect(us.segments().length).toBe(1);
  });
});

describe('UserAddressSpace.bitmapOrToUser', () => {
  it('ORs bits into a flat user bitmap at a bit offset, keeping existing bits', () => {
    const us = new UserAddressSpace();
    const va = us.alloc(64);
    us.copyToUser(va, new Uint8Array([0x01, 0, 0, 0, 0, 0, 0, 0x80]));
    const bm = new Bitmap(20);
    bm.set(0);
    bm.set(5);
    bm.set(19);
    us.bitmapOrToUser(va, 16, bm, 3, 0, 20);
    // bits 3, 8, 22 set on top of bits 0 and 63
    expect(Array.from(us.copyFromUser(va, 8))).toEqual([0x09, 0x01, 0x40, 0, 0, 0, 0, 0x80]);
  });

  it('works on a sparse mapping and through a misaligned user pointer', () => {
    const us = new UserAddressSpace();
    const ram = new SparseMemory(1 << 20);
    const va = us.mapMemory(ram, 0, 1 << 20);
    const bm = new Bitmap(100);
    bm.setRange(10, 70);
    us.bitmapOrToUser(va + 3, 16, bm, 0, 10, 70);
    expect(ram.getU64(3)).toBe((1n << 64n) - 1n);
    expect(ram.getU8(11)).toBe(0x3f);
    expect(ram.getU8(12)).toBe(0);
  });

  it('checks the whole buffer first: EFAULT with nothing written, EINVAL if bits overflow it', () => {
    const us = new UserAddressSpace();
    const base = 0x40_0000_0000;
    us.alloc(PAGE_SIZE, { vaddr: base });
    const bm = new Bitmap(64);
    bm.setRange(0, 64);
    expect(errOf(() => us.bitmapOrToUser(base + PAGE_SIZE - 8, 16, bm, 0, 0, 64))).toBe('EFAULT');
    expect(us.copyFromUser(base + PAGE_SIZE - 8, 8).every((x) => x === 0)).toBe(true);
    expect(errOf(() => us.bitmapOrToUser(base, 8, bm, 1, 0, 64))).toBe('EINVAL');
    expect(us.copyFromUser(base, 16).every((x) => x === 0)).toBe(true);
  });

  it('updateUser gives a live view or a written-back copy', () => {
    const us = new UserAddressSpace();
    const flat = us.alloc(PAGE_SIZE);
    us.updateUser(flat, 4, (b) => b.set([1, 2, 3, 4]));
    expect(us.readU32(flat)).toBe(0x04030201);
    const ram = new SparseMemory(1 << 20);
    const va = us.mapMemory(ram, PAGE_SIZE, 2 * PAGE_SIZE, { prot: PROT_READ | PROT_WRITE });
    us.updateUser(va + PAGE_SIZE - 2, 4, (b) => b.set([5, 6, 7, 8]));
    expect(ram.getU32(2 * PAGE_SIZE - 2)).toBe(0x08070605);
  });
});
