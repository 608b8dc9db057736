import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { barMasks, defineMemBar32, defineMemBar64, isPowerOfTwo, readBarAddress64 } from '../src/hw/pci/bars.js';
import { ConfigSpace } from '../src/hw/pci/config-space.js';
import { KernelError } from '../src/uapi/errno.js';

function errnoOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return undefined;
}

describe('ConfigSpace masks', () => {
  it('read-only bits keep their value, writable bits take the written value', () => {
    const c = new ConfigSpace();
    c.define(0x40, 4, 0xaabbccdd, 0x00ff00ff);
    c.write(0x40, 4, 0x11223344);
    expect(c.read(0x40, 4)).toBe(0xaa22cc44);
  });

  it('write-1-to-clear bits clear only where a 1 is written', () => {
    const c = new ConfigSpace();
    c.define(0x06, 2, 0, 0, 0xf900);
    c.set(0x06, 2, 0xf910); // device raised all error bits (0x10 is read-only)
    c.write(0x06, 2, 0x2000);
    expect(c.read(0x06, 2)).toBe(0xd910);
    c.write(0x06, 2, 0x0000);
    expect(c.read(0x06, 2)).toBe(0xd910);
    c.write(0x06, 2, 0xffff);
    expect(c.read(0x06, 2)).toBe(0x0010);
  });

  it('reads and writes are little-endian at any offset, including across dwords', () => {
    const c = new ConfigSpace();
    c.setMasks(0x40, 4, 0xffffffff);
    c.setMasks(0x44, 4, 0xffffffff);
    c.write(0x43, 4, 0x04030201); // bytes 0x43..0x46
    expect(c.read(0x40, 4)).toBe(0x01000000);
    expect(c.read(0x44, 4)).toBe(0x00040302);
    expect(c.read(0x43, 2)).toBe(0x0201);
    expect(c.read(0x45, 1)).toBe(0x03);
  });

  it('property: every write equals a byte-wise model of (old & ~wm) | (v & wm), then W1C', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.integer({ min: 0, max: 4 }),
        fc.constantFrom(1 as const, 2 as const, 4 as const),
        fc.integer({ min: 0, max: 0xffffffff }),
        (init, wm, w1c, at, size, value) => {
          const c = new ConfigSpace();
          const base = 0x80;
          for (let i = 0; i < 8; i++) {
            c.define(base + i, 1, init[i]!, wm[i]!, w1c[i]! & ~wm[i]!);
          }
          c.write(base + at, size, value);
          for (let i = 0; i < 8; i++) {
            let want = init[i]!;
            const k = i - at;
            if (k >= 0 && k < size) {
              const b = Math.floor(value / 2 ** (8 * k)) & 0xff;
              want = (want & ~wm[i]!) | (b & wm[i]!);
              want &= ~(b & w1c[i]! & ~wm[i]!);
            }
            if (c.read(base + i, 1) !== (want & 0xff)) return false;
          }
          return true;
        },
      ),
      { numRuns: 300 },
    );
  });

  it('hooks see the old value and run after the write', () => {
    const c = new ConfigSpace();
    c.define(0x50, 2, 0x1234, 0xffff);
    const seen: [number, number][] = [];
    c.onWrite(0x50, 2, (old) => seen.push([old, c.get(0x50, 2)]));
    c.write(0x51, 1, 0xab); // overlaps the hook's range
    c.write(0x52, 2, 0xffff); // does not
    expect(seen).toEqual([[0x1234, 0xab34]]);
  });

  it('bad offsets and sizes fail with EINVAL and change nothing', () => {
    const c = new ConfigSpace();
    c.setMasks(0xffc, 4, 0xffffffff);
    expect(errnoOf(() => c.read(4096, 1))).toBe('EINVAL');
    expect(errnoOf(() => c.read(0xffe, 4))).toBe('EINVAL');
    expect(errnoOf(() => c.read(-1, 1))).toBe('EINVAL');
    expect(errnoOf(() => c.read(1.5, 1))).toBe('EINVAL');
    expect(errnoOf(() => c.write(0xffd, 4, 0xffffffff))).toBe('EINVAL');
    expect(errnoOf(() => c.write(0x10, 3 as 4, 1))).toBe('EINVAL');
    expect(c.read(0xffc, 4)).toBe(0);
  });
});

describe('ConfigSpace capability lists', () => {
  it('standard capabilities chain from 0x34 and set the Capabilities List status bit', () => {
    const c = new ConfigSpace();
    expect(c.read(0x06, 2) & 0x10).toBe(0);
    const a = c.addCapability(0x10, 0x3c);
    const b = c.addCapability(0x05, 0x18);
    const d = c.addCapability(0x01, 8);
    expect([a, b, d]).toEqual([0x40, 0x7c, 0x94]);
    expect(c.read(0x06, 2) & 0x10).toBe(0x10);
    // Walk exactly as lspci does: pointer at 0x34, then byte +1 of each capability.
    const walk: number[] = [];
    for (let p = c.read(0x34, 1); p !== 0; p = c.read(p + 1, 1)) walk.push(c.read(p, 1));
    expect(walk).toEqual([0x10, 0x05, 0x01]);
    expect(c.findCapability(0x05)).toBe(0x7c);
    expect(c.findCapability(0x11)).toBe(0);
    // The list is read-only to software.
    c.write(0x34, 1, 0x80);
    c.write(0x41, 1, 0x00);
    expect(c.read(0x34, 1)).toBe(0x40);
    expect(c.read(0x41, 1)).toBe(0x7c);
  });

  it('extended capabilities chain from 0x100 with next pointers in bits 31:20', () => {
    const c = new ConfigSpace();
    expect(c.findExtCapability(0x10)).toBe(0);
    const a = c.addExtCapability(0x10, 1, 0x40);
    const b = c.addExtCapability(0x0e, 1, 8);
    expect([a, b]).toEqual([0x100, 0x140]);
    expect(c.read(0x100, 4)).toBe(0x14010010);
    expect(c.read(0x140, 4)).toBe(0x0001000e);
    expect(c.findExtCapability(0x0e)).toBe(0x140);
  });

  it('capability space runs out with ENOSPC', () => {
    const c = new ConfigSpace();
    c.addCapability(0x09, 0xb0);
    expect(errnoOf(() => c.addCapability(0x09, 0x20))).toBe('ENOSPC');
  });
});

describe('BAR sizing semantics', () => {
  it('64-bit BAR: all-ones reads back the size mask with the type bits, then restores', () => {
    const c = new ConfigSpace();
    defineMemBar64(c, 0x18, 4 * 1024 * 1024);
    expect(c.read(0x18, 4)).toBe(0x4); // 64-bit, non-prefetchable, unassigned
    c.write(0x18, 4, 0x2000_0000);
    c.write(0x1c, 4, 0x0000_0012);
    expect(readBarAddress64(c, 0x18)).toBe(0x12_2000_0000);
    const lo = c.read(0x18, 4);
    const hi = c.read(0x1c, 4);
    c.write(0x18, 4, 0xffffffff);
    c.write(0x1c, 4, 0xffffffff);
    expect(c.read(0x18, 4)).toBe(0xffc00004);
    expect(c.read(0x1c, 4)).toBe(0xffffffff);
    // Size as Linux's __pci_read_base computes it from the two halves.
    const mask = BigInt(c.read(0x1c, 4)) * 2n ** 32n + BigInt((c.read(0x18, 4) & ~0xf) >>> 0);
    expect((~mask & (2n ** 64n - 1n)) + 1n).toBe(4n * 1024n * 1024n);
    c.write(0x18, 4, lo);
    c.write(0x1c, 4, hi);
    expect(readBarAddress64(c, 0x18)).toBe(0x12_2000_0000);
  });

  it('64-bit BAR of 8 GiB keeps the low dword read-only and masks the high dword', () => {
    const c = new ConfigSpace();
    defineMemBar64(c, 0x10, 8 * 2 ** 30);
    c.write(0x10, 4, 0xffffffff);
    c.write(0x14, 4, 0xffffffff);
    expect(c.read(0x10, 4)).toBe(0x4);
    expect(c.read(0x14, 4)).toBe(0xfffffffe);
  });

  it('32-bit BAR: all-ones reads back the mask, prefetch bit preserved', () => {
    const c = new ConfigSpace();
    defineMemBar32(c, 0x10, 0x1000, true);
    c.write(0x10, 4, 0xffffffff);
    expect(c.read(0x10, 4)).toBe(0xfffff008);
    c.write(0x10, 4, 0xfebf1234);
    expect(c.read(0x10, 4)).toBe(0xfebf1008);
  });

  it('unimplemented BARs read 0 even after writing all-ones', () => {
    const c = new ConfigSpace();
    defineMemBar64(c, 0x20, 0);
    c.write(0x20, 4, 0xffffffff);
    c.write(0x24, 4, 0xffffffff);
    expect(c.read(0x20, 4)).toBe(0);
    expect(c.read(0x24, 4)).toBe(0);
  });

  it('size helpers reject non powers of two', () => {
    expect(isPowerOfTwo(3 * 2 ** 32)).toBe(false);
    expect(isPowerOfTwo(2 ** 40)).toBe(true);
    expect(() => barMasks(0x3000)).toThrow(RangeError);
    expect(() => barMasks(8)).toThrow(RangeError);
  });
});

describe('reset image', () => {
  it('restores the sealed image except preserved bits', () => {
    const c = new ConfigSpace();
    c.define(0x48, 2, 0x2810, 0xffff);
    c.define(0x60, 4, 0, 0xffffffff);
    c.sealResetImage();
    c.write(0x48, 2, 0x00e5);
    c.write(0x60, 4, 0xdeadbeef);
    c.resetToImage([{ off: 0x48, size: 2, mask: 0x00e0 }]);
    expect(c.read(0x48, 2)).toBe(0x28f0);
    expect(c.read(0x60, 4)).toBe(0);
  });

  it('resetting without an image is EINVAL', () => {
    expect(errnoOf(() => new ConfigSpace().resetToImage())).toBe('EINVAL');
  });
});
