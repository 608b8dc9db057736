/**
 * Plain-data forms of guest driver objects that a VMM carries across a live migration as
 * part of the guest's CPU-side state: prepared requests, errors and byte strings.
 *
 * The guest's device-facing state lives in guest RAM (rings, contexts, buffers) and in the
 * device; what lives only in JavaScript (ring cursors, the in-flight table, the allocator,
 * prepared requests) is saved with `saveState()` methods as JSON-safe objects and rebuilt
 * over the destination's RAM with the matching `restore` functions.
 */
import { KernelError, fail } from '../uapi/errno.js';
import type { GuestRam } from './io.js';
import type { PreparedJob, PreparedJobState } from './jobs.js';
import { type HpreJobState, reviveHpreJob } from './hpre-job.js';
import { type CipherJobState, type HmacJobState, reviveSecJob } from './sec-job.js';
import { type ZipJobState, reviveZipJob } from './zip-job.js';

/** A KernelError as data. */
export interface ErrorState {
  errno: number;
  message: string;
}

export function saveError(e: KernelError): ErrorState {
  const prefix = `${e.code}: `;
  return { errno: e.errno, message: e.message.startsWith(prefix) ? e.message.slice(prefix.length) : '' };
}

export function reviveError(s: ErrorState): KernelError {
  if (s === null || typeof s !== 'object' || !Number.isInteger(s.errno) || s.errno <= 0) {
    fail('EINVAL', 'bad saved error');
  }
  return new KernelError(s.errno, s.message || undefined);
}

/** Bytes as base64 text (JSON-safe). */
export function bytesToText(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

export function textToBytes(s: string): Uint8Array {
  if (typeof s !== 'string') fail('EINVAL', 'saved bytes must be base64 text');
  return new Uint8Array(Buffer.from(s, 'base64'));
}

/** Checks the fields every saved request carries. */
function checkCommon(st: PreparedJobState): void {
  if (st === null || typeof st !== 'object' || typeof st.kind !== 'string' || !Array.isArray(st.bufs)) {
    fail('EINVAL', 'bad saved request');
  }
  for (const a of st.bufs) if (!Number.isSafeInteger(a) || a <= 0) fail('EINVAL', `bad saved buffer address ${String(a)}`);
}

/** Rebuilds a prepared request from PreparedJob.save() over the same guest RAM. */
export function revivePreparedJob(ram: GuestRam, st: PreparedJobState): PreparedJob {
  checkCommon(st);
  switch (st.kind) {
    case 'zip-compress':
    case 'zip-decompress':
      return reviveZipJob(ram, st as ZipJobState);
    case 'sec-cipher':
    case 'sec-hmac':
      return reviveSecJob(ram, st as CipherJobState | HmacJobState);
    case 'hpre':
      return reviveHpreJob(ram, st as HpreJobState);
    default:
      return fail('EINVAL', `unknown saved request kind '${st.kind}'`);
  }
}
