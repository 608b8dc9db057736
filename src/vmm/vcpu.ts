/**
 * A guest CPU context ("vCPU") as far as guest RAM is concerned: every store a guest makes
 * to its RAM runs on one of these, and is logged to the vCPU's KVM-style dirty ring before
 * the bytes land (iommu-notifiers-and-dirty-ring.md section 2).
 *
 * Write protection: the ring records the first store to a page after that page was last
 * re-protected by a ring reset; later stores to it push nothing. A store is split into steps
 * of at most `reserved` pages (the most one guest step may dirty), each step's bytes are
 * written right after its pages are logged, and when a step leaves the ring soft-full the
 * vCPU "exits" with KVM_EXIT_DIRTY_RING_FULL: the VMM's run loop (VcpuHost.onDirtyRingFull)
 * harvests and resets before the vCPU continues with the next step. Writing a step before
 * handling its exit matters: a reset re-protects the step's pages, and bytes stored after
 * that without a new fault would be lost to migration.
 *
 * Device DMA never comes through here (it is tracked by device DMA logging or type1).
 */
import { DirtyWrite, type VcpuRing } from '../mem/dirty-ring.js';
import type { SparseMemory } from '../mem/sparse-memory.js';
import { PAGE_SIZE } from '../mem/sparse-memory.js';
import { fail } from '../uapi/errno.js';

const { EXIT_FULL, REFUSED_FULL } = DirtyWrite;

/** What a vCPU needs from its VM. */
export interface VcpuHost {
  readonly ram: SparseMemory;
  readonly ramBase: number;
  readonly ramBytes: number;
  readonly ramSlot: number;
  readonly vcpusRunning: boolean;
  /** Most pages one step may dirty (the ring's reserved entries). */
  readonly maxStepPages: number;
  /** KVM_EXIT_DIRTY_RING_FULL: reap every ring so `vcpu` may run again. */
  onDirtyRingFull(vcpu: Vcpu): void;
}

export interface VcpuStats {
  /** Stores executed (write, fill, touch calls). */
  stores: number;
  bytes: number;
  /** Pages whose step was logged (pushed or already writable). */
  pagesStored: number;
  /** DIRTY_RING_FULL exits this vCPU took. */
  fullExits: number;
}

export class Vcpu {
  readonly stats: VcpuStats = { stores: 0, bytes: 0, pagesStored: 0, fullExits: 0 };

  constructor(private readonly host: VcpuHost, readonly id: number, readonly ring: VcpuRing) {}

  /** A store of `src` at guest-physical `gpa`. EFAULT outside RAM, EBUSY while vCPUs are paused. */
  write(gpa: number, src: Uint8Array): void {
    const off = this.enter(gpa, src.length);
    if (src.length === 0) return;
    const ram = this.host.ram;
    const end = off + src.length;
    let page = Math.floor(off / PAGE_SIZE);
    const last = Math.floor((end - 1) / PAGE_SIZE);
    let at = off;
    while (page <= last) {
      const n = Math.min(last - page + 1, this.host.maxStepPages);
      const r = this.logStep(page, n);
      const stepEnd = Math.min(end, (page + n) * PAGE_SIZE);
      ram.write(at, at === off && stepEnd === end ? src : src.subarray(at - off, stepEnd - off));
      at = stepEnd;
      page += n;
      if (r === EXIT_FULL) this.exitFull();
    }
    this.stats.bytes += src.length;
  }

  /** memset of `len` bytes at `gpa`. */
  fill(gpa: number, len: number, byte: number): void {
    const off = this.enter(gpa, len);
    if (len === 0) return;
    const ram = this.host.ram;
    const end = off + len;
    let page = Math.floor(off / PAGE_SIZE);
    const last = Math.floor((end - 1) / PAGE_SIZE);
    let at = off;
    while (page <= last) {
      const n = Math.min(last - page + 1, this.host.maxStepPages);
      const r = this.logStep(page, n);
      const stepEnd = Math.min(end, (page + n) * PAGE_SIZE);
      ram.fill(at, stepEnd - at, byte);
      at = stepEnd;
      page += n;
      if (r === EXIT_FULL) this.exitFull();
    }
    this.stats.bytes += len;
  }

  /** Validates a store and returns its RAM offset. */
  private enter(gpa: number, len: number): number {
    const h = this.host;
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || len < 0 || gpa < h.ramBase || gpa + len > h.ramBase + h.ramBytes) {
      fail('EFAULT', `vCPU ${this.id}: store [0x${Number(gpa).toString(16)}, +${len}) outside guest RAM`);
    }
    if (!h.vcpusRunning) fail('EBUSY', `vCPU ${this.id} is paused`);
    this.stats.stores++;
    return gpa - h.ramBase;
  }

  /** Logs pages [page, page+n) of RAM's slot; reaps first if the ring refuses (held full). */
  private logStep(page: number, n: number): number {
    const slot = this.host.ramSlot;
    let r = this.ring.markRangeDirty(slot, page, n);
    if (r === REFUSED_FULL) {
      this.exitFull();
      r = this.ring.markRangeDirty(slot, page, n);
      if (r === REFUSED_FULL) fail('EIO', `vCPU ${this.id}: dirty ring still full after reaping`);
    }
    if (r < 0) fail('EFAULT', `vCPU ${this.id}: page ${page} outside memory slot ${slot}`);
    this.stats.pagesStored += n;
    return r;
  }

  private exitFull(): void {
    this.stats.fullExits++;
    this.host.onDirtyRingFull(this);
  }
}
