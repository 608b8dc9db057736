/**
 * KVM-style dirty logging for guest CPU contexts ("vCPUs") that write guest RAM: one dirty
 * ring per vCPU plus, with WITH_BITMAP, a per-slot bitmap for writes made outside any vCPU
 * (device-emulation side effects, PF writes). Spec: iommu-notifiers-and-dirty-ring.md §2.
 *
 * The ring is what KVM maps into user space: an array of 16-byte `kvm_dirty_gfn` records
 * held in one Uint32Array (4 words per entry: flags, slot, offset lo, offset hi; little
 * endian, like the host). The consumer reads and flags entries through the same array, so
 * a misbehaving consumer can scribble on it; the producer tolerates any content.
 *
 * Write protection is modelled per page with one bitmap per slot ("writable" bit = the page
 * was pushed and not yet re-protected by a ring reset), never with per-page objects.
 */
import { Errno, KernelError, fail, syscall } from '../uapi/errno.js';
import { Bitmap, dirtyBitmapBytes } from './bitmap.js';

/** kvm_dirty_gfn.flags bits. */
export const KVM_DIRTY_GFN_F_DIRTY = 1 << 0;
export const KVM_DIRTY_GFN_F_RESET = 1 << 1;
/** sizeof(struct kvm_dirty_gfn). */
export const KVM_DIRTY_GFN_SIZE = 16;
/** Minimum reserved entries (spec: 64 minimum). */
export const KVM_DIRTY_RING_RSVD_ENTRIES = 64;
export const KVM_DIRTY_RING_MAX_ENTRIES = 65536;
/** Guest page size the ring-size lower bound is measured against. */
export const DIRTY_RING_PAGE_SIZE = 4096;
/** KVM_EXIT_DIRTY_RING_FULL exit reason (uapi/linux/kvm.h). */
export const KVM_EXIT_DIRTY_RING_FULL = 31;
/** arm64: a single address space, so `slot >> 16` must be 0. */
export const KVM_ADDRESS_SPACE_NUM = 1;
/** arm64: KVM_MEM_SLOTS_NUM = SHRT_MAX with no internal slots. */
export const KVM_USER_MEM_SLOTS = 32767;
/** KVM_MEM_MAX_NR_PAGES: the largest slot, in pages. */
export const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1;
/** Guest frame numbers are below 2^52 (52-bit IPA). */
const GFN_LIMIT = 2 ** 52;

/** Outcome of a vCPU write (non-negative); bad guest addresses give -EFAULT instead. */
export const DirtyWrite = {
  /** Recorded (or the page was already writable): the vCPU keeps running. */
  OK: 0,
  /** Recorded, and the ring reached its soft limit: the vCPU exits with DIRTY_RING_FULL. */
  EXIT_FULL: 1,
  /** Refused: the vCPU is held in DIRTY_RING_FULL; nothing was written or recorded. */
  REFUSED_FULL: 2,
} as const;

/** Called per merged reset group; `applied` is false for groups ignored as invalid. */
export type ReprotectObserver = (slot: number, offset: number, mask: bigint, applied: boolean) => void;
/** Receives one harvested page: the raw `slot` field (as_id<<16 | id) and its page offset. */
export type DirtyPageVisitor = (slot: number, offset: number) => void;

interface MemSlot {
  readonly id: number;
  readonly basePfn: number;
  readonly npages: number;
  /** Set bit = page pushed to a ring and not yet re-protected (ring mode only). */
  writable: Bitmap | null;
  /** Classic dirty log (ring off) or the WITH_BITMAP backup; null when neither applies. */
  readonly dirty: Bitmap | null;
}

export interface FinalCollection {
  /** Ring entries harvested by the final pass. */
  ringEntries: number;
  /** Entries the final reset cleared. */
  resetEntries: number;
  /** Backup (or classic) bitmaps by slot id, read and cleared after the rings. */
  bitmaps: Map<number, Bitmap>;
}

export interface LateWrite {
  slot: number;
  offset: number;
  /** vCPU id, or -1 for a write without a vCPU context. */
  vcpu: number;
}

/** used = dirty_index - reset_index on u32 counters that wrap. */
export function ringUsed(dirtyIndex: number, resetIndex: number): number {
  return (dirtyIndex - resetIndex) >>> 0;
}

/** The VM-wide controller (KVM's per-VM dirty ring state, memslots and vCPU list). */
export class DirtyRingSet {
  readonly reserved: number;
  private ringBytes = 0;
  private bitmapBackup = false;
  private readonly slots: (MemSlot | undefined)[] = [];
  private slotCount = 0;
  private readonly vcpuList: VcpuRing[] = [];
  private trapArmed = false;
  /** Writes seen after finalCollect() armed the trap (each one is a migration bug). */
  lateWrites = 0;
  firstLateWrite: LateWrite | null = null;
  /** No-vCPU writes that could not be logged (ring on, WITH_BITMAP off). */
  unloggedWrites = 0;

  /** `reserved`: entries kept free above the soft limit (>= 64; the most pages one step dirties). */
  constructor(opts: { reserved?: number } = {}) {
    const r = opts.reserved ?? KVM_DIRTY_RING_RSVD_ENTRIES;
    if (!Number.isInteger(r) || r < KVM_DIRTY_RING_RSVD_ENTRIES) {
      throw new KernelError('EINVAL', `reserved entries must be an integer >= ${KVM_DIRTY_RING_RSVD_ENTRIES} (got ${r})`);
    }
    this.reserved = r;
  }

  /** Ring size in bytes (0 = ring off, classic bitmap logging). */
  get ringSizeBytes(): number {
    return this.ringBytes;
  }
  get ringEntries(): number {
    return this.ringBytes / KVM_DIRTY_GFN_SIZE;
  }
  get withBitmap(): boolean {
    return this.bitmapBackup;
  }
  get vcpus(): readonly VcpuRing[] {
    return this.vcpuList;
  }
  get armed(): boolean {
    return this.trapArmed;
  }

  /** KVM_CAP_DIRTY_LOG_RING: 0 or -errno. */
  enableRing(sizeBytes: number): number {
    return syscall(() => {
      if (!isPow2(sizeBytes)) fail('EINVAL', `ring size ${sizeBytes} is not a power of two`);
      if (sizeBytes < this.reserved * KVM_DIRTY_GFN_SIZE || sizeBytes < DIRTY_RING_PAGE_SIZE) {
        fail('EINVAL', `ring size ${sizeBytes} below max(reserved*16, page size)`);
      }
      if (sizeBytes > KVM_DIRTY_RING_MAX_ENTRIES * KVM_DIRTY_GFN_SIZE) {
        fail('E2BIG', `ring of ${sizeBytes} bytes exceeds ${KVM_DIRTY_RING_MAX_ENTRIES} entries`);
      }
      if (this.ringBytes !== 0) fail('EINVAL', 'dirty ring already enabled');
      if (this.vcpuList.length !== 0) fail('EINVAL', 'dirty ring must be enabled before any vCPU is created');
      this.ringBytes = sizeBytes;
      for (const s of this.slots) if (s) s.writable = new Bitmap(s.npages);
    });
  }

  /** KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP: only after the ring and while no slot exists. */
  enableWithBitmap(): number {
    return syscall(() => {
      if (this.ringBytes === 0) fail('EINVAL', 'WITH_BITMAP needs the dirty ring enabled first');
      if (this.slotCount !== 0) fail('EINVAL', 'WITH_BITMAP must be enabled before any memory slot exists');
      this.bitmapBackup = true;
    });
  }

  /** Whether GET_DIRTY_LOG (and so a per-slot bitmap) is in use. */
  private usesBitmap(): boolean {
    return this.ringBytes === 0 || this.bitmapBackup;
  }

  /**
   * KVM_SET_USER_MEMORY_REGION creating slot `id` (as_id<<16 | slot_id) over guest frames
   * [basePfn, basePfn+npages). Re-registering an identical slot is a no-op; changing one,
   * an out-of-range id or size -> EINVAL; overlapping another slot -> EEXIST.
   */
  addSlot(id: number, basePfn: number, npages: number): number {
    return syscall(() => {
      checkSlotId(id);
      if (!Number.isInteger(npages) || npages < 1 || npages > KVM_MEM_MAX_NR_PAGES) fail('EINVAL', `bad slot size ${npages}`);
      if (!Number.isInteger(basePfn) || basePfn < 0 || basePfn + npages > GFN_LIMIT) fail('EINVAL', `bad slot base ${basePfn}`);
      const old = this.slots[id];
      if (old) {
        if (old.basePfn === basePfn && old.npages === npages) return;
        fail('EINVAL', `slot ${id} exists with a different layout`);
      }
      for (const s of this.slots) {
        if (s && basePfn < s.basePfn + s.npages && s.basePfn < basePfn + npages) {
          fail('EEXIST', `slot ${id} overlaps slot ${s.id}`);
        }
      }
      const slot: MemSlot = {
        id,
        basePfn,
        npages,
        writable: this.ringBytes !== 0 ? new Bitmap(npages) : null,
        dirty: this.usesBitmap() ? new Bitmap(npages) : null,
      };
      this.slots[id] = slot;
      this.slotCount++;
    });
  }

  /** Deletes slot `id` (KVM: memory_size 0). Ring entries naming it become invalid. */
  deleteSlot(id: number): number {
    return syscall(() => {
      checkSlotId(id);
      if (!this.slots[id]) fail('EINVAL', `slot ${id} does not exist`);
      this.slots[id] = undefined;
      this.slotCount--;
    });
  }

  /** KVM_CREATE_VCPU. `startIndex` seeds both ring counters (KVM uses 0; tests use it to exercise u32 wrap). */
  createVcpu(opts: { startIndex?: number } = {}): VcpuRing {
    const v = new VcpuRing(this, this.vcpuList.length, this.ringEntries, this.reserved, (opts.startIndex ?? 0) >>> 0);
    this.vcpuList.push(v);
    return v;
  }

  /** @internal slot lookup by the raw ring `slot` field; undefined for bad as_id/id/missing. */
  slotByField(field: number): MemSlot | undefined {
    if (field >>> 0 !== field || field >>> 16 >= KVM_ADDRESS_SPACE_NUM) return undefined;
    return this.slots[field & 0xffff];
  }

  /** Slot id and page offset of guest frame `gfn`, or null when no slot maps it. */
  findGfn(gfn: number): { slot: number; offset: number } | null {
    for (const s of this.slots) {
      if (s && gfn >= s.basePfn && gfn < s.basePfn + s.npages) return { slot: s.id, offset: gfn - s.basePfn };
    }
    return null;
  }

  /** @internal the armed trap's bookkeeping, shared by vCPU and no-vCPU writes. */
  noteWrite(slot: number, offset: number, vcpu: number): void {
    if (!this.trapArmed) return;
    if (this.lateWrites === 0) this.firstLateWrite = { slot, offset, vcpu };
    this.lateWrites++;
  }

  /**
   * A write without a vCPU context: goes to the slot's bitmap. -EFAULT for an address
   * outside every slot; -ENXIO when the ring is on without WITH_BITMAP (KVM would lose it).
   */
  markDirtyNoVcpu(slot: number, offset: number): number {
    const s = this.slotByField(slot);
    if (!s || !validOffset(offset, s.npages)) return -Errno.EFAULT;
    if (!s.dirty) {
      this.unloggedWrites++;
      return -Errno.ENXIO;
    }
    this.noteWrite(slot, offset, -1);
    s.dirty.words[offset >>> 5]! |= 1 << (offset & 31);
    return 0;
  }

  /** markDirtyNoVcpu by guest frame number. */
  markGfnDirtyNoVcpu(gfn: number): number {
    const at = this.findGfn(gfn);
    return at ? this.markDirtyNoVcpu(at.slot, at.offset) : -Errno.EFAULT;
  }

  private dirtyLogSlot(slot: number): MemSlot {
    if (!this.usesBitmap()) fail('ENXIO', 'dirty ring is on without WITH_BITMAP');
    checkSlotId(slot);
    const s = this.slots[slot];
    if (!s || !s.dirty) fail('ENOENT', `slot ${slot} has no dirty bitmap`);
    return s;
  }

  /**
   * KVM_GET_DIRTY_LOG: ORs the slot's bitmap into `dst` (u64 little-endian words, the
   * kernel's dirty-bitmap layout) and clears it. 0 or -errno (ENXIO, EINVAL, ENOENT, EFAULT
   * for a buffer shorter than the slot's bitmap).
   */
  getDirtyLog(slot: number, dst: Uint8Array): number {
    return syscall(() => {
      const s = this.dirtyLogSlot(slot);
      if (dst.length < dirtyBitmapBytes(s.npages)) fail('EFAULT', 'dirty log buffer too small');
      dst.fill(0, 0, dirtyBitmapBytes(s.npages));
      s.dirty!.readAndClearInto(dst, 0);
    });
  }

  /** The same as getDirtyLog for in-process callers: returns a fresh Bitmap, throws KernelError. */
  takeDirtyLog(slot: number): Bitmap {
    const s = this.dirtyLogSlot(slot);
    const out = new Bitmap(s.npages);
    out.words.set(s.dirty!.words);
    s.dirty!.clearAll();
    return out;
  }

  /** Harvests every vCPU ring in vCPU order; returns the number of entries visited. */
  harvestAll(visit?: DirtyPageVisitor): number {
    let n = 0;
    for (const v of this.vcpuList) n += v.harvest(visit);
    return n;
  }

  /** KVM_RESET_DIRTY_RINGS: resets every ring; the total cleared, or -EINVAL with the ring off. */
  resetAll(onReprotect?: ReprotectObserver): number {
    if (this.ringBytes === 0) return -Errno.EINVAL;
    let n = 0;
    for (const v of this.vcpuList) n += v.reset(onReprotect);
    return n;
  }

  /**
   * The last dirty collection before sending final state: harvest and reset every ring
   * first, then read and clear the bitmaps (spec §2: the bitmap is collected last), then
   * arm a trap that counts any later write as a bug until disarm().
   */
  finalCollect(visit: DirtyPageVisitor): FinalCollection {
    const ringEntries = this.harvestAll(visit);
    const resetEntries = this.ringBytes !== 0 ? this.resetAll() : 0;
    const bitmaps = new Map<number, Bitmap>();
    if (this.usesBitmap()) {
      for (const s of this.slots) if (s && s.dirty) bitmaps.set(s.id, this.takeDirtyLog(s.id));
    }
    this.trapArmed = true;
    return { ringEntries, resetEntries, bitmaps };
  }

  /** Ends the post-collection trap (migration finished or aborted). */
  disarm(): void {
    this.trapArmed = false;
  }
}

/**
 * One vCPU's dirty ring. Producer side: markPageDirty / markRangeDirty / run. Consumer
 * side (user space through the mapped array): harvest, then the VM-wide reset.
 */
export class VcpuRing {
  readonly id: number;
  /** Entries (0: the VM has no ring and this vCPU logs to the slot bitmaps). */
  readonly size: number;
  readonly softLimit: number;
  /** The mapped kvm_dirty_gfn array: entry i at words 4i..4i+3 (flags, slot, offset lo, hi). */
  readonly gfns: Uint32Array;
  readonly bytes: Uint8Array;
  private dirtyIdx: number;
  private resetIdx: number;
  private fetchIdx: number;
  private readonly vm: DirtyRingSet;
  private readonly maxStep: number;
  /** Entries pushed so far. */
  pushes = 0;
  /** Times run() (or a write) reported DIRTY_RING_FULL. */
  fullExits = 0;

  /** @internal created by DirtyRingSet.createVcpu. */
  constructor(vm: DirtyRingSet, id: number, size: number, reserved: number, start: number) {
    this.vm = vm;
    this.id = id;
    this.size = size;
    this.softLimit = size === 0 ? 0 : size - reserved;
    this.maxStep = reserved;
    this.gfns = new Uint32Array(size * 4);
    this.bytes = new Uint8Array(this.gfns.buffer);
    this.dirtyIdx = start;
    this.resetIdx = start;
    this.fetchIdx = start;
  }

  get dirtyIndex(): number {
    return this.dirtyIdx;
  }
  get resetIndex(): number {
    return this.resetIdx;
  }
  /** Where harvest() resumes (the consumer's own cursor). */
  get fetchIndex(): number {
    return this.fetchIdx;
  }
  get used(): number {
    return ringUsed(this.dirtyIdx, this.resetIdx);
  }
  /** Soft-full: the vCPU may not run until harvest + reset brings `used` below the limit. */
  get full(): boolean {
    return this.size !== 0 && this.used >= this.softLimit;
  }

  /** KVM_RUN entry check: 0 when the vCPU may enter the guest, else KVM_EXIT_DIRTY_RING_FULL. */
  run(): number {
    if (this.full) {
      this.fullExits++;
      return KVM_EXIT_DIRTY_RING_FULL;
    }
    return 0;
  }

  /** A guest write to page `offset` of slot `slot`: a DirtyWrite value or -EFAULT. */
  markPageDirty(slot: number, offset: number): number {
    const s = this.vm.slotByField(slot);
    if (!s || !validOffset(offset, s.npages)) return -Errno.EFAULT;
    if (this.full) return DirtyWrite.REFUSED_FULL;
    this.vm.noteWrite(slot, offset, this.id);
    this.logPage(s, slot, offset);
    return this.afterStep();
  }

  /**
   * One guest step writing pages [offset, offset+npages) of a slot. A step may dirty at
   * most `reserved` pages (EINVAL otherwise): that bound is what keeps the ring from ever
   * filling past the reserve.
   */
  markRangeDirty(slot: number, offset: number, npages: number): number {
    const s = this.vm.slotByField(slot);
    if (!Number.isInteger(npages) || npages < 1 || npages > this.maxStep) return -Errno.EINVAL;
    if (!s || !validOffset(offset, s.npages) || offset + npages > s.npages) return -Errno.EFAULT;
    if (this.full) return DirtyWrite.REFUSED_FULL;
    for (let i = 0; i < npages; i++) {
      this.vm.noteWrite(slot, offset + i, this.id);
      this.logPage(s, slot, offset + i);
    }
    return this.afterStep();
  }

  /** markPageDirty by guest frame number. */
  markGfnDirty(gfn: number): number {
    const at = this.vm.findGfn(gfn);
    return at ? this.markPageDirty(at.slot, at.offset) : -Errno.EFAULT;
  }

  private afterStep(): number {
    if (this.full) {
      this.fullExits++;
      return DirtyWrite.EXIT_FULL;
    }
    return DirtyWrite.OK;
  }

  private logPage(s: MemSlot, slot: number, offset: number): void {
    if (this.size === 0) {
      // classic dirty logging: the bitmap bit is the whole record
      s.dirty!.words[offset >>> 5]! |= 1 << (offset & 31);
      return;
    }
    const w = s.writable!.words;
    const k = offset >>> 5;
    const bit = 1 << (offset & 31);
    if ((w[k]! & bit) !== 0) return; // already writable: the fault that would push never happens
    w[k]! |= bit;
    this.push(slot, offset);
  }

  private push(slot: number, offset: number): void {
    if (this.used >= this.size) {
      // unreachable by construction (writes stop at the soft limit, steps <= reserved)
      throw new Error(`dirty ring of vCPU ${this.id} hard-full`);
    }
    const g = this.gfns;
    const i = (this.dirtyIdx & (this.size - 1)) * 4;
    g[i + 1] = slot;
    g[i + 2] = offset >>> 0;
    g[i + 3] = Math.floor(offset / 0x1_0000_0000);
    g[i] = KVM_DIRTY_GFN_F_DIRTY; // published only after slot/offset are in place
    this.dirtyIdx = (this.dirtyIdx + 1) >>> 0;
    this.pushes++;
  }

  /**
   * Consumer: visits entries in order from its cursor, stopping at the first one without
   * DIRTY, and flags each visited entry harvested (flags |= RESET). Returns the count.
   */
  harvest(visit?: DirtyPageVisitor): number {
    const g = this.gfns;
    const m = this.size - 1;
    let n = 0;
    while (n < this.size) {
      const i = (this.fetchIdx & m) * 4;
      const f = g[i]!;
      if ((f & KVM_DIRTY_GFN_F_DIRTY) === 0) break;
      if (visit) visit(g[i + 1]!, g[i + 2]! + g[i + 3]! * 0x1_0000_0000);
      g[i] = (f | KVM_DIRTY_GFN_F_RESET) >>> 0;
      this.fetchIdx = (this.fetchIdx + 1) >>> 0;
      n++;
    }
    return n;
  }

  /**
   * The per-ring part of KVM_RESET_DIRTY_RINGS: from reset_index over harvested entries
   * (never past dirty_index), clear each entry, and re-protect its page. Runs of one slot
   * are merged into (offset, 64-bit mask) groups; a group with a bad slot, or whose last
   * page offset+fls(mask) (fls = index of the highest set bit) is not below the slot size,
   * is ignored, its entries still cleared and counted. Returns the entries cleared.
   */
  reset(onReprotect?: ReprotectObserver): number {
    const g = this.gfns;
    const m = this.size - 1;
    let count = 0;
    let have = false;
    let curSlot = 0;
    let curOff = 0;
    let lo = 0; // mask bits 0..31
    let hi = 0; // mask bits 32..63
    while (this.resetIdx !== this.dirtyIdx) {
      const i = (this.resetIdx & m) * 4;
      if ((g[i]! & KVM_DIRTY_GFN_F_RESET) === 0) break;
      const slot = g[i + 1]!;
      const off = g[i + 2]! + g[i + 3]! * 0x1_0000_0000;
      g[i] = 0;
      g[i + 1] = 0;
      g[i + 2] = 0;
      g[i + 3] = 0;
      this.resetIdx = (this.resetIdx + 1) >>> 0;
      count++;
      if (have && slot === curSlot) {
        const delta = off - curOff;
        if (delta >= 0 && delta < 64) {
          if (delta < 32) lo = (lo | (1 << delta)) >>> 0;
          else hi = (hi | (1 << (delta - 32))) >>> 0;
          continue;
        }
        // a page just below the group: slide the window down if no set bit falls off the top
        if (delta < 0 && delta > -64 && highestBit(lo, hi) - delta < 64) {
          const sh = -delta;
          if (sh >= 32) {
            hi = (lo << (sh - 32)) >>> 0;
            lo = 0;
          } else {
            hi = ((hi << sh) | (lo >>> (32 - sh))) >>> 0;
            lo = (lo << sh) >>> 0;
          }
          lo = (lo | 1) >>> 0;
          curOff = off;
          continue;
        }
      }
      if (have) this.reprotect(curSlot, curOff, lo, hi, onReprotect);
      have = true;
      curSlot = slot;
      curOff = off;
      lo = 1;
      hi = 0;
    }
    if (have) this.reprotect(curSlot, curOff, lo, hi, onReprotect);
    return count;
  }

  private reprotect(slot: number, off: number, lo: number, hi: number, obs?: ReprotectObserver): void {
    const s = this.vm.slotByField(slot);
    const ok = s !== undefined && s.writable !== null && off + highestBit(lo, hi) < s.npages;
    if (obs) obs(slot, off, (BigInt(hi) << 32n) | BigInt(lo), ok);
    if (!ok) return;
    const w = s.writable!.words;
    for (let half = 0; half < 2; half++) {
      let v = half === 0 ? lo : hi;
      while (v !== 0) {
        const low = v & -v;
        const p = off + half * 32 + (31 - Math.clz32(low));
        w[p >>> 5]! &= ~(1 << (p & 31));
        v = (v ^ low) >>> 0;
      }
    }
  }
}

function isPow2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

function checkSlotId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) fail('EINVAL', `bad slot ${id}`);
  if (id >>> 16 >= KVM_ADDRESS_SPACE_NUM || (id & 0xffff) >= KVM_USER_MEM_SLOTS) fail('EINVAL', `bad slot ${id}`);
}

function validOffset(offset: number, npages: number): boolean {
  return Number.isInteger(offset) && offset >= 0 && offset < npages;
}

/** Index of the highest set bit of the 64-bit mask (hi:lo); the mask is never 0 here. */
function highestBit(lo: number, hi: number): number {
  return hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(lo);
}
