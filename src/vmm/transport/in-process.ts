/**
 * Two connected endpoints in one process. Sends go into the peer's queue at once (no
 * backpressure: the queue grows as needed), so a transfer completes as fast as the consumer
 * reads. A chunk is copied unless the sender hands it over (SendOptions.transfer), in which
 * case the receiver gets the very same buffer. Semantics match the socket transport, including errors on both sides when
 * either side aborts.
 */
import { BaseTransport } from './base.js';
import { TransportError } from './types.js';
import type { Transport } from './types.js';

class PipeEnd extends BaseTransport {
  peer!: PipeEnd;

  protected transmit(chunk: Uint8Array, owned: boolean): Promise<void> {
    this.peer.deliver(owned ? chunk : chunk.slice());
    return Promise.resolve();
  }

  protected transmitFin(): void {
    this.peer.deliverFin();
  }

  protected transmitFinAck(): void {
    this.peer.deliverFinAck();
  }

  protected shutdown(): void {
    this.finished();
  }

  protected teardown(e: TransportError): void {
    const code = e.code === 'INJECTED' ? 'INJECTED' : 'ECONNRESET';
    this.peer.fail(new TransportError(code, `${this.peer.label}: connection reset by peer (${e.message})`));
  }

  deliver(chunk: Uint8Array): void {
    this.received(chunk);
  }
  deliverFin(): void {
    this.receivedFin();
  }
  deliverFinAck(): void {
    this.receivedFinAck();
  }
}

/** A connected pair: what one sends the other receives. */
export function createPipePair(labels: [string, string] = ['pipe:a', 'pipe:b']): [Transport, Transport] {
  const a = new PipeEnd(labels[0]);
  const b = new PipeEnd(labels[1]);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
