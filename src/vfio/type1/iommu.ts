/**
 * `struct vfio_iommu`: the state behind a container once VFIO_SET_IOMMU picked type1 — the
 * DMA mappings, the groups and their dirty scope, dirty tracking, and the vendor-driver API
 * (vfio_pin_pages / vfio_unpin_pages / vfio_dma_rw / the DMA_UNMAP notifier). Behaviour is
 * the merged kernel's ([M] in vfio-type1-dirty.md); `legacy: 'v16'` only changes
 * UNMAP_DMA with GET_DIRTY_BITMAP (spec section 2, last paragraph).
 *
 * One IommuDomain per container: every IOMMU-backed group joins the same domain (Linux reuses
 * a compatible domain the same way; all functions here sit behind the same SMMU), created
 * when the first such group attaches (replaying the existing mappings into it) and dropped
 * when the last one leaves. Emulated (mdev-like) groups never get a domain; their vendor
 * drivers reach memory through pinPages/dmaRw.
 *
 * Methods throw KernelError; the ioctl layer (ioctls.ts) turns that into -errno.
 */
import { IommuDomain, IOMMU_READ, IOMMU_WRITE } from '../../iommu/domain.js';
import { Bitmap } from '../../mem/bitmap.js';
import type { SparseMemory } from '../../mem/sparse-memory.js';
import type { UserAddressSpace } from '../../mem/user-space.js';
import { KernelError, fail } from '../../uapi/errno.js';
import {
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR,
} from '../../uapi/vfio.js';
import {
  DIRTY_BITMAP_PAGES_MAX,
  DMA_ENTRY_LIMIT_DEFAULT,
  PAGE_MASK_U64,
  PAGE_SIZE,
  SMMU_PGSIZE_BITMAP,
  U64_MAX,
  UNMAP_NOTIFY_RETRIES,
  VFIO_PIN_PAGES_MAX_ENTRIES,
} from './constants.js';
import type { IovaRange } from './constants.js';
import { DmaList, VfioDma } from './dma.js';
import { computeIovaList, fullIovaList, iovaRangeValid } from './iova-list.js';
import { reportDmaToUser } from './user-bitmap.js';
import { resolveUserRange, userProtFor } from './user-pages.js';

/** What type1 needs from a VFIO group (VfioGroup implements it). */
export interface Type1Group {
  readonly id: number;
  /** Devices behind the IOMMU (DMA straight to memory) vs emulated ones that only pin. */
  readonly iommuBacked: boolean;
  /** Reserved IOVA regions of the group (IOMMU-backed groups only). */
  readonly reservedRegions: readonly IovaRange[];
  /** Number of devices in the group (pinning needs exactly one). */
  readonly memberCount: number;
  /** Called with the container's domain on attach and with null on detach. */
  bindDomain(domain: IommuDomain | null): void;
}

/** VFIO_IOMMU_NOTIFY_DMA_UNMAP: [iova, iova+size) is going away; unpin everything in it. */
export type DmaUnmapNotifier = (iova: number, size: number) => void;

/** What vfio_pin_pages hands back per page: the host memory behind it. */
export interface PinnedPage {
  readonly iova: number;
  readonly mem: SparseMemory;
  readonly offset: number;
}

/** The vfio_bitmap of an UNMAP_DMA with GET_DIRTY_BITMAP (already copied from the user). */
export interface UnmapBitmap {
  pgsize: bigint;
  size: bigint;
  data: bigint;
}

/** A read-only description of one mapping, for tests and tools. */
export interface DmaInfo {
  iova: number;
  size: number;
  vaddr: number;
  prot: number;
  iommuMapped: boolean;
  vaddrInvalid: boolean;
  pinnedPages: number;
}

export interface Type1Options {
  /** VFIO_TYPE1v2_IOMMU (true) or plain VFIO_TYPE1_IOMMU (false). */
  v2: boolean;
  user: UserAddressSpace;
  /** Input address width of the SMMU domain; the aperture is [0, 2^gaw). Default 48. */
  gaw?: number;
  /** dma_entry_limit (default 65535). */
  dmaEntryLimit?: number;
  legacy?: 'v16' | null;
}

interface GroupRecord {
  group: Type1Group;
  /** pinned_page_dirty_scope */
  pinnedScope: boolean;
  notifiers: DmaUnmapNotifier[];
}

const SMALLEST_PGSIZE = BigInt(PAGE_SIZE);

/** A mapping's dirty bitmap; its summary keeps reports proportional to the dirty pages. */
function allocDirtyBitmap(npages: number): Bitmap {
  if (npages > DIRTY_BITMAP_PAGES_MAX) fail('EINVAL', `mapping of ${npages} pages exceeds DIRTY_BITMAP_PAGES_MAX`);
  return new Bitmap(npages, undefined, { summary: true });
}

export class Type1Iommu {
  readonly v2: boolean;
  readonly legacy: 'v16' | null;
  readonly gaw: number;
  private readonly user: UserAddressSpace;
  private readonly limit: number;
  private readonly dmas = new DmaList();
  private avail: number;
  private tracking = false;
  private dom: IommuDomain | null = null;
  private readonly groups: GroupRecord[] = [];
  private nonPinned = 0;
  private iovaList: IovaRange[] = [];
  private vaddrInvalidCount = 0;

  constructor(opts: Type1Options) {
    this.v2 = opts.v2;
    this.legacy = opts.legacy ?? null;
    this.user = opts.user;
    this.gaw = opts.gaw ?? 48;
    if (!Number.isInteger(this.gaw) || this.gaw < 12 || this.gaw > 52) fail('EINVAL', `address width ${this.gaw}`);
    this.limit = opts.dmaEntryLimit ?? DMA_ENTRY_LIMIT_DEFAULT;
    if (!Number.isInteger(this.limit) || this.limit < 0) fail('EINVAL', `dma entry limit ${this.limit}`);
    this.avail = this.limit;
  }

  // ---- state queries ---------------------------------------------------------------------

  /** iommu->pgsize_bitmap: PAGE_MASK, narrowed to the SMMU's sizes while a domain exists. */
  get pgsizeBitmap(): bigint {
    return this.dom ? PAGE_MASK_U64 & SMMU_PGSIZE_BITMAP : PAGE_MASK_U64;
  }

  get dmaAvail(): number {
    return this.avail;
  }

  get dirtyTracking(): boolean {
    return this.tracking;
  }

  /** The container's IOMMU domain while an IOMMU-backed group is attached. */
  get domain(): IommuDomain | null {
    return this.dom;
  }

  get iovaRanges(): readonly IovaRange[] {
    return this.iovaList;
  }

  /** True when at least one IOMMU-backed group has not pinned yet: reports are "all dirty". */
  get fullScope(): boolean {
    return this.nonPinned > 0;
  }

  get groupCount(): number {
    return this.groups.length;
  }

  get hasEmulatedGroups(): boolean {
    return this.groups.some((r) => !r.group.iommuBacked);
  }

  hasGroup(g: Type1Group): boolean {
    return this.recordOf(g) !== undefined;
  }

  /** pinned_page_dirty_scope of an attached group (undefined when not attached). */
  pinnedScopeOf(g: Type1Group): boolean | undefined {
    return this.recordOf(g)?.pinnedScope;
  }

  mappings(): DmaInfo[] {
    return this.dmas.all().map((d) => ({
      iova: d.iova,
      size: d.size,
      vaddr: d.vaddr,
      prot: d.prot,
      iommuMapped: d.iommuMapped,
      vaddrInvalid: d.vaddrInvalid,
      pinnedPages: d.pins.size,
    }));
  }

  /**
   * The live dirty bitmap of the mapping containing iova (bit 0 = its first page), or null.
   * For benchmarks and white-box tests; the caller may set bits, so it is treated as dirty.
   * The bitmap keeps a summary: bits written through `words` need `noteWordsWritten`.
   */
  dirtyBitmapAt(iova: number): Bitmap | null {
    const d = Number.isInteger(iova) && iova >= 0 ? this.dmas.containing(iova) : null;
    if (d === null || d.bitmap === null) return null;
    d.bitmapMaybeDirty = true;
    return d.bitmap;
  }

  private recordOf(g: Type1Group): GroupRecord | undefined {
    return this.groups.find((r) => r.group === g);
  }

  private requireRecord(g: Type1Group): GroupRecord {
    return this.recordOf(g) ?? fail('EINVAL', `group ${g.id} is not attached to this container`);
  }

  // ---- groups ----------------------------------------------------------------------------

  private apertureEnd(): bigint {
    return (1n << BigInt(this.gaw)) - 1n;
  }

  private reservedOfIommuGroups(extra: Type1Group | null): IovaRange[] {
    const out: IovaRange[] = [];
    for (const r of this.groups) if (r.group.iommuBacked) out.push(...r.group.reservedRegions);
    if (extra) out.push(...extra.reservedRegions);
    return out;
  }

  /** Any mapping overlapping the inclusive range [start, end]. */
  private dmaOverlaps(start: bigint, end: bigint): boolean {
    if (start > end) return false;
    const i = this.dmas.firstEndingAfter(Number(start));
    for (let k = i; k < this.dmas.length; k++) {
      const d = this.dmas.at(k);
      if (BigInt(d.end) <= start) continue;
      return BigInt(d.iova) <= end;
    }
    return false;
  }

  /** vfio_iommu_aper_conflict: mappings outside [start, end] that the current list allows. */
  private apertureConflict(start: bigint, end: bigint): boolean {
    if (this.iovaList.length === 0) return false;
    const first = this.iovaList[0]!;
    const last = this.iovaList[this.iovaList.length - 1]!;
    if (start > last.end || end < first.start) return true;
    if (start > first.start && this.dmaOverlaps(first.start, start - 1n)) return true;
    if (end < last.end && this.dmaOverlaps(end + 1n, last.end)) return true;
    return false;
  }

  /**
   * vfio_iommu_type1_attach_group. Emulated groups are pinned-scope from the start; an
   * IOMMU-backed group joins the domain (created and filled with every existing mapping on
   * first use), narrows the IOVA list, and puts the container in full scope until it pins.
   * EINVAL: already attached, a reserved region or the aperture conflicts with an existing
   * mapping; EFAULT: a mapping's user memory is gone when it is replayed. On error nothing
   * changes.
   */
  attachGroup(g: Type1Group): void {
    if (this.recordOf(g)) fail('EINVAL', `group ${g.id} is already attached`);
    if (!g.iommuBacked) {
      this.groups.push({ group: g, pinnedScope: true, notifiers: [] });
      return;
    }
    for (const r of g.reservedRegions) {
      if (this.dmaOverlaps(r.start, r.end)) fail('EINVAL', `reserved region ${r.start.toString(16)} overlaps a mapping`);
    }
    const apEnd = this.apertureEnd();
    if (this.apertureConflict(0n, apEnd)) fail('EINVAL', 'existing mappings lie outside the IOMMU aperture');
    const list = computeIovaList(0n, apEnd, this.reservedOfIommuGroups(g));
    if (this.dom === null) {
      const dom = new IommuDomain({ gaw: this.gaw });
      this.replay(dom);
      this.dom = dom;
    }
    this.iovaList = list;
    this.groups.push({ group: g, pinnedScope: false, notifiers: [] });
    this.nonPinned++;
    g.bindDomain(this.dom);
  }

  /** vfio_iommu_replay: pins and maps every mapping into a new domain, all or nothing. */
  private replay(dom: IommuDomain): void {
    const done: VfioDma[] = [];
    try {
      for (const d of this.dmas.all()) {
        this.pinAndMap(dom, d);
        done.push(d);
      }
    } catch (e) {
      for (const d of done) d.pieces = null;
      throw e;
    }
  }

  private pinAndMap(dom: IommuDomain, d: VfioDma): void {
    const pieces = resolveUserRange(this.user, d.vaddr, d.size, d.prot);
    let mapped = 0;
    try {
      for (const p of pieces) {
        dom.map(d.iova + p.off, p.len, p.mem, p.memOffset, d.prot);
        mapped += p.len;
      }
    } catch (e) {
      if (mapped > 0) dom.unmap(d.iova, mapped);
      throw e;
    }
    d.pieces = pieces;
  }

  /**
   * vfio_iommu_type1_detach_group. The last IOMMU-backed group takes the domain with it
   * (mappings stay, unpinned from the IOMMU, if emulated groups remain); the last group of
   * any kind takes every mapping. Losing a group that never pinned while tracking marks
   * everything dirty once: its device may have written anywhere since the last report.
   */
  detachGroup(g: Type1Group): void {
    const idx = this.groups.findIndex((r) => r.group === g);
    if (idx < 0) return;
    const rec = this.groups[idx]!;
    const updateScope = !rec.pinnedScope;
    this.groups.splice(idx, 1);
    if (g.iommuBacked) {
      g.bindDomain(null);
      if (!this.groups.some((r) => r.group.iommuBacked)) {
        if (this.groups.length === 0) this.unmapUnpinAll();
        else for (const d of this.dmas.all()) this.unmapFromDomain(d);
        this.dom = null;
        this.iovaList = fullIovaList();
      } else {
        this.iovaList = computeIovaList(0n, this.apertureEnd(), this.reservedOfIommuGroups(null));
      }
    } else if (this.groups.length === 0) {
      this.unmapUnpinAll();
    }
    if (updateScope) {
      this.nonPinned--;
      if (this.tracking) {
        for (const d of this.dmas.all()) {
          if (d.bitmap === null) continue;
          d.bitmap.setRange(0, d.npages);
          d.bitmapMaybeDirty = true;
        }
      }
    }
  }

  private unmapFromDomain(d: VfioDma): void {
    if (d.pieces !== null && this.dom !== null) this.dom.unmap(d.iova, d.size);
    d.pieces = null;
  }

  /**
   * vfio_remove_dma without the unlink: IOMMU unmap, unpin, free the bitmap, give back the
   * slot. `keepDomain` leaves the IOMMU unmap to the caller, which does a whole run of
   * removed mappings in one domain call (nothing else is mapped in the gaps between them).
   */
  private releaseDma(d: VfioDma, keepDomain = false): void {
    if (keepDomain) d.pieces = null;
    else this.unmapFromDomain(d);
    if (d.vaddrInvalid) {
      d.vaddrInvalid = false;
      this.vaddrInvalidCount--;
    }
    d.clearPins();
    d.bitmap = null;
    d.bitmapMaybeDirty = false;
    this.avail++;
  }

  private unmapUnpinAll(): void {
    this.releaseRun(0, this.dmas.length);
    this.dmas.clear();
  }

  /** Releases the mappings at [i, j) and unmaps their IOVA span from the domain in one call. */
  private releaseRun(i: number, j: number): void {
    if (j <= i) return;
    const first = this.dmas.at(i);
    const last = this.dmas.at(j - 1);
    const mapped = first.iommuMapped;
    for (let k = i; k < j; k++) this.releaseDma(this.dmas.at(k), true);
    if (mapped && this.dom !== null) this.dom.unmap(first.iova, last.end - first.iova);
  }

  // ---- MAP_DMA ---------------------------------------------------------------------------

  /**
   * vfio_dma_do_map. Checks in kernel order: READ/WRITE vs VADDR flags, zero or unaligned
   * size/iova/vaddr, iova or vaddr wrap (EINVAL); with FLAG_VADDR only an exact invalidated
   * mapping can take a new vaddr (ENOENT / EINVAL); otherwise overlap (EEXIST), no dma
   * entries left (ENOSPC), outside the IOVA ranges (EINVAL), user memory not mapped with the
   * needed access (EFAULT, only when an IOMMU domain needs the pages now), and while
   * tracking, a bitmap the mapping cannot have (EINVAL / ENOMEM). Failure leaves no trace.
   */
  map(vaddrB: bigint, iovaB: bigint, sizeB: bigint, flags: number): void {
    const setVaddr = (flags & VFIO_DMA_MAP_FLAG_VADDR) !== 0;
    let prot = 0;
    if (flags & VFIO_DMA_MAP_FLAG_WRITE) prot |= IOMMU_WRITE;
    if (flags & VFIO_DMA_MAP_FLAG_READ) prot |= IOMMU_READ;
    if ((prot !== 0 && setVaddr) || (prot === 0 && !setVaddr)) fail('EINVAL', 'MAP_DMA needs READ/WRITE, or VADDR alone');
    const mask = SMALLEST_PGSIZE - 1n;
    if (sizeB === 0n || ((sizeB | iovaB | vaddrB) & mask) !== 0n) fail('EINVAL', 'MAP_DMA size, iova or vaddr not page aligned');
    if (iovaB + sizeB - 1n > U64_MAX || vaddrB + sizeB - 1n > U64_MAX) fail('EINVAL', 'MAP_DMA range wraps');
    const iova = Number(iovaB);
    const size = Number(sizeB);
    const vaddr = Number(vaddrB);
    const found = this.dmas.find(iova, size);
    if (setVaddr) {
      if (found === null) fail('ENOENT', 'no mapping to update');
      if (!found.vaddrInvalid || found.iova !== iova || found.size !== size) fail('EINVAL', 'VADDR update must match an invalidated mapping exactly');
      found.vaddr = vaddr;
      found.vaddrInvalid = false;
      this.vaddrInvalidCount--;
      return;
    }
    if (found !== null) fail('EEXIST', `[${iova.toString(16)}, +${size.toString(16)}) overlaps a mapping`);
    if (this.avail === 0) fail('ENOSPC', 'dma_entry_limit reached');
    if (!iovaRangeValid(this.iovaList, iovaB, iovaB + sizeB - 1n)) fail('EINVAL', 'mapping outside the valid IOVA ranges');
    const d = new VfioDma(iova, size, vaddr, prot);
    this.avail--;
    this.dmas.insert(d);
    try {
      if (this.dom !== null) this.pinAndMap(this.dom, d);
      if (this.tracking) d.bitmap = allocDirtyBitmap(d.npages);
    } catch (e) {
      this.releaseDma(d);
      this.dmas.remove(d);
      throw e;
    }
  }

  // ---- UNMAP_DMA -------------------------------------------------------------------------

  /**
   * vfio_dma_do_unmap. Returns the bytes unmapped (what UNMAP_DMA writes back into `size`).
   * `bitmap` is the already validated vfio_bitmap when GET_DIRTY_BITMAP is set.
   */
  unmap(iovaB: bigint, sizeB: bigint, flags: number, bitmap: UnmapBitmap | null): number {
    const all = (flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
    const invalidate = (flags & VFIO_DMA_UNMAP_FLAG_VADDR) !== 0;
    const wantBits = (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
    const mask = SMALLEST_PGSIZE - 1n;
    if ((iovaB & mask) !== 0n) fail('EINVAL', 'UNMAP_DMA iova not page aligned');
    let endB: bigint;
    if (all) {
      if (iovaB !== 0n || sizeB !== 0n) fail('EINVAL', 'FLAG_ALL needs iova 0 and size 0');
      endB = 1n << 64n;
    } else {
      if (sizeB === 0n || (sizeB & mask) !== 0n || iovaB + sizeB - 1n > U64_MAX) fail('EINVAL', 'UNMAP_DMA size zero, unaligned or wrapping');
      endB = iovaB + sizeB;
    }
    const iova = Number(iovaB);
    const end = Number(endB);
    let collect = wantBits;
    if (wantBits) {
      if (this.legacy === 'v16') {
        // v16: a wrong pgsize only mattered while tracking, and tracking off meant "just unmap"
        if (this.tracking && bitmap!.pgsize !== SMALLEST_PGSIZE) fail('EINVAL', 'bitmap pgsize is not the smallest page size');
        collect = this.tracking;
      } else if (!this.tracking || bitmap!.pgsize !== SMALLEST_PGSIZE) {
        fail('EINVAL', this.tracking ? 'bitmap pgsize is not the smallest page size' : 'dirty tracking is not started');
      }
    }
    if (this.v2 && !all) {
      const head = this.dmas.containing(iova);
      if (head !== null && head.iova !== iova) fail('EINVAL', 'unmap range starts inside a mapping');
      const tail = this.dmas.containing(end - PAGE_SIZE);
      if (tail !== null && tail.end !== end) fail('EINVAL', 'unmap range ends inside a mapping');
    }
    if (wantBits && this.legacy === 'v16') {
      const d = this.dmas.containing(iova);
      if (d === null || d.iova !== iova || d.end !== end) fail('EINVAL', 'v16 reports dirty bits for exactly one whole mapping');
    }
    if (invalidate) return this.invalidateVaddr(iova, end);
    return this.unmapRange(iova, end, collect ? Number(bitmap!.data) : -1);
  }

  /** FLAG_VADDR: mark mappings' vaddr invalid; one already invalid undoes this call (EINVAL). */
  private invalidateVaddr(iova: number, end: number): number {
    const first = this.dmas.firstEndingAfter(iova);
    let unmapped = 0;
    for (let k = first; k < this.dmas.length; k++) {
      const d = this.dmas.at(k);
      if (d.iova >= end) break;
      if (!this.v2 && iova > d.iova) break;
      if (d.vaddrInvalid) {
        for (let u = first; u < k; u++) this.dmas.at(u).vaddrInvalid = false;
        this.vaddrInvalidCount -= k - first;
        fail('EINVAL', 'vaddr already invalid');
      }
      d.vaddrInvalid = true;
      this.vaddrInvalidCount++;
      unmapped += d.size;
    }
    return unmapped;
  }

  /**
   * The removal loop. Mappings with pinned pages first go to the vendors' DMA_UNMAP
   * notifiers (which must unpin), then the search restarts; only a mapping without pins is
   * reported (once, after the unpin, so bits set by vfio_dma_rw survive) and removed. A copy
   * fault ends the loop with EFAULT; what was removed before it stays removed.
   */
  private unmapRange(iova: number, end: number, data: number): number {
    const full = this.nonPinned > 0;
    let unmapped = 0;
    let lastNotified: VfioDma | null = null;
    let retries = 0;
    for (;;) {
      const i = this.dmas.firstEndingAfter(iova);
      let j = i;
      let pinned: VfioDma | null = null;
      let error: unknown = null;
      while (j < this.dmas.length) {
        const d = this.dmas.at(j);
        if (d.iova >= end) break;
        if (!this.v2 && iova > d.iova) break;
        if (d.pins.size > 0) {
          if (d === lastNotified) {
            if (++retries > UNMAP_NOTIFY_RETRIES) error = new KernelError('EBUSY', 'vendor driver keeps pages pinned across DMA_UNMAP');
          } else {
            lastNotified = d;
            retries = 0;
          }
          if (error === null) pinned = d;
          break;
        }
        if (data >= 0) {
          try {
            reportDmaToUser(this.user, data, d, iova, { full: full && d.iommuMapped, clear: false });
          } catch (e) {
            error = e;
            break;
          }
        }
        unmapped += d.size;
        j++;
      }
      this.releaseRun(i, j);
      this.dmas.removeAt(i, j - i);
      if (error !== null) throw error;
      if (pinned === null) return unmapped;
      this.notifyDmaUnmap(pinned);
    }
  }

  private notifyDmaUnmap(d: VfioDma): void {
    for (const rec of this.groups.slice()) {
      for (const cb of rec.notifiers.slice()) cb(d.iova, d.size);
    }
  }

  // ---- dirty tracking --------------------------------------------------------------------

  /**
   * DIRTY_PAGES START: a zeroed bitmap per mapping, sized from the mappings alone, with the
   * pinned pages already set. EINVAL for a mapping above DIRTY_BITMAP_PAGES_MAX pages
   * (tracking stays off, nothing allocated survives). Starting again keeps the bits.
   */
  dirtyStart(): void {
    if (this.tracking) return;
    const made: VfioDma[] = [];
    try {
      for (const d of this.dmas.all()) {
        d.bitmap = allocDirtyBitmap(d.npages);
        d.bitmapMaybeDirty = false;
        made.push(d);
        d.populateFromPins();
      }
    } catch (e) {
      for (const d of made) {
        d.bitmap = null;
        d.bitmapMaybeDirty = false;
      }
      throw e;
    }
    this.tracking = true;
  }

  dirtyStop(): void {
    if (!this.tracking) return;
    this.tracking = false;
    for (const d of this.dmas.all()) {
      d.bitmap = null;
      d.bitmapMaybeDirty = false;
    }
  }

  /**
   * DIRTY_PAGES GET_BITMAP after the ioctl-level checks: pgsize, alignment and size (EINVAL),
   * tracking off (EINVAL), a mapping split by the range (EINVAL); then each mapping in the
   * range is reported at its offset, its bits cleared and refilled with its pinned pages.
   */
  getDirtyBitmap(iovaB: bigint, sizeB: bigint, pgsize: bigint, dataB: bigint): void {
    if (pgsize !== SMALLEST_PGSIZE) fail('EINVAL', 'bitmap pgsize is not the smallest page size');
    const mask = SMALLEST_PGSIZE - 1n;
    if ((iovaB & mask) !== 0n) fail('EINVAL', 'GET_BITMAP iova not page aligned');
    if (sizeB === 0n || (sizeB & mask) !== 0n) fail('EINVAL', 'GET_BITMAP size zero or unaligned');
    if (!this.tracking) fail('EINVAL', 'dirty tracking is not started');
    const iova = Number(iovaB);
    const end = Number(iovaB + sizeB);
    const head = this.dmas.containing(iova);
    if (head !== null && head.iova !== iova) fail('EINVAL', 'GET_BITMAP range starts inside a mapping');
    const tail = this.dmas.containing(end - PAGE_SIZE);
    if (tail !== null && tail.end !== end) fail('EINVAL', 'GET_BITMAP range ends inside a mapping');
    const full = this.nonPinned > 0;
    const data = Number(dataB);
    for (let k = this.dmas.firstStartingAtOrAfter(iova); k < this.dmas.length; k++) {
      const d = this.dmas.at(k);
      if (d.iova >= end) break;
      reportDmaToUser(this.user, data, d, iova, { full: full && d.iommuMapped, clear: true });
      d.populateFromPins();
    }
  }

  // ---- vendor-driver API -----------------------------------------------------------------

  /** vfio_register_notifier(VFIO_IOMMU_NOTIFY, DMA_UNMAP) for a device of group g. */
  registerDmaUnmapNotifier(g: Type1Group, cb: DmaUnmapNotifier): void {
    const rec = this.requireRecord(g);
    if (typeof cb !== 'function') fail('EINVAL', 'notifier is not a function');
    rec.notifiers.push(cb);
  }

  unregisterDmaUnmapNotifier(g: Type1Group, cb: DmaUnmapNotifier): boolean {
    const rec = this.recordOf(g);
    if (rec === undefined) return false;
    const i = rec.notifiers.indexOf(cb);
    if (i < 0) return false;
    rec.notifiers.splice(i, 1);
    return true;
  }

  private hasNotifier(): boolean {
    return this.groups.some((r) => r.notifiers.length > 0);
  }

  /**
   * vfio_pin_pages for a device of group g: npage pages from page-aligned iova, each inside
   * a mapping whose permission covers prot (IOMMU_READ/IOMMU_WRITE). Errors in order:
   * EINVAL (group not attached, npage < 1, unaligned iova), E2BIG (npage > 512), EINVAL
   * (group with more than one device), EACCES (not type1v2), EBUSY (a vaddr is invalidated),
   * EINVAL (no DMA_UNMAP notifier registered), then per page EINVAL (unmapped), EPERM
   * (permission), EFAULT (user memory gone); a failure unpins what this call pinned. While
   * tracking, a newly pinned page is marked dirty. The first success puts the group in
   * pinned-page dirty scope for good.
   */
  pinPages(g: Type1Group, iova: number, npage: number, prot: number): PinnedPage[] {
    const rec = this.requireRecord(g);
    if (!Number.isInteger(npage) || npage <= 0) fail('EINVAL', `npage ${npage}`);
    if (!Number.isSafeInteger(iova) || iova < 0 || iova % PAGE_SIZE !== 0) fail('EINVAL', `iova ${iova} not page aligned`);
    if (npage > VFIO_PIN_PAGES_MAX_ENTRIES) fail('E2BIG', `${npage} pages exceed VFIO_PIN_PAGES_MAX_ENTRIES`);
    if (g.memberCount > 1) fail('EINVAL', 'pinning needs a singleton group');
    if (!this.v2) fail('EACCES', 'pinning needs type1v2');
    if (this.vaddrInvalidCount > 0) fail('EBUSY', 'a mapping has no valid vaddr');
    if (!this.hasNotifier()) fail('EINVAL', 'no DMA_UNMAP notifier registered');
    const out: PinnedPage[] = [];
    let i = 0;
    try {
      for (; i < npage; i++) {
        const a = iova + i * PAGE_SIZE;
        const d = this.dmas.containing(a) ?? fail('EINVAL', `iova ${a.toString(16)} is not mapped`);
        if ((d.prot & prot) !== prot) fail('EPERM', `mapping lacks permission ${prot}`);
        const page = (a - d.iova) / PAGE_SIZE;
        const have = d.pins.get(page);
        if (have !== undefined) {
          have.count++;
          out.push({ iova: a, mem: have.mem, offset: have.offset });
          continue;
        }
        const { mem, offset } = this.user.resolve(d.vaddr + (a - d.iova), PAGE_SIZE, userProtFor(d.prot));
        d.addPin(page, { count: 1, mem, offset });
        out.push({ iova: a, mem, offset });
        if (this.tracking && d.bitmap !== null) {
          d.bitmap.set(page);
          d.bitmapMaybeDirty = true;
        }
      }
    } catch (e) {
      for (let j = 0; j < i; j++) this.unpinOne(iova + j * PAGE_SIZE);
      throw e;
    }
    if (!rec.pinnedScope) {
      rec.pinnedScope = true;
      this.nonPinned--;
    }
    return out;
  }

  private unpinOne(a: number): boolean {
    const d = this.dmas.containing(a);
    if (d === null) return false;
    const page = (a - d.iova) / PAGE_SIZE;
    const rec = d.pins.get(page);
    if (rec !== undefined && --rec.count === 0) d.dropPin(page);
    return true;
  }

  /**
   * vfio_unpin_pages: drops one pin of each page until the first unmapped one. Returns the
   * pages walked (pre-6.0 return value); EINVAL/E2BIG/EACCES like pinPages, EINVAL if the
   * first page is not mapped. Dirty bits stay: the page was dirty while pinned.
   */
  unpinPages(g: Type1Group, iova: number, npage: number): number {
    this.requireRecord(g);
    if (!Number.isInteger(npage) || npage <= 0) fail('EINVAL', `npage ${npage}`);
    if (!Number.isSafeInteger(iova) || iova < 0 || iova % PAGE_SIZE !== 0) fail('EINVAL', `iova ${iova} not page aligned`);
    if (npage > VFIO_PIN_PAGES_MAX_ENTRIES) fail('E2BIG', `${npage} pages exceed VFIO_PIN_PAGES_MAX_ENTRIES`);
    if (!this.v2) fail('EACCES', 'pinning needs type1v2');
    let i = 0;
    while (i < npage && this.unpinOne(iova + i * PAGE_SIZE)) i++;
    if (i === 0) fail('EINVAL', 'nothing mapped at iova');
    return i;
  }

  /**
   * vfio_dma_rw: copies between `data` and the user memory behind [iova, iova+len), mapping
   * by mapping (a range may span adjacent mappings). EINVAL empty data or an unmapped byte,
   * EPERM missing permission (every access needs READ, as in the kernel), EFAULT user memory
   * gone, EBUSY while a vaddr is invalidated. Chunks done before an error stay done. Writes
   * set the dirty bits offset>>shift .. (offset+len-1)>>shift while tracking.
   */
  dmaRw(g: Type1Group, iova: number, data: Uint8Array, write: boolean): void {
    this.requireRecord(g);
    if (!(data instanceof Uint8Array) || data.length === 0) fail('EINVAL', 'dma_rw needs data');
    if (!Number.isSafeInteger(iova) || iova < 0) fail('EINVAL', `iova ${iova}`);
    if (this.vaddrInvalidCount > 0) fail('EBUSY', 'a mapping has no valid vaddr');
    let pos = 0;
    let a = iova;
    while (pos < data.length) {
      const d = this.dmas.containing(a) ?? fail('EINVAL', `iova ${a.toString(16)} is not mapped`);
      if ((write && (d.prot & IOMMU_WRITE) === 0) || (d.prot & IOMMU_READ) === 0) fail('EPERM', 'mapping permission');
      const offset = a - d.iova;
      const n = Math.min(data.length - pos, d.size - offset);
      const chunk = data.subarray(pos, pos + n);
      if (write) {
        this.user.copyToUser(d.vaddr + offset, chunk);
        if (this.tracking && d.bitmap !== null) {
          const first = Math.floor(offset / PAGE_SIZE);
          const last = Math.floor((offset + n - 1) / PAGE_SIZE);
          d.bitmap.setRange(first, last - first + 1);
          d.bitmapMaybeDirty = true;
        }
      } else {
        chunk.set(this.user.copyFromUser(d.vaddr + offset, n));
      }
      pos += n;
      a += n;
    }
  }
}
