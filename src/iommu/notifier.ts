/**
 * IOMMU mapping-change notifiers (spec: iommu-notifiers-and-dirty-ring.md section 1).
 *
 * An IOMMU translation domain tells interested parties (device IOTLBs, vhost-like shadow
 * tables) when translations appear or disappear. Events carry an IOMMUTLBEntry describing
 * [iova, iova + addrMask]; all arithmetic is u64 in bigint (BigInt.asUintN(64, ...)) because
 * device-IOTLB invalidations can cover the whole 2^64 space and wrap-around matters.
 */
import { fail } from '../uapi/errno.js';

export const IOMMUAccessFlags = { NONE: 0, RO: 1, WO: 2, RW: 3 } as const;
export type IOMMUAccessFlag = 0 | 1 | 2 | 3;

export const IOMMUNotifierFlag = {
  NONE: 0,
  UNMAP: 0x1,
  MAP: 0x2,
  DEVIOTLB_UNMAP: 0x4,
  IOTLB_EVENTS: 0x3,
  DEVIOTLB_EVENTS: 0x4,
  ALL: 0x7,
} as const;

/** The type of one event: exactly one of UNMAP, MAP, DEVIOTLB_UNMAP. */
export type IOMMUEventType = 1 | 2 | 4;

/** Covers [iova, iova + addrMask]. */
export interface IOMMUTLBEntry {
  iova: bigint;
  translatedAddr: bigint;
  addrMask: bigint;
  perm: IOMMUAccessFlag;
}

export interface IOMMUTLBEvent {
  type: IOMMUEventType;
  entry: IOMMUTLBEntry;
}

export interface IOMMUNotifier {
  /** Receives a private copy of the event, already cropped to [start, end]. */
  notify(event: IOMMUTLBEvent, notifier: IOMMUNotifier): void;
  /** Which event types this notifier wants (IOMMUNotifierFlag bits). */
  flags: number;
  start: bigint;
  /** Inclusive. */
  end: bigint;
}

const U64_MAX = (1n << 64n) - 1n;
const PAGE_MASK = 0xfffn;

function isU64(v: unknown): v is bigint {
  return typeof v === 'bigint' && v >= 0n && v <= U64_MAX;
}

function isPow2Mask(m: bigint): boolean {
  // 2^N - 1: adding one clears every set bit
  return ((m + 1n) & m) === 0n;
}

/**
 * The producer-side rules: an invalid event is a producer bug and is rejected (EINVAL)
 * instead of being delivered. MAP/UNMAP entries are naturally aligned power-of-two ranges of
 * at least a page; UNMAP and DEVIOTLB_UNMAP carry perm NONE; nothing wraps past 2^64-1.
 */
export function validateEvent(event: IOMMUTLBEvent): void {
  const e = event?.entry;
  if (e === undefined || e === null) fail('EINVAL', 'IOMMU event without an entry');
  const t = event.type as number;
  if (t !== IOMMUNotifierFlag.UNMAP && t !== IOMMUNotifierFlag.MAP && t !== IOMMUNotifierFlag.DEVIOTLB_UNMAP) {
    fail('EINVAL', `IOMMU event type ${t} is not exactly one of UNMAP, MAP, DEVIOTLB_UNMAP`);
  }
  if (!isU64(e.iova) || !isU64(e.addrMask) || !isU64(e.translatedAddr)) fail('EINVAL', 'IOMMU entry fields must be u64 bigints');
  if (e.iova + e.addrMask > U64_MAX) fail('EINVAL', 'IOMMU entry wraps past 2^64-1');
  const p = e.perm as number;
  if (p !== 0 && p !== 1 && p !== 2 && p !== 3) fail('EINVAL', `IOMMU entry perm ${p}`);
  if (t !== IOMMUNotifierFlag.DEVIOTLB_UNMAP) {
    if (!isPow2Mask(e.addrMask) || e.addrMask < PAGE_MASK) fail('EINVAL', 'MAP/UNMAP addr_mask must be 2^N-1 of at least a page');
    if ((e.iova & e.addrMask) !== 0n) fail('EINVAL', 'MAP/UNMAP iova must be aligned to its size');
  }
  if (t !== IOMMUNotifierFlag.MAP && p !== IOMMUAccessFlags.NONE) fail('EINVAL', 'UNMAP events carry perm NONE');
}

export function validateNotifier(n: IOMMUNotifier): void {
  if (n === null || typeof n !== 'object' || typeof n.notify !== 'function') fail('EINVAL', 'notifier needs a notify function');
  if (!Number.isInteger(n.flags) || n.flags <= 0 || (n.flags & ~IOMMUNotifierFlag.ALL) !== 0) fail('EINVAL', `notifier flags ${n.flags}`);
  if (!isU64(n.start) || !isU64(n.end) || n.start > n.end) fail('EINVAL', 'notifier range must be u64 with start <= end');
}

/**
 * Delivers one event to one notifier: silently skipped when the entry does not overlap
 * [start, end] or the notifier does not want this type; otherwise the notifier gets a copy
 * cropped to its range (iova = max(iova, start), addrMask = min(entry end, end) - iova). The
 * cropped copy of a MAP entry has its translatedAddr moved with its iova so it still
 * describes the same pages (an UNMAP entry's translatedAddr means nothing and is kept).
 * The caller's event is never modified.
 */
export function notifyOne(notifier: IOMMUNotifier, event: IOMMUTLBEvent): void {
  validateEvent(event);
  const e = event.entry;
  const entryEnd = e.iova + e.addrMask;
  if (entryEnd < notifier.start || e.iova > notifier.end) return;
  if ((event.type & notifier.flags) === 0) return;
  const iova = e.iova > notifier.start ? e.iova : notifier.start;
  const last = entryEnd < notifier.end ? entryEnd : notifier.end;
  const copy: IOMMUTLBEvent = {
    type: event.type,
    entry: {
      iova,
      translatedAddr: e.perm === IOMMUAccessFlags.NONE ? e.translatedAddr : BigInt.asUintN(64, e.translatedAddr + (iova - e.iova)),
      addrMask: last - iova,
      perm: e.perm,
    },
  };
  notifier.notify(copy, notifier);
}

/** One naturally aligned power-of-two piece: [iova, iova + addrMask]. */
export interface AlignedChunk {
  iova: bigint;
  addrMask: bigint;
}

/**
 * Splits [start, end] (page aligned, end inclusive) into naturally aligned power-of-two
 * chunks, as an IOMMU must when announcing an unmap: each chunk is the alignment of its start
 * (start 0 counts as aligned to 2^gaw; capped at 2^gaw) unless that exceeds what is left, in
 * which case it is the largest power of two not above the remainder. The range is never
 * rounded up, which would unmap live neighbours. `end` beyond the 2^gaw address space is
 * clamped to it, since nothing can be mapped there.
 */
export function splitUnmapRange(start: bigint, end: bigint, gaw: number): AlignedChunk[] {
  if (!Number.isInteger(gaw) || gaw < 12 || gaw > 64) fail('EINVAL', `address width ${gaw}`);
  if (!isU64(start) || !isU64(end) || start > end) fail('EINVAL', 'unmap range must be u64 with start <= end');
  if ((start & PAGE_MASK) !== 0n || ((end + 1n) & PAGE_MASK) !== 0n) fail('EINVAL', 'unmap range must be page aligned');
  const space = 1n << BigInt(gaw);
  const last = end < space - 1n ? end : space - 1n;
  const out: AlignedChunk[] = [];
  let cur = start;
  while (cur <= last) {
    const remaining = last - cur + 1n;
    let size = cur === 0n ? space : cur & -cur;
    if (size > space) size = space;
    if (size > remaining) size = 1n << BigInt(remaining.toString(2).length - 1);
    out.push({ iova: cur, addrMask: size - 1n });
    cur += size;
  }
  return out;
}

function trailingOnes(v: bigint): number {
  let n = 0;
  while (v & 1n) {
    v >>= 1n;
    n++;
  }
  return n;
}

/**
 * Decodes a VT-d style device-IOTLB invalidation address. S = 0: the 4 KiB page at addr.
 * S = 1: the size is 8 KiB shifted left by the number of trailing ones of addr >> 12, and addr
 * is aligned down to it; with every address bit set the size wraps to 2^64 and the event
 * covers [0, 2^64 - 1]. Low 12 bits of addr are not part of the address and are ignored.
 */
export function decodeDevIotlbInvalidation(addr: bigint, s: boolean | 0 | 1): IOMMUTLBEvent {
  if (!isU64(addr)) fail('EINVAL', 'device-IOTLB invalidation address must be a u64 bigint');
  if (s !== true && s !== false && s !== 0 && s !== 1) fail('EINVAL', `size bit ${String(s)}`);
  let iova = addr & ~PAGE_MASK;
  let mask = PAGE_MASK;
  if (s === true || s === 1) {
    const sz = BigInt.asUintN(64, 0x2000n << BigInt(trailingOnes(iova >> 12n)));
    mask = BigInt.asUintN(64, sz - 1n);
    iova = BigInt.asUintN(64, iova & ~mask);
  }
  return {
    type: IOMMUNotifierFlag.DEVIOTLB_UNMAP,
    entry: { iova, translatedAddr: 0n, addrMask: mask, perm: IOMMUAccessFlags.NONE },
  };
}

/** The notifiers registered on one IOMMU region or domain. */
export class NotifierList {
  private list: IOMMUNotifier[] = [];

  /** EINVAL for a malformed notifier, EEXIST if it is already registered. */
  register(n: IOMMUNotifier): void {
    validateNotifier(n);
    if (this.list.includes(n)) fail('EEXIST', 'notifier already registered');
    this.list = [...this.list, n];
  }

  /** Removing a notifier that is not registered is a no-op (returns false). */
  unregister(n: IOMMUNotifier): boolean {
    const i = this.list.indexOf(n);
    if (i < 0) return false;
    this.list = this.list.filter((x) => x !== n);
    return true;
  }

  get size(): number {
    return this.list.length;
  }

  /** Union of the registered notifiers' flags, to skip work nobody listens for. */
  get flags(): number {
    let f = 0;
    for (const n of this.list) f |= n.flags;
    return f;
  }

  /**
   * Validates the event, then delivers it to each notifier registered when the call began
   * (a notifier may unregister itself or others from its callback).
   */
  notify(event: IOMMUTLBEvent): void {
    validateEvent(event);
    const snapshot = this.list;
    for (const n of snapshot) {
      if (this.list !== snapshot && !this.list.includes(n)) continue;
      notifyOne(n, event);
    }
  }
}
