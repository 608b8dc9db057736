/**
 * `struct vfio_dma` and the container's sorted set of them (the kernel's dma_list rb-tree).
 *
 * Mappings never overlap, so a sorted array with binary search answers every query the
 * rb-tree does. A mapping carries only O(1) state besides its dirty Bitmap: pinned pages
 * live in a Map keyed by page index (the vfio_pfn records: memory and pin count) and, as
 * bits, in a PinSet that refills the dirty bitmap word-wise.
 */
import type { Bitmap } from '../../mem/bitmap.js';
import type { SparseMemory } from '../../mem/sparse-memory.js';
import { PAGE_SIZE } from './constants.js';
import { PinSet } from './pin-set.js';

/** One contiguous piece of host memory behind part of a mapping ([off, off+len) of the IOVA range). */
export interface DmaPiece {
  readonly off: number;
  readonly len: number;
  readonly mem: SparseMemory;
  readonly memOffset: number;
}

/** A page a vendor driver pinned (`struct vfio_pfn`): where it lives and how often it is pinned. */
export interface PinRecord {
  count: number;
  readonly mem: SparseMemory;
  readonly offset: number;
}

export class VfioDma {
  readonly iova: number;
  readonly size: number;
  /** Exclusive end (iova + size); exact because both are page multiples below 2^64. */
  readonly end: number;
  readonly npages: number;
  /** IOMMU_READ | IOMMU_WRITE. */
  readonly prot: number;
  vaddr: number;
  /** Set by UNMAP_DMA with FLAG_VADDR until MAP_DMA with FLAG_VADDR supplies a new one. */
  vaddrInvalid = false;
  /**
   * The pinned host memory mapped into the container's IOMMU domain; null while the
   * container has no IOMMU-backed group (`dma->iommu_mapped` is `pieces !== null`).
   */
  pieces: DmaPiece[] | null = null;
  /** Dirty bits at PAGE_SIZE granularity while the container tracks dirty pages. */
  bitmap: Bitmap | null = null;
  /**
   * False only when `bitmap` is known to be all zero, so a report can skip clearing it.
   * Every path that sets a bit (pin, dma_rw, START, refill, detach) sets this.
   */
  bitmapMaybeDirty = false;
  /** Pinned pages by page index (vendor pins through vfio_pin_pages); change via addPin/dropPin. */
  readonly pins = new Map<number, PinRecord>();
  /** The keys of `pins` as bits. */
  private readonly pinBits = new PinSet();

  constructor(iova: number, size: number, vaddr: number, prot: number) {
    this.iova = iova;
    this.size = size;
    this.end = iova + size;
    this.npages = size / PAGE_SIZE;
    this.vaddr = vaddr;
    this.prot = prot;
  }

  get iommuMapped(): boolean {
    return this.pieces !== null;
  }

  addPin(page: number, rec: PinRecord): void {
    this.pins.set(page, rec);
    this.pinBits.add(page);
  }

  dropPin(page: number): void {
    this.pins.delete(page);
    this.pinBits.delete(page);
  }

  clearPins(): void {
    this.pins.clear();
    this.pinBits.clear();
  }

  /**
   * vfio_dma_populate_bitmap: every pinned page counts as dirty. Costs a few word ORs per
   * 1024-page block holding pins.
   */
  populateFromPins(): void {
    const bm = this.bitmap;
    if (bm === null || this.pinBits.size === 0) return;
    this.pinBits.orInto(bm);
    this.bitmapMaybeDirty = true;
  }
}

export class DmaList {
  private items: VfioDma[] = [];

  get length(): number {
    return this.items.length;
  }

  at(i: number): VfioDma {
    return this.items[i]!;
  }

  all(): readonly VfioDma[] {
    return this.items;
  }

  /** Index of the first mapping whose end lies above addr. */
  firstEndingAfter(addr: number): number {
    const x = this.items;
    let lo = 0;
    let hi = x.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (x[mid]!.end <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the first mapping starting at or above addr. */
  firstStartingAtOrAfter(addr: number): number {
    const x = this.items;
    let lo = 0;
    let hi = x.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (x[mid]!.iova < addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * vfio_find_dma(start, size): a mapping overlapping [start, start+size). With size 0 the
   * kernel's comparisons find a mapping that contains `start` strictly after its first byte.
   */
  find(start: number, size: number): VfioDma | null {
    const i = this.firstEndingAfter(start);
    if (i >= this.items.length) return null;
    const d = this.items[i]!;
    const hit = size === 0 ? d.iova < start : d.iova < start + size;
    return hit ? d : null;
  }

  /** The mapping containing byte addr, or null. */
  containing(addr: number): VfioDma | null {
    return this.find(addr, 1);
  }

  insert(d: VfioDma): void {
    this.items.splice(this.firstEndingAfter(d.iova), 0, d);
  }

  /** Removes `count` entries from index i (one splice for a whole unmapped run). */
  removeAt(i: number, count: number): void {
    if (count > 0) this.items.splice(i, count);
  }

  remove(d: VfioDma): void {
    const i = this.items.indexOf(d, this.firstEndingAfter(d.iova));
    if (i >= 0) this.items.splice(i, 1);
  }

  clear(): void {
    this.items = [];
  }
}
