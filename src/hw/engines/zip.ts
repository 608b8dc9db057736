/**
 * The ZIP engine: stateless deflate/zlib/gzip compression and decompression of one buffer
 * per SQE, with node:zlib doing the transform. The queue's alg_type decides the direction
 * (a ZIP queue is either a compress or a decompress queue, qm-hardware.md 6).
 *
 * Data path: the input is read once into one Buffer (room for a zlib header is reserved in
 * front when the transform needs one, so no second copy), the transform runs, and the
 * output is written once. Request rules:
 * - input = input_data_length bytes at source + in_sge offset; output lands at
 *   destination + out_sge offset and may use dest_avail_out bytes.
 * - compress: consumed = input_data_length, produced = output size. A zero-length input
 *   is valid and yields an empty stream (deflate 03 00, plus the zlib/gzip trailer).
 * - decompress: the stream ends where the deflate data says; consumed counts the bytes up
 *   to and including the trailer, so trailing bytes after the stream are left unconsumed.
 *   zlib/gzip trailers are verified (STREAM_CORRUPT on mismatch).
 * - output larger than dest_avail_out: OUTPUT_OVERFLOW and nothing is written.
 */
import * as zlib from 'node:zlib';
import type { Engine, EngineContext } from './engine.js';
import * as Bytes from './bytes.js';
import * as Sgl from './sgl.js';
import * as ZipSqe from './zip-sqe.js';

// Imported values bound to module-local constants: under the tsx/vitest module transforms
// every access to an imported binding is a getter call, too slow for the per-SQE paths.
const { rd32, wr32 } = Bytes;
const { BufferStatus, DataBuffer, Scratch, describeBuffer } = Sgl;
const {
  ZIP_ALG_COMPRESS, ZIP_ALG_DECOMPRESS, ZIP_BUF_FLAT, ZIP_BUF_SGL, ZIP_BUF_TYPE_MASK, ZIP_BUF_TYPE_SHIFT,
  ZIP_CONSUMED, ZIP_DEST_ADDR_H, ZIP_DEST_ADDR_L, ZIP_DEST_AVAIL_OUT, ZIP_DW3, ZIP_DW7, ZIP_DW8, ZIP_DW9,
  ZIP_INPUT_DATA_LENGTH, ZIP_MAX_LENGTH, ZIP_PRODUCED, ZIP_REQ_DEFLATE, ZIP_REQ_GZIP, ZIP_REQ_TYPE_MASK,
  ZIP_REQ_ZLIB, ZIP_SGE_OFFSET_MASK, ZIP_SOURCE_ADDR_H, ZIP_SOURCE_ADDR_L, ZIP_SQE_SIZE,
  ZIP_SQE_TYPE_SHIFT, ZIP_SQE_TYPE_V1, ZIP_SQE_TYPE_V3, ZIP_TAG_DW13, ZIP_TAG_DW26, ZipStatus
} = ZipSqe;

/** node:zlib's own zlib header for the default level; body starts right after it. */
const ZLIB_HEAD_LEN = 2;
/** node:zlib's gzip header carries no optional fields. */
const GZIP_HEAD_LEN = 10;
const GZIP_TRAILER_LEN = 8;

interface InflateInfo {
  buffer: Buffer;
  engine: { bytesWritten: number };
}

type Outcome = { status: number; consumed: number; produced: number };

export class ZipEngine implements Engine {
  readonly kind = 'zip' as const;
  readonly sqeSize = ZIP_SQE_SIZE;
  private readonly src = new DataBuffer();
  private readonly dst = new DataBuffer();
  private readonly scratch = new Scratch();
  private readonly outcome: Outcome = { status: 0, consumed: 0, produced: 0 };
  /** Output/input ratios of the last successful compression and decompression (see chunkGuess). */
  private deflateRatio = 0.5;
  private inflateRatio = 4;

  tagOf(sqe: Uint8Array): number {
    const type = rd32(sqe, ZIP_DW7) >>> ZIP_SQE_TYPE_SHIFT;
    return type === ZIP_SQE_TYPE_V3 ? rd32(sqe, ZIP_TAG_DW26) : rd32(sqe, ZIP_TAG_DW13);
  }

  process(sqe: Uint8Array, ctx: EngineContext): boolean {
    const out = this.outcome;
    out.status = ZipStatus.OK;
    out.consumed = 0;
    out.produced = 0;
    try {
      this.run(sqe, ctx, out);
    } catch {
      // node:zlib errors are mapped inside run(); anything else is a model fault and must
      // still surface as a failed SQE rather than escape into the QM.
      out.status = ZipStatus.BAD_REQUEST;
    }
    if (out.status !== ZipStatus.OK) {
      out.consumed = 0;
      out.produced = 0;
    }
    wr32(sqe, ZIP_CONSUMED, out.consumed);
    wr32(sqe, ZIP_PRODUCED, out.produced);
    sqe[ZIP_DW3] = out.status;
    return out.status === ZipStatus.OK;
  }

  private run(sqe: Uint8Array, ctx: EngineContext, out: Outcome): void {
    const dw9 = rd32(sqe, ZIP_DW9);
    const reqType = dw9 & ZIP_REQ_TYPE_MASK;
    const bufType = (dw9 >>> ZIP_BUF_TYPE_SHIFT) & ZIP_BUF_TYPE_MASK;
    const sqeType = rd32(sqe, ZIP_DW7) >>> ZIP_SQE_TYPE_SHIFT;
    if (
      (sqeType !== ZIP_SQE_TYPE_V1 && sqeType !== ZIP_SQE_TYPE_V3) ||
      (reqType !== ZIP_REQ_DEFLATE && reqType !== ZIP_REQ_ZLIB && reqType !== ZIP_REQ_GZIP) ||
      (bufType !== ZIP_BUF_FLAT && bufType !== ZIP_BUF_SGL) ||
      (ctx.algType !== ZIP_ALG_COMPRESS && ctx.algType !== ZIP_ALG_DECOMPRESS)
    ) {
      out.status = ZipStatus.BAD_REQUEST;
      return;
    }
    const inLen = rd32(sqe, ZIP_INPUT_DATA_LENGTH);
    if (inLen > ZIP_MAX_LENGTH) {
      out.status = ZipStatus.LENGTH;
      return;
    }
    const inOff = rd32(sqe, ZIP_DW7) & ZIP_SGE_OFFSET_MASK;
    const outOff = rd32(sqe, ZIP_DW8) & ZIP_SGE_OFFSET_MASK;
    const avail = rd32(sqe, ZIP_DEST_AVAIL_OUT);
    const sgl = bufType === ZIP_BUF_SGL;
    const dma = ctx.dma;

    let st = describeBuffer(this.src, dma, addr(sqe, ZIP_SOURCE_ADDR_L, ZIP_SOURCE_ADDR_H), sgl);
    if (st !== BufferStatus.OK) {
      out.status = st === BufferStatus.DMA_FAULT ? ZipStatus.DMA_READ_FAULT : ZipStatus.BAD_SGL;
      return;
    }
    if (inOff + inLen > this.src.capacity) {
      out.status = ZipStatus.BAD_SGL;
      return;
    }

    const compress = ctx.algType === ZIP_ALG_COMPRESS;
    // zlib decompression borrows node's header check: reserve room to prepend the header.
    const lead = !compress && reqType === ZIP_REQ_ZLIB ? ZLIB_HEAD_LEN : 0;
    // Zero-copy when the port can lend the source (not when a header must be prepended):
    // node:zlib finishes with the input before the output is written back.
    let input: Uint8Array | null = lead === 0 ? this.src.view(dma, inOff, inLen) : null;
    if (input === null) {
      const staged = this.scratch.take(lead + inLen);
      if (!this.src.read(dma, inOff, staged.subarray(lead))) {
        out.status = ZipStatus.DMA_READ_FAULT;
        return;
      }
      input = staged;
    }

    let output: Uint8Array;
    if (compress) {
      // deflate never emits more than its worst case: stored blocks, a few bytes per 16 KiB
      const worst = inLen + (inLen >>> 10) + 64;
      output = compressBody(reqType, input, chunkGuess(inLen, this.deflateRatio, worst));
      out.consumed = inLen;
      if (inLen > 0) this.deflateRatio = output.length / inLen;
      if (output.length > avail) {
        out.status = ZipStatus.OUTPUT_OVERFLOW;
        return;
      }
    } else {
      const bound = Math.min(avail, ZIP_MAX_LENGTH);
      const r = decompressBody(reqType, input, bound, chunkGuess(inLen, this.inflateRatio, bound));
      if (r.status !== ZipStatus.OK || r.output === undefined) {
        out.status = r.status === ZipStatus.OUTPUT_OVERFLOW && avail > ZIP_MAX_LENGTH ? ZipStatus.LENGTH : r.status;
        return;
      }
      output = r.output;
      out.consumed = r.consumed ?? 0;
      if (out.consumed > 0) this.inflateRatio = output.length / out.consumed;
    }

    st = describeBuffer(this.dst, dma, addr(sqe, ZIP_DEST_ADDR_L, ZIP_DEST_ADDR_H), sgl);
    if (st !== BufferStatus.OK) {
      out.status = st === BufferStatus.DMA_FAULT ? ZipStatus.DMA_READ_FAULT : ZipStatus.BAD_SGL;
      return;
    }
    if (outOff + output.length > this.dst.capacity) {
      out.status = ZipStatus.BAD_SGL;
      return;
    }
    if (!this.dst.write(dma, outOff, output)) {
      out.status = ZipStatus.DMA_WRITE_FAULT;
      return;
    }
    out.produced = output.length;
  }
}

function addr(sqe: Uint8Array, lo: number, hi: number): number {
  return rd32(sqe, hi) * 0x1_0000_0000 + rd32(sqe, lo);
}

/**
 * node:zlib's sync calls fill chunkSize-byte buffers and concatenate them at the end, so the
 * cheapest chunk is a little above the output size: one allocation and no copy. The size is
 * unknown up front, but requests through one engine tend to compress alike, so the guess
 * scales the input by the previous request's output/input ratio, with headroom. A low guess
 * costs node:zlib a second chunk and a concatenation, a high one a larger allocation: the
 * output is the same either way. Bounds: never below node's default chunk (no worse than a
 * plain zlib call), never above `limit` + 1 (an output of exactly `limit` bytes would
 * otherwise make node allocate one more, empty chunk) nor MAX_CHUNK (so a hostile length
 * cannot force a huge allocation up front).
 */
const MAX_CHUNK = 256 * 1024;
function chunkGuess(inLen: number, ratio: number, limit: number): number {
  const guess = Math.max(Math.ceil(inLen * ratio * 1.125) + 1024, zlib.constants.Z_DEFAULT_CHUNK);
  return Math.min(Math.max(Math.min(guess, limit + 1), zlib.constants.Z_MIN_CHUNK), MAX_CHUNK);
}

/** Compressed stream without the zlib/gzip header (see ZIP_REQ_* in zip-sqe.ts). */
function compressBody(reqType: number, input: Uint8Array, chunkSize: number): Uint8Array {
  const opts = { chunkSize };
  switch (reqType) {
    case ZIP_REQ_ZLIB:
      return zlib.deflateSync(input, opts).subarray(ZLIB_HEAD_LEN);
    case ZIP_REQ_GZIP:
      return zlib.gzipSync(input, opts).subarray(GZIP_HEAD_LEN);
    default:
      return zlib.deflateRawSync(input, opts);
  }
}

interface Decompressed {
  status: number;
  output?: Buffer;
  consumed?: number;
}

function decompressBody(reqType: number, input: Uint8Array, bound: number, chunkSize: number): Decompressed {
  // node rejects maxOutputLength 0; an empty stream still fits a bound of 1 and is checked below.
  const opts = { info: true, maxOutputLength: Math.max(1, bound), chunkSize };
  try {
    if (reqType === ZIP_REQ_ZLIB) {
      input[0] = 0x78;
      input[1] = 0x9c;
      const r = zlib.inflateSync(input, opts) as unknown as InflateInfo;
      if (r.buffer.length > bound) return { status: ZipStatus.OUTPUT_OVERFLOW };
      return { status: ZipStatus.OK, output: r.buffer, consumed: r.engine.bytesWritten - ZLIB_HEAD_LEN };
    }
    const r = zlib.inflateRawSync(input, opts) as unknown as InflateInfo;
    if (r.buffer.length > bound) return { status: ZipStatus.OUTPUT_OVERFLOW };
    const bodyLen = r.engine.bytesWritten;
    if (reqType !== ZIP_REQ_GZIP) return { status: ZipStatus.OK, output: r.buffer, consumed: bodyLen };
    // gunzip would treat trailing bytes as a further member; the engine stops at one member.
    if (bodyLen + GZIP_TRAILER_LEN > input.length) return { status: ZipStatus.STREAM_TRUNCATED };
    if (rd32(input, bodyLen) !== crc32(r.buffer) || rd32(input, bodyLen + 4) !== r.buffer.length >>> 0) {
      return { status: ZipStatus.STREAM_CORRUPT };
    }
    return { status: ZipStatus.OK, output: r.buffer, consumed: bodyLen + GZIP_TRAILER_LEN };
  } catch (e) {
    return { status: zlibErrorStatus(e) };
  }
}

function zlibErrorStatus(e: unknown): number {
  const err = e as { code?: string; errno?: number };
  if (err.code === 'ERR_BUFFER_TOO_LARGE') return ZipStatus.OUTPUT_OVERFLOW;
  if (err.errno === zlib.constants.Z_BUF_ERROR || err.code === 'Z_BUF_ERROR') return ZipStatus.STREAM_TRUNCATED;
  return ZipStatus.STREAM_CORRUPT;
}

/** CRC-32 (IEEE, reflected) via node:zlib when available (Node >= 20.15), else a table. */
function crc32(data: Uint8Array): number {
  const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
  if (typeof native === 'function') return native(data) >>> 0;
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();
