/**
 * A device-side translation cache (ATS-like device IOTLB) placed in front of an IOMMU
 * domain. The device asks the domain for page translations, keeps them in a small
 * direct-mapped cache and then reaches memory directly. Correctness rests on invalidation:
 * the cache listens to the domain's UNMAP and DEVIOTLB_UNMAP events, which are delivered
 * before `unmap` returns, so a translation is never used after its mapping is gone.
 *
 * Failed translations are not cached (no negative entries), so a page mapped later is seen
 * at once. Writes mark pages dirty in the domain on every access, as if the dirty bit were
 * set at each write rather than once per cached translation, so migration never misses one.
 */
import type { DmaPort } from '../hw/dma.js';
import { fail } from '../uapi/errno.js';
import type { SparseMemory } from '../mem/sparse-memory.js';
import { PAGE_SIZE } from '../mem/sparse-memory.js';
import { IOMMU_READ, IOMMU_WRITE } from './domain.js';
import type { IommuDomain } from './domain.js';
import { IOMMUNotifierFlag } from './notifier.js';
import type { IOMMUNotifier, IOMMUTLBEvent } from './notifier.js';

export interface DevIotlbOptions {
  /** Cache entries, a power of two (default 64). */
  entries?: number;
}

export interface DevIotlbStats {
  hits: number;
  misses: number;
  /** Cached entries dropped by invalidation events. */
  invalidated: number;
}

const EMPTY = -1;

export class DevIotlb implements DmaPort {
  readonly entries: number;
  readonly stats: DevIotlbStats = { hits: 0, misses: 0, invalidated: 0 };
  private readonly tag: Float64Array;
  private readonly off: Float64Array;
  private readonly perm: Uint8Array;
  private readonly mem: (SparseMemory | null)[];
  private readonly notifier: IOMMUNotifier;
  private disposed = false;

  constructor(
    private readonly domain: IommuDomain,
    readonly requesterId: string,
    opts: DevIotlbOptions = {},
  ) {
    const n = opts.entries ?? 64;
    if (!Number.isInteger(n) || n < 1 || n > 65536 || (n & (n - 1)) !== 0) fail('EINVAL', `device IOTLB size ${n}`);
    this.entries = n;
    this.tag = new Float64Array(n).fill(EMPTY);
    this.off = new Float64Array(n);
    this.perm = new Uint8Array(n);
    this.mem = new Array<SparseMemory | null>(n).fill(null);
    this.notifier = {
      notify: (ev: IOMMUTLBEvent) => this.onInvalidate(ev),
      flags: IOMMUNotifierFlag.UNMAP | IOMMUNotifierFlag.DEVIOTLB_UNMAP,
      start: 0n,
      end: (1n << 64n) - 1n,
    };
    domain.registerNotifier(this.notifier);
  }

  /** Number of valid cached translations. */
  get cached(): number {
    let c = 0;
    for (let i = 0; i < this.entries; i++) if (this.tag[i] !== EMPTY) c++;
    return c;
  }

  private onInvalidate(ev: IOMMUTLBEvent): void {
    const first = ev.entry.iova >> 12n;
    const last = (ev.entry.iova + ev.entry.addrMask) >> 12n;
    this.invalidatePages(first, last);
  }

  /** Drops cached pages first..last (page numbers, inclusive). */
  private invalidatePages(first: bigint, last: bigint): void {
    // pages above 2^53 are never cached (no aperture reaches them), so clamping is exact
    const lim = BigInt(Number.MAX_SAFE_INTEGER);
    if (first > lim) return;
    const lo = Number(first);
    const hi = Number(last > lim ? lim : last);
    for (let i = 0; i < this.entries; i++) {
      const t = this.tag[i]!;
      if (t !== EMPTY && t >= lo && t <= hi) {
        this.tag[i] = EMPTY;
        this.mem[i] = null;
        this.stats.invalidated++;
      }
    }
  }

  /** Drops every cached translation. */
  flush(): void {
    this.tag.fill(EMPTY);
    this.mem.fill(null);
  }

  /** Stops listening to the domain; further accesses fail with EBADF-like faults ('invalid'). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.domain.unregisterNotifier(this.notifier);
    this.flush();
  }

  read(iova: number, dst: Uint8Array): boolean {
    return this.access(iova, dst, false);
  }

  write(iova: number, src: Uint8Array): boolean {
    return this.access(iova, src, true);
  }

  /** Slot holding page pfn, filling it from the domain on a miss; -1 when unmapped. */
  private slotFor(pfn: number, count: boolean): number {
    const s = pfn % this.entries;
    if (this.tag[s] === pfn) {
      if (count) this.stats.hits++;
      return s;
    }
    if (count) this.stats.misses++;
    const t = this.domain.lookup(pfn * PAGE_SIZE);
    if (t === null) return -1;
    this.tag[s] = pfn;
    this.off[s] = t.offset;
    this.perm[s] = t.perm;
    this.mem[s] = t.mem;
    return s;
  }

  private access(iova: number, buf: Uint8Array, write: boolean): boolean {
    if (this.disposed || !Number.isInteger(iova) || iova < 0 || !(buf instanceof Uint8Array)) {
      this.domain.recordFault({ requesterId: this.requesterId, iova: Number.isFinite(iova) ? iova : -1, write, reason: 'invalid' });
      return false;
    }
    const len = buf.length;
    if (len === 0) return true;
    const need = write ? IOMMU_WRITE : IOMMU_READ;
    const firstPfn = Math.floor(iova / PAGE_SIZE);
    const lastPfn = Math.floor((iova + len - 1) / PAGE_SIZE);
    // pass 1: every page must translate with permission before any byte moves
    for (let pfn = firstPfn; pfn <= lastPfn; pfn++) {
      const s = this.slotFor(pfn, true);
      const at = Math.max(iova, pfn * PAGE_SIZE);
      if (s < 0) {
        const reason = at >= this.domain.aperture ? 'aperture' : 'unmapped';
        this.domain.recordFault({ requesterId: this.requesterId, iova: at, write, reason });
        return false;
      }
      if ((this.perm[s]! & need) === 0) {
        this.domain.recordFault({ requesterId: this.requesterId, iova: at, write, reason: 'permission' });
        return false;
      }
    }
    // pass 2: copy, merging pages that are contiguous in the same memory
    let pos = 0;
    let runMem: SparseMemory | null = null;
    let runOff = 0;
    let runLen = 0;
    for (let pfn = firstPfn; pfn <= lastPfn; pfn++) {
      // pass 1 proved these translate; an access longer than the cache may have evicted some
      const s = this.slotFor(pfn, false);
      const pageLo = Math.max(iova, pfn * PAGE_SIZE);
      const pageHi = Math.min(iova + len, (pfn + 1) * PAGE_SIZE);
      const off = this.off[s]! + (pageLo - pfn * PAGE_SIZE);
      const m = this.mem[s]!;
      if (runMem === m && runOff + runLen === off) {
        runLen += pageHi - pageLo;
        continue;
      }
      if (runMem !== null) {
        this.move(runMem, runOff, buf, pos, runLen, write);
        pos += runLen;
      }
      runMem = m;
      runOff = off;
      runLen = pageHi - pageLo;
    }
    this.move(runMem!, runOff, buf, pos, runLen, write);
    if (write) this.domain.markDirty(iova, len);
    return true;
  }

  private move(m: SparseMemory, off: number, buf: Uint8Array, pos: number, n: number, write: boolean): void {
    const piece = pos === 0 && n === buf.length ? buf : buf.subarray(pos, pos + n);
    if (write) m.write(off, piece);
    else m.read(off, piece);
  }
}
