/**
 * Campaign "dmalog" (issue 6 item 1, device DMA logging): random VFIO_DEVICE_FEATURE calls
 * with DMA_LOGGING_START / STOP / REPORT on a hisi-acc-vfio-pci VF whose guest keeps running
 * compression jobs (so the device really writes guest RAM), mixed with device stops and
 * restarts (v2 STOP/RUNNING, which write the queue contexts back) and resets.
 *
 * Oracles, written from vfio-uapi-and-migration.md sections 2 and 5 and hisi-acc-vfio-pci.md
 * section 8, not from src/vfio/pci-core/feature.ts:
 * - every call's return is predicted before it is made: the feature header rules
 *   (vfio_check_feature), then START (num_ranges 0 EINVAL, > PAGE_SIZE/16 E2BIG, page size a
 *   power of two >= 4096, each range readable (EFAULT), aligned (EINVAL), not overflowing
 *   (EOVERFLOW, this simulator's ULONG_MAX is 2^53-1), not empty or overlapping (EINVAL),
 *   EBUSY when already logging), STOP (always 0) and REPORT (page size EINVAL, overflow
 *   EOVERFLOW, not logging or a range outside the logged ones EINVAL, an unwritable bitmap
 *   EFAULT);
 * - an independent record of the pages the device wrote: the VF's upstream DMA port is
 *   wrapped (before the IOMMU and its tracker), and every page written while logging is
 *   set in a bitmap of our own. A REPORT's bitmap must be exactly (old user bytes) OR (the
 *   report pages that hold a recorded 4 KiB page); reading clears the recorded pages it
 *   touched. START begins clean, STOP drops everything;
 * - a rejected call changes nothing: the recorded pages stay for the next REPORT, the user
 *   bitmap bytes are untouched, the domain's tracking matches the session;
 * - the guest's job completes whenever the device runs; the witnesses keep working.
 */
import { Errno, KernelError, errnoName } from '../uapi/errno.js';
import { readU32, writeU32 } from '../uapi/codec.js';
import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_RESET,
  VFIO_DEVICE_STATE_RUNNING as RUNNING, VFIO_DEVICE_STATE_STOP as STOP,
} from '../uapi/vfio.js';
import type { DmaPort } from '../hw/dma.js';
import type { IommuDomain } from '../iommu/domain.js';
import { PROT_READ, PROT_WRITE } from '../mem/user-space.js';
import type { Rng } from '../sim/scheduler.js';
import { ACC_VM_RAM, type AccRig, buildAccRig, accCheckpoint, freshGuest, runJob } from './acc-rig.js';
import { U64_MAX, Weights, chance, edgyU32, pick, u64, weighted } from './gen.js';
import { knownBugsOf } from './known-bugs.js';
import type { Campaign, Recorder } from './runner.js';
import { checkGuards, resetGuards } from './storm.js';

const GET = VFIO_DEVICE_FEATURE_GET;
const SET = VFIO_DEVICE_FEATURE_SET;
const PROBE = VFIO_DEVICE_FEATURE_PROBE;
const F_START = VFIO_DEVICE_FEATURE_DMA_LOGGING_START;
const F_STOP = VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP;
const F_REPORT = VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT;
/** Spec section 5: at most PAGE_SIZE / sizeof(range) ranges. */
const MAX_RANGES = 4096 / 16;
/** This simulator's ULONG_MAX (addresses are JS numbers). */
const ADDR_MAX = BigInt(Number.MAX_SAFE_INTEGER);
const PAGE = 4096;
const RAM_PAGES = ACC_VM_RAM / PAGE;
/** The scratch buffer of range arrays and report bitmaps (big enough for a windowed report). */
const RW_LEN = 512 * 1024;
const RO_LEN = 16 * 1024;
const KNOWN_FLAGS = 0xffff | GET | SET | PROBE;
/** Kernel-side memory a REPORT may still hold after the call beyond 4x its bitmap. */
const REPORT_MEM_SLACK = 8 * 2 ** 20;

interface Hdr {
  flags: number;
  argsz: number;
  bufLen: number;
}

type Op =
  | { op: 'start'; hdr: Hdr; w: bigint[]; arr: { off: number; words: bigint[] } | null }
  | { op: 'stop'; hdr: Hdr }
  | { op: 'report'; hdr: Hdr; w: bigint[]; prefill: number }
  | { op: 'job' }
  | { op: 'run'; n: number }
  | { op: 'state'; state: number }
  | { op: 'reset' };

interface Range {
  iova: number;
  length: number;
}

interface Ctx {
  rig: AccRig;
  domain: IommuDomain;
  rw: number;
  ro: number;
  /** The session as the oracle follows it: sorted disjoint ranges, or null. */
  logging: Range[] | null;
  startPageSize: number;
  /** Pages of guest RAM the device wrote while logging, not yet reported (one bit a page). */
  dirty: Uint32Array;
  /** The device runs (v2 RUNNING): guest jobs must complete. */
  running: boolean;
}

const minszOf = (feature: number): number => (feature === F_START ? 24 : feature === F_REPORT ? 32 : 0);
const supportedOf = (feature: number): number => (feature === F_REPORT ? GET : SET);

function hdr(rng: Rng, feature: number): Hdr {
  const good = supportedOf(feature);
  const flags = weighted(rng, [
    [20, feature | good],
    [2, feature | good | PROBE],
    [1, feature | (good ^ (GET | SET))],
    [1, feature | GET | SET],
    [1, feature | PROBE | GET | SET],
    [1, feature],
    [1, (feature | good | (1 << (19 + rng.int(13)))) >>> 0],
  ]);
  const size = 8 + minszOf(feature);
  const argsz = weighted(rng, [[20, size], [2, size - 1 - rng.int(8)], [2, size + rng.int(32)], [1, rng.int(8)], [1, edgyU32(rng)]]) >>> 0;
  const natural = Math.min(Math.max(argsz, size), 4096);
  const bufLen = weighted(rng, [[20, natural], [1, rng.int(size + 1)], [1, Math.min(natural + rng.int(16), 4096)]]);
  return { flags, argsz, bufLen };
}

function pageSize(rng: Rng): bigint {
  return weighted<() => bigint>(rng, [
    [12, () => 4096n],
    [3, () => 8192n],
    [3, () => 65536n],
    [2, () => 2n ** 21n],
    [1, () => 2n ** 30n],
    [1, () => 2n ** BigInt(31 + rng.int(33))],
    [2, () => pick(rng, [0n, 1n, 2048n, 4095n, 4097n, 12288n, 3n * 65536n, 4096n * 1000n])],
    [1, () => U64_MAX],
    [1, () => u64(rng)],
  ])();
}

/** One logging range: mostly inside guest RAM and aligned to ps, with every kind of defect. */
function range(rng: Rng, ps: bigint, prev: bigint[]): [bigint, bigint] {
  const p = ps >= 4096n && ps <= 2n ** 34n ? ps : 4096n;
  const ram = BigInt(ACC_VM_RAM);
  const slots = ram / p > 0n ? ram / p : 1n;
  const n = BigInt;
  return weighted<() => [bigint, bigint]>(rng, [
    [6, () => [0n, ram > p ? ram : p]],
    [10, () => {
      const at = n(rng.int(Number(slots < 64n ? slots : 64n))) * (slots >= 64n ? slots / 64n : 1n) * p;
      return [at, p * n(1 + rng.int(16))];
    }],
    [2, () => (prev.length >= 2 ? [prev[prev.length - 2]!, prev[prev.length - 1]!] : [0n, p])],
    [2, () => (prev.length >= 2 ? [prev[prev.length - 2]! + p, prev[prev.length - 1]!] : [p, p])],
    [1, () => [n(rng.int(RAM_PAGES)) * 4096n + n(pick(rng, [1, 512, 2048])), p]],
    [1, () => [0n, p + n(pick(rng, [1, 4096, 2048]))]],
    [1, () => [0n, 0n]],
    [1, () => [ram, p * n(1 + rng.int(1024))]],
    [1, () => [0n, 2n ** n(30 + rng.int(11))]],
    [1, () => [ADDR_MAX + 1n - p * n(1 + rng.int(2)), p * n(1 + rng.int(3))]],
    [1, () => [(U64_MAX + 1n - p) & U64_MAX, p]],
    [1, () => [u64(rng), u64(rng)]],
  ])();
}

/** A well-formed session: 1..6 disjoint aligned ranges over guest RAM (and past it). */
function cleanRanges(rng: Rng, ps: bigint): bigint[] {
  const k = 1 + rng.int(6);
  const span = BigInt(ACC_VM_RAM) * 2n;
  const unit = span / BigInt(k) / ps > 0n ? (span / BigInt(k) / ps) * ps : ps;
  const words: bigint[] = [];
  for (let i = 0; i < k; i++) {
    // a gap between some of the ranges, adjacent others
    const gap = chance(rng, 0.3) ? ps : 0n;
    words.push(BigInt(i) * unit + gap, unit - gap);
  }
  return words;
}

function genStart(ctx: Ctx, rng: Rng): Op {
  const clean = chance(rng, 0.5);
  const ps = clean ? pick(rng, [4096n, 4096n, 8192n, 65536n, 2n ** 21n]) : pageSize(rng);
  // a clean session may log far more than guest RAM, as a VMM logging its whole IOVA space does
  const words: bigint[] = clean ? (chance(rng, 0.1) ? [0n, 2n ** BigInt(34 + rng.int(7))] : cleanRanges(rng, ps)) : [];
  const num = clean ? words.length / 2 : weighted(rng, [[12, 1 + rng.int(4)], [3, 5 + rng.int(20)], [1, 0], [1, MAX_RANGES], [1, MAX_RANGES + 1], [1, edgyU32(rng)]]) >>> 0;
  const count = Math.min(num, 24);
  for (let i = words.length / 2; i < count; i++) words.push(...range(rng, ps, words));
  const bytes = words.length * 8;
  let ptr: bigint;
  let arr: { off: number; words: bigint[] } | null = null;
  const kind = weighted(rng, [[16, 'rw'], [2, 'edge'], [1, 'ro'], [1, 'null'], [1, 'wild'], [1, 'huge']] as const);
  if (kind === 'rw' || kind === 'edge') {
    const off = kind === 'rw' ? rng.int((RW_LEN - bytes) / 8 + 1) * 8 + (chance(rng, 0.05) ? 1 + rng.int(7) : 0) : RW_LEN - 16 * (1 + rng.int(Math.max(1, count)));
    arr = { off: Math.max(0, Math.min(off, RW_LEN - 8)), words };
    ptr = BigInt(ctx.rw + arr.off);
  } else if (kind === 'ro') ptr = BigInt(ctx.ro + rng.int(RO_LEN / 16) * 16);
  else if (kind === 'null') ptr = 0n;
  else if (kind === 'wild') ptr = BigInt(rng.int(0x10000)) + (chance(rng, 0.5) ? 2n ** 47n - 4096n : 0n);
  else ptr = pick(rng, [ADDR_MAX + 1n, U64_MAX, u64(rng)]);
  const reserved = chance(rng, 0.9) ? 0n : BigInt(rng.u32());
  return { op: 'start', hdr: hdr(rng, F_START), w: [ps, BigInt(num) | (reserved << 32n), ptr], arr };
}

function genReport(ctx: Ctx, rng: Rng): Op {
  const cur = ctx.logging;
  const n = BigInt;
  const ps = weighted<() => bigint>(rng, [
    [10, () => 4096n],
    [3, () => n(ctx.startPageSize)],
    [2, () => 8192n],
    [2, () => 65536n],
    [1, () => 2n ** 21n],
    [1, () => 2n ** 30n],
    [1, () => pageSize(rng)],
  ])();
  const p = ps >= 4096n && ps <= 2n ** 30n ? ps : 4096n;
  let iova: bigint;
  let length: bigint;
  if (cur && cur.length > 0 && chance(rng, 0.85)) {
    const k = rng.int(cur.length);
    const r = cur[k]!;
    // extend over the following ranges while they touch (the union is what must cover)
    let end = r.iova + r.length;
    for (let j = k + 1; j < cur.length && cur[j]!.iova === end && chance(rng, 0.5); j++) end += cur[j]!.length;
    const lo = n(r.iova);
    const span = n(end) - lo;
    const shape = weighted(rng, [[6, 'whole'], [6, 'sub'], [2, 'unaligned'], [1, 'past'], [1, 'before'], [1, 'empty'], [1, 'windowed']] as const);
    if (shape === 'whole') {
      iova = lo;
      length = span;
    } else if (shape === 'sub') {
      const units = span / p > 0n ? span / p : 1n;
      const a = n(rng.int(Number(units < 4096n ? units : 4096n)));
      iova = lo + a * p;
      const rest = units - a > 0n ? units - a : 1n;
      length = p * (1n + n(rng.int(Number(rest < 4096n ? rest : 4096n))));
    } else if (shape === 'unaligned') {
      iova = lo + n(1 + rng.int(4095));
      length = n(1 + rng.int(Number(span < 65536n ? span : 65536n)));
    } else if (shape === 'past') {
      iova = lo;
      length = span + p;
    } else if (shape === 'before') {
      iova = lo - 4096n < 0n ? (U64_MAX - 4095n) : lo - 4096n;
      length = 8192n;
    } else if (shape === 'windowed') {
      // more than one window of report bits (2^21) when the logged range is that big
      iova = lo;
      length = span < 4096n * (2n ** 21n + 100n) ? span : 4096n * (2n ** 21n + n(rng.int(100)));
    } else {
      iova = lo;
      length = 0n;
    }
  } else {
    iova = weighted<() => bigint>(rng, [[6, () => n(rng.int(RAM_PAGES)) * 4096n], [1, () => U64_MAX - 4095n], [1, () => ADDR_MAX - 4095n], [1, () => u64(rng)]])();
    length = weighted<() => bigint>(rng, [[6, () => n(1 + rng.int(64)) * 4096n], [1, () => 0n], [1, () => U64_MAX], [1, () => u64(rng)]])();
  }
  const want = length > 0n ? (((length + p - 1n) / p + 63n) / 64n) * 8n : 8n;
  const fits = want < n(RW_LEN) ? Number(want) : 8;
  const bitmap = weighted<() => bigint>(rng, [
    [16, () => n(ctx.rw + rng.int((RW_LEN - fits) / 8 + 1) * 8)],
    [2, () => n(ctx.rw + RW_LEN - 8 * rng.int(4))],
    [1, () => n(ctx.rw + 1 + rng.int(7))],
    [1, () => n(ctx.ro)],
    [1, () => 0n],
    [1, () => pick(rng, [ADDR_MAX + 1n, U64_MAX, u64(rng), 2n ** 47n - 8n])],
  ])();
  return { op: 'report', hdr: hdr(rng, F_REPORT), w: [iova & U64_MAX, length & U64_MAX, ps, bitmap], prefill: chance(rng, 0.7) ? 0 : rng.u32() | 1 };
}

const TOP = new Weights([10, 3, 30, 14, 4, 2, 2, 1]);

function next(ctx: Ctx, rng: Rng): Op {
  if (!ctx.logging && chance(rng, 0.25)) return genStart(ctx, rng);
  switch (TOP.pick(rng)) {
    case 0: return genStart(ctx, rng);
    case 1: return { op: 'stop', hdr: hdr(rng, F_STOP) };
    case 2: return genReport(ctx, rng);
    case 3: return { op: 'job' };
    case 4: return { op: 'run', n: 1 + rng.int(50) };
    case 5: return { op: 'state', state: STOP };
    case 6: return { op: 'state', state: RUNNING };
    default: return { op: 'reset' };
  }
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

function describe(op: Op): string {
  const h = (x: Hdr): string => `flags 0x${x.flags.toString(16)}, argsz ${x.argsz}, buf ${x.bufLen}`;
  switch (op.op) {
    case 'start': {
      const ranges: string[] = [];
      if (op.arr) for (let i = 0; i + 1 < op.arr.words.length && i < 8; i += 2) ranges.push(`[${hex(op.arr.words[i]!)},+${hex(op.arr.words[i + 1]!)}]`);
      return `START(${h(op.hdr)}; page_size ${hex(op.w[0]!)}, num_ranges ${op.w[1]! & 0xffffffffn}, ranges ${hex(op.w[2]!)}${op.arr ? ` = rw+${op.arr.off}: ${ranges.join(' ')}` : ''})`;
    }
    case 'stop': return `STOP(${h(op.hdr)})`;
    case 'report': return `REPORT(${h(op.hdr)}; iova ${hex(op.w[0]!)}, length ${hex(op.w[1]!)}, page_size ${hex(op.w[2]!)}, bitmap ${hex(op.w[3]!)}${op.prefill ? `, prefilled ${op.prefill}` : ''})`;
    case 'job': return 'guest job';
    case 'run': return `run(${op.n})`;
    case 'state': return `SET MIG_DEVICE_STATE ${op.state}`;
    case 'reset': return 'VFIO_DEVICE_RESET';
  }
}

// ---- the oracle ---------------------------------------------------------------------------

function readable(ctx: Ctx, addr: number, len: number, prot: number): boolean {
  try {
    ctx.rig.host.user.checkAccess(addr, len, prot);
    return true;
  } catch (e) {
    if (e instanceof KernelError) return false;
    throw e;
  }
}

const isPageSize = (ps: bigint): boolean => ps >= 4096n && (ps & (ps - 1n)) === 0n;

/** vfio_check_feature and the header checks: an errno, 0 for an answered PROBE, or null to go on. */
function headerVerdict(feature: number, h: Hdr): number | null {
  if (h.bufLen < 8) return -Errno.EFAULT;
  if (h.argsz < 8) return -Errno.EINVAL;
  if ((h.flags & ~KNOWN_FLAGS) >>> 0 !== 0) return -Errno.EINVAL;
  const probe = (h.flags & PROBE) !== 0;
  if (!probe && (h.flags & SET) !== 0 && (h.flags & GET) !== 0) return -Errno.EINVAL;
  if ((h.flags & (GET | SET) & ~supportedOf(feature)) !== 0) return -Errno.EINVAL;
  if (probe) return 0;
  if ((h.flags & (GET | SET)) === 0) return -Errno.EINVAL;
  const minsz = minszOf(feature);
  if (h.argsz - 8 < minsz) return -Errno.EINVAL;
  if (h.bufLen - 8 < minsz) return -Errno.EFAULT;
  return null;
}

interface StartPlan {
  ret: number;
  ranges: Range[];
  ps: number;
}

function planStart(ctx: Ctx, op: Extract<Op, { op: 'start' }>): StartPlan {
  const none = (ret: number): StartPlan => ({ ret, ranges: [], ps: 0 });
  const h = headerVerdict(F_START, op.hdr);
  if (h !== null) return none(h);
  const [ps, nw, ptr] = op.w as [bigint, bigint, bigint];
  const num = Number(nw & 0xffffffffn);
  if (num === 0) return none(-Errno.EINVAL);
  if (num > MAX_RANGES) return none(-Errno.E2BIG);
  if (!isPageSize(ps)) return none(-Errno.EINVAL);
  if (ptr > ADDR_MAX) return none(-Errno.EFAULT);
  const user = ctx.rig.host.user;
  const ranges: Range[] = [];
  for (let i = 0; i < num; i++) {
    const at = Number(ptr) + 16 * i;
    if (!readable(ctx, at, 16, PROT_READ)) return none(-Errno.EFAULT);
    const b = user.copyFromUser(at, 16);
    const dv = new DataView(b.buffer, b.byteOffset, 16);
    const iova = dv.getBigUint64(0, true);
    const length = dv.getBigUint64(8, true);
    if (iova % ps !== 0n || length % ps !== 0n) return none(-Errno.EINVAL);
    if (iova + length > U64_MAX || iova + length > ADDR_MAX) return none(-Errno.EOVERFLOW);
    if (length === 0n) return none(-Errno.EINVAL);
    const r = { iova: Number(iova), length: Number(length) };
    if (ranges.some((q) => r.iova < q.iova + q.length && q.iova < r.iova + r.length)) return none(-Errno.EINVAL);
    ranges.push(r);
  }
  if (ctx.logging) return none(-Errno.EBUSY);
  ranges.sort((a, b) => a.iova - b.iova);
  return { ret: 0, ranges, ps: Number(ps) };
}

/** [iova, iova+length) inside the union of the sorted disjoint ranges (walked from the start). */
function inside(ranges: readonly Range[], iova: number, length: number): boolean {
  let at = iova;
  const end = iova + length;
  for (const r of ranges) {
    if (r.iova > at) break;
    if (r.iova + r.length > at) at = r.iova + r.length;
    if (at >= end) return true;
  }
  return at >= end;
}

interface ReportPlan {
  ret: number;
  bytes: number;
}

function planReport(ctx: Ctx, op: Extract<Op, { op: 'report' }>): ReportPlan {
  const h = headerVerdict(F_REPORT, op.hdr);
  if (h !== null) return { ret: h, bytes: 0 };
  const [iova, length, ps, bitmap] = op.w as [bigint, bigint, bigint, bigint];
  const fail = (e: number): ReportPlan => ({ ret: -e, bytes: 0 });
  if (!isPageSize(ps)) return fail(Errno.EINVAL);
  if (iova + length > U64_MAX || iova + length > ADDR_MAX) return fail(Errno.EOVERFLOW);
  if (!ctx.logging) return fail(Errno.EINVAL);
  if (length === 0n || !inside(ctx.logging, Number(iova), Number(length))) return fail(Errno.EINVAL);
  const bits = (length + ps - 1n) / ps;
  const bytes = ((bits + 63n) / 64n) * 8n;
  if (bitmap > ADDR_MAX || bytes > ADDR_MAX) return fail(Errno.EFAULT);
  if (!readable(ctx, Number(bitmap), Number(bytes), PROT_READ | PROT_WRITE)) return fail(Errno.EFAULT);
  return { ret: 0, bytes: Number(bytes) };
}

/** The report bits the recorded pages give over [iova, iova+length) at `ps`. */
function expectedBits(ctx: Ctx, iova: number, length: number, ps: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const end = iova + length;
  const d = ctx.dirty;
  for (let k = 0; k < d.length; k++) {
    let w = d[k]!;
    while (w !== 0) {
      const low = w & -w;
      w ^= low;
      const a = (k * 32 + (31 - Math.clz32(low))) * PAGE;
      const first = Math.max(a, iova);
      const last = Math.min(a + PAGE, end) - 1;
      if (last < first) continue;
      for (let b = Math.floor((first - iova) / ps), b1 = Math.floor((last - iova) / ps); b <= b1; b++) out[b >>> 3] = out[b >>> 3]! | (1 << (b & 7));
    }
  }
  return out;
}

/** Reading clears every recorded 4 KiB page the report range touches. */
function clearRecorded(ctx: Ctx, iova: number, length: number): void {
  const p0 = Math.floor(iova / PAGE);
  const p1 = Math.min(Math.ceil((iova + length) / PAGE), RAM_PAGES);
  for (let p = p0; p < p1; p++) ctx.dirty[p >>> 5] = ctx.dirty[p >>> 5]! & ~(1 << (p & 31));
}

// ---- applying ops -------------------------------------------------------------------------

function featureBuf(h: Hdr, w: readonly bigint[]): Uint8Array {
  const b = new Uint8Array(h.bufLen);
  const dv = new DataView(b.buffer);
  if (b.length >= 4) dv.setUint32(0, h.argsz, true);
  if (b.length >= 8) dv.setUint32(4, h.flags, true);
  w.forEach((v, i) => {
    if (8 + 8 * i + 8 <= b.length) dv.setBigUint64(8 + 8 * i, v & U64_MAX, true);
  });
  return b;
}

function checkRet(rec: Recorder, r: number, expected: number, what: string): void {
  if (!Number.isInteger(r)) {
    rec.violation('errno', `${what} returned ${String(r)}`);
    return;
  }
  rec.ret(r);
  if (r < 0 && errnoName(r).startsWith('E#')) rec.violation('errno', `${what} returned ${r}, not a Linux errno`);
  if (r !== expected) rec.violation('spec', `${what} returned ${r < 0 ? errnoName(r) : r}, the spec says ${expected < 0 ? errnoName(expected) : expected}`);
}

function snapshot(ctx: Ctx, addr: bigint, len: number): Uint8Array | null {
  if (addr > ADDR_MAX || !readable(ctx, Number(addr), len, PROT_READ)) return null;
  return ctx.rig.host.user.copyFromUser(Number(addr), len);
}

function applyStart(ctx: Ctx, op: Extract<Op, { op: 'start' }>, rec: Recorder): void {
  const user = ctx.rig.host.user;
  if (op.arr) {
    const b = new Uint8Array(op.arr.words.length * 8);
    const dv = new DataView(b.buffer);
    op.arr.words.forEach((v, i) => dv.setBigUint64(8 * i, v & U64_MAX, true));
    const n = Math.min(b.length, RW_LEN - op.arr.off);
    if (n > 0) user.copyToUser(ctx.rw + op.arr.off, b.subarray(0, n));
  }
  const plan = planStart(ctx, op);
  const buf = featureBuf(op.hdr, op.w);
  const r = dev(ctx).ioctl(VFIO_DEVICE_FEATURE, buf);
  checkRet(rec, r, plan.ret, 'DMA_LOGGING_START');
  rec.outcomeKey(1000 + r, () => `start: ${r < 0 ? errnoName(r) : (op.hdr.flags & PROBE) !== 0 ? 'probe ok' : 'ok'}`);
  if (r !== 0 || plan.ret !== 0 || (op.hdr.flags & PROBE) !== 0) return;
  const back = new DataView(buf.buffer).getBigUint64(8, true);
  if (back !== BigInt(plan.ps)) rec.violation('spec', `START with page size ${plan.ps} reported page size ${back}`);
  ctx.logging = plan.ranges;
  ctx.startPageSize = plan.ps;
  ctx.dirty.fill(0);
  rec.outcome(`start: ${plan.ranges.length > 1 ? 'several ranges' : 'one range'}`);
}

function applyStop(ctx: Ctx, op: Extract<Op, { op: 'stop' }>, rec: Recorder): void {
  const h = headerVerdict(F_STOP, op.hdr);
  const expected = h ?? 0;
  const r = dev(ctx).ioctl(VFIO_DEVICE_FEATURE, featureBuf(op.hdr, []));
  checkRet(rec, r, expected, 'DMA_LOGGING_STOP');
  rec.outcomeKey(2000 + r, () => `stop: ${r < 0 ? errnoName(r) : 'ok'}`);
  if (r === 0 && h === null) {
    ctx.logging = null;
    ctx.dirty.fill(0);
  }
}

function applyReport(ctx: Ctx, op: Extract<Op, { op: 'report' }>, rec: Recorder): void {
  const [iova, length, ps, bitmap] = op.w as [bigint, bigint, bigint, bigint];
  const plan = planReport(ctx, op);
  // What the user bitmap holds before the call: prefilled bytes, or zeros as QEMU allocates.
  let watchLen = plan.bytes > 0 ? plan.bytes + 8 : 64;
  if (plan.bytes > 0 && !readable(ctx, Number(bitmap), watchLen, PROT_READ)) watchLen = plan.bytes;
  const user = ctx.rig.host.user;
  if (bitmap <= ADDR_MAX && readable(ctx, Number(bitmap), watchLen, PROT_READ | PROT_WRITE)) {
    const fill = new Uint8Array(watchLen);
    let x = op.prefill;
    if (x !== 0) for (let i = 0; i < fill.length; i++) fill[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
    user.copyToUser(Number(bitmap), fill);
  }
  const before = snapshot(ctx, bitmap, watchLen);
  const probe = (op.hdr.flags & PROBE) !== 0 && plan.ret === 0;
  const expected = plan.ret === 0 && !probe ? expectedBits(ctx, Number(iova), Number(length), Number(ps), plan.bytes) : null;
  const buf = featureBuf(op.hdr, op.w);
  const mem0 = process.memoryUsage().arrayBuffers;
  const r = dev(ctx).ioctl(VFIO_DEVICE_FEATURE, buf);
  const grown = process.memoryUsage().arrayBuffers - mem0;
  checkRet(rec, r, plan.ret, 'DMA_LOGGING_REPORT');
  // Linux walks the user bitmap a chunk of pinned pages at a time and the tracker only where
  // something is mapped: the kernel's working memory does not grow with the range's length.
  const bound = REPORT_MEM_SLACK + 4 * plan.bytes;
  if (grown > bound) {
    rec.violation('resource', `DMA_LOGGING_REPORT held ${Math.round(grown / 2 ** 20)} MiB of kernel memory after the call for a ${plan.bytes}-byte bitmap over ${length} bytes at page size ${ps} (bound ${Math.round(bound / 2 ** 20)} MiB)`);
  }
  const after = snapshot(ctx, bitmap, watchLen);
  if (plan.ret !== 0 || r !== 0 || expected === null) {
    rec.outcomeKey(3000 + r, () => `report: ${r < 0 ? errnoName(r) : probe ? 'probe ok' : 'ok'}`);
    if (before && after && !Buffer.from(before).equals(Buffer.from(after))) rec.violation('state-changed', `a ${probe ? 'PROBE' : 'rejected'} REPORT (${r < 0 ? errnoName(r) : r}) wrote the user bitmap`);
    return;
  }
  if (!before || !after) return;
  let set = 0;
  for (let i = 0; i < plan.bytes; i++) {
    const want = before[i]! | expected[i]!;
    if (expected[i] !== 0) set++;
    if (after[i] !== want) {
      const bit = i * 8 + (31 - Math.clz32((after[i]! ^ want) & -(after[i]! ^ want)));
      const missing = (want >> (bit & 7)) & 1;
      rec.violation('oracle', `REPORT bit ${bit} (page at iova ${iova + BigInt(bit) * ps}) is ${missing ? 'clear but the device wrote there' : 'set but the device wrote nothing there'} since the last report`);
      break;
    }
  }
  for (let i = plan.bytes; i < watchLen; i++) {
    if (after[i] !== before[i]) {
      rec.violation('oracle', `REPORT wrote past its ${plan.bytes}-byte bitmap`);
      break;
    }
  }
  clearRecorded(ctx, Number(iova), Number(length));
  rec.outcome(set > 0 ? 'report: ok with dirty pages' : 'report: ok, clean');
  if (plan.bytes * 8 > 1 << 21) rec.outcome('report: more than one window');
}

function dev(ctx: Ctx) {
  return ctx.rig.vm1.device;
}

function setState(ctx: Ctx, state: number, rec: Recorder): void {
  const b = new Uint8Array(16);
  writeU32(b, 0, 16);
  writeU32(b, 4, SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
  writeU32(b, 8, state);
  const r = dev(ctx).ioctl(VFIO_DEVICE_FEATURE, b);
  const cur = ctx.running ? RUNNING : STOP;
  // RUNNING <-> STOP are single mandatory arcs (uAPI section 3): they must succeed.
  checkRet(rec, r, 0, `SET MIG_DEVICE_STATE ${cur} -> ${state}`);
  const g = new Uint8Array(16);
  writeU32(g, 0, 16);
  writeU32(g, 4, GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
  if (dev(ctx).ioctl(VFIO_DEVICE_FEATURE, g) === 0) ctx.running = readU32(g, 8) === RUNNING;
  rec.outcome(`device state ${cur} -> ${state}: ${r < 0 ? errnoName(r) : 'ok'}`);
}

function apply(ctx: Ctx, op: Op, rec: Recorder): void {
  rec.entry(op.op === 'start' || op.op === 'stop' || op.op === 'report' ? `DMA_LOGGING_${op.op.toUpperCase()}` : op.op);
  resetGuards(ctx.rig.guards);
  try {
    switch (op.op) {
      case 'start': applyStart(ctx, op, rec); break;
      case 'stop': applyStop(ctx, op, rec); break;
      case 'report': applyReport(ctx, op, rec); break;
      case 'job': {
        if (!ctx.running) break;
        const err = runJob(ctx.rig.accel1, ctx.rig.host.sched.now);
        if (err) rec.violation('victim', `VF1 guest ${err} with the device running`);
        else rec.outcome('guest job ok');
        break;
      }
      case 'run':
        for (let i = 0; i < op.n && ctx.rig.host.sched.step(); i++);
        break;
      case 'state':
        setState(ctx, op.state, rec);
        break;
      case 'reset': {
        const r = dev(ctx).ioctl(VFIO_DEVICE_RESET);
        checkRet(rec, r, 0, 'VFIO_DEVICE_RESET');
        ctx.running = true;
        // the VM reboots with the reset: its guest driver loads again at once
        try {
          ctx.rig.accel1 = freshGuest(ctx.rig);
        } catch (e) {
          rec.violation('victim', `guest re-probe after a reset failed: ${e instanceof Error ? e.message : String(e)}`);
        }
        break;
      }
    }
  } catch (e) {
    rec.threw(describe(op), e);
  }
  if (ctx.domain.dirtyTracking !== (ctx.logging !== null)) {
    rec.violation('state-changed', `the IOMMU domain's dirty tracking is ${ctx.domain.dirtyTracking ? 'on' : 'off'} but logging is ${ctx.logging ? 'started' : 'stopped'}`);
  }
  checkGuards(ctx.rig.guards, rec);
}

function setup(): Ctx {
  const rig = buildAccRig();
  const vf = rig.host.vf(1);
  const core = rig.host.driver.coreOf(vf);
  const domain = core?.iommuDomain;
  if (!core || !domain) throw new KernelError('ENODEV', 'dmalog rig: VF1 has no IOMMU domain');
  const port: DmaPort = domain.port(core.name);
  const user = rig.host.user;
  const rw = user.alloc(RW_LEN);
  const ro = user.alloc(RO_LEN, { prot: PROT_READ });
  const ctx: Ctx = { rig, domain, rw, ro, logging: null, startPageSize: 4096, dirty: new Uint32Array(RAM_PAGES / 32), running: true };
  // The independent record: every page the function writes, seen before the IOMMU.
  vf.fn.setUpstreamDma({
    read: (iova, dst) => port.read(iova, dst),
    write: (iova, src) => {
      const ok = port.write(iova, src);
      if (ok && ctx.logging && src.length > 0) {
        const last = Math.min(Math.floor((iova + src.length - 1) / PAGE), RAM_PAGES - 1);
        for (let p = Math.floor(iova / PAGE); p <= last; p++) ctx.dirty[p >>> 5] = ctx.dirty[p >>> 5]! | (1 << (p & 31));
      }
      return ok;
    },
  });
  return ctx;
}

export const dmalogCampaign: Campaign<Ctx, Op> = {
  name: 'dmalog',
  description: 'DMA logging START/STOP/REPORT on a hisi-acc-vfio-pci VF with a running guest, against a record of its DMA writes',
  defaultInputs: 100_000,
  checkpointEvery: 5_000,
  knownBugs: knownBugsOf('dmalog'),
  setup,
  next,
  apply,
  describe,
  checkpoint: accCheckpoint,
};
