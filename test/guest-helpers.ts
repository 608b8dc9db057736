/** Shared helpers of the guest driver tests. */
import * as crypto from 'node:crypto';
import { KernelError } from '../src/uapi/errno.js';
import type { GuestPciIo } from '../src/guest/io.js';

/** The errno name a call fails with, 'no error', or rethrows anything that is not a KernelError. */
export function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return 'no error';
}

export interface Db64 {
  bar: number;
  off: number;
  lo: number;
  hi: number;
}

/** Records every 64-bit store the guest makes (doorbells and mailbox halves). */
export function traceIo(log: Db64[]): (io: GuestPciIo) => GuestPciIo {
  return (io) => ({
    ...io,
    write64: (bar, off, lo, hi) => {
      log.push({ bar, off, lo, hi });
      io.write64(bar, off, lo, hi);
    },
  });
}

/** Doorbell fields per qm-hardware.md 3: qn[11:0], cmd[15:12], index[47:32], priority[48]. */
export function decodeDb(d: Db64): { qn: number; cmd: number; index: number; prio: number } {
  return { qn: d.lo & 0xfff, cmd: (d.lo >>> 12) & 0xf, index: d.hi & 0xffff, prio: (d.hi >>> 16) & 1 };
}

export function aesEcb(key: Uint8Array, data: Uint8Array): Buffer {
  const c = crypto.createCipheriv(`aes-${key.length * 8}-ecb`, key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

export function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

export function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
