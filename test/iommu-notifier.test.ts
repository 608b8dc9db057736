import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  IOMMUAccessFlags,
  IOMMUNotifierFlag,
  NotifierList,
  decodeDevIotlbInvalidation,
  notifyOne,
  splitUnmapRange,
} from '../src/iommu/notifier.js';
import type { IOMMUNotifier, IOMMUTLBEvent } from '../src/iommu/notifier.js';
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

const U64_MAX = (1n << 64n) - 1n;

function recorder(flags: number, start = 0n, end = U64_MAX): IOMMUNotifier & { got: IOMMUTLBEvent[] } {
  const got: IOMMUTLBEvent[] = [];
  return { got, flags, start, end, notify: (ev) => got.push(ev) };
}

describe('spec constants (iommu-notifiers-and-dirty-ring.md §1)', () => {
  it('flag values', () => {
    expect(IOMMUAccessFlags).toEqual({ NONE: 0, RO: 1, WO: 2, RW: 3 });
    expect(IOMMUNotifierFlag).toEqual({ NONE: 0, UNMAP: 1, MAP: 2, DEVIOTLB_UNMAP: 4, IOTLB_EVENTS: 3, DEVIOTLB_EVENTS: 4, ALL: 7 });
  });
});

describe('splitUnmapRange (§1: naturally aligned power-of-two chunks)', () => {
  it('spec example: [0x1000, 0x7fff] -> (0x1000,0xfff), (0x2000,0x1fff), (0x4000,0x3fff)', () => {
    expect(splitUnmapRange(0x1000n, 0x7fffn, 48)).toEqual([
      { iova: 0x1000n, addrMask: 0xfffn },
      { iova: 0x2000n, addrMask: 0x1fffn },
      { iova: 0x4000n, addrMask: 0x3fffn },
    ]);
  });

  it('spec example: [0, 0xfedfffff] with gaw 39 -> 10 chunks 0x80000000 ... 0x200000', () => {
    const chunks = splitUnmapRange(0n, 0xfedfffffn, 39);
    expect(chunks.map((c) => c.addrMask + 1n)).toEqual([
      0x80000000n, 0x40000000n, 0x20000000n, 0x10000000n, 0x8000000n, 0x4000000n, 0x2000000n, 0x800000n, 0x400000n, 0x200000n,
    ]);
    expect(chunks[0]!.iova).toBe(0n);
    expect(chunks[9]!.iova + chunks[9]!.addrMask).toBe(0xfedfffffn);
  });

  it('never rounds up: every chunk is aligned, a power of two, and the chunks tile the range exactly', () => {
    fc.assert(fc.property(
      fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }),
      fc.bigInt({ min: 1n, max: 1n << 30n }),
      fc.integer({ min: 30, max: 64 }),
      (pageStart, pages, gaw) => {
        const start = pageStart << 12n;
        const end = start + (pages << 12n) - 1n;
        const chunks = splitUnmapRange(start, end, gaw);
        let cur = start;
        for (const c of chunks) {
          const size = c.addrMask + 1n;
          expect(c.iova).toBe(cur);
          expect(size & (size - 1n)).toBe(0n); // power of two
          expect(c.iova % size).toBe(0n); // naturally aligned
          expect(size).toBeGreaterThanOrEqual(0x1000n);
          cur += size;
        }
        // nothing beyond the 2^gaw address space is announced
        const last = end < (1n << BigInt(gaw)) ? end : (1n << BigInt(gaw)) - 1n;
        expect(cur).toBe(start <= last ? last + 1n : start);
        expect(chunks.length).toBeLessThanOrEqual(2 * 64);
      },
    ));
  });

  it('start 0 counts as aligned to the whole space; the range is clamped to 2^gaw', () => {
    expect(splitUnmapRange(0n, U64_MAX, 48)).toEqual([{ iova: 0n, addrMask: (1n << 48n) - 1n }]);
    expect(splitUnmapRange(0n, U64_MAX, 64)).toEqual([{ iova: 0n, addrMask: U64_MAX }]);
    expect(splitUnmapRange(1n << 48n, (1n << 49n) - 1n, 48)).toEqual([]);
  });

  it('rejects malformed ranges', () => {
    expect(errOf(() => splitUnmapRange(0x1800n, 0x2fffn, 48))).toBe('EINVAL');
    expect(errOf(() => splitUnmapRange(0x1000n, 0x17ffn, 48))).toBe('EINVAL');
    expect(errOf(() => splitUnmapRange(0x2000n, 0x0fffn, 48))).toBe('EINVAL');
    expect(errOf(() => splitUnmapRange(0n, 0xfffn, 11))).toBe('EINVAL');
  });
});

describe('notifyOne (§1: delivery to one notifier)', () => {
  const mapEv = (): IOMMUTLBEvent => ({
    type: IOMMUNotifierFlag.MAP,
    entry: { iova: 0x10000n, translatedAddr: 0x900000n, addrMask: 0xffffn, perm: IOMMUAccessFlags.RW },
  });

  it('crops a copy to the notifier range and never modifies the original', () => {
    const n = recorder(IOMMUNotifierFlag.ALL, 0x14000n, 0x17fffn);
    const ev = mapEv();
    const before = structuredClone(ev);
    notifyOne(n, ev);
    expect(ev).toEqual(before);
    expect(n.got).toHaveLength(1);
    expect(n.got[0]!.entry).toEqual({ iova: 0x14000n, translatedAddr: 0x904000n, addrMask: 0x3fffn, perm: 3 });
    expect(n.got[0]!.type).toBe(IOMMUNotifierFlag.MAP);
    expect(n.got[0]).not.toBe(ev);
  });

  it('crops at one side only when the entry sticks out on that side', () => {
    const n = recorder(IOMMUNotifierFlag.UNMAP, 0x18000n, U64_MAX);
    notifyOne(n, { type: IOMMUNotifierFlag.UNMAP, entry: { iova: 0x10000n, translatedAddr: 0n, addrMask: 0xffffn, perm: 0 } });
    expect(n.got[0]!.entry).toEqual({ iova: 0x18000n, translatedAddr: 0n, addrMask: 0x7fffn, perm: 0 });
  });

  it('skips silently when there is no overlap or the type is not wanted', () => {
    const before = recorder(IOMMUNotifierFlag.ALL, 0n, 0xffffn);
    const after = recorder(IOMMUNotifierFlag.ALL, 0x20000n, U64_MAX);
    const unmapOnly = recorder(IOMMUNotifierFlag.UNMAP);
    const devOnly = recorder(IOMMUNotifierFlag.DEVIOTLB_EVENTS);
    for (const n of [before, after, unmapOnly, devOnly]) notifyOne(n, mapEv());
    expect([before.got.length, after.got.length, unmapOnly.got.length, devOnly.got.length]).toEqual([0, 0, 0, 0]);
    // touching the first or last byte is an overlap
    const edge = recorder(IOMMUNotifierFlag.MAP, 0x1ffffn, 0x1ffffn);
    notifyOne(edge, mapEv());
    expect(edge.got[0]!.entry.iova).toBe(0x1ffffn);
    expect(edge.got[0]!.entry.addrMask).toBe(0n);
  });

  it('a device-IOTLB invalidation is DEVIOTLB_UNMAP, not UNMAP, although its perm is NONE', () => {
    const unmapOnly = recorder(IOMMUNotifierFlag.UNMAP);
    const dev = recorder(IOMMUNotifierFlag.DEVIOTLB_UNMAP);
    const ev = decodeDevIotlbInvalidation(0x5000n, 1);
    notifyOne(unmapOnly, ev);
    notifyOne(dev, ev);
    expect(unmapOnly.got).toHaveLength(0);
    expect(dev.got).toHaveLength(1);
  });

  it('rejects invalid events with EINVAL instead of delivering them', () => {
    const n = recorder(IOMMUNotifierFlag.ALL);
    const bad: IOMMUTLBEvent[] = [
      // UNMAP must carry perm NONE
      { type: IOMMUNotifierFlag.UNMAP, entry: { iova: 0x1000n, translatedAddr: 0n, addrMask: 0xfffn, perm: 3 } },
      // MAP not naturally aligned
      { type: IOMMUNotifierFlag.MAP, entry: { iova: 0x1000n, translatedAddr: 0n, addrMask: 0x1fffn, perm: 1 } },
      // mask not 2^N-1
      { type: IOMMUNotifierFlag.MAP, entry: { iova: 0x0n, translatedAddr: 0n, addrMask: 0x2fffn, perm: 1 } },
      // smaller than a page
      { type: IOMMUNotifierFlag.MAP, entry: { iova: 0x0n, translatedAddr: 0n, addrMask: 0x7ffn, perm: 1 } },
      // DEVIOTLB_UNMAP with a permission
      { type: IOMMUNotifierFlag.DEVIOTLB_UNMAP, entry: { iova: 0x0n, translatedAddr: 0n, addrMask: 0x7ffn, perm: 2 } },
      // wraps past 2^64-1
      { type: IOMMUNotifierFlag.DEVIOTLB_UNMAP, entry: { iova: 0x1000n, translatedAddr: 0n, addrMask: U64_MAX, perm: 0 } },
      // more than one type bit
      { type: 3 as 1, entry: { iova: 0x0n, translatedAddr: 0n, addrMask: 0xfffn, perm: 0 } },
    ];
    for (const ev of bad) expect(errOf(() => notifyOne(n, ev))).toBe('EINVAL');
    expect(n.got).toHaveLength(0);
    // device-IOTLB entries may cover any range, including all of [0, 2^64-1]
    notifyOne(n, { type: IOMMUNotifierFlag.DEVIOTLB_UNMAP, entry: { iova: 0x1234n, translatedAddr: 0n, addrMask: 0x10n, perm: 0 } });
    notifyOne(n, { type: IOMMUNotifierFlag.DEVIOTLB_UNMAP, entry: { iova: 0n, translatedAddr: 0n, addrMask: U64_MAX, perm: 0 } });
    expect(n.got).toHaveLength(2);
  });
});

describe('decodeDevIotlbInvalidation (§1: VT-d device-IOTLB address decode)', () => {
  const range = (addr: bigint, s: 0 | 1) => {
    const ev = decodeDevIotlbInvalidation(addr, s);
    expect(ev.type).toBe(IOMMUNotifierFlag.DEVIOTLB_UNMAP);
    expect(ev.entry.perm).toBe(IOMMUAccessFlags.NONE);
    return [ev.entry.iova, ev.entry.iova + ev.entry.addrMask];
  };

  it('S=0 is the 4 KiB page at addr', () => {
    expect(range(0x12345000n, 0)).toEqual([0x12345000n, 0x12345fffn]);
    expect(range(0x12345678n, 0)).toEqual([0x12345000n, 0x12345fffn]);
  });

  it('S=1: 8 KiB << trailing ones of addr>>12, addr aligned down', () => {
    expect(range(0x0n, 1)).toEqual([0x0n, 0x1fffn]); // no trailing ones: 8 KiB
    expect(range(0x1000n, 1)).toEqual([0x0n, 0x3fffn]); // one: 16 KiB
    expect(range(0x5000n, 1)).toEqual([0x4000n, 0x7fffn]); // 0b101: one trailing one
    expect(range(0x17000n, 1)).toEqual([0x10000n, 0x1ffffn]); // 0b10111: three -> 64 KiB
    expect(range(0x7fffff000n, 1)).toEqual([0x0n, 0xfffffffffn]); // 23 ones -> 2^36
  });

  it('all ones wraps to the whole space [0, ~0]', () => {
    expect(range(U64_MAX, 1)).toEqual([0n, U64_MAX]);
    expect(range(U64_MAX & ~0xfffn, 1)).toEqual([0n, U64_MAX]);
  });

  it('rejects values outside u64', () => {
    expect(errOf(() => decodeDevIotlbInvalidation(-1n, 1))).toBe('EINVAL');
    expect(errOf(() => decodeDevIotlbInvalidation(1n << 64n, 0))).toBe('EINVAL');
    expect(errOf(() => decodeDevIotlbInvalidation(0n, 2 as 1))).toBe('EINVAL');
  });
});

describe('NotifierList', () => {
  it('validates registrations and tolerates unregistering a stranger', () => {
    const list = new NotifierList();
    const n = recorder(IOMMUNotifierFlag.MAP);
    list.register(n);
    expect(errOf(() => list.register(n))).toBe('EEXIST');
    expect(errOf(() => list.register(recorder(0)))).toBe('EINVAL');
    expect(errOf(() => list.register(recorder(8)))).toBe('EINVAL');
    expect(errOf(() => list.register(recorder(1, 5n, 4n)))).toBe('EINVAL');
    expect(list.unregister(recorder(1))).toBe(false);
    expect(list.size).toBe(1);
    expect(list.flags).toBe(IOMMUNotifierFlag.MAP);
    expect(list.unregister(n)).toBe(true);
    expect(list.size).toBe(0);
  });

  it('a notifier removed by an earlier callback is not called', () => {
    const list = new NotifierList();
    const second = recorder(IOMMUNotifierFlag.UNMAP);
    const first: IOMMUNotifier = { flags: IOMMUNotifierFlag.UNMAP, start: 0n, end: U64_MAX, notify: () => list.unregister(second) };
    list.register(first);
    list.register(second);
    list.notify({ type: IOMMUNotifierFlag.UNMAP, entry: { iova: 0n, translatedAddr: 0n, addrMask: 0xfffn, perm: 0 } });
    expect(second.got).toHaveLength(0);
  });
});
