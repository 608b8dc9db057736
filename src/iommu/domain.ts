/**
 * An IOMMU translation domain: the page tables a group of devices sits behind. IOVA pages
 * map to (SparseMemory, offset) with READ/WRITE permission. Mappings are kept as extents in
 * a sorted array (binary search plus a last-hit cache), never per page, so a domain can map
 * terabytes. Devices reach memory only through `port()`, which translates, checks
 * permission, copies, and records faults instead of throwing.
 *
 * Dirty tracking models hardware-managed dirty bits (HTTU-like): while on, every DMA write
 * sets one bit per touched page in a per-extent Bitmap, and `readAndClearDirty` harvests them
 * into a u64-LE bitmap the way IOMMU_HWPT_GET_DIRTY_BITMAP does.
 */
import type { DmaPort } from '../hw/dma.js';
import { fail } from '../uapi/errno.js';
import { Bitmap } from '../mem/bitmap.js';
import { PAGE_SIZE, SparseMemory } from '../mem/sparse-memory.js';
import {
  IOMMUNotifierFlag,
  NotifierList,
  decodeDevIotlbInvalidation,
  notifyOne,
  splitUnmapRange,
  validateNotifier,
} from './notifier.js';
import type { IOMMUAccessFlag, IOMMUNotifier } from './notifier.js';

export const IOMMU_READ = 1;
export const IOMMU_WRITE = 2;
/** readAndClearDirty flag: report without clearing (IOMMU_DIRTY_NO_CLEAR). */
export const IOMMU_DIRTY_NO_CLEAR = 1;
export const DEFAULT_GAW = 48;
export const FAULT_LOG_SIZE = 256;

export type IommuFaultReason = 'unmapped' | 'permission' | 'aperture' | 'invalid';

export interface IommuFault {
  requesterId: string;
  iova: number;
  write: boolean;
  reason: IommuFaultReason;
}

/** Where one IOVA lands: `length` bytes from `offset` on are contiguous in `mem`. */
export interface Translation {
  mem: SparseMemory;
  offset: number;
  perm: number;
  length: number;
}

export interface MappingInfo {
  iova: number;
  size: number;
  mem: SparseMemory;
  memOffset: number;
  perm: number;
}

export interface IommuDomainOptions {
  /** Guest address width: the aperture is [0, 2^gaw). 12..52, default 48. */
  gaw?: number;
}

interface Extent {
  iova: number;
  /** Exclusive end. */
  end: number;
  mem: SparseMemory;
  memOffset: number;
  perm: number;
  dirty: Bitmap | null;
}

function isPageAligned(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n % PAGE_SIZE === 0;
}

/** With a summary level, so a harvest costs what the dirty pages cost, not the range. */
function newDirtyBitmap(pages: number): Bitmap {
  return new Bitmap(pages, undefined, { summary: true });
}

export class IommuDomain {
  readonly gaw: number;
  /** 2^gaw: IOVAs at or above it never translate. */
  readonly aperture: number;
  /** Called for every recorded fault (after it is logged). */
  onFault: ((f: IommuFault) => void) | null = null;

  private ext: Extent[] = [];
  private lastHit = -1;
  private tracking = false;
  private readonly notifiers = new NotifierList();
  private readonly ports = new Map<string, DmaPort>();
  private readonly faultRing: IommuFault[] = [];
  private faultTotal = 0;
  private mapped = 0;

  constructor(opts: IommuDomainOptions = {}) {
    const gaw = opts.gaw ?? DEFAULT_GAW;
    if (!Number.isInteger(gaw) || gaw < 12 || gaw > 52) fail('EINVAL', `address width ${gaw} outside 12..52`);
    this.gaw = gaw;
    this.aperture = 2 ** gaw;
  }

  // ---- mapping ---------------------------------------------------------------------------

  private checkRange(iova: number, size: number): void {
    if (!isPageAligned(iova) || !isPageAligned(size) || size === 0) fail('EINVAL', `range [${iova}, +${size}) not page aligned or empty`);
    if (iova + size > this.aperture) fail('EINVAL', `range [${iova}, +${size}) outside the ${this.gaw}-bit aperture`);
  }

  /**
   * Maps [iova, iova+size) to mem[memOffset, ...) with perm (IOMMU_READ | IOMMU_WRITE).
   * EINVAL: unaligned, empty, outside the aperture, bad perm or offset; EFAULT: the target
   * runs past the memory; EEXIST: any page already mapped; while tracking, EINVAL for more
   * than BITMAP_MAX_BITS pages and ENOMEM when the bitmap cannot be allocated. On error
   * nothing changes. Announces MAP events in naturally aligned chunks.
   */
  map(iova: number, size: number, mem: SparseMemory, memOffset: number, perm: number): void {
    this.checkRange(iova, size);
    if (!Number.isInteger(perm) || perm <= 0 || (perm & ~(IOMMU_READ | IOMMU_WRITE)) !== 0) fail('EINVAL', `perm ${perm}`);
    if (!(mem instanceof SparseMemory)) fail('EINVAL', 'map target is not a memory');
    if (!isPageAligned(memOffset)) fail('EINVAL', `memory offset ${memOffset} not page aligned`);
    if (memOffset + size > mem.size) fail('EFAULT', 'mapping runs past the end of its memory');
    const i = this.firstEndingAfter(iova);
    if (i < this.ext.length && this.ext[i]!.iova < iova + size) fail('EEXIST', `[${iova}, +${size}) overlaps a mapping`);
    const dirty = this.tracking ? newDirtyBitmap(size / PAGE_SIZE) : null;
    this.ext.splice(i, 0, { iova, end: iova + size, mem, memOffset, perm, dirty });
    this.mapped += size;
    this.lastHit = -1;
    if (this.notifiers.flags & IOMMUNotifierFlag.MAP) this.announceMap(iova, size, memOffset, perm, null);
  }

  private announceMap(iova: number, size: number, memOffset: number, perm: number, only: IOMMUNotifier | null): void {
    const p = perm as IOMMUAccessFlag;
    for (const c of splitUnmapRange(BigInt(iova), BigInt(iova + size - 1), this.gaw)) {
      const event = {
        type: IOMMUNotifierFlag.MAP,
        entry: { iova: c.iova, translatedAddr: BigInt(memOffset) + (c.iova - BigInt(iova)), addrMask: c.addrMask, perm: p },
      } as const;
      if (only) notifyOne(only, event);
      else this.notifiers.notify(event);
    }
  }

  /**
   * Unmaps every mapped page in [iova, iova+size), splitting extents that straddle the
   * edges, and returns the number of bytes that were mapped. Holes are fine. UNMAP events
   * for the removed ranges go out before this returns.
   */
  unmap(iova: number, size: number): number {
    this.checkRange(iova, size);
    const end = iova + size;
    const i = this.firstEndingAfter(iova);
    let j = i;
    while (j < this.ext.length && this.ext[j]!.iova < end) j++;
    if (j === i) return 0;
    // build replacements first so an allocation failure leaves the domain untouched
    const keep: Extent[] = [];
    const head = this.ext[i]!;
    if (head.iova < iova) keep.push(this.slice(head, head.iova, iova));
    const tail = this.ext[j - 1]!;
    if (tail.end > end) keep.push(this.slice(tail, end, tail.end));
    const removed: Array<[number, number]> = [];
    let bytes = 0;
    for (let k = i; k < j; k++) {
      const e = this.ext[k]!;
      const lo = Math.max(e.iova, iova);
      const hi = Math.min(e.end, end);
      bytes += hi - lo;
      const prev = removed[removed.length - 1];
      if (prev && prev[1] === lo) prev[1] = hi;
      else removed.push([lo, hi]);
    }
    this.ext.splice(i, j - i, ...keep);
    this.mapped -= bytes;
    this.lastHit = -1;
    if (this.notifiers.flags & IOMMUNotifierFlag.UNMAP) {
      for (const [lo, hi] of removed) {
        for (const c of splitUnmapRange(BigInt(lo), BigInt(hi - 1), this.gaw)) {
          this.notifiers.notify({
            type: IOMMUNotifierFlag.UNMAP,
            entry: { iova: c.iova, translatedAddr: 0n, addrMask: c.addrMask, perm: 0 },
          });
        }
      }
    }
    return bytes;
  }

  /** The part [lo, hi) of an extent as a new extent, carrying its dirty bits. */
  private slice(e: Extent, lo: number, hi: number): Extent {
    let dirty: Bitmap | null = null;
    if (e.dirty) {
      const pages = (hi - lo) / PAGE_SIZE;
      dirty = newDirtyBitmap(pages);
      dirty.orFrom(e.dirty, 0, (lo - e.iova) / PAGE_SIZE, pages);
    }
    return { iova: lo, end: hi, mem: e.mem, memOffset: e.memOffset + (lo - e.iova), perm: e.perm, dirty };
  }

  /** Index of the first extent whose end is above addr (binary search). */
  private firstEndingAfter(addr: number): number {
    const x = this.ext;
    let lo = 0;
    let hi = x.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (x[mid]!.end <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the extent containing iova, or -1. */
  private indexOf(iova: number): number {
    const c = this.lastHit;
    if (c >= 0) {
      const e = this.ext[c]!;
      if (iova >= e.iova && iova < e.end) return c;
    }
    const i = this.firstEndingAfter(iova);
    if (i < this.ext.length && this.ext[i]!.iova <= iova) {
      this.lastHit = i;
      return i;
    }
    return -1;
  }

  get mappedBytes(): number {
    return this.mapped;
  }

  get extentCount(): number {
    return this.ext.length;
  }

  mappings(): MappingInfo[] {
    return this.ext.map((e) => ({ iova: e.iova, size: e.end - e.iova, mem: e.mem, memOffset: e.memOffset, perm: e.perm }));
  }

  /** The mapping behind iova whatever its permission, or null. */
  lookup(iova: number): Translation | null {
    if (!Number.isInteger(iova) || iova < 0 || iova >= this.aperture) return null;
    const i = this.indexOf(iova);
    if (i < 0) return null;
    const e = this.ext[i]!;
    return { mem: e.mem, offset: e.memOffset + (iova - e.iova), perm: e.perm, length: e.end - iova };
  }

  /** Like lookup, but null unless the access (read, or write when `write`) is permitted. */
  translate(iova: number, write = false): Translation | null {
    const t = this.lookup(iova);
    if (t === null) return null;
    return t.perm & (write ? IOMMU_WRITE : IOMMU_READ) ? t : null;
  }

  // ---- device access ---------------------------------------------------------------------

  /** The DMA path of one requester (PCI function); one port object per requester id. */
  port(requesterId: string): DmaPort {
    let p = this.ports.get(requesterId);
    if (p === undefined) {
      p = {
        read: (iova: number, dst: Uint8Array) => this.access(requesterId, iova, dst, false),
        write: (iova: number, src: Uint8Array) => this.access(requesterId, iova, src, true),
        readView: (iova: number, len: number) => this.view(iova, len),
      };
      this.ports.set(requesterId, p);
    }
    return p;
  }

  /**
   * Zero-copy read for an engine's source: a live view when [iova, iova+len) lies in one
   * readable extent whose memory can lend it. Null otherwise; the caller's read() then does
   * the access, and records any fault, as usual.
   */
  private view(iova: number, len: number): Uint8Array | null {
    if (!Number.isInteger(iova) || iova < 0 || !Number.isInteger(len) || len <= 0) return null;
    const i = this.indexOf(iova);
    if (i < 0) return null;
    const e = this.ext[i]!;
    if ((e.perm & IOMMU_READ) === 0 || iova + len > e.end) return null;
    return e.mem.view(e.memOffset + (iova - e.iova), len);
  }

  /**
   * Checks every byte's translation and permission before copying anything, so a failed
   * access has no effect besides the fault record.
   */
  private access(requesterId: string, iova: number, buf: Uint8Array, write: boolean): boolean {
    if (!Number.isInteger(iova) || iova < 0 || !(buf instanceof Uint8Array)) {
      return this.fault(requesterId, Number.isFinite(iova) ? iova : -1, write, 'invalid');
    }
    const len = buf.length;
    if (len === 0) return true;
    const end = iova + len;
    const need = write ? IOMMU_WRITE : IOMMU_READ;
    const first = this.indexOf(iova);
    if (first < 0) return this.fault(requesterId, iova, write, iova >= this.aperture ? 'aperture' : 'unmapped');
    const e0 = this.ext[first]!;
    if ((e0.perm & need) === 0) return this.fault(requesterId, iova, write, 'permission');
    if (end <= e0.end) {
      // the common case: one extent
      const off = e0.memOffset + (iova - e0.iova);
      if (write) {
        e0.mem.write(off, buf);
        if (e0.dirty) this.setDirty(e0, iova, end);
      } else {
        e0.mem.read(off, buf);
      }
      return true;
    }
    let k = first;
    let at = e0.end;
    while (at < end) {
      k++;
      const e = k < this.ext.length ? this.ext[k]! : null;
      if (e === null || e.iova !== at) return this.fault(requesterId, at, write, at >= this.aperture ? 'aperture' : 'unmapped');
      if ((e.perm & need) === 0) return this.fault(requesterId, at, write, 'permission');
      at = e.end;
    }
    let pos = 0;
    for (let m = first; m <= k; m++) {
      const e = this.ext[m]!;
      const lo = Math.max(e.iova, iova);
      const hi = Math.min(e.end, end);
      const piece = buf.subarray(pos, pos + (hi - lo));
      const off = e.memOffset + (lo - e.iova);
      if (write) {
        e.mem.write(off, piece);
        if (e.dirty) this.setDirty(e, lo, hi);
      } else {
        e.mem.read(off, piece);
      }
      pos += hi - lo;
    }
    return true;
  }

  private setDirty(e: Extent, lo: number, hi: number): void {
    const p0 = Math.floor((lo - e.iova) / PAGE_SIZE);
    const p1 = Math.floor((hi - 1 - e.iova) / PAGE_SIZE);
    e.dirty!.setRange(p0, p1 - p0 + 1);
  }

  private fault(requesterId: string, iova: number, write: boolean, reason: IommuFaultReason): false {
    this.recordFault({ requesterId, iova, write, reason });
    return false;
  }

  /** Logs a translation fault (also used by device IOTLBs whose translation requests fail). */
  recordFault(f: IommuFault): void {
    const rec = { requesterId: f.requesterId, iova: f.iova, write: f.write, reason: f.reason };
    this.faultRing[this.faultTotal % FAULT_LOG_SIZE] = rec;
    this.faultTotal++;
    this.onFault?.(rec);
  }

  /** The most recent faults (at most FAULT_LOG_SIZE), oldest first. */
  get faults(): IommuFault[] {
    const n = Math.min(this.faultTotal, FAULT_LOG_SIZE);
    const out: IommuFault[] = [];
    for (let i = this.faultTotal - n; i < this.faultTotal; i++) out.push(this.faultRing[i % FAULT_LOG_SIZE]!);
    return out;
  }

  /** Faults ever recorded, including those that dropped out of the log. */
  get faultCount(): number {
    return this.faultTotal;
  }

  clearFaults(): void {
    this.faultRing.length = 0;
    this.faultTotal = 0;
  }

  // ---- dirty tracking --------------------------------------------------------------------

  get dirtyTracking(): boolean {
    return this.tracking;
  }

  /**
   * Turning tracking on gives every mapping a clean bitmap (EINVAL/ENOMEM as for map leave
   * it off); turning it on again keeps the bits. Turning it off drops all bits.
   */
  setDirtyTracking(on: boolean): void {
    if (on === this.tracking) return;
    if (on) {
      const maps = this.ext.map((e) => newDirtyBitmap((e.end - e.iova) / PAGE_SIZE));
      this.ext.forEach((e, k) => (e.dirty = maps[k]!));
    } else {
      for (const e of this.ext) e.dirty = null;
    }
    this.tracking = on;
  }

  /**
   * Marks [iova, iova+len) dirty for writers that bypass the ports (CPU-side emulation).
   * Unmapped parts are ignored; nothing happens while tracking is off.
   */
  markDirty(iova: number, len: number): void {
    if (!Number.isInteger(iova) || !Number.isInteger(len) || iova < 0 || len < 0) fail('EINVAL', 'bad dirty range');
    if (!this.tracking || len === 0) return;
    const end = iova + len;
    for (let k = this.firstEndingAfter(iova); k < this.ext.length && this.ext[k]!.iova < end; k++) {
      const e = this.ext[k]!;
      this.setDirty(e, Math.max(e.iova, iova), Math.min(e.end, end));
    }
  }

  /**
   * ORs the dirty bits of [iova, iova+size) into the u64-LE bitmap `out`, page i of the range
   * at bit outBitOffset + i, and clears them unless flags has IOMMU_DIRTY_NO_CLEAR. Holes
   * contribute nothing. EINVAL: tracking off, unknown flags, unaligned/empty/out-of-aperture
   * range, or `out` too small for the range.
   */
  readAndClearDirty(iova: number, size: number, out: Uint8Array, outBitOffset = 0, flags = 0): void {
    if (!this.tracking) fail('EINVAL', 'dirty tracking is off');
    if (!Number.isInteger(flags) || (flags & ~IOMMU_DIRTY_NO_CLEAR) !== 0) fail('EINVAL', `flags ${flags}`);
    this.checkRange(iova, size);
    if (!Number.isInteger(outBitOffset) || outBitOffset < 0) fail('EINVAL', `bit offset ${outBitOffset}`);
    const pages = size / PAGE_SIZE;
    if (outBitOffset + pages > out.length * 8) fail('EINVAL', `${pages} bits at ${outBitOffset} do not fit ${out.length} bytes`);
    const keep = (flags & IOMMU_DIRTY_NO_CLEAR) !== 0;
    const end = iova + size;
    for (let k = this.firstEndingAfter(iova); k < this.ext.length && this.ext[k]!.iova < end; k++) {
      const e = this.ext[k]!;
      const lo = Math.max(e.iova, iova);
      const hi = Math.min(e.end, end);
      const src = (lo - e.iova) / PAGE_SIZE;
      const count = (hi - lo) / PAGE_SIZE;
      const dst = outBitOffset + (lo - iova) / PAGE_SIZE;
      if (keep) e.dirty!.orInto(out, dst, src, count);
      else e.dirty!.readAndClearInto(out, dst, src, count);
    }
  }

  /**
   * The live dirty bitmap of the mapping containing iova (bit 0 = its first page), or null.
   * It keeps a summary level: bits written through `words` need `noteWordsWritten`.
   */
  dirtyBitmapAt(iova: number): Bitmap | null {
    const i = Number.isInteger(iova) && iova >= 0 ? this.indexOf(iova) : -1;
    return i < 0 ? null : this.ext[i]!.dirty;
  }

  // ---- notifiers -------------------------------------------------------------------------

  registerNotifier(n: IOMMUNotifier): void {
    this.notifiers.register(n);
  }

  unregisterNotifier(n: IOMMUNotifier): boolean {
    return this.notifiers.unregister(n);
  }

  /**
   * Tells one notifier about every present mapping (MAP events, never UNMAP), cropped to its
   * range. A notifier without MAP interest gets nothing and costs no walk.
   */
  replay(n: IOMMUNotifier): void {
    validateNotifier(n);
    if ((n.flags & IOMMUNotifierFlag.MAP) === 0) return;
    for (const e of this.ext.slice()) {
      if (BigInt(e.end - 1) < n.start || BigInt(e.iova) > n.end) continue;
      this.announceMap(e.iova, e.end - e.iova, e.memOffset, e.perm, n);
    }
  }

  /** A guest-issued device-IOTLB invalidation (VT-d address + S bit) sent to the notifiers. */
  invalidateDeviceIotlb(addr: bigint, s: boolean | 0 | 1): void {
    this.notifiers.notify(decodeDevIotlbInvalidation(addr, s));
  }
}
