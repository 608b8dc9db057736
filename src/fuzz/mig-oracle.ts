/**
 * An independent model of the v2 migration uAPI rules the campaigns check against
 * (vfio-uapi-and-migration.md section 7, hisi-acc-vfio-pci.md section 6), written from the
 * spec's table rather than imported from src/vfio/mig-fsm.ts, so a bug there cannot hide.
 */
import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY,
  VFIO_DEVICE_STATE_PRE_COPY_P2P as PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING as RESUMING,
  VFIO_DEVICE_STATE_RUNNING as RUNNING, VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P,
  VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY, VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY,
} from '../uapi/vfio.js';

/** Column/row order of the spec's table. */
const ORDER = [STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P, ERROR] as const;
const S = STOP, R = RUNNING, SC = STOP_COPY, RS = RESUMING, RP = RUNNING_P2P, PC = PRE_COPY, PP = PRE_COPY_P2P, E = ERROR;
/** table[cur][new], both in ORDER. */
const TABLE: readonly (readonly number[])[] = [
  [S, RP, SC, RS, RP, RP, RP, E],
  [RP, R, RP, RP, RP, PC, RP, E],
  [S, S, SC, S, S, E, E, E],
  [S, S, S, RS, S, S, S, E],
  [S, R, S, S, RP, R, PP, E],
  [R, R, PP, R, R, PC, PP, E],
  [RP, RP, SC, RP, RP, PC, PP, E],
  [E, E, E, E, E, E, E, E],
];

function col(state: number): number {
  return ORDER.indexOf(state as (typeof ORDER)[number]);
}

/** The migration flags a state needs (section 7); ERROR needs them all, i.e. is never entered. */
function required(state: number): number {
  switch (state) {
    case RUNNING_P2P: return VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P;
    case PRE_COPY: return VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;
    case PRE_COPY_P2P: return VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;
    case ERROR: return ~0 >>> 0;
    default: return VFIO_MIGRATION_STOP_COPY;
  }
}

function supported(flags: number, state: number): boolean {
  return col(state) >= 0 && (required(state) & flags) >>> 0 === required(state);
}

/**
 * The arcs the core walks from `cur` to `target`, or null when the request is EINVAL
 * (a state out of range or unsupported, or the path runs into ERROR).
 */
export function migPath(flags: number, cur: number, target: number): [number, number][] | null {
  if (!supported(flags, cur) || !supported(flags, target)) return null;
  const arcs: [number, number][] = [];
  let at = cur;
  while (at !== target) {
    let next = TABLE[col(at)]![col(target)]!;
    while (next !== ERROR && !supported(flags, next)) next = TABLE[col(next)]![col(target)]!;
    if (next === ERROR) return null;
    arcs.push([at, next]);
    at = next;
    if (arcs.length > 8) return null;
  }
  return arcs;
}

/** Arcs after which the driver hands out a data fd (hisi-acc-vfio-pci.md section 6). */
export function opensFile(arc: readonly [number, number]): 'save' | 'resume' | null {
  const [a, b] = arc;
  if ((a === RUNNING && b === PRE_COPY) || (a === STOP && b === STOP_COPY)) return 'save';
  if (a === STOP && b === RESUMING) return 'resume';
  return null;
}

/** Arcs that end the life of the data fds (leaving a saving or resuming state). */
export function closesFiles(arc: readonly [number, number]): boolean {
  const [a, b] = arc;
  return (a === STOP_COPY && b === STOP) || (a === PRE_COPY && b === RUNNING) || (a === RESUMING && b === STOP);
}

export const ALL_STATES = ORDER;
