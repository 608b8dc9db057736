/**
 * VFIO_DEVICE_FEATURE (vfio_main.c vfio_ioctl_device_feature and its helpers): header checks,
 * the PROBE/GET/SET rules of vfio_check_feature, migration features dispatched to the variant's
 * migration ops, and device DMA logging dispatched to its log ops with the payload validation
 * of vfio-uapi-and-migration.md section 5.
 *
 * PCI_VF_TOKEN and the LOW_POWER features answer ENOTTY: no PF here is bound to vfio-pci with
 * SR-IOV (no VF token exists), and the model has no runtime power management.
 */
import { fail } from '../../uapi/errno.js';
import { readU32, writeU32 } from '../../uapi/codec.js';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
} from '../../uapi/vfio.js';
import {
  VFIO_DEVICE_FEATURE_MINSZ,
  vfio_device_feature_dma_logging_control,
  vfio_device_feature_dma_logging_range,
  vfio_device_feature_dma_logging_report,
  vfio_device_feature_mig_data_size,
  vfio_device_feature_mig_state,
  vfio_device_feature_migration,
} from '../../uapi/structs.js';
import { PAGE_SIZE } from '../../mem/sparse-memory.js';
import { PROT_READ, PROT_WRITE } from '../../mem/user-space.js';
import type { VfioFile } from '../fd.js';
import type { VfioPciCoreDevice } from './core-device.js';
import type { VfioProcess } from './host-types.js';
import type { DmaLoggingRange, IoctlArg, VfioLogOps, VfioMigrationOps } from './ops.js';

/** LOG_MAX_RANGES: one page of vfio_device_feature_dma_logging_range. */
export const LOG_MAX_RANGES = PAGE_SIZE / vfio_device_feature_dma_logging_range.size;
const U64_MAX = (1n << 64n) - 1n;
/** Addresses are numbers here; an end beyond 2^53 is this simulator's ULONG_MAX overflow. */
const ADDR_MAX = BigInt(Number.MAX_SAFE_INTEGER);
/** Bits of dirty bitmap produced per call of the log ops (bounded scratch memory). */
const REPORT_WINDOW_BITS = 1 << 21;

export interface FeatureHost {
  readonly core: VfioPciCoreDevice;
  readonly migration: VfioMigrationOps | undefined;
  readonly log: VfioLogOps | undefined;
  readonly process: VfioProcess;
  /** Ranges of the running DMA logging session, null when not logging. */
  logging: DmaLoggingRange[] | null;
  /** Installs a data fd in the process and remembers it (disabled at device close). */
  adoptDataFile(file: VfioFile): number;
}

const ALL_FLAGS = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;

export function deviceFeature(h: FeatureHost, argIn: IoctlArg): number {
  if (!(argIn instanceof Uint8Array) || argIn.length < VFIO_DEVICE_FEATURE_MINSZ) fail('EFAULT', 'cannot read vfio_device_feature');
  const arg = argIn;
  const argsz = readU32(arg, 0);
  const flags = readU32(arg, 4);
  if (argsz < VFIO_DEVICE_FEATURE_MINSZ) fail('EINVAL', `argsz ${argsz}`);
  if ((flags & ~ALL_FLAGS) >>> 0 !== 0) fail('EINVAL', 'unknown feature flags');
  if (!(flags & VFIO_DEVICE_FEATURE_PROBE) && flags & VFIO_DEVICE_FEATURE_SET && flags & VFIO_DEVICE_FEATURE_GET) {
    fail('EINVAL', 'GET and SET together');
  }
  const psz = argsz - VFIO_DEVICE_FEATURE_MINSZ;
  const feature = flags & VFIO_DEVICE_FEATURE_MASK;
  // The migration arcs go through here several times per save or resume: that feature
  // works on the ioctl buffer in place, without a payload view or decoded objects.
  if (feature === VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE) return migDeviceState(h, flags, arg, psz);
  const payload = arg.subarray(VFIO_DEVICE_FEATURE_MINSZ);
  switch (feature) {
    case VFIO_DEVICE_FEATURE_MIGRATION:
      return migration(h, flags, payload, psz);
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
      return loggingStart(h, flags, payload, psz);
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
      return loggingStop(h, flags, psz);
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
      return loggingReport(h, flags, payload, psz);
    case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
      return migDataSize(h, flags, payload, psz);
    default:
      fail('ENOTTY', `feature ${flags & VFIO_DEVICE_FEATURE_MASK}`);
  }
}

/**
 * vfio_check_feature: 0 = PROBE answered (supported), 1 = go on. GET/SET the feature does not
 * support is EINVAL (also under PROBE); without PROBE one of GET/SET is required and the
 * payload must hold `minsz` bytes.
 */
export function checkFeature(flags: number, psz: number, supported: number, minsz: number): 0 | 1 {
  if ((flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) & ~supported) !== 0) fail('EINVAL', 'operation not supported');
  if (flags & VFIO_DEVICE_FEATURE_PROBE) return 0;
  if (!(flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET))) fail('EINVAL', 'neither GET nor SET');
  if (psz < minsz) fail('EINVAL', `payload of ${psz} bytes, need ${minsz}`);
  return 1;
}

function migOps(h: FeatureHost): VfioMigrationOps {
  if (!h.migration) fail('ENOTTY', 'device has no migration support');
  return h.migration;
}

function logOps(h: FeatureHost): VfioLogOps {
  if (!h.log) fail('ENOTTY', 'device has no DMA logging');
  return h.log;
}

function migration(h: FeatureHost, flags: number, p: Uint8Array, psz: number): number {
  const ops = migOps(h);
  if (checkFeature(flags, psz, VFIO_DEVICE_FEATURE_GET, vfio_device_feature_migration.size) === 0) return 0;
  vfio_device_feature_migration.write(p, 'flags', ops.flags);
  return 0;
}

/** vfio_device_feature_mig_state inside the whole vfio_device_feature buffer. */
const MIG_STATE = vfio_device_feature_mig_state;
const MIG_STATE_END = VFIO_DEVICE_FEATURE_MINSZ + MIG_STATE.size;
const MIG_DEVICE_STATE_AT = VFIO_DEVICE_FEATURE_MINSZ + MIG_STATE.offsetOf('device_state');
const MIG_DATA_FD_AT = VFIO_DEVICE_FEATURE_MINSZ + MIG_STATE.offsetOf('data_fd');

function putMigState(arg: Uint8Array, state: number, fd: number): void {
  writeU32(arg, MIG_DEVICE_STATE_AT, state);
  writeU32(arg, MIG_DATA_FD_AT, fd);
}

/** `arg` is the whole ioctl buffer (header included). */
function migDeviceState(h: FeatureHost, flags: number, arg: Uint8Array, psz: number): number {
  const ops = migOps(h);
  if (checkFeature(flags, psz, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET, MIG_STATE.size) === 0) return 0;
  // copy_from_user of the struct: EFAULT when the buffer does not hold it.
  if (arg.length < MIG_STATE_END) {
    fail('EFAULT', `decode ${MIG_STATE.name}: ${MIG_STATE.size} bytes at 0 outside a ${arg.length - VFIO_DEVICE_FEATURE_MINSZ}-byte buffer`);
  }
  const state = readU32(arg, MIG_DEVICE_STATE_AT);
  if (flags & VFIO_DEVICE_FEATURE_GET) {
    putMigState(arg, ops.getState(h.core), -1);
    return 0;
  }
  let file: VfioFile | null;
  try {
    file = ops.setState(h.core, state);
  } catch (e) {
    putMigState(arg, state, -1);
    throw e;
  }
  putMigState(arg, state, file ? h.adoptDataFile(file) : -1);
  return 0;
}

function migDataSize(h: FeatureHost, flags: number, p: Uint8Array, psz: number): number {
  const ops = migOps(h);
  const codec = vfio_device_feature_mig_data_size;
  if (checkFeature(flags, psz, VFIO_DEVICE_FEATURE_GET, codec.size) === 0) return 0;
  codec.write(p, 'stop_copy_length', ops.getDataSize(h.core));
  return 0;
}

function isPageSize(ps: bigint): boolean {
  return ps >= 4096n && (ps & (ps - 1n)) === 0n;
}

function loggingStart(h: FeatureHost, flags: number, p: Uint8Array, psz: number): number {
  const ops = logOps(h);
  const codec = vfio_device_feature_dma_logging_control;
  if (checkFeature(flags, psz, VFIO_DEVICE_FEATURE_SET, codec.size) === 0) return 0;
  const control = codec.decode(p);
  const n = control.num_ranges;
  if (n === 0) fail('EINVAL', 'no ranges');
  if (n > LOG_MAX_RANGES) fail('E2BIG', `${n} ranges, at most ${LOG_MAX_RANGES}`);
  const ps = control.page_size;
  if (!isPageSize(ps)) fail('EINVAL', `page size ${ps}`);
  if (control.ranges > ADDR_MAX) fail('EFAULT', 'bad ranges pointer');
  const ptr = Number(control.ranges);
  const rcodec = vfio_device_feature_dma_logging_range;
  const ranges: DmaLoggingRange[] = [];
  for (let i = 0; i < n; i++) {
    const r = rcodec.decode(h.process.user.copyFromUser(ptr + i * rcodec.size, rcodec.size));
    if (r.iova % ps !== 0n || r.length % ps !== 0n) fail('EINVAL', `range ${i} not aligned to ${ps}`);
    const end = r.iova + r.length;
    if (end > U64_MAX || end > ADDR_MAX) fail('EOVERFLOW', `range ${i} overflows`);
    // A zero-length range covers nothing and would make [iova, iova-1] in the interval tree.
    if (r.length === 0n) fail('EINVAL', `range ${i} is empty`);
    const iova = Number(r.iova);
    const length = Number(r.length);
    for (const q of ranges) {
      if (iova < q.iova + q.length && q.iova < iova + length) fail('EINVAL', `range ${i} overlaps another`);
    }
    ranges.push({ iova, length });
  }
  if (h.logging) fail('EBUSY', 'DMA logging already started');
  ranges.sort((a, b) => a.iova - b.iova);
  const effective = ops.start(h.core, ranges, Number(ps));
  h.logging = ranges;
  codec.write(p, 'page_size', effective);
  return 0;
}

function loggingStop(h: FeatureHost, flags: number, psz: number): number {
  const ops = logOps(h);
  if (checkFeature(flags, psz, VFIO_DEVICE_FEATURE_SET, 0) === 0) return 0;
  if (!h.logging) return 0;
  h.logging = null;
  ops.stop(h.core);
  return 0;
}

/** [iova, iova+length) lies inside the union of the sorted, disjoint ranges. */
function covered(ranges: readonly DmaLoggingRange[], iova: number, length: number): boolean {
  let cur = iova;
  const end = iova + length;
  for (const r of ranges) {
    if (r.iova <= cur && cur < r.iova + r.length) cur = r.iova + r.length;
    if (cur >= end) return true;
  }
  return false;
}

function loggingReport(h: FeatureHost, flags: number, p: Uint8Array, psz: number): number {
  const ops = logOps(h);
  const codec = vfio_device_feature_dma_logging_report;
  if (checkFeature(flags, psz, VFIO_DEVICE_FEATURE_GET, codec.size) === 0) return 0;
  const rep = codec.decode(p);
  if (!isPageSize(rep.page_size)) fail('EINVAL', `page size ${rep.page_size}`);
  const end = rep.iova + rep.length;
  if (end > U64_MAX || end > ADDR_MAX) fail('EOVERFLOW', 'report range overflows');
  if (!h.logging) fail('EINVAL', 'DMA logging is not started');
  const iova = Number(rep.iova);
  const length = Number(rep.length);
  const ps = Number(rep.page_size);
  if (length === 0 || !covered(h.logging, iova, length)) fail('EINVAL', 'range outside the logged ranges');
  const bits = Math.ceil(length / ps);
  const bytes = Math.ceil(bits / 64) * 8;
  if (rep.bitmap > ADDR_MAX) fail('EFAULT', 'bad bitmap pointer');
  const user = h.process.user;
  const bitmap = Number(rep.bitmap);
  // Like iova_bitmap_alloc pinning the user pages: a bad buffer fails before any bit is cleared.
  user.checkAccess(bitmap, bytes, PROT_READ | PROT_WRITE);
  const scratch = new Uint8Array(Math.min(bytes, REPORT_WINDOW_BITS / 8));
  for (let b = 0; b < bits; b += REPORT_WINDOW_BITS) {
    const nb = Math.min(REPORT_WINDOW_BITS, bits - b);
    const out = scratch.subarray(0, Math.ceil(nb / 64) * 8);
    out.fill(0);
    const wIova = iova + b * ps;
    ops.report(h.core, wIova, Math.min(nb * ps, length - b * ps), ps, out);
    user.updateUser(bitmap + b / 8, out.length, (dst) => orInto(dst, out));
  }
  return 0;
}

/** dst |= src, a word at a time where the views allow it. */
function orInto(dst: Uint8Array, src: Uint8Array): void {
  const n = src.length;
  if (dst.byteOffset % 4 === 0 && src.byteOffset % 4 === 0 && n % 4 === 0) {
    const d = new Uint32Array(dst.buffer, dst.byteOffset, n / 4);
    const s = new Uint32Array(src.buffer, src.byteOffset, n / 4);
    for (let i = 0; i < s.length; i++) {
      const w = s[i]!;
      if (w !== 0) d[i] = d[i]! | w;
    }
    return;
  }
  for (let i = 0; i < n; i++) dst[i] = dst[i]! | src[i]!;
}
