/**
 * What the high-level API hands to a queue pair: one prepared request whose guest buffers
 * are allocated and filled, that knows how to write its SQE and how to read the result.
 *
 * Jobs are classes rather than bundles of closures, and the SQE field writers below are
 * plain local functions: every job passes through here, and under the tsx/vitest module
 * transforms each closure creation and each access to an imported binding costs a call.
 */
import type { KernelError } from '../uapi/errno.js';
import type { GuestRam } from './io.js';

export interface PreparedJob {
  /** Writes the engine fields into a zeroed SQE (the queue pair adds the tag). */
  fill(sqe: Uint8Array): void;
  /**
   * Reads the completed SQE: the output bytes, or 'retry' when the job adjusted itself and
   * must be submitted again. Throws a KernelError when the device reported a failure.
   */
  finish(sqe: Uint8Array): Uint8Array | 'retry';
  /** Returns every guest buffer; called once, after the device is done with them. */
  release(): void;
  /**
   * The request as plain data: what `revivePreparedJob` (job-state.ts) needs to rebuild it
   * over the same guest RAM, e.g. in another process after live migration.
   */
  save(): PreparedJobState;
  /**
   * Resident requests (buffers the caller keeps in guest RAM, see Accel.runAt) return
   * RESIDENT_DONE from `finish` and leave the number of bytes the device produced here.
   */
  readonly produced?: number;
}

/** What `finish` of a resident request returns: the output stays in the caller's buffer. */
export const RESIDENT_DONE = new Uint8Array(0);

/** A prepared request as plain data; `kind` picks the class that revives it. */
export interface PreparedJobState {
  kind: string;
  /** Guest buffers the request owns (live allocator blocks); none for a resident request. */
  bufs: number[];
  /** The caller's buffers (Accel.runAt): nothing is copied out or freed. */
  resident?: boolean;
  [field: string]: unknown;
}

export type JobResult = { ok: true; output: Uint8Array } | { ok: false; error: KernelError };

/** Guest buffers of one job, freed together. */
export class BufferSet {
  private readonly addrs: number[] = [];
  constructor(private readonly ram: GuestRam, adopt?: readonly number[]) {
    // Resident jobs adopt an empty list on every call: skip the spread call for them.
    if (adopt !== undefined && adopt.length > 0) this.addrs.push(...adopt);
  }

  /** The buffers currently owned. */
  addresses(): number[] {
    return this.addrs.slice();
  }

  /** Allocates `size` bytes (at least 1) and returns the address. */
  alloc(size: number, align = 64): number {
    const a = this.ram.alloc(size, align);
    this.addrs.push(a);
    return a;
  }

  /** Allocates and copies `data` in. */
  put(data: Uint8Array, align = 64): number {
    const a = this.alloc(data.length, align);
    if (data.length > 0) this.ram.mem.write(a, data);
    return a;
  }

  /** Copies `len` bytes out of guest RAM into a new array. */
  get(addr: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    if (len > 0) this.ram.mem.read(addr, out);
    return out;
  }

  /** Frees one buffer of the set. */
  drop(addr: number): void {
    const i = this.addrs.indexOf(addr);
    if (i >= 0) {
      this.addrs.splice(i, 1);
      this.ram.free(addr);
    }
  }

  releaseAll(): void {
    for (const a of this.addrs) this.ram.free(a);
    this.addrs.length = 0;
  }
}

export function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

export function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/** A u64 DMA address (< 2^53) as two little-endian dwords. */
export function put64(b: Uint8Array, o: number, v: number): void {
  put32(b, o, v % 0x1_0000_0000);
  put32(b, o + 4, Math.floor(v / 0x1_0000_0000));
}

export function get32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
