/**
 * How a migration failed, in one shape both sides and the CLI can print and serialise:
 * where (the step), what (a sentence), and the errno or stream/transport code when there is
 * one. A MigrationError is thrown inside the orchestrator and turned into a result at the
 * edge; it never escapes to a caller.
 */
import { KernelError, errnoName } from '../../uapi/errno.js';
import { StreamError } from '../stream/errors.js';
import { TransportError } from '../transport/types.js';

export type MigrationStep =
  | 'probe'
  | 'setup'
  | 'precopy'
  | 'stop'
  | 'stop-copy'
  | 'transfer'
  | 'destination'
  | 'load'
  | 'switchover'
  | 'cleanup';

export interface MigrationFailure {
  step: MigrationStep;
  message: string;
  /** Positive errno when a syscall failed. */
  errno?: number;
  /** Errno name, StreamError code or TransportError code. */
  code?: string;
  /** Which side saw it first. */
  side: 'source' | 'destination';
}

export class MigrationError extends Error {
  readonly step: MigrationStep;
  readonly errno: number | undefined;
  readonly code: string | undefined;

  constructor(step: MigrationStep, message: string, opts: { errno?: number; code?: string } = {}) {
    super(message);
    this.name = 'MigrationError';
    this.step = step;
    this.errno = opts.errno;
    this.code = opts.code ?? (opts.errno !== undefined ? errnoName(opts.errno) : undefined);
  }
}

/** Any error as a failure record (unknown errors keep their message: they are simulator bugs). */
export function toFailure(e: unknown, step: MigrationStep, side: 'source' | 'destination'): MigrationFailure {
  if (e instanceof MigrationError) {
    const f: MigrationFailure = { step: e.step, message: e.message, side };
    if (e.errno !== undefined) f.errno = e.errno;
    if (e.code !== undefined) f.code = e.code;
    return f;
  }
  if (e instanceof KernelError) return { step, message: e.message, errno: e.errno, code: e.code, side };
  if (e instanceof StreamError) return { step, message: `bad migration stream: ${e.message}`, code: e.code, side };
  if (e instanceof TransportError) return { step, message: `transport: ${e.message}`, code: e.code, side };
  const msg = e instanceof Error ? e.message : String(e);
  return { step, message: `internal error: ${msg}`, side };
}

/** One line for humans: "stop-copy: STOP_COPY failed: EBUSY (source)". */
export function describeFailure(f: MigrationFailure): string {
  return `${f.step}: ${f.message} (${f.side})`;
}
