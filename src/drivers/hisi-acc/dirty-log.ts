/**
 * Device DMA logging for an ACC VF (hisi-acc-vfio-pci.md section 8, uAPI section 5). The
 * hardware has no dirty tracking of its own; this drives the HTTU-like tracker of the IOMMU
 * domain the VF's DMA goes through, so every page the device really writes (CQEs, EQEs,
 * AEQEs, engine output, SQE write-back, context write-back) is logged.
 *
 * The tracker works in 4 KiB pages and keeps bits for the whole domain; reports cover the
 * requested range at the requested page size, a page of the report being dirty when any of
 * its 4 KiB pages is. Reading clears. Starting clears the requested ranges first, so a
 * session begins clean even when the domain was already tracking. The domain's tracking is
 * shared by whoever logs through it (devices sharing a container, as an iommufd HWPT is):
 * a report of one device also clears the bits the other would have seen.
 */
import type { IommuDomain } from '../../iommu/domain.js';
import { fail } from '../../uapi/errno.js';
import type { VfioPciCoreDevice } from '../../vfio/pci-core/core-device.js';
import type { DmaLoggingRange, VfioLogOps } from '../../vfio/pci-core/ops.js';

const TRACKER_PAGE = 4096;
/** Tracker pages harvested per step of a report (4 GiB of IOVA, 128 KiB of scratch). */
const CHUNK_PAGES = 1 << 20;

/** Sessions running on each domain; the last one to stop turns tracking off. */
const sessions = new WeakMap<IommuDomain, number>();

interface Session {
  domain: IommuDomain;
  ranges: readonly DmaLoggingRange[];
}

export class DirtyLogger {
  private session: Session | null = null;
  /** Allocated on the first report that needs it (128 KiB), then reused. */
  private scratch: Uint32Array | null = null;

  get active(): boolean {
    return this.session !== null;
  }

  get domain(): IommuDomain | null {
    return this.session?.domain ?? null;
  }

  start(core: VfioPciCoreDevice, ranges: readonly DmaLoggingRange[], pageSize: number): number {
    const domain = core.iommuDomain;
    if (domain === null) fail('ENODEV', 'the device has no IOMMU domain to track');
    if (this.session) fail('EBUSY', 'DMA logging already started');
    if (!domain.dirtyTracking) domain.setDirtyTracking(true);
    else for (const r of ranges) this.harvest(domain, r.iova, r.length, null);
    sessions.set(domain, (sessions.get(domain) ?? 0) + 1);
    this.session = { domain, ranges: ranges.map((r) => ({ ...r })) };
    return pageSize;
  }

  stop(): void {
    const s = this.session;
    if (!s) return;
    this.session = null;
    const n = (sessions.get(s.domain) ?? 1) - 1;
    if (n > 0) {
      sessions.set(s.domain, n);
      return;
    }
    sessions.delete(s.domain);
    s.domain.setDirtyTracking(false);
  }

  /** Reads and clears [iova, iova+length) into `out` (bit i = page iova + i*pageSize). */
  report(iova: number, length: number, pageSize: number, out: Uint8Array): void {
    const s = this.session;
    if (!s) fail('EINVAL', 'DMA logging is not started');
    this.harvest(s.domain, iova, length, { pageSize, out });
  }

  /**
   * Read-and-clear of the 4 KiB pages touching [iova, iova+length); with `dst`, each dirty
   * page sets the report bits its bytes fall in. Word-at-a-time over the tracker's bits.
   */
  private harvest(domain: IommuDomain, iova: number, length: number, dst: { pageSize: number; out: Uint8Array } | null): void {
    const lo = Math.floor(iova / TRACKER_PAGE) * TRACKER_PAGE;
    const hi = Math.min(Math.ceil((iova + length) / TRACKER_PAGE) * TRACKER_PAGE, domain.aperture);
    if (hi <= lo) return;
    if (dst && dst.pageSize === TRACKER_PAGE && lo === iova) {
      domain.readAndClearDirty(lo, hi - lo, dst.out, 0);
      return;
    }
    // The range may span TiBs of IOVA: harvest it a bounded chunk at a time, so the scratch
    // bitmap never exceeds CHUNK_PAGES bits whatever the report's page size.
    const w32 = this.scratch ??= new Uint32Array(CHUNK_PAGES / 32);
    const bytes = new Uint8Array(w32.buffer, w32.byteOffset, w32.byteLength);
    for (let c = lo; c < hi; c += CHUNK_PAGES * TRACKER_PAGE) {
      const len = Math.min(hi - c, CHUNK_PAGES * TRACKER_PAGE);
      const words = Math.ceil(len / TRACKER_PAGE / 64) * 2;
      w32.fill(0, 0, words);
      domain.readAndClearDirty(c, len, bytes, 0);
      if (dst) fold(w32, words, c, iova, iova + length, dst.pageSize, dst.out);
    }
  }
}

/** Sets the report bits of every dirty 4 KiB page in `w32` (bit i = page base + i*4 KiB). */
function fold(w32: Uint32Array, words: number, base: number, iova: number, end: number, pageSize: number, out: Uint8Array): void {
  for (let k = 0; k < words; k++) {
    let w = w32[k]!;
    while (w !== 0) {
      const low = w & -w;
      const bit = 31 - Math.clz32(low);
      w ^= low;
      const addr = base + (k * 32 + bit) * TRACKER_PAGE;
      const first = Math.max(addr, iova);
      const last = Math.min(addr + TRACKER_PAGE, end) - 1;
      if (last < first) continue;
      const b1 = Math.floor((last - iova) / pageSize);
      for (let b = Math.floor((first - iova) / pageSize); b <= b1; b++) out[b >>> 3] = out[b >>> 3]! | (1 << (b & 7));
    }
  }
}

/** vfio_log_ops backed by one DirtyLogger per device. */
export function dirtyLogOps(loggerOf: (core: VfioPciCoreDevice) => DirtyLogger): VfioLogOps {
  return {
    start: (core, ranges, pageSize) => loggerOf(core).start(core, ranges, pageSize),
    stop: (core) => loggerOf(core).stop(),
    report: (core, iova, length, pageSize, out) => loggerOf(core).report(iova, length, pageSize, out),
  };
}
