/**
 * The VFIO migration v2 state machine of the core (vfio_mig_get_next_state), ported from the
 * table in vfio-uapi-and-migration.md section 7. A driver implements single arcs; the core
 * picks the next arc towards the requested state. Saving states and RESUMING are never interior
 * steps of a path; STOP_COPY -> PRE_COPY* is refused.
 */
import {
  VFIO_DEVICE_STATE_ERROR as ERROR,
  VFIO_DEVICE_STATE_STOP as STOP,
  VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY,
  VFIO_DEVICE_STATE_RESUMING as RESUMING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P,
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY,
  VFIO_DEVICE_STATE_PRE_COPY_P2P as PRE_COPY_P2P,
  VFIO_MIGRATION_STOP_COPY,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
} from '../uapi/vfio.js';
import { KernelError } from '../uapi/errno.js';

const ALL = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;

/** Migration flags a device must support for a state to be usable (indexed by state). */
const STATE_FLAGS: readonly number[] = (() => {
  const f: number[] = [];
  f[STOP] = VFIO_MIGRATION_STOP_COPY;
  f[RUNNING] = VFIO_MIGRATION_STOP_COPY;
  f[STOP_COPY] = VFIO_MIGRATION_STOP_COPY;
  f[RESUMING] = VFIO_MIGRATION_STOP_COPY;
  f[RUNNING_P2P] = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P;
  f[PRE_COPY] = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;
  f[PRE_COPY_P2P] = ALL;
  f[ERROR] = ~0 >>> 0;
  return f;
})();

/** Column order of the spec's table. */
const ORDER = [STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P, ERROR];
const ROWS: Record<number, number[]> = {
  [STOP]:         [STOP, RUNNING_P2P, STOP_COPY, RESUMING, RUNNING_P2P, RUNNING_P2P, RUNNING_P2P, ERROR],
  [RUNNING]:      [RUNNING_P2P, RUNNING, RUNNING_P2P, RUNNING_P2P, RUNNING_P2P, PRE_COPY, RUNNING_P2P, ERROR],
  [STOP_COPY]:    [STOP, STOP, STOP_COPY, STOP, STOP, ERROR, ERROR, ERROR],
  [RESUMING]:     [STOP, STOP, STOP, RESUMING, STOP, STOP, STOP, ERROR],
  [RUNNING_P2P]:  [STOP, RUNNING, STOP, STOP, RUNNING_P2P, RUNNING, PRE_COPY_P2P, ERROR],
  [PRE_COPY]:     [RUNNING, RUNNING, PRE_COPY_P2P, RUNNING, RUNNING, PRE_COPY, PRE_COPY_P2P, ERROR],
  [PRE_COPY_P2P]: [RUNNING_P2P, RUNNING_P2P, STOP_COPY, RUNNING_P2P, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P, ERROR],
  [ERROR]:        [ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR],
};

/** table[cur][new] as a flat 8x8 array indexed by state numbers. */
const TABLE = new Uint8Array(64);
for (const cur of ORDER) {
  ORDER.forEach((nw, col) => {
    TABLE[cur * 8 + nw] = ROWS[cur]![col]!;
  });
}

export const NUM_MIG_STATES = 8;

function usable(state: number, flags: number): boolean {
  const need = STATE_FLAGS[state]!;
  return (flags & need) === need;
}

/**
 * Next single arc from `cur` towards `target` for a device with migration `flags`.
 * Throws KernelError(EINVAL) when `cur`/`target` are out of range or unsupported, or when the
 * walk hits ERROR (e.g. STOP_COPY -> PRE_COPY). The skip loop stops on ERROR instead of
 * spinning (the upstream bug the spec warns about).
 */
export function migGetNextState(flags: number, cur: number, target: number): number {
  if (!Number.isInteger(cur) || cur < 0 || cur >= NUM_MIG_STATES) throw new KernelError('EINVAL', 'bad current state');
  if (!Number.isInteger(target) || target < 0 || target >= NUM_MIG_STATES) throw new KernelError('EINVAL', 'bad target state');
  if (!usable(cur, flags) || !usable(target, flags)) throw new KernelError('EINVAL', 'state not supported');
  let next = TABLE[cur * 8 + target]!;
  while (next !== ERROR && !usable(next, flags)) next = TABLE[next * 8 + target]!;
  if (next === ERROR) throw new KernelError('EINVAL', 'no path');
  return next;
}

/** The whole path the core would walk from `cur` to `target` (excluding `cur`). */
export function migPath(flags: number, cur: number, target: number): number[] {
  const path: number[] = [];
  let s = cur;
  while (s !== target) {
    s = migGetNextState(flags, s, target);
    path.push(s);
    if (path.length > NUM_MIG_STATES) throw new KernelError('EINVAL', 'path does not converge');
  }
  return path;
}

/** Whether a device with `flags` can be put in `state` at all. */
export function migStateSupported(flags: number, state: number): boolean {
  return Number.isInteger(state) && state >= 0 && state < NUM_MIG_STATES && state !== ERROR && usable(state, flags);
}
