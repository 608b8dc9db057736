/**
 * Fault injection for the transport fault matrix: wraps a transport (or any sender) and
 * breaks the outgoing byte stream in a chosen way. Offsets count payload bytes from the
 * first send().
 *   dropAfterBytes N  deliver exactly N bytes, then drop the connection (the peer sees a
 *                     connection loss; the send that crossed N rejects with INJECTED)
 *   corruptAt K       flip bits (xor `corruptXor`, default 0x01) of byte K on the way out;
 *                     the caller's buffer is left untouched
 */
import { TransportError } from './types.js';
import type { ByteSender, Transport } from './types.js';

export interface FaultPlan {
  dropAfterBytes?: number;
  corruptAt?: number;
  corruptXor?: number;
}

class FaultySender<T extends ByteSender> implements ByteSender {
  protected readonly inner: T;
  private readonly plan: FaultPlan;
  private offset = 0;
  private dropped: TransportError | null = null;
  /** Whether the planned fault has been applied. */
  fired = false;

  constructor(inner: T, plan: FaultPlan) {
    this.inner = inner;
    this.plan = plan;
  }

  async send(chunk: Uint8Array): Promise<void> {
    if (this.dropped) throw this.dropped;
    const start = this.offset;
    let out = chunk;
    const k = this.plan.corruptAt;
    if (k !== undefined && k >= start && k < start + chunk.length) {
      out = chunk.slice();
      out[k - start] ^= this.plan.corruptXor ?? 0x01;
      this.fired = true;
    }
    const n = this.plan.dropAfterBytes;
    if (n !== undefined && start + chunk.length > n) {
      const keep = Math.max(0, n - start);
      if (keep > 0) await this.inner.send(out.subarray(0, keep));
      this.offset += keep;
      this.dropped = new TransportError('INJECTED', `connection dropped by fault injection after ${n} bytes`);
      this.fired = true;
      this.inner.abort(this.dropped.message);
      throw this.dropped;
    }
    this.offset += chunk.length;
    return this.inner.send(out);
  }

  end(): Promise<void> {
    if (this.dropped) return Promise.reject(this.dropped);
    return this.inner.end();
  }

  abort(reason?: string): void {
    this.inner.abort(reason);
  }
}

class FaultyTransport extends FaultySender<Transport> implements Transport {
  get label(): string {
    return `${this.inner.label} (faulty)`;
  }
  get bytesSent(): number {
    return this.inner.bytesSent;
  }
  get bytesReceived(): number {
    return this.inner.bytesReceived;
  }
  get closed(): Promise<TransportError | null> {
    return this.inner.closed;
  }
  async close(): Promise<void> {
    await this.end();
    const e = await this.inner.closed;
    if (e) throw e;
  }
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.inner[Symbol.asyncIterator]();
  }
}

/** A transport whose outgoing bytes suffer the planned fault. */
export function withFaults(inner: Transport, plan: FaultPlan): Transport & { readonly fired: boolean } {
  return new FaultyTransport(inner, plan);
}

/** The same for a send-only channel such as a FileSink. */
export function senderWithFaults(inner: ByteSender, plan: FaultPlan): ByteSender & { readonly fired: boolean } {
  return new FaultySender(inner, plan);
}
