/**
 * A FIFO of received byte chunks that hands out exact-size pieces, for parsers fed by
 * sockets that split data anywhere (down to one byte per chunk). Chunks are kept by
 * reference; a piece lying inside one chunk is returned as a view without copying.
 */
export class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0; // index of the first live chunk
  private offset = 0; // bytes already consumed from chunks[head]
  private total = 0;

  /** Bytes available. */
  get length(): number {
    return this.total;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /**
   * Removes and returns the next `n` bytes (n <= length). The result may alias a pushed
   * chunk; callers that keep it must not expect it to be a private copy.
   */
  take(n: number): Uint8Array {
    if (n > this.total) throw new RangeError(`ByteQueue.take(${n}) with ${this.total} available`);
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[this.head]!;
    if (first.length - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[this.head]!;
      const k = Math.min(c.length - this.offset, n - filled);
      out.set(c.subarray(this.offset, this.offset + k), filled);
      filled += k;
      this.advance(k);
    }
    return out;
  }

  /** Drops everything. */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.offset = 0;
    this.total = 0;
  }

  private advance(n: number): void {
    this.total -= n;
    this.offset += n;
    const c = this.chunks[this.head]!;
    if (this.offset === c.length) {
      this.chunks[this.head] = EMPTY;
      this.head++;
      this.offset = 0;
      // compact once the consumed prefix dominates, keeping shifts amortised O(1)
      if (this.head > 64 && this.head * 2 > this.chunks.length) {
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
    }
  }
}

const EMPTY = new Uint8Array(0);
