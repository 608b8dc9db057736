/**
 * The v2 state machine of hisi-acc-vfio-pci (hisi-acc-vfio-pci.md section 6 with the core
 * table of vfio-uapi-and-migration.md section 7): flags STOP_COPY|PRE_COPY, MIG_DATA_SIZE 176,
 * every (cur, new) pair of the supported states walked with the arcs the spec's table gives
 * (written out here by hand), unsupported states EINVAL, data fds opened and disabled at the
 * right arcs, PRE_COPY with PRECOPY_INFO and its temporary end.
 */
import { describe, expect, it } from 'vitest';
import { encodeAccVfData } from '../src/drivers/hisi-acc/acc-vf-data.js';
import {
  FEATURE_GET, FEATURE_PROBE, FEATURE_SET, F_MIGRATION, F_MIG_DATA_SIZE, F_MIG_DEVICE_STATE, S, STATE_NAME,
  VFIO_DEVICE_RESET, drain, errno, feature, getMigState, precopyInfo, rig, setState, u64,
} from './hisi-acc-helpers.js';

const { STOP, RUNNING, STOP_COPY, RESUMING, PRE_COPY } = S;
const SUPPORTED = [STOP, RUNNING, STOP_COPY, RESUMING, PRE_COPY];

/** Arcs for every pair without P2P, from the spec's table (RUNNING_P2P / PRE_COPY_P2P skipped). */
const PATHS: Record<number, Record<number, number[] | 'EINVAL'>> = {
  [STOP]: { [STOP]: [], [RUNNING]: [RUNNING], [STOP_COPY]: [STOP_COPY], [RESUMING]: [RESUMING], [PRE_COPY]: [RUNNING, PRE_COPY] },
  [RUNNING]: { [STOP]: [STOP], [RUNNING]: [], [STOP_COPY]: [STOP, STOP_COPY], [RESUMING]: [STOP, RESUMING], [PRE_COPY]: [PRE_COPY] },
  [STOP_COPY]: { [STOP]: [STOP], [RUNNING]: [STOP, RUNNING], [STOP_COPY]: [], [RESUMING]: [STOP, RESUMING], [PRE_COPY]: 'EINVAL' },
  [RESUMING]: { [STOP]: [STOP], [RUNNING]: [STOP, RUNNING], [STOP_COPY]: [STOP, STOP_COPY], [RESUMING]: [], [PRE_COPY]: [STOP, RUNNING, PRE_COPY] },
  [PRE_COPY]: { [STOP]: [RUNNING, STOP], [RUNNING]: [RUNNING], [STOP_COPY]: [STOP_COPY], [RESUMING]: [RUNNING, STOP, RESUMING], [PRE_COPY]: [] },
};

/** States whose arrival opens a data fd (when entered by the named arc's previous state). */
function opensFd(prev: number, next: number): boolean {
  return next === RESUMING || next === PRE_COPY || (next === STOP_COPY && prev !== PRE_COPY);
}

describe('v2 migration features (spec 6)', () => {
  it('MIGRATION reports STOP_COPY|PRE_COPY and MIG_DATA_SIZE 176', () => {
    const { vm } = rig({ vm: { start: false } });
    const dev = vm!.device;
    const m = feature(dev, FEATURE_GET | F_MIGRATION, new Uint8Array(8));
    expect(m.ret).toBe(0);
    expect(u64(m.payload, 0)).toBe(1n | 4n);
    const d = feature(dev, FEATURE_GET | F_MIG_DATA_SIZE, new Uint8Array(8));
    expect(d.ret).toBe(0);
    expect(u64(d.payload, 0)).toBe(176n);
    expect(feature(dev, FEATURE_PROBE | FEATURE_SET | F_MIG_DEVICE_STATE).ret).toBe(0);
    expect(getMigState(dev)).toBe(RUNNING);
  });

  it('walks every (cur, new) pair with the arcs of the spec table', () => {
    const { host, vm } = rig();
    const dev = vm!.device;
    const mig = host.migDevice(1);
    // 40 bytes of match data of this very VF, to give RESUMING something loadable.
    const p = setState(dev, PRE_COPY);
    const match = drain(host.fds.get(p.fd)!).bytes;
    expect(match.length).toBe(40);
    expect(setState(dev, RUNNING).ret).toBe(0);
    const reach: Record<number, number[]> = {
      [RUNNING]: [], [STOP]: [STOP], [STOP_COPY]: [STOP_COPY], [RESUMING]: [RESUMING], [PRE_COPY]: [PRE_COPY],
    };
    let checked = 0;
    for (const cur of SUPPORTED) {
      for (const nw of SUPPORTED) {
        expect(dev.ioctl(VFIO_DEVICE_RESET)).toBe(0);
        expect(getMigState(dev)).toBe(RUNNING);
        for (const s of reach[cur]!) expect(setState(dev, s).ret).toBe(0);
        if (cur === RESUMING) {
          const fd = mig.dataFiles[0]!;
          expect(fd.write(match)).toBe(40);
        }
        expect(getMigState(dev)).toBe(cur);
        mig.arcs.length = 0;
        const want = PATHS[cur]![nw]!;
        const r = setState(dev, nw);
        const label = `${STATE_NAME[cur]} -> ${STATE_NAME[nw]}`;
        if (want === 'EINVAL') {
          expect(r.ret, label).toBe(errno('EINVAL'));
          expect(getMigState(dev), label).toBe(cur);
          expect(mig.arcs, label).toEqual([]);
        } else {
          expect(r.ret, label).toBe(0);
          expect(getMigState(dev), label).toBe(nw);
          const from = [cur, ...want.slice(0, -1)];
          expect(mig.arcs.map((a) => [a.from, a.to]), label).toEqual(want.map((s, i) => [from[i], s]));
          expect(mig.arcs.every((a) => a.ok), label).toBe(true);
          const last = want.length > 0 ? want[want.length - 1]! : -1;
          const prev = want.length > 1 ? want[want.length - 2]! : cur;
          expect(r.fd >= 0, label).toBe(want.length > 0 && opensFd(prev, last));
        }
        checked++;
      }
    }
    expect(checked).toBe(25);
  });

  it('rejects P2P states, ERROR and out-of-range states with EINVAL, state unchanged', () => {
    const { vm } = rig({ vm: { start: false } });
    const dev = vm!.device;
    for (const s of [S.RUNNING_P2P, S.PRE_COPY_P2P, S.ERROR, 8, 0xffffffff]) {
      expect(setState(dev, s).ret).toBe(errno('EINVAL'));
      expect(getMigState(dev)).toBe(RUNNING);
    }
  });
});

describe('data fds (spec 6, uAPI 3)', () => {
  it('PRE_COPY: match data readable, PRECOPY_INFO initial = total - pos, dirty 0, ENOMSG at the temporary end', () => {
    const { host, vm } = rig();
    const dev = vm!.device;
    const r = setState(dev, PRE_COPY);
    expect(r.ret).toBe(0);
    const f = host.fds.get(r.fd)!;
    let info = precopyInfo(f);
    expect(info).toEqual({ ret: 0, initial: 40n, dirty: 0n });
    const b = new Uint8Array(16);
    expect(f.read(b)).toBe(16);
    info = precopyInfo(f);
    expect([info.initial, info.dirty]).toEqual([24n, 0n]);
    expect(f.read(new Uint8Array(64))).toBe(24);
    expect(precopyInfo(f).initial).toBe(0n);
    expect(f.read(new Uint8Array(8))).toBe(errno('ENOMSG'));
    // PRE_COPY -> STOP_COPY: no new fd, the rest of the state comes through the same one.
    const s = setState(dev, STOP_COPY);
    expect(s.ret).toBe(0);
    expect(s.fd).toBe(-1);
    expect(precopyInfo(f).ret).toBe(errno('EINVAL'));
    const rest = drain(f);
    expect(rest.bytes.length).toBe(136);
    expect(rest.last).toBe(0);
    // Leaving STOP_COPY disables the fd.
    expect(setState(dev, STOP).ret).toBe(0);
    expect(f.read(new Uint8Array(8))).toBe(errno('ENODEV'));
  });

  it('PRE_COPY -> RUNNING closes the data fd', () => {
    const { host, vm } = rig();
    const r = setState(vm!.device, PRE_COPY);
    const f = host.fds.get(r.fd)!;
    expect(setState(vm!.device, RUNNING).ret).toBe(0);
    expect(f.read(new Uint8Array(8))).toBe(errno('ENODEV'));
    expect(precopyInfo(f).ret).toBe(errno('EINVAL'));
  });

  it('the saving fd is read-only and a stream, the resuming fd write-only', () => {
    const { host, vm } = rig();
    const dev = vm!.device;
    const r = setState(dev, STOP_COPY);
    const f = host.fds.get(r.fd)!;
    expect(f.write(new Uint8Array(4))).toBe(errno('EBADF'));
    expect(f.read(new Uint8Array(4), 8)).toBe(errno('ESPIPE'));
    const all = drain(f);
    expect(all.bytes.length).toBe(176);
    expect(all.last).toBe(0);
    const res = setState(dev, RESUMING);
    expect(res.ret).toBe(0);
    expect(res.fd).toBeGreaterThanOrEqual(0);
    const w = host.fds.get(res.fd);
    expect(w).toBeDefined();
    expect(w!.read(new Uint8Array(4))).toBe(errno('EBADF'));
    expect(w!.write(all.bytes, 4)).toBe(errno('ESPIPE'));
    expect(w!.write(encodeAccVfData(host.migDevice(1).lastMigf!.data))).toBe(176);
  });
});
