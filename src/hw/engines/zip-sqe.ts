/**
 * `hisi_zip_sqe` layout (128 B, 32 little-endian dwords; qm-hardware.md 6), shared by the
 * engine model and guest drivers that build SQEs. Byte offsets, not dword indexes.
 */

export const ZIP_SQE_SIZE = 128;

/** dw0: input bytes consumed (written by the engine). */
export const ZIP_CONSUMED = 0;
/** dw1: output bytes produced (written by the engine). */
export const ZIP_PRODUCED = 4;
/** dw2: comp_data_length (not used by this model; left untouched). */
export const ZIP_COMP_DATA_LENGTH = 8;
/** dw3 [7:0]: status. */
export const ZIP_DW3 = 12;
export const ZIP_STATUS_MASK = 0xff;
/** dw4: input_data_length (bytes after the in_sge offset). */
export const ZIP_INPUT_DATA_LENGTH = 16;
/** dw7: [23:0] in_sge data offset, [31:28] sqe_type. */
export const ZIP_DW7 = 28;
export const ZIP_SGE_OFFSET_MASK = 0xff_ffff;
export const ZIP_SQE_TYPE_SHIFT = 28;
/** sqe_type 3 (current Linux) keeps the tag in dw26; type 0 (older layout) in dw13. */
export const ZIP_SQE_TYPE_V1 = 0;
export const ZIP_SQE_TYPE_V3 = 3;
/** dw8: [23:0] out_sge data offset. */
export const ZIP_DW8 = 32;
/** dw9: [7:0] request type, [11:8] buffer type. */
export const ZIP_DW9 = 36;
export const ZIP_REQ_TYPE_MASK = 0xff;
export const ZIP_BUF_TYPE_SHIFT = 8;
export const ZIP_BUF_TYPE_MASK = 0xf;
/** dw13: tag for sqe_type 0. */
export const ZIP_TAG_DW13 = 52;
/** dw14: dest_avail_out (bytes after the out_sge offset). */
export const ZIP_DEST_AVAIL_OUT = 56;
/** dw18/dw19: source address low/high. */
export const ZIP_SOURCE_ADDR_L = 72;
export const ZIP_SOURCE_ADDR_H = 76;
/** dw20/dw21: destination address low/high. */
export const ZIP_DEST_ADDR_L = 80;
export const ZIP_DEST_ADDR_H = 84;
/** dw26: tag for sqe_type 3. */
export const ZIP_TAG_DW26 = 104;

/**
 * Request types (dw9 [7:0]). 0x01 is what current Linux sends for "deflate" (raw RFC 1951).
 * 0x02/0x03 are the older driver's "zlib-deflate"/"gzip": that driver wrote the 2-byte zlib
 * or 10-byte gzip header itself and used the sge offsets to skip it, so the engine produces
 * and consumes the stream WITHOUT its header: the deflate body followed by the trailer
 * (zlib: Adler-32 big-endian; gzip: CRC-32 then ISIZE, little-endian).
 */
export const ZIP_REQ_DEFLATE = 0x01;
export const ZIP_REQ_ZLIB = 0x02;
export const ZIP_REQ_GZIP = 0x03;

/** Buffer types (dw9 [11:8]). */
export const ZIP_BUF_FLAT = 0x0;
export const ZIP_BUF_SGL = 0x1;

/** Queue alg_type (SQC w13 [11:8]). */
export const ZIP_ALG_COMPRESS = 0;
export const ZIP_ALG_DECOMPRESS = 1;

/** The headers the older Linux driver placed in front of the engine's output. */
export const ZIP_ZLIB_HEAD = Uint8Array.of(0x78, 0x9c);
export const ZIP_GZIP_HEAD = Uint8Array.of(0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03);

/**
 * Status codes (dw3 [7:0]). Only 0 and 0x0D (negative compression, which drivers treat as
 * success) are known from Linux; the hardware's error numbering is undocumented, so the
 * non-zero codes below are this model's own. Lengths (dw0/dw1) are 0 whenever status != 0.
 */
export const ZipStatus = {
  OK: 0x00,
  /** Unknown request type, buffer type, sqe_type, or queue alg_type. */
  BAD_REQUEST: 0x01,
  /** Source data or an SGL table could not be read. */
  DMA_READ_FAULT: 0x02,
  /** The destination could not be written (output before the fault may have landed). */
  DMA_WRITE_FAULT: 0x03,
  /** Output would exceed dest_avail_out; nothing is written. */
  OUTPUT_OVERFLOW: 0x04,
  /** Invalid deflate data or a trailer checksum/length mismatch. */
  STREAM_CORRUPT: 0x05,
  /** Input ended before the end of the stream (includes zero-length decompression). */
  STREAM_TRUNCATED: 0x06,
  /** Malformed SGL, or data range beyond the SGL's total length. */
  BAD_SGL: 0x07,
  /** input_data_length above ZIP_MAX_LENGTH, or output beyond it with room to spare. */
  LENGTH: 0x08,
  /** Known from Linux (HZIP_NC_ERR): accepted as success; never produced by this model. */
  NEGATIVE_COMPRESSION: 0x0d,
} as const;

/** Largest input (and largest output) one SQE may carry in this model: 16 MiB. */
export const ZIP_MAX_LENGTH = 16 * 1024 * 1024;
