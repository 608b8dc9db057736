import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KernelError } from '../src/uapi/errno.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { GuestRamAllocator } from '../src/guest/ram.js';

const MiB = 2 ** 20;

function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return 'no error';
}

describe('GuestRamAllocator', () => {
  it('hands out aligned blocks inside its window, first fit from the bottom', () => {
    const ram = new GuestRamAllocator(new SparseMemory(4 * MiB), MiB, 2 * MiB);
    const a = ram.alloc(100, 64);
    const b = ram.alloc(10, 4096);
    const c = ram.alloc(1, 1);
    expect(a).toBe(MiB);
    expect(b).toBe(MiB + 4096);
    // first fit: the gap between a and b comes first
    expect(c).toBe(MiB + 100);
    expect(ram.usedBytes).toBe(111);
    expect(ram.blocks).toBe(3);
  });

  it('coalesces freed neighbours back into one extent', () => {
    const ram = new GuestRamAllocator(new SparseMemory(MiB), 0, MiB);
    const blocks = [ram.alloc(1000, 8), ram.alloc(2000, 8), ram.alloc(3000, 8)];
    ram.free(blocks[0]!);
    ram.free(blocks[2]!);
    ram.free(blocks[1]!);
    expect(ram.freeList()).toEqual([[0, MiB]]);
    expect(ram.usedBytes).toBe(0);
  });

  it('a zero-byte request still gets a distinct address', () => {
    const ram = new GuestRamAllocator(new SparseMemory(MiB), 4096, 8192);
    const a = ram.alloc(0, 1);
    const b = ram.alloc(0, 1);
    expect(a).not.toBe(b);
  });

  it('ENOMEM when nothing fits, EINVAL for bad arguments and bad frees; state untouched', () => {
    const ram = new GuestRamAllocator(new SparseMemory(MiB), 0, 8192);
    const a = ram.alloc(4096, 4096);
    const before = ram.freeList();
    expect(errno(() => ram.alloc(8192))).toBe('ENOMEM');
    expect(errno(() => ram.alloc(16, 3))).toBe('EINVAL');
    expect(errno(() => ram.alloc(-1))).toBe('EINVAL');
    expect(errno(() => ram.alloc(1.5))).toBe('EINVAL');
    expect(errno(() => ram.free(a + 1))).toBe('EINVAL');
    expect(ram.freeList()).toEqual(before);
    ram.free(a);
    expect(errno(() => ram.free(a))).toBe('EINVAL');
    expect(errno(() => new GuestRamAllocator(new SparseMemory(4096), 0, 8192))).toBe('EINVAL');
  });

  it('never overlaps, keeps alignment and accounts every byte (random alloc/free sequences)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: 12 }), fc.nat()), { maxLength: 120 }),
        (ops) => {
          const base = 4096;
          const size = 256 * 1024;
          const ram = new GuestRamAllocator(new SparseMemory(base + size), base, size);
          const live = new Map<number, number>();
          for (const [isAlloc, n, alignLog, pick] of ops) {
            if (isAlloc || live.size === 0) {
              const align = 1 << alignLog;
              let a: number;
              try {
                a = ram.alloc(n, align);
              } catch (e) {
                expect((e as KernelError).code).toBe('ENOMEM');
                continue;
              }
              const len = Math.max(1, n);
              expect(a % align).toBe(0);
              expect(a).toBeGreaterThanOrEqual(base);
              expect(a + len).toBeLessThanOrEqual(base + size);
              for (const [b, l] of live) expect(a + len <= b || b + l <= a).toBe(true);
              live.set(a, len);
            } else {
              const keys = [...live.keys()];
              const a = keys[pick % keys.length]!;
              ram.free(a);
              live.delete(a);
            }
            let used = 0;
            for (const l of live.values()) used += l;
            expect(ram.usedBytes).toBe(used);
            // free extents are sorted, disjoint and not adjacent (fully coalesced)
            const fl = ram.freeList();
            for (let i = 1; i < fl.length; i++) expect(fl[i]![0]).toBeGreaterThan(fl[i - 1]![0] + fl[i - 1]![1]);
            expect(fl.reduce((s, [, l]) => s + l, 0)).toBe(size - used);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
