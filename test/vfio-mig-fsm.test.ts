// The v2 state machine (vfio-uapi-and-migration.md sections 3 and 7), checked against an
// independent shortest-path search over the arcs a driver implements for each flag set.
import { describe, expect, it } from 'vitest';
import { migGetNextState, migPath } from '../src/vfio/mig-fsm.js';
import { KernelError } from '../src/uapi/errno.js';

const [ERROR, STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P] = [0, 1, 2, 3, 4, 5, 6, 7];
const F_STOP_COPY = 1, F_P2P = 2, F_PRE_COPY = 4;
const NAMES = ['ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'];

/** Arcs a driver implements (section 3 "mandatory arcs" and the P2P / PRE_COPY additions). */
function arcs(flags: number): Array<[number, number]> {
  const a: Array<[number, number]> = [
    [STOP, STOP_COPY], [STOP_COPY, STOP], [STOP, RESUMING], [RESUMING, STOP],
  ];
  if (flags & F_P2P) a.push([RUNNING, RUNNING_P2P], [RUNNING_P2P, RUNNING], [RUNNING_P2P, STOP], [STOP, RUNNING_P2P]);
  else a.push([RUNNING, STOP], [STOP, RUNNING]);
  if (flags & F_PRE_COPY) {
    a.push([RUNNING, PRE_COPY], [PRE_COPY, RUNNING]);
    if (flags & F_P2P) {
      a.push([PRE_COPY, PRE_COPY_P2P], [PRE_COPY_P2P, PRE_COPY], [PRE_COPY_P2P, STOP_COPY],
        [RUNNING_P2P, PRE_COPY_P2P], [PRE_COPY_P2P, RUNNING_P2P]);
    } else {
      a.push([PRE_COPY, STOP_COPY]);
    }
  }
  return a;
}

function supported(flags: number, s: number): boolean {
  if (s === ERROR) return false;
  if (s === RUNNING_P2P) return (flags & F_P2P) !== 0;
  if (s === PRE_COPY) return (flags & F_PRE_COPY) !== 0;
  if (s === PRE_COPY_P2P) return (flags & (F_PRE_COPY | F_P2P)) === (F_PRE_COPY | F_P2P);
  return true;
}

const isPreCopy = (s: number) => s === PRE_COPY || s === PRE_COPY_P2P;

/** Shortest legal path length, or -1: interior states may not be RESUMING or STOP_COPY, and
 * may be pre-copy states only when the walk starts in one; STOP_COPY never goes back to PRE_COPY*. */
function shortest(flags: number, cur: number, target: number): number {
  if (cur === STOP_COPY && isPreCopy(target)) return -1;
  const edges = arcs(flags);
  const dist = new Map<number, number>([[cur, 0]]);
  const queue = [cur];
  while (queue.length) {
    const s = queue.shift()!;
    for (const [from, to] of edges) {
      if (from !== s || dist.has(to)) continue;
      if (to !== target) {
        if (to === RESUMING || to === STOP_COPY) continue;
        if (isPreCopy(to) && !isPreCopy(cur)) continue;
      }
      dist.set(to, dist.get(s)! + 1);
      queue.push(to);
    }
  }
  return dist.get(target) ?? -1;
}

const FLAG_SETS = [F_STOP_COPY, F_STOP_COPY | F_P2P, F_STOP_COPY | F_PRE_COPY, F_STOP_COPY | F_P2P | F_PRE_COPY];

describe('migration v2 FSM (spec section 7)', () => {
  for (const flags of FLAG_SETS) {
    const allowed = new Set(arcs(flags).map(([a, b]) => a * 8 + b));
    for (let cur = 0; cur < 8; cur++) {
      for (let target = 0; target < 8; target++) {
        it(`flags ${flags}: ${NAMES[cur]} -> ${NAMES[target]}`, () => {
          if (!supported(flags, cur) || !supported(flags, target)) {
            expect(() => migGetNextState(flags, cur, target)).toThrowError(KernelError);
            return;
          }
          const want = cur === target ? 0 : shortest(flags, cur, target);
          if (want < 0) {
            expect(() => migPath(flags, cur, target)).toThrowError(/EINVAL/);
            return;
          }
          const path = migPath(flags, cur, target);
          expect(path.length).toBe(want);
          let s = cur;
          for (const n of path) {
            expect(allowed.has(s * 8 + n), `${NAMES[s]}->${NAMES[n]} is not an arc`).toBe(true);
            s = n;
          }
          expect(s).toBe(target);
        });
      }
    }
  }

  it('walks RUNNING -> STOP_COPY as RUNNING->STOP, STOP->STOP_COPY without P2P', () => {
    expect(migPath(F_STOP_COPY, RUNNING, STOP_COPY)).toEqual([STOP, STOP_COPY]);
  });
  it('walks PRE_COPY -> STOP_COPY directly with PRE_COPY but no P2P', () => {
    expect(migPath(F_STOP_COPY | F_PRE_COPY, PRE_COPY, STOP_COPY)).toEqual([STOP_COPY]);
  });
  it('goes through PRE_COPY_P2P when P2P is supported', () => {
    expect(migPath(F_STOP_COPY | F_P2P | F_PRE_COPY, PRE_COPY, STOP_COPY)).toEqual([PRE_COPY_P2P, STOP_COPY]);
  });
  it('refuses STOP_COPY -> PRE_COPY and stops on ERROR instead of looping', () => {
    expect(() => migGetNextState(F_STOP_COPY | F_PRE_COPY, STOP_COPY, PRE_COPY)).toThrowError(/EINVAL/);
    expect(() => migGetNextState(F_STOP_COPY | F_P2P | F_PRE_COPY, STOP_COPY, PRE_COPY_P2P)).toThrowError(/EINVAL/);
  });
  it('rejects out-of-range states and a device without STOP_COPY', () => {
    expect(() => migGetNextState(F_STOP_COPY, 8, STOP)).toThrowError(/EINVAL/);
    expect(() => migGetNextState(F_STOP_COPY, STOP, -1)).toThrowError(/EINVAL/);
    expect(() => migGetNextState(0, RUNNING, STOP)).toThrowError(/EINVAL/);
  });
});
