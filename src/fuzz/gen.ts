/**
 * Value generators over the seeded PRNG: mostly values that sit on a boundary of some
 * check (page alignment, argsz limits, u32/u64 edges, the user address space layout), with
 * a share of uniformly random bits so nothing relies on the fuzzer's guesses being right.
 */
import type { Rng } from '../sim/scheduler.js';
import { USER_MIN_ADDR, USER_TOP } from '../mem/user-space.js';
import type { UserLayout } from './rig.js';

export const PAGE = 4096;
export const U64_MAX = (1n << 64n) - 1n;

export function chance(rng: Rng, p: number): boolean {
  return rng.u32() < p * 0x1_0000_0000;
}

export function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)]!;
}

/** A fixed weight table for hot paths: `pick` returns an index, the caller switches on it. */
export class Weights {
  private readonly cum: Uint32Array;
  readonly total: number;
  constructor(weights: readonly number[]) {
    this.cum = new Uint32Array(weights.length);
    let t = 0;
    weights.forEach((w, i) => {
      t += w;
      this.cum[i] = t;
    });
    this.total = t;
  }
  pick(rng: Rng): number {
    const r = rng.int(this.total);
    const c = this.cum;
    let i = 0;
    while (c[i]! <= r) i++;
    return i;
  }
}

/** Weighted choice: [[weight, value], ...]. */
export function weighted<T>(rng: Rng, xs: readonly (readonly [number, T])[]): T {
  let total = 0;
  for (const [w] of xs) total += w;
  let r = rng.int(total);
  for (const [w, v] of xs) {
    if (r < w) return v;
    r -= w;
  }
  return xs[xs.length - 1]![1];
}

export function u64(rng: Rng): bigint {
  return (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
}

/** u32 values around the edges that argsz/flags/index checks care about. */
export function edgyU32(rng: Rng): number {
  return weighted(rng, [
    [4, rng.int(64)],
    [2, rng.u32()],
    [1, pick(rng, [0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x10000, 0xffff, 0x100])],
    [1, 1 << rng.int(32)],
  ]) >>> 0;
}

/** argsz: mostly the struct's own size or just around it. */
export function argsz(rng: Rng, size: number): number {
  return weighted(rng, [
    [10, size],
    [2, Math.max(0, size - 1 - rng.int(8))],
    [2, size + rng.int(64)],
    [1, rng.int(size + 1)],
    [1, edgyU32(rng)],
  ]);
}

/** Length of the user buffer behind an ioctl pointer: usually covers argsz, sometimes not. */
export function bufLen(rng: Rng, argszV: number, size: number): number {
  const want = Math.max(argszV, size);
  return weighted(rng, [
    [12, Math.min(want, 4096)],
    [2, Math.min(size, 4096)],
    [1, rng.int(size + 1)],
    [1, Math.min(want + rng.int(64), 4096)],
  ]);
}

/** User pointers: valid memory, its edges, read-only memory, holes, NULL and wild values. */
export function userPtr(rng: Rng, u: UserLayout, len = 8): bigint {
  const n = BigInt;
  return weighted<() => bigint>(rng, [
    [8, () => n(u.rw + rng.int(u.rwLen / 8) * 8)],
    [2, () => n(u.rw + Math.max(0, u.rwLen - len + 8 * (1 + rng.int(4))))],
    [2, () => n(u.ro + rng.int(u.roLen / 8) * 8)],
    [2, () => n(u.pairA + u.pairLen - 8 * (1 + rng.int(4)))],
    [2, () => n(u.rw + u.rwLen + rng.int(PAGE))],
    [1, () => n(u.ram + rng.int(1024) * PAGE)],
    [1, () => 0n],
    [1, () => n(rng.int(USER_MIN_ADDR))],
    [1, () => n(USER_TOP - 8 * rng.int(4))],
    [1, () => n(u.rw + 1 + rng.int(7))],
    [1, () => pick(rng, [U64_MAX, 1n << 63n, 1n << 53n, (1n << 53n) - 8n])],
    [1, () => u64(rng)],
  ])();
}

/** IOVAs on a small grid (so mappings collide), at the reserved MSI window, the aperture edge and beyond. */
export function iova(rng: Rng, existing: readonly { iova: number; size: number }[]): bigint {
  const n = BigInt;
  return weighted<() => bigint>(rng, [
    [10, () => n(0x100000 + rng.int(256) * PAGE)],
    [3, () => {
      if (existing.length === 0) return n(0x100000);
      const m = pick(rng, existing);
      return n(m.iova + pick(rng, [0, 0, PAGE, m.size, m.size - PAGE]));
    }],
    [2, () => n(0x8000000 - 4 * PAGE + rng.int(16) * PAGE)],
    [1, () => n(0x80ff000 + rng.int(4) * PAGE)],
    [1, () => (1n << 48n) - n(PAGE * (1 + rng.int(4)))],
    [1, () => (1n << 48n) + n(rng.int(4) * PAGE)],
    [1, () => U64_MAX + 1n - n(PAGE * (1 + rng.int(4)))],
    [1, () => n(0x100000 + rng.int(256) * PAGE + 1 + rng.int(PAGE - 1))],
    [1, () => 0n],
    [1, () => u64(rng)],
  ])();
}

export function size(rng: Rng, at: bigint, existing: readonly { iova: number; size: number }[]): bigint {
  const n = BigInt;
  return weighted<() => bigint>(rng, [
    [10, () => n(PAGE * (1 + rng.int(16)))],
    [2, () => n(PAGE * (1 + rng.int(512)))],
    [2, () => (existing.length > 0 ? n(pick(rng, existing).size) : n(PAGE))],
    [1, () => 0n],
    [1, () => n(1 + rng.int(PAGE * 4))],
    [1, () => (U64_MAX + 1n - at) & U64_MAX],
    [1, () => U64_MAX + 1n - at + n(PAGE)],
    [1, () => n(PAGE) << n(20 + rng.int(30))],
    [1, () => u64(rng)],
  ])() & U64_MAX;
}

/** MAP_DMA vaddrs: inside the target's guest RAM mostly, else the other segments and holes. */
export function vaddr(rng: Rng, u: UserLayout): bigint {
  const n = BigInt;
  const ramPages = u.ramMem.size / PAGE;
  return weighted<() => bigint>(rng, [
    [10, () => n(u.ram + rng.int(ramPages) * PAGE)],
    [2, () => n(u.ro)],
    [2, () => n(u.pairA + u.pairLen - PAGE)],
    [1, () => n(u.rw)],
    [1, () => n(u.ram + u.ramMem.size - PAGE)],
    [1, () => n(u.ram + rng.int(ramPages) * PAGE + 8)],
    [1, () => 0n],
    [1, () => u64(rng) & ~0xfffn],
  ])();
}
