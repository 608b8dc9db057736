/**
 * The one error class of the migration stream. `code` lets a consumer tell the failure
 * kinds apart without parsing messages (a fault-injection matrix asserts on it); the message
 * says what exactly is wrong, e.g. "checksum mismatch in RAM section 4".
 */
export type StreamErrorCode =
  /** The first 8 bytes are not the stream magic. */
  | 'BAD_MAGIC'
  /** A format version this reader does not speak. */
  | 'BAD_VERSION'
  /** A CRC-32 did not match: the bytes were altered. */
  | 'CHECKSUM'
  /** The input ended early: mid-record, or before the END section. */
  | 'TRUNCATED'
  /** A device-section marker that is unknown or not allowed at that point. */
  | 'UNEXPECTED_MARKER'
  /** Fields that passed their checksum but make no sense (bad layout, out-of-range values). */
  | 'MALFORMED'
  /** Bytes after the END section. */
  | 'TRAILING_DATA'
  /** A declared size above the reader's limit. */
  | 'LIMIT'
  /** The writer was used out of order or with bad arguments. */
  | 'USAGE';

export class StreamError extends Error {
  readonly code: StreamErrorCode;
  /** Byte offset in the stream where the offending item starts, when known. */
  readonly offset: number | undefined;
  constructor(code: StreamErrorCode, message: string, offset?: number) {
    super(message);
    this.name = 'StreamError';
    this.code = code;
    this.offset = offset;
  }
}
