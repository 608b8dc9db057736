/**
 * VFIO info capability chains, shared by every *_GET_INFO style ioctl (device info, region
 * info, type1 IOMMU info).
 *
 * Layout rule (vfio.h, "capability chain designed after PCI/e capabilities"): the chain is
 * placed right after the fixed info struct; each capability starts with
 * vfio_info_cap_header {u16 id; u16 version; u32 next}; `next` and the struct's cap_offset
 * are offsets from the start of the info buffer, 0 ends the chain. Like the kernel's
 * vfio_info_cap_add, each capability's size is rounded up to 8 bytes, so alignment holds
 * relative to the chain start (sizeof(vfio_device_info) is 20, so there it is 4 absolute).
 */
import { Errno, KernelError } from './errno.js';
import { readU16, readU32, writeU32 } from './codec.js';
import type { StructCodec, StructInput } from './codec.js';
import { vfio_info_cap_header } from './structs.js';

export const VFIO_INFO_CAP_ALIGN = 8;
const HDR = vfio_info_cap_header.size;
const NEXT = vfio_info_cap_header.offsetOf('next');

function align8(n: number): number {
  return Math.ceil(n / VFIO_INFO_CAP_ALIGN) * VFIO_INFO_CAP_ALIGN;
}

/** Bytes the chain of these capabilities occupies (each padded to 8). */
export function capChainSize(caps: readonly Uint8Array[]): number {
  let n = 0;
  for (const c of caps) n += align8(c.length);
  return n;
}

/**
 * Lays out capabilities (each already encoded, starting with its vfio_info_cap_header) as the
 * chain that goes at absolute offset `base` of the info buffer. `next` fields are rewritten;
 * padding is zero. A capability shorter than its header is a caller bug: EINVAL.
 */
export function buildCapChain(caps: readonly Uint8Array[], base: number): Uint8Array {
  const out = new Uint8Array(capChainSize(caps));
  let at = 0;
  for (let i = 0; i < caps.length; i++) {
    const c = caps[i]!;
    if (c.length < HDR) throw new KernelError('EINVAL', `capability ${i} is ${c.length} bytes, below its header`);
    out.set(c, at);
    const size = align8(c.length);
    writeU32(out, at + NEXT, i + 1 < caps.length ? base + at + size : 0);
    at += size;
  }
  return out;
}

/** Fields every info struct with a capability chain has. */
export interface InfoWithCapsFields {
  argsz: number;
  flags: number;
  cap_offset: number;
}

export interface InfoReply<T> {
  /** The fixed struct as the kernel leaves it (argsz/flags/cap_offset adjusted). */
  info: T;
  /** What is copied to the start of the user buffer: the first `copyLen` bytes of `info`. */
  head: Uint8Array;
  /** The capability chain, copied at `capsAt`; empty when absent or when it did not fit. */
  caps: Uint8Array;
  /** sizeof the info struct: where the chain begins. */
  capsAt: number;
}

export interface InfoReplyOptions {
  /** offsetofend of the last mandatory field; argsz below it is EINVAL. */
  minsz: number;
  /** The struct's "info supports caps" flag (e.g. VFIO_REGION_INFO_FLAG_CAPS). */
  capsFlag: number;
  /**
   * Bytes of the fixed struct copied back to the user. Defaults to minsz, as
   * GET_REGION_INFO does. Type1 GET_INFO copies min(argsz, sizeof); device GET_INFO copies
   * through cap_offset once argsz covers it.
   */
  copyLen?: number;
}

/**
 * The kernel rule for INFO ioctls with capabilities: argsz < minsz -> EINVAL. Without caps,
 * the struct goes back as given (cap_offset untouched: region info echoes what the user
 * passed). With caps, flags gets capsFlag; if argsz cannot hold struct + chain, argsz is
 * raised to the size needed, cap_offset is 0 and no chain is copied (not an error, the caller
 * retries with a bigger buffer); otherwise the chain follows the struct and cap_offset points
 * at it. `fixedFields.argsz` is ignored: the reply's argsz is userArgsz or the needed size.
 */
export function buildInfoWithCaps<T extends InfoWithCapsFields>(
  codec: StructCodec<T>,
  fixedFields: StructInput<T>,
  caps: readonly Uint8Array[],
  userArgsz: number,
  opts: InfoReplyOptions,
): InfoReply<T> {
  if (!Number.isInteger(userArgsz) || userArgsz < opts.minsz) {
    throw new KernelError('EINVAL', `argsz ${userArgsz} below minsz ${opts.minsz}`);
  }
  const copyLen = opts.copyLen ?? opts.minsz;
  if (copyLen < 0 || copyLen > codec.size) throw new KernelError('EINVAL', `copy length ${copyLen}`);
  const image = codec.encode(fixedFields);
  const argszAt = codec.offsetOf('argsz');
  const flagsAt = codec.offsetOf('flags');
  const capOffsetAt = codec.offsetOf('cap_offset');
  writeU32(image, argszAt, userArgsz);
  let chain: Uint8Array = new Uint8Array(0);
  if (caps.length > 0) {
    writeU32(image, flagsAt, readU32(image, flagsAt) | opts.capsFlag);
    const needed = codec.size + capChainSize(caps);
    if (userArgsz < needed) {
      writeU32(image, argszAt, needed);
      writeU32(image, capOffsetAt, 0);
    } else {
      chain = buildCapChain(caps, codec.size);
      writeU32(image, capOffsetAt, codec.size);
    }
  }
  return { info: codec.decode(image), head: image.subarray(0, copyLen), caps: chain, capsAt: codec.size };
}

/**
 * Copies a reply into a user buffer the way the kernel's copy_to_user calls do: the chain at
 * capsAt, the head at 0. EFAULT, with nothing written, when the buffer is too short.
 */
export function writeInfoReply(reply: InfoReply<object>, dst: Uint8Array, off = 0): void {
  const end = reply.caps.length > 0 ? reply.capsAt + reply.caps.length : reply.head.length;
  if (!Number.isInteger(off) || off < 0 || off + end > dst.length) {
    throw new KernelError('EFAULT', `reply of ${end} bytes does not fit at ${off}`);
  }
  if (reply.caps.length > 0) dst.set(reply.caps, off + reply.capsAt);
  dst.set(reply.head, off);
}

export interface CapRef {
  id: number;
  version: number;
  /** Absolute offset of the header in the info buffer. */
  offset: number;
  next: number;
  /** From the header to the next capability (or to the end of the buffer for the last). */
  bytes: Uint8Array;
}

export type CapWalk =
  | { ok: true; caps: CapRef[] }
  | { ok: false; errno: number; reason: string; caps: CapRef[] };

export interface CapWalkOptions {
  /** Lowest legal capability offset: sizeof the fixed info struct. Default 8 (argsz+flags). */
  minOffset?: number;
  /** Bytes of the buffer that are valid (the argsz the kernel reported). Default buf.length. */
  end?: number;
}

/**
 * Walks a chain from `capOffset` (0 = no capabilities). Each header must lie inside
 * [minOffset, end), be 4-byte aligned, and every `next` must point past the current header.
 * Kernel-built chains always satisfy this; requiring strictly increasing offsets is what
 * makes a cyclic or self-referencing chain impossible, so the walk ends after at most
 * end/8 steps. A malformed chain gives `ok: false` with EINVAL and the well-linked caps
 * before the fault (a cap whose own `next` is bad is not included).
 */
export function walkCapChain(buf: Uint8Array, capOffset: number, opts: CapWalkOptions = {}): CapWalk {
  const minOffset = opts.minOffset ?? 8;
  const end = Math.min(opts.end ?? buf.length, buf.length);
  const caps: CapRef[] = [];
  const bad = (reason: string): CapWalk => ({ ok: false, errno: Errno.EINVAL, reason, caps });
  let at = capOffset;
  while (at !== 0) {
    if (!Number.isInteger(at) || at < minOffset) return bad(`capability at ${at} overlaps the fixed struct`);
    if (at % 4 !== 0) return bad(`capability at ${at} is misaligned`);
    if (at + HDR > end) return bad(`capability header at ${at} runs past ${end}`);
    const next = readU32(buf, at + NEXT);
    if (next !== 0 && next < at + HDR) return bad(`capability at ${at} links back to ${next}`);
    caps.push({
      id: readU16(buf, at),
      version: readU16(buf, at + 2),
      offset: at,
      next,
      bytes: buf.subarray(at, next === 0 ? end : Math.min(next, end)),
    });
    at = next;
  }
  return { ok: true, caps };
}

/** First capability with this id, null when absent; a malformed chain is EINVAL. */
export function findCap(buf: Uint8Array, capOffset: number, id: number, opts: CapWalkOptions = {}): CapRef | null {
  const walk = walkCapChain(buf, capOffset, opts);
  if (!walk.ok) throw new KernelError(walk.errno, walk.reason);
  return walk.caps.find((c) => c.id === id) ?? null;
}
