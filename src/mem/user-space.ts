/**
 * The address space of a simulated VMM process. ioctls in this project take user pointers
 * (`vfio_bitmap.data`, `vfio_iommu_type1_dma_map.vaddr`, DMA-logging report buffers) as
 * numbers; they resolve them here so a bad pointer fails with EFAULT exactly where the kernel
 * would fail copy_{from,to}_user or page pinning.
 *
 * A segment is either anonymous memory (`alloc`, a zeroed flat buffer usable in place) or a
 * window onto a SparseMemory (`mapMemory`, how a VMM maps guest RAM). Segments are page
 * aligned and never overlap; address 0 and everything below USER_MIN_ADDR is never mapped.
 * Copies may run across adjacent segments, like accesses spanning two VMAs; `resolve` and
 * `view` hand out one backing object and so stay inside one segment.
 */
import { fail } from '../uapi/errno.js';
import type { Bitmap } from './bitmap.js';
import { PAGE_SIZE, SparseMemory } from './sparse-memory.js';

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;

/** Lowest mappable address (Linux's default vm.mmap_min_addr). */
export const USER_MIN_ADDR = 0x10000;
/** End of the 47-bit user half of a 4-level x86-64 / 48-bit arm64 address space. */
export const USER_TOP = 2 ** 47;
/** Where automatic placement starts. */
const AUTO_BASE = 0x5000_0000_0000;
/** Unmapped gap left after each automatically placed segment so overruns fault. */
const GUARD = PAGE_SIZE;

export interface MapOptions {
  /** Fixed placement (page aligned, must not overlap: EEXIST). */
  vaddr?: number;
  /** PROT_READ | PROT_WRITE by default. */
  prot?: number;
}

export interface UserSegment {
  readonly start: number;
  readonly len: number;
  readonly mem: SparseMemory;
  readonly memOffset: number;
  readonly prot: number;
  readonly anonymous: boolean;
}

interface Segment {
  start: number;
  len: number;
  mem: SparseMemory;
  memOffset: number;
  prot: number;
  anonymous: boolean;
}

function pageAlignUp(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

export class UserAddressSpace {
  private segs: Segment[] = [];
  private nextAuto = AUTO_BASE;

  /** Anonymous zeroed memory of len bytes (rounded up to pages); returns its address. */
  alloc(len: number, opts: MapOptions = {}): number {
    if (!Number.isInteger(len) || len <= 0) fail('EINVAL', `alloc length ${len}`);
    const size = pageAlignUp(len);
    const mem = new SparseMemory(size, { contiguous: true });
    return this.insert(mem, 0, size, opts, true);
  }

  /** Maps [memOffset, memOffset+len) of `mem` (page aligned) like mmap of a shared file. */
  mapMemory(mem: SparseMemory, memOffset: number, len: number, opts: MapOptions = {}): number {
    if (!Number.isInteger(len) || len <= 0 || len % PAGE_SIZE !== 0) fail('EINVAL', `map length ${len}`);
    if (!Number.isInteger(memOffset) || memOffset < 0 || memOffset % PAGE_SIZE !== 0) fail('EINVAL', `map offset ${memOffset}`);
    if (memOffset + len > mem.size) fail('EINVAL', 'mapping extends past the end of the memory');
    return this.insert(mem, memOffset, len, opts, false);
  }

  private insert(mem: SparseMemory, memOffset: number, len: number, opts: MapOptions, anonymous: boolean): number {
    const prot = opts.prot ?? PROT_READ | PROT_WRITE;
    if (!Number.isInteger(prot) || (prot & ~(PROT_READ | PROT_WRITE)) !== 0) fail('EINVAL', `prot ${prot}`);
    let start: number;
    if (opts.vaddr !== undefined) {
      start = opts.vaddr;
      if (!Number.isInteger(start) || start % PAGE_SIZE !== 0) fail('EINVAL', `vaddr ${start} not page aligned`);
      if (start < USER_MIN_ADDR) fail('EPERM', `vaddr ${start} below mmap_min_addr`);
      if (start + len > USER_TOP) fail('ENOMEM', 'mapping beyond the user address space');
      if (this.overlaps(start, len)) fail('EEXIST', `[${start}, +${len}) overlaps a mapping`);
    } else {
      start = this.place(len);
    }
    const seg: Segment = { start, len, mem, memOffset, prot, anonymous };
    const i = this.upperBound(start);
    this.segs.splice(i, 0, seg);
    return start;
  }

  /** Next free address at or above the moving cursor, else first fit from the bottom. */
  private place(len: number): number {
    const fit = (from: number): number => {
      let cand = from;
      for (const s of this.segs) {
        if (s.start + s.len + GUARD <= cand) continue;
        if (cand + len + GUARD <= s.start) break;
        cand = Math.max(cand, s.start + s.len + GUARD);
      }
      return cand + len <= USER_TOP ? cand : -1;
    };
    let at = fit(this.nextAuto);
    if (at < 0) at = fit(USER_MIN_ADDR);
    if (at < 0) fail('ENOMEM', `no room for ${len} bytes`);
    this.nextAuto = at + len + GUARD;
    return at;
  }

  private overlaps(start: number, len: number): boolean {
    const i = this.upperBound(start) - 1;
    if (i >= 0 && this.segs[i]!.start + this.segs[i]!.len > start) return true;
    const j = i + 1;
    return j < this.segs.length && this.segs[j]!.start < start + len;
  }

  /** Index of the first segment starting after addr. */
  private upperBound(addr: number): number {
    let lo = 0;
    let hi = this.segs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.segs[mid]!.start <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private segmentAt(addr: number): Segment | undefined {
    const i = this.upperBound(addr) - 1;
    if (i < 0) return undefined;
    const s = this.segs[i]!;
    return addr < s.start + s.len ? s : undefined;
  }

  /** Removes the segment that starts at vaddr (EINVAL if none does). */
  unmap(vaddr: number): void {
    const i = this.upperBound(vaddr) - 1;
    if (i < 0 || this.segs[i]!.start !== vaddr) fail('EINVAL', `no mapping starts at ${vaddr}`);
    this.segs.splice(i, 1);
  }

  /** Changes the protection of the segment starting at vaddr. */
  mprotect(vaddr: number, prot: number): void {
    if (!Number.isInteger(prot) || (prot & ~(PROT_READ | PROT_WRITE)) !== 0) fail('EINVAL', `prot ${prot}`);
    const i = this.upperBound(vaddr) - 1;
    if (i < 0 || this.segs[i]!.start !== vaddr) fail('ENOMEM', `no mapping starts at ${vaddr}`);
    this.segs[i]!.prot = prot;
  }

  segments(): UserSegment[] {
    return this.segs.map((s) => ({ ...s }));
  }

  /**
   * Verifies [vaddr, vaddr+len) is mapped with `prot` throughout, possibly across adjacent
   * segments. Throws EFAULT otherwise. len 0 is always accessible (nothing is touched).
   */
  checkAccess(vaddr: number, len: number, prot: number): void {
    if (!Number.isInteger(len) || len < 0) fail('EFAULT', `bad length ${len}`);
    if (len === 0) return;
    if (!Number.isInteger(vaddr) || vaddr <= 0 || vaddr + len > USER_TOP) fail('EFAULT', `bad user address ${vaddr}`);
    let a = vaddr;
    const end = vaddr + len;
    while (a < end) {
      const s = this.segmentAt(a);
      if (s === undefined) fail('EFAULT', `user address ${a} not mapped`);
      if ((s.prot & prot) !== prot) fail('EFAULT', `user address ${a} lacks ${prot & PROT_WRITE ? 'write' : 'read'} permission`);
      a = s.start + s.len;
    }
  }

  /** The memory behind [vaddr, vaddr+len), which must lie in one readable segment. */
  resolve(vaddr: number, len: number, prot = PROT_READ): { mem: SparseMemory; offset: number } {
    if (!Number.isInteger(len) || len <= 0) fail('EFAULT', `bad length ${len}`);
    this.checkAccess(vaddr, len, prot);
    const s = this.segmentAt(vaddr)!;
    if (vaddr + len > s.start + s.len) fail('EFAULT', `[${vaddr}, +${len}) crosses a mapping boundary`);
    return { mem: s.mem, offset: s.memOffset + (vaddr - s.start) };
  }

  /** A live view of [vaddr, vaddr+len) inside one contiguous (anonymous) segment. */
  view(vaddr: number, len: number, prot = PROT_READ | PROT_WRITE): Uint8Array {
    const { mem, offset } = this.resolve(vaddr, len, prot);
    if (!mem.contiguous) fail('EFAULT', `[${vaddr}, +${len}) is not in a flat segment`);
    return mem.flatView(offset, len);
  }

  copyFromUser(vaddr: number, len: number): Uint8Array {
    this.checkAccess(vaddr, len, PROT_READ);
    const out = new Uint8Array(len);
    this.walk(vaddr, len, (s, off, pos, n) => s.mem.read(off, out.subarray(pos, pos + n)));
    return out;
  }

  /** Writes all of `bytes` or nothing (EFAULT). */
  copyToUser(vaddr: number, bytes: Uint8Array): void {
    this.checkAccess(vaddr, bytes.length, PROT_WRITE);
    this.walk(vaddr, bytes.length, (s, off, pos, n) => s.mem.write(off, bytes.subarray(pos, pos + n)));
  }

  readU32(vaddr: number): number {
    const b = this.copyFromUser(vaddr, 4);
    return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
  }

  readU64(vaddr: number): bigint {
    const b = this.copyFromUser(vaddr, 8);
    return new DataView(b.buffer).getBigUint64(0, true);
  }

  writeU32(vaddr: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.copyToUser(vaddr, b);
  }

  writeU64(vaddr: number, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.copyToUser(vaddr, b);
  }

  /**
   * Read-modify-write of user memory: checks [vaddr, vaddr+len) is writable (EFAULT before
   * anything changes), then calls fn with the bytes — a live view when they sit in one flat
   * segment, else a copy that is written back afterwards. If fn throws, a copy is discarded.
   */
  updateUser<T>(vaddr: number, len: number, fn: (bytes: Uint8Array) => T): T {
    this.checkAccess(vaddr, len, PROT_READ | PROT_WRITE);
    if (len === 0) return fn(new Uint8Array(0));
    const s = this.segmentAt(vaddr)!;
    if (s.mem.contiguous && vaddr + len <= s.start + s.len) {
      return fn(s.mem.flatView(s.memOffset + (vaddr - s.start), len));
    }
    const tmp = this.copyFromUser(vaddr, len);
    const r = fn(tmp);
    this.copyToUser(vaddr, tmp);
    return r;
  }

  /**
   * ORs bits [srcStart, srcStart+count) of `src` into the user bitmap of byteLen bytes at vaddr,
   * starting at bit dstBitOffset. EFAULT (nothing written) unless the whole buffer is writable;
   * EINVAL if the bits would land past byteLen.
   */
  bitmapOrToUser(vaddr: number, byteLen: number, src: Bitmap, dstBitOffset: number, srcStart: number, count: number): void {
    if (!Number.isInteger(dstBitOffset) || dstBitOffset < 0 || !Number.isInteger(count) || count < 0) {
      fail('EINVAL', 'bad bit range');
    }
    if (dstBitOffset + count > byteLen * 8) fail('EINVAL', `bits [${dstBitOffset}, +${count}) exceed a ${byteLen}-byte bitmap`);
    this.checkAccess(vaddr, byteLen, PROT_WRITE);
    if (count === 0) return;
    // touch only the bytes the bits land in
    const b0 = Math.floor(dstBitOffset / 8);
    const b1 = Math.ceil((dstBitOffset + count) / 8);
    this.updateUser(vaddr + b0, b1 - b0, (bytes) => src.orInto(bytes, dstBitOffset - b0 * 8, srcStart, count));
  }

  /** Calls fn(segment, memOffset, position in the access, length) for each piece. */
  private walk(vaddr: number, len: number, fn: (s: Segment, off: number, pos: number, n: number) => void): void {
    let a = vaddr;
    let pos = 0;
    while (pos < len) {
      const s = this.segmentAt(a)!;
      const n = Math.min(len - pos, s.start + s.len - a);
      fn(s, s.memOffset + (a - s.start), pos, n);
      a += n;
      pos += n;
    }
  }
}
