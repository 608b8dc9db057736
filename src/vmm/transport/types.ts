/**
 * Byte transports carrying the migration stream from a source VMM to a destination.
 *
 * A Transport is one full-duplex connection. Each direction is a byte stream ended
 * explicitly with end(); the transport tells a clean end apart from a lost connection, so
 * a drop mid-stream is an error on both sides and never looks like a short, complete
 * transfer. Receiving is async iteration:
 *
 *   for await (const chunk of t) reader.push(chunk);   // ends after the peer's end(),
 *                                                         // throws TransportError on a drop
 *
 * Lifecycle: send()* -> end() (resolves once the peer has received everything: once its
 * reader has taken it all, when a reader is attached; see base.ts) -> the
 * connection is finished when both directions have ended; `closed` then resolves to null.
 * abort() breaks the connection at once. Leaving the receive loop before the peer ended
 * (break, or an exception in the loop body) aborts the connection, so a destination that
 * rejects the stream makes the source fail instead of hang.
 */

export type TransportErrorCode =
  /** This side called abort(). */
  | 'ABORTED'
  /** The peer went away before both directions ended (reset, crash, injected drop). */
  | 'ECONNRESET'
  /** Sending after end(). */
  | 'EPIPE'
  | 'ECONNREFUSED'
  | 'ENOENT'
  | 'EADDRINUSE'
  /** No traffic within the configured idle timeout. */
  | 'ETIMEDOUT'
  /** The peer does not speak this transport's wire protocol. */
  | 'PROTOCOL'
  /** A failure made on purpose by a fault-injection wrapper. */
  | 'INJECTED'
  /** Any other I/O error (the message carries the system error). */
  | 'EIO';

export class TransportError extends Error {
  readonly code: TransportErrorCode;
  constructor(code: TransportErrorCode, message: string) {
    super(message);
    this.name = 'TransportError';
    this.code = code;
  }
}

export interface SendOptions {
  /**
   * The caller hands the chunk over for good: it never reads or writes it again, so a
   * transport within one process may pass it to the receiver as it is instead of copying.
   * Transports that copy or serialise anyway ignore it.
   */
  transfer?: boolean;
}

/** The sending half; a file sink implements only this. */
export interface ByteSender {
  /**
   * Queues `chunk` for the peer; resolves once the underlying channel took it (socket:
   * handed to the OS). Rejects with TransportError on a broken connection or after end().
   * The chunk must not be modified until the promise settles.
   */
  send(chunk: Uint8Array, opts?: SendOptions): Promise<void>;
  /**
   * Ends this direction; resolves when the peer has received all of it (when the peer is
   * being read: when its reader has taken all of it and seen the end).
   */
  end(): Promise<void>;
  /** Breaks the connection now; the peer sees a TransportError. */
  abort(reason?: string): void;
}

export interface Transport extends ByteSender, AsyncIterable<Uint8Array> {
  /** Human-readable endpoint description, e.g. "tcp 127.0.0.1:4321". */
  readonly label: string;
  /** Payload bytes sent / received so far. */
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** Settles when the connection is over: null after a clean finish, else the error. Never rejects. */
  readonly closed: Promise<TransportError | null>;
  /** end(), then wait until the peer ended its direction too; throws the error of a failed connection. */
  close(): Promise<void>;
}

/** Adapts a sender to the StreamWriter's sink signature. */
export function sinkOf(sender: ByteSender): (chunk: Uint8Array) => Promise<void> {
  return (chunk) => sender.send(chunk);
}

/** Maps a Node system error to a TransportError. */
export function fromSystemError(e: unknown, what: string): TransportError {
  if (e instanceof TransportError) return e;
  const code = (e as { code?: string } | null)?.code;
  const msg = e instanceof Error ? e.message : String(e);
  switch (code) {
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNREFUSED':
    case 'ENOENT':
    case 'EADDRINUSE':
    case 'ETIMEDOUT':
      return new TransportError(code, `${what}: ${msg}`);
    case 'ERR_STREAM_DESTROYED':
    case 'ERR_STREAM_WRITE_AFTER_END':
      return new TransportError('ECONNRESET', `${what}: connection closed`);
    default:
      return new TransportError('EIO', `${what}: ${msg}`);
  }
}
