/**
 * The connection state machine shared by every duplex transport: the receive queue behind
 * async iteration, the end/acknowledge handshake per direction, and failure fan-out (one
 * error reaches every pending send, end, reader and `closed`). Subclasses only move bytes
 * and control signals over their channel.
 *
 * When the peer's end arrives, it is acknowledged at once if nobody reads this side yet;
 * once a reader is attached, only when that reader has taken every chunk and seen the end.
 * So the sender's end() resolving means the receiving application has consumed the whole
 * stream, not merely that its transport holds it: the migration switchover relies on this
 * (an ended stream the destination never processed must not count as delivered). Until it
 * is acknowledged, a broken connection reaches the reader as an error, never as an end.
 */
import { TransportError } from './types.js';
import type { SendOptions, Transport } from './types.js';

/** Received chunks waiting for the consumer. */
class Inbox {
  private q: Uint8Array[] = [];
  private head = 0;
  bytes = 0;
  /** The peer's end arrived. */
  ended = false;
  /** It was acknowledged to the peer: from then on the direction is finished, errors or not. */
  endAcked = false;
  /** The reader has been handed the end. */
  endTaken = false;
  error: TransportError | null = null;
  /** Called once, when the reader takes the end. */
  onEndTaken: (() => void) | null = null;
  private waiter: { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (e: unknown) => void } | null = null;
  /** Called after the consumer took a chunk (flow control hook). */
  onTake: (() => void) | null = null;

  push(chunk: Uint8Array): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: chunk, done: false });
      return;
    }
    this.q.push(chunk);
    this.bytes += chunk.length;
  }

  end(): void {
    this.ended = true;
    this.wake();
  }

  fail(e: TransportError): void {
    if (this.error || this.endAcked || this.endTaken) return; // a finished direction stays finished
    this.error = e;
    this.wake();
  }

  /** Nothing received is waiting for the reader. */
  get empty(): boolean {
    return this.head >= this.q.length;
  }

  private takeEnd(): IteratorResult<Uint8Array> {
    if (!this.endTaken) {
      this.endTaken = true;
      this.onEndTaken?.();
    }
    return { value: undefined, done: true };
  }

  private wake(): void {
    if (!this.waiter || this.head < this.q.length) return;
    const w = this.waiter;
    this.waiter = null;
    if (this.error) w.reject(this.error);
    else w.resolve(this.takeEnd());
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.head < this.q.length) {
      const c = this.q[this.head]!;
      this.q[this.head++] = EMPTY;
      if (this.head > 1024 && this.head * 2 > this.q.length) {
        this.q = this.q.slice(this.head);
        this.head = 0;
      }
      this.bytes -= c.length;
      this.onTake?.();
      return Promise.resolve({ value: c, done: false });
    }
    if (this.error) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve(this.takeEnd());
    if (this.waiter) return Promise.reject(new TransportError('EIO', 'concurrent reads of one transport'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }
}

const EMPTY = new Uint8Array(0);

export abstract class BaseTransport implements Transport {
  readonly label: string;
  bytesSent = 0;
  bytesReceived = 0;
  readonly closed: Promise<TransportError | null>;
  protected error: TransportError | null = null;
  protected sentFin = false;
  protected finAcked = false;
  /** The peer's end arrived. */
  protected gotFin = false;
  /** ... and was acknowledged (see the file comment for when). */
  protected finTaken = false;
  protected readonly inbox = new Inbox();
  private settled = false;
  private settle!: (e: TransportError | null) => void;
  private finPromise: Promise<void> | null = null;
  private finResolve: (() => void) | null = null;
  private finReject: ((e: unknown) => void) | null = null;
  private iterating = false;

  constructor(label: string) {
    this.label = label;
    this.closed = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  /** Moves one data chunk to the peer; resolves when the channel took it. `owned`: see SendOptions.transfer. */
  protected abstract transmit(chunk: Uint8Array, owned: boolean): Promise<void>;
  /** Tells the peer this direction has ended. */
  protected abstract transmitFin(): void;
  /** Acknowledges the peer's end. */
  protected abstract transmitFinAck(): void;
  /** Both directions are done: close the channel gracefully and call finished() when it is. */
  protected abstract shutdown(): void;
  /** Hard stop after a failure. */
  protected abstract teardown(e: TransportError): void;

  send(chunk: Uint8Array, opts?: SendOptions): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.sentFin) return Promise.reject(new TransportError('EPIPE', `${this.label}: send after end()`));
    if (chunk.length === 0) return Promise.resolve();
    this.bytesSent += chunk.length;
    return this.transmit(chunk, opts?.transfer === true);
  }

  end(): Promise<void> {
    if (this.finPromise) return this.finPromise;
    if (this.error) return Promise.reject(this.error);
    this.finPromise = new Promise<void>((resolve, reject) => {
      this.finResolve = resolve;
      this.finReject = reject;
    });
    this.sentFin = true;
    this.transmitFin();
    return this.finPromise;
  }

  abort(reason = 'aborted'): void {
    this.fail(new TransportError('ABORTED', `${this.label}: ${reason}`));
  }

  async close(): Promise<void> {
    await this.end();
    const e = await this.closed;
    if (e) throw e;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterating) throw new TransportError('EIO', `${this.label}: already being read`);
    this.iterating = true;
    this.inbox.onEndTaken = () => this.ackFin();
    return {
      next: () => this.inbox.next(),
      return: async () => {
        if (this.error || this.finTaken) return { value: undefined, done: true };
        // the consumer left early: what it did not read was not delivered
        if (this.gotFin && this.inbox.empty) this.ackFin();
        else this.abort('receiver stopped reading');
        return { value: undefined, done: true };
      },
    };
  }

  /** Subclass: a data chunk arrived. */
  protected received(chunk: Uint8Array): void {
    if (this.gotFin || this.error) return;
    this.bytesReceived += chunk.length;
    this.inbox.push(chunk);
  }

  /** Subclass: the peer ended its direction. */
  protected receivedFin(): void {
    if (this.gotFin || this.error) return;
    this.gotFin = true;
    this.inbox.end();
    // with a reader attached the acknowledgement waits until it has taken everything
    if (!this.iterating) this.ackFin();
  }

  private ackFin(): void {
    if (this.finTaken || this.error || !this.gotFin) return;
    this.finTaken = true;
    this.inbox.endAcked = true;
    this.transmitFinAck();
    this.maybeFinish();
  }

  /** Subclass: the peer acknowledged our end. */
  protected receivedFinAck(): void {
    if (!this.sentFin || this.finAcked || this.error) return;
    this.finAcked = true;
    this.finResolve?.();
    this.maybeFinish();
  }

  /** Whether both directions have ended cleanly. */
  protected get done(): boolean {
    return this.sentFin && this.finAcked && this.finTaken;
  }

  private maybeFinish(): void {
    if (this.done) this.shutdown();
  }

  /** Subclass: the channel closed after a clean finish. */
  protected finished(): void {
    if (this.settled) return;
    this.settled = true;
    this.settle(null);
  }

  /** Records the first failure and delivers it everywhere. */
  protected fail(e: TransportError): void {
    if (this.settled || this.error) return;
    if (this.done) {
      // both directions completed and were acknowledged: a late error loses nothing
      this.teardown(e);
      this.finished();
      return;
    }
    this.error = e;
    this.inbox.fail(e);
    if (this.finReject && !this.finAcked) {
      this.finPromise!.catch(() => undefined); // the caller of end() may be gone; it still sees it if awaiting
      this.finReject(e);
    }
    this.teardown(e);
    this.settled = true;
    this.settle(e);
  }
}
