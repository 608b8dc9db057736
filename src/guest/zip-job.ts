/**
 * ZIP requests (qm-hardware.md 6, `hisi_zip_sqe` with sqe_type 3, flat buffers).
 *
 * zlib and gzip follow the older Linux driver's contract with the engine: the engine emits
 * and consumes the deflate body plus trailer, and the driver writes the 2-byte zlib or
 * 10-byte gzip header in front of compressed output and strips (after checking) the header
 * of compressed input. Decompression output size is unknown up front: the job starts with a
 * generous buffer and, when the engine reports the output did not fit, grows it and asks to
 * be submitted again, up to the per-SQE limit or the caller's bound.
 */
import { KernelError, fail } from '../uapi/errno.js';
import * as Z from '../hw/engines/zip-sqe.js';
import type { GuestRam } from './io.js';
import * as J from './jobs.js';
import type { BufferSet as Buffers, PreparedJob, PreparedJobState } from './jobs.js';

const {
  ZIP_BUF_FLAT, ZIP_BUF_TYPE_SHIFT, ZIP_DEST_ADDR_H, ZIP_DEST_ADDR_L, ZIP_DEST_AVAIL_OUT, ZIP_DW3,
  ZIP_DW7, ZIP_DW8, ZIP_DW9, ZIP_GZIP_HEAD, ZIP_INPUT_DATA_LENGTH, ZIP_MAX_LENGTH, ZIP_PRODUCED,
  ZIP_REQ_DEFLATE, ZIP_REQ_GZIP, ZIP_REQ_ZLIB, ZIP_SOURCE_ADDR_H, ZIP_SOURCE_ADDR_L,
  ZIP_SQE_TYPE_SHIFT, ZIP_SQE_TYPE_V3, ZIP_STATUS_MASK, ZIP_ZLIB_HEAD, ZipStatus,
} = Z;
const { BufferSet, RESIDENT_DONE, get32, put32 } = J;
const ZIP_OK = ZipStatus.OK;
const ZIP_NC = ZipStatus.NEGATIVE_COMPRESSION;
const ZIP_OVERFLOW = ZipStatus.OUTPUT_OVERFLOW;

export type ZipFormat = 'deflate' | 'zlib' | 'gzip';

/** SQC alg_type of the two kinds of ZIP queue. */
export const ZIP_QP_COMPRESS = 0;
export const ZIP_QP_DECOMPRESS = 1;

const REQ_TYPE: Record<ZipFormat, number> = { deflate: ZIP_REQ_DEFLATE, zlib: ZIP_REQ_ZLIB, gzip: ZIP_REQ_GZIP };
const NO_HEAD = new Uint8Array(0);

export function checkFormat(format: string): ZipFormat {
  if (format === 'deflate' || format === 'zlib' || format === 'gzip') return format;
  return fail('EINVAL', `unknown compression format '${format}'`);
}

/** Room for deflate's worst case (stored blocks) plus the largest trailer. */
function compressBound(n: number): number {
  return n + (n >>> 7) + 256;
}

/** Length of a zlib header (RFC 1950), after checking it. */
export function zlibHeaderLength(d: Uint8Array): number {
  if (d.length < 2) fail('EINVAL', 'zlib stream shorter than its header');
  const cmf = d[0]!;
  const flg = d[1]!;
  if ((cmf & 0x0f) !== 8 || (cmf >>> 4) > 7 || ((cmf << 8) | flg) % 31 !== 0) fail('EINVAL', 'bad zlib header');
  if (flg & 0x20) fail('EOPNOTSUPP', 'zlib preset dictionaries are not supported');
  return 2;
}

/** Length of a gzip member header (RFC 1952), after checking it; FHCRC is skipped, not verified. */
export function gzipHeaderLength(d: Uint8Array): number {
  if (d.length < 10 || d[0] !== 0x1f || d[1] !== 0x8b || d[2] !== 8) fail('EINVAL', 'bad gzip header');
  const flg = d[3]!;
  if (flg & 0xe0) fail('EINVAL', 'gzip header has reserved flags set');
  let p = 10;
  if (flg & 0x04) {
    if (p + 2 > d.length) fail('EINVAL', 'truncated gzip header');
    p += 2 + (d[p]! | (d[p + 1]! << 8));
  }
  for (const bit of [0x08, 0x10]) {
    if (flg & bit) {
      while (p < d.length && d[p] !== 0) p++;
      p++;
    }
  }
  if (flg & 0x02) p += 2;
  if (p > d.length) fail('EINVAL', 'truncated gzip header');
  return p;
}

/** A ZIP request as plain data (PreparedJob.save). */
export interface ZipJobState extends PreparedJobState {
  kind: 'zip-compress' | 'zip-decompress';
  format: ZipFormat;
  inLen: number;
  src: number;
  dst: number;
  cap: number;
  maxOutput: number;
}

/** One flat-buffer ZIP request; `cap` is dest_avail_out. */
abstract class ZipJob implements PreparedJob {
  protected readonly bufs: Buffers;
  protected src = 0;
  protected dst = 0;
  protected cap = 0;
  protected readonly resident: boolean;
  produced = 0;

  constructor(protected readonly ram: GuestRam, protected readonly format: ZipFormat, protected readonly inLen: number,
    saved?: ZipJobState) {
    this.bufs = new BufferSet(ram, saved?.bufs);
    this.resident = saved?.resident === true;
    if (saved) {
      this.src = saved.src;
      this.dst = saved.dst;
      this.cap = saved.cap;
    }
  }

  protected abstract readonly kind: ZipJobState['kind'];
  protected get outputLimit(): number {
    return ZIP_MAX_LENGTH;
  }

  save(): ZipJobState {
    const st: ZipJobState = {
      kind: this.kind, bufs: this.bufs.addresses(), format: this.format, inLen: this.inLen,
      src: this.src, dst: this.dst, cap: this.cap, maxOutput: this.outputLimit,
    };
    if (this.resident) st.resident = true;
    return st;
  }

  fill(sqe: Uint8Array): void {
    put32(sqe, ZIP_INPUT_DATA_LENGTH, this.inLen);
    put32(sqe, ZIP_DW7, (ZIP_SQE_TYPE_V3 << ZIP_SQE_TYPE_SHIFT) >>> 0);
    put32(sqe, ZIP_DW8, 0);
    put32(sqe, ZIP_DW9, REQ_TYPE[this.format] | (ZIP_BUF_FLAT << ZIP_BUF_TYPE_SHIFT));
    put32(sqe, ZIP_DEST_AVAIL_OUT, this.cap);
    put32(sqe, ZIP_SOURCE_ADDR_L, this.src % 0x1_0000_0000);
    put32(sqe, ZIP_SOURCE_ADDR_H, Math.floor(this.src / 0x1_0000_0000));
    put32(sqe, ZIP_DEST_ADDR_L, this.dst % 0x1_0000_0000);
    put32(sqe, ZIP_DEST_ADDR_H, Math.floor(this.dst / 0x1_0000_0000));
  }

  abstract finish(sqe: Uint8Array): Uint8Array | 'retry';

  release(): void {
    this.bufs.releaseAll();
  }

  /** Output bytes after `head`, or a KernelError for a failed status. */
  protected output(sqe: Uint8Array, head: Uint8Array, what: string): Uint8Array {
    const s = sqe[ZIP_DW3]! & ZIP_STATUS_MASK;
    if (s !== ZIP_OK && s !== ZIP_NC) throw new KernelError('EIO', `ZIP ${what} failed, status 0x${s.toString(16)}`);
    const n = get32(sqe, ZIP_PRODUCED);
    if (n > this.cap) throw new KernelError('EIO', `ZIP produced ${n} bytes into a ${this.cap}-byte buffer`);
    if (this.resident) {
      this.produced = n;
      return RESIDENT_DONE;
    }
    const out = new Uint8Array(head.length + n);
    out.set(head, 0);
    if (n > 0) this.ram.mem.read(this.dst, out.subarray(head.length));
    return out;
  }
}

class CompressJob extends ZipJob {
  protected readonly kind = 'zip-compress';

  constructor(ram: GuestRam, data: Uint8Array | null, format: ZipFormat, saved?: ZipJobState) {
    super(ram, format, saved ? saved.inLen : data!.length, saved);
    if (data === null) return;
    try {
      this.src = this.bufs.put(data);
      this.cap = compressBound(data.length);
      this.dst = this.bufs.alloc(this.cap);
    } catch (e) {
      this.bufs.releaseAll();
      throw e;
    }
  }

  finish(sqe: Uint8Array): Uint8Array {
    const f = this.format;
    return this.output(sqe, f === 'zlib' ? ZIP_ZLIB_HEAD : f === 'gzip' ? ZIP_GZIP_HEAD : NO_HEAD, 'compress');
  }
}

class DecompressJob extends ZipJob {
  protected readonly kind = 'zip-decompress';

  constructor(ram: GuestRam, body: Uint8Array | null, format: ZipFormat, private readonly maxOutput: number, saved?: ZipJobState) {
    super(ram, format, saved ? saved.inLen : body!.length, saved);
    if (body === null) return;
    try {
      this.src = this.bufs.put(body);
      this.cap = Math.min(maxOutput, Math.max(64 * 1024, body.length * 8));
      this.dst = this.bufs.alloc(this.cap);
    } catch (e) {
      this.bufs.releaseAll();
      throw e;
    }
  }

  protected override get outputLimit(): number {
    return this.maxOutput;
  }

  finish(sqe: Uint8Array): Uint8Array | 'retry' {
    if ((sqe[ZIP_DW3]! & ZIP_STATUS_MASK) === ZIP_OVERFLOW) {
      if (this.resident) throw new KernelError('EOVERFLOW', `decompressed data exceeds the ${this.cap}-byte buffer`);
      if (this.cap >= this.maxOutput) throw new KernelError('EOVERFLOW', `decompressed data exceeds ${this.maxOutput} bytes`);
      this.bufs.drop(this.dst);
      this.cap = Math.min(this.maxOutput, this.cap * 8);
      this.dst = this.bufs.alloc(this.cap);
      return 'retry';
    }
    return this.output(sqe, NO_HEAD, 'decompress');
  }
}

export function prepareCompress(ram: GuestRam, data: Uint8Array, format: ZipFormat): PreparedJob {
  if (data.length > ZIP_MAX_LENGTH) fail('EINVAL', `input of ${data.length} bytes exceeds the ${ZIP_MAX_LENGTH}-byte request limit`);
  return new CompressJob(ram, data, format);
}

export function prepareDecompress(ram: GuestRam, data: Uint8Array, format: ZipFormat, maxOutput = ZIP_MAX_LENGTH): PreparedJob {
  if (!Number.isSafeInteger(maxOutput) || maxOutput < 1 || maxOutput > ZIP_MAX_LENGTH) {
    fail('EINVAL', `maxOutput must be 1..${ZIP_MAX_LENGTH}`);
  }
  const skip = format === 'zlib' ? zlibHeaderLength(data) : format === 'gzip' ? gzipHeaderLength(data) : 0;
  const body = data.subarray(skip);
  if (body.length > ZIP_MAX_LENGTH) fail('EINVAL', `input of ${body.length} bytes exceeds the ${ZIP_MAX_LENGTH}-byte request limit`);
  return new DecompressJob(ram, body, format, maxOutput);
}

/**
 * A raw-deflate request over buffers the caller keeps in guest RAM (see Accel.runAt): `len`
 * input bytes at `src`, output into `cap` bytes at `dst`. zlib and gzip need the driver to
 * write or strip a header around the engine's body, which a resident buffer has no room
 * for: EINVAL. Decompressed data that does not fit `cap` is EOVERFLOW (no retry).
 */
export interface ZipAt {
  op: 'compress' | 'decompress';
  format: ZipFormat;
  src: number;
  len: number;
  dst: number;
  cap: number;
}

export function prepareZipAt(ram: GuestRam, r: ZipAt): PreparedJob {
  if (checkFormat(r.format) !== 'deflate') fail('EINVAL', `resident ZIP requests are raw deflate (got ${r.format})`);
  if (!Number.isSafeInteger(r.len) || r.len < 0 || r.len > ZIP_MAX_LENGTH) fail('EINVAL', `input length ${String(r.len)} is outside 0..${ZIP_MAX_LENGTH}`);
  if (!Number.isSafeInteger(r.cap) || r.cap < 1 || r.cap > ZIP_MAX_LENGTH) fail('EINVAL', `output room ${String(r.cap)} is outside 1..${ZIP_MAX_LENGTH}`);
  for (const [a, what] of [[r.src, 'src'], [r.dst, 'dst']] as const) {
    if (!Number.isSafeInteger(a) || a <= 0) fail('EINVAL', `${what} must be a guest address (got ${String(a)})`);
  }
  const st: ZipJobState = {
    kind: r.op === 'decompress' ? 'zip-decompress' : 'zip-compress', bufs: [], resident: true, format: 'deflate',
    inLen: r.len, src: r.src, dst: r.dst, cap: r.cap, maxOutput: r.cap,
  };
  if (r.op === 'compress') return new CompressJob(ram, null, 'deflate', st);
  if (r.op === 'decompress') return new DecompressJob(ram, null, 'deflate', r.cap, st);
  return fail('EINVAL', `unknown ZIP operation '${String(r.op)}'`);
}

/** Rebuilds a saved ZIP request over the same guest RAM (its buffers are still allocated). */
export function reviveZipJob(ram: GuestRam, st: ZipJobState): PreparedJob {
  const format = checkFormat(st.format);
  if (st.kind === 'zip-compress') return new CompressJob(ram, null, format, st);
  return new DecompressJob(ram, null, format, st.maxOutput, st);
}
