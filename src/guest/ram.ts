/**
 * A first-fit allocator over a window of guest physical memory. The free list is a sorted
 * pair of number arrays (start, length) coalesced on free; live blocks are one map entry
 * each. Nothing is kept per byte or per page, so a window can be terabytes.
 */
import { fail } from '../uapi/errno.js';
import type { SparseMemory } from '../mem/sparse-memory.js';
import type { GuestMemory, GuestRam } from './io.js';

/** The allocator's bookkeeping as plain data (part of the guest's CPU-side state). */
export interface GuestRamAllocatorState {
  base: number;
  size: number;
  /** Free extents, ascending: [start, length]. */
  free: [number, number][];
  /** Live blocks: [address, length]. */
  live: [number, number][];
}

/** Memory the allocator can manage: the driver's operations plus a size bounding the window. */
export type SizedGuestMemory = GuestMemory & { readonly size: number };

export class GuestRamAllocator<M extends SizedGuestMemory = SparseMemory> implements GuestRam {
  readonly mem: M;
  readonly base: number;
  readonly size: number;
  private starts: number[] = [];
  private lens: number[] = [];
  private readonly live = new Map<number, number>();
  private used = 0;

  /** Manages [base, base+size) of `mem`. */
  constructor(mem: M, base: number, size: number) {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(size) || base < 0 || size <= 0 || base + size > mem.size) {
      fail('EINVAL', `RAM window [${base}, +${size}) does not fit a memory of ${mem.size} bytes`);
    }
    this.mem = mem;
    this.base = base;
    this.size = size;
    this.starts.push(base);
    this.lens.push(size);
  }

  get usedBytes(): number {
    return this.used;
  }

  get freeBytes(): number {
    return this.size - this.used;
  }

  /** Number of live blocks. */
  get blocks(): number {
    return this.live.size;
  }

  /** Size of the live block at `addr`, or undefined. */
  sizeOf(addr: number): number | undefined {
    return this.live.get(addr);
  }

  alloc(size: number, align = 64): number {
    if (!Number.isSafeInteger(size) || size < 0) fail('EINVAL', `allocation size ${size}`);
    if (!Number.isSafeInteger(align) || align < 1 || (align & (align - 1)) !== 0 || align > 2 ** 30) {
      fail('EINVAL', `alignment ${align} is not a power of two`);
    }
    // A zero-byte request still gets a distinct address the device can be pointed at.
    const n = Math.max(1, size);
    for (let i = 0; i < this.starts.length; i++) {
      const s = this.starts[i]!;
      const len = this.lens[i]!;
      const at = Math.ceil(s / align) * align;
      const end = s + len;
      if (at + n > end) continue;
      const before = at - s;
      const after = end - (at + n);
      if (before > 0 && after > 0) {
        this.lens[i] = before;
        this.starts.splice(i + 1, 0, at + n);
        this.lens.splice(i + 1, 0, after);
      } else if (before > 0) {
        this.lens[i] = before;
      } else if (after > 0) {
        this.starts[i] = at + n;
        this.lens[i] = after;
      } else {
        this.starts.splice(i, 1);
        this.lens.splice(i, 1);
      }
      this.live.set(at, n);
      this.used += n;
      return at;
    }
    return fail('ENOMEM', `no ${n}-byte block (align ${align}) left in guest RAM (${this.freeBytes} bytes free)`);
  }

  free(addr: number): void {
    const n = this.live.get(addr);
    if (n === undefined) fail('EINVAL', `free of ${addr}: not an allocated block`);
    this.live.delete(addr);
    this.used -= n;
    // First free extent starting after addr.
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! < addr) lo = mid + 1;
      else hi = mid;
    }
    const i = lo;
    const joinPrev = i > 0 && this.starts[i - 1]! + this.lens[i - 1]! === addr;
    const joinNext = i < this.starts.length && addr + n === this.starts[i]!;
    if (joinPrev && joinNext) {
      this.lens[i - 1] = this.lens[i - 1]! + n + this.lens[i]!;
      this.starts.splice(i, 1);
      this.lens.splice(i, 1);
    } else if (joinPrev) {
      this.lens[i - 1] = this.lens[i - 1]! + n;
    } else if (joinNext) {
      this.starts[i] = addr;
      this.lens[i] = this.lens[i]! + n;
    } else {
      this.starts.splice(i, 0, addr);
      this.lens.splice(i, 0, n);
    }
  }

  /** The bookkeeping as plain data (JSON-safe). */
  saveState(): GuestRamAllocatorState {
    return { base: this.base, size: this.size, free: this.freeList(), live: [...this.live.entries()] };
  }

  /**
   * Replaces the bookkeeping with a saved one for the same window. EINVAL (nothing changed)
   * when the state does not describe this window consistently: extents and blocks must be
   * inside it, sorted, disjoint, and together cover it exactly.
   */
  restoreState(st: GuestRamAllocatorState): void {
    if (st === null || typeof st !== 'object' || st.base !== this.base || st.size !== this.size) {
      fail('EINVAL', 'allocator state is for another RAM window');
    }
    const pieces: [number, number][] = [];
    for (const list of [st.free, st.live]) {
      if (!Array.isArray(list)) fail('EINVAL', 'allocator state lists missing');
      for (const e of list) {
        if (!Array.isArray(e) || e.length !== 2 || !Number.isSafeInteger(e[0]) || !Number.isSafeInteger(e[1]) || e[1] <= 0) {
          fail('EINVAL', 'bad allocator extent');
        }
        pieces.push([e[0], e[1]]);
      }
    }
    pieces.sort((a, b) => a[0] - b[0]);
    let at = this.base;
    for (const [s, n] of pieces) {
      if (s !== at) fail('EINVAL', `allocator state does not tile the window at ${at}`);
      at = s + n;
    }
    if (at !== this.base + this.size) fail('EINVAL', 'allocator state does not cover the window');
    const free = [...st.free].sort((a, b) => a[0] - b[0]);
    this.starts = free.map((e) => e[0]);
    this.lens = free.map((e) => e[1]);
    this.live.clear();
    this.used = 0;
    for (const [a, n] of st.live) {
      this.live.set(a, n);
      this.used += n;
    }
  }

  /** Free extents as [start, length] pairs, ascending (for tests and debug views). */
  freeList(): [number, number][] {
    return this.starts.map((s, i) => [s, this.lens[i]!]);
  }
}
