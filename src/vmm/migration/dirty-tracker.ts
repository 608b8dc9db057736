/**
 * The migration's dirty page set over guest RAM, fed by two independent sources as a VMM
 * has them:
 *
 * - CPU writes: the vCPU dirty rings (harvest, then reset so the pages are write-protected
 *   again before their contents are read), plus the WITH_BITMAP backup for writes made
 *   outside a vCPU, which is collected only in the final pass, after the last ring harvest
 *   and the device report (iommu-notifiers-and-dirty-ring.md section 2).
 * - Device DMA: either the devices' own DMA logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_*,
 *   read-and-clear reports of exactly the pages the device wrote) or the type1 container's
 *   VFIO_IOMMU_DIRTY_PAGES. The ACC VF never pins pages, so type1 reports every mapped page
 *   dirty on every pass (vfio-type1-dirty.md section 4): pre-copy cannot converge in that
 *   mode and the final pass resends all of RAM. The tracker says so in `note`.
 *
 * One Bitmap holds the pending pages (bit i = RAM page i, i.e. GPA ramBase + i*4096); reports
 * land in a user-space buffer of the VMM process (the ioctls take user pointers) and are ORed
 * in a word at a time.
 */
import { Bitmap, dirtyBitmapBytes } from '../../mem/bitmap.js';
import { PAGE_SIZE } from '../../mem/sparse-memory.js';
import { errnoName } from '../../uapi/errno.js';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
} from '../../uapi/vfio.js';
import {
  VFIO_IOMMU_TYPE1_DIRTY_BITMAP_GET_MINSZ,
  VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ,
  vfio_iommu_type1_dirty_bitmap,
  vfio_iommu_type1_dirty_bitmap_get,
} from '../../uapi/structs.js';
import { dmaLoggingReport, dmaLoggingStart, dmaLoggingStop, probeFeature } from './device-uapi.js';
import { MigrationError } from './errors.js';
import type { MigrationEndpoint } from './types.js';

export type DirtyMode = 'dma-logging' | 'type1';

export interface SyncStats {
  /** Ring entries harvested. */
  ringEntries: number;
  /** Pages the device source reported (type1: every mapped page). */
  devicePages: number;
  /** Pages from the WITH_BITMAP backup (final pass only). */
  backupPages: number;
}

export class DirtyTracker {
  readonly mode: DirtyMode;
  /** Why this mode, and what it means for convergence. */
  readonly note: string;
  /** Pages waiting to be sent. */
  readonly pending: Bitmap;
  readonly pages: number;
  private readonly ep: MigrationEndpoint;
  private bitmapPtr = -1;
  private userBits: Bitmap | null = null;
  private logPageSize = PAGE_SIZE;
  private started = false;
  private readonly visit: (slot: number, offset: number) => void;

  constructor(ep: MigrationEndpoint, requested: DirtyMode) {
    this.ep = ep;
    const vm = ep.vm;
    if (vm.ramBytes % PAGE_SIZE !== 0) throw new MigrationError('setup', `guest RAM of ${vm.ramBytes} bytes is not page aligned`);
    this.pages = vm.ramBytes / PAGE_SIZE;
    this.pending = new Bitmap(this.pages);
    const slot = vm.ramSlot;
    const pending = this.pending;
    const pages = this.pages;
    this.visit = (s, off) => {
      if (s === slot && off < pages) pending.set(off);
    };
    if (requested === 'dma-logging') {
      const missing = ep.devices.filter((d) => probeFeature(d.file, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET) < 0);
      if (missing.length === 0) {
        this.mode = 'dma-logging';
        this.note = 'device DMA logging: exactly the pages the devices wrote';
      } else {
        this.mode = 'type1';
        this.note =
          `DMA logging not offered by ${missing.map((d) => d.name).join(', ')}: falling back to type1 dirty tracking, ` +
          'where every DMA-mapped page is dirty on every pass (the VF does not pin pages), so pre-copy cannot converge';
      }
    } else {
      this.mode = 'type1';
      this.note = 'type1 dirty tracking: every DMA-mapped page is reported dirty on every pass (the VF does not pin pages), so pre-copy cannot converge and the final pass resends all of RAM';
    }
  }

  /** Starts device-side tracking and drops ring entries older than the migration. */
  start(): void {
    const { ep } = this;
    const user = ep.process.user;
    const bytes = dirtyBitmapBytes(this.pages);
    this.bitmapPtr = user.alloc(bytes);
    this.userBits = Bitmap.wrap(user.view(this.bitmapPtr, bytes), this.pages);
    if (this.mode === 'dma-logging') {
      const started: typeof ep.devices[number][] = [];
      for (const d of ep.devices) {
        const r = dmaLoggingStart(d.file, user, [{ iova: ep.vm.ramBase, length: ep.vm.ramBytes }], PAGE_SIZE);
        if (r.ret < 0) {
          for (const s of started) dmaLoggingStop(s.file);
          throw new MigrationError('setup', `${d.name}: DMA_LOGGING_START: ${errnoName(r.ret)}`, { errno: -r.ret });
        }
        this.logPageSize = r.pageSize;
        started.push(d);
      }
    } else {
      const r = this.dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
      if (r < 0) throw new MigrationError('setup', `VFIO_IOMMU_DIRTY_PAGES START: ${errnoName(r)}`, { errno: -r });
    }
    this.started = true;
    // Everything is sent in the first pass anyway; what matters is that pages written from
    // now on are caught, so the rings start empty and write-protected.
    if (ep.vm.dirtyRings.ringSizeBytes > 0) ep.vm.collectDirty(() => {});
  }

  /** Marks every page that has storage behind it (pages never written are zero on both sides). */
  markBackedPages(): void {
    const pending = this.pending;
    const pages = this.pages;
    this.ep.vm.ram.forEachBackedPage((pfn) => {
      if (pfn < pages) pending.set(pfn);
    });
  }

  /** Ring harvest + reset, then the device report: one pre-copy sync. */
  sync(): SyncStats {
    const ringEntries = this.syncRings();
    return { ringEntries, devicePages: this.syncDevice(), backupPages: 0 };
  }

  /** The final collection (vCPUs and devices stopped): rings, device report, backup bitmap last. */
  finalSync(): SyncStats {
    const ringEntries = this.syncRings();
    const devicePages = this.syncDevice();
    const fin = this.ep.vm.finalCollect(this.visit);
    let backupPages = 0;
    const bm = fin.bitmaps.get(this.ep.vm.ramSlot);
    if (bm) {
      backupPages = bm.popcount();
      this.pending.orFrom(bm, 0, 0, Math.min(bm.nbits, this.pages));
    }
    return { ringEntries: ringEntries + fin.ringEntries, devicePages, backupPages };
  }

  private syncRings(): number {
    const rings = this.ep.vm.dirtyRings;
    if (rings.ringSizeBytes === 0) {
      // no rings: CPU writes go to the classic per-slot dirty log, read and cleared each pass
      const log = rings.takeDirtyLog(this.ep.vm.ramSlot);
      this.pending.orFrom(log, 0, 0, Math.min(log.nbits, this.pages));
      return log.popcount();
    }
    // harvest, the run loop's reaped pages, then reset: re-protected before contents are read
    return this.ep.vm.collectDirty(this.visit);
  }

  private syncDevice(): number {
    const ub = this.userBits;
    if (!ub || !this.started) return 0;
    const { ep } = this;
    let total = 0;
    if (this.mode === 'dma-logging') {
      for (const d of ep.devices) {
        ub.clearAll();
        const r = dmaLoggingReport(d.file, ep.vm.ramBase, ep.vm.ramBytes, this.logPageSize, this.bitmapPtr);
        if (r < 0) throw new MigrationError('precopy', `${d.name}: DMA_LOGGING_REPORT: ${errnoName(r)}`, { errno: -r });
        total += this.merge(ub, this.logPageSize);
      }
    } else {
      ub.clearAll();
      const r = this.getBitmap();
      if (r < 0) throw new MigrationError('precopy', `VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: ${errnoName(r)}`, { errno: -r });
      total += this.merge(ub, PAGE_SIZE);
    }
    return total;
  }

  /** ORs a report (bit i = page of `pageSize` bytes) into the pending set; returns its bit count. */
  private merge(report: Bitmap, pageSize: number): number {
    if (pageSize === PAGE_SIZE) {
      const src = report.words;
      const dst = this.pending.words;
      let n = 0;
      for (let k = 0; k < src.length; k++) {
        const v = src[k]!;
        if (v !== 0) {
          dst[k] = dst[k]! | v;
          n++;
        }
      }
      return n === 0 ? 0 : report.popcount();
    }
    const per = pageSize / PAGE_SIZE;
    let bits = 0;
    report.forEachSet((i) => {
      bits++;
      const first = i * per;
      if (first < this.pages) this.pending.setRange(first, Math.min(per, this.pages - first));
    });
    return bits;
  }

  private dirtyPages(flag: number): number {
    const buf = vfio_iommu_type1_dirty_bitmap.encode({ argsz: VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ, flags: flag });
    return this.ep.container.ioctl(VFIO_IOMMU_DIRTY_PAGES, buf);
  }

  private getBitmap(): number {
    const head = VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ;
    const buf = new Uint8Array(VFIO_IOMMU_TYPE1_DIRTY_BITMAP_GET_MINSZ);
    vfio_iommu_type1_dirty_bitmap.encode({ argsz: buf.length, flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP }, buf);
    vfio_iommu_type1_dirty_bitmap_get.encode(
      {
        iova: this.ep.vm.ramBase,
        size: this.ep.vm.ramBytes,
        bitmap: { pgsize: PAGE_SIZE, size: dirtyBitmapBytes(this.pages), data: this.bitmapPtr },
      },
      buf,
      head,
    );
    return this.ep.container.ioctl(VFIO_IOMMU_DIRTY_PAGES, buf);
  }

  /** Stops device-side tracking and ends the late-write trap; safe to call more than once. */
  stop(): void {
    this.ep.vm.dirtyRings.disarm();
    if (this.started) {
      this.started = false;
      if (this.mode === 'dma-logging') for (const d of this.ep.devices) dmaLoggingStop(d.file);
      else this.dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
    }
    if (this.bitmapPtr >= 0) {
      this.ep.process.user.unmap(this.bitmapPtr);
      this.bitmapPtr = -1;
      this.userBits = null;
    }
  }
}
