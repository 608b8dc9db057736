/**
 * The fd table and the data fd plumbing every migration arc goes through
 * (vfio-uapi-and-migration.md section 3) keep their semantics on the fast paths:
 * - fd numbers: lowest free number from 3 up, EBADF for anything not open;
 * - MIG_DEVICE_STATE works on the ioctl buffer in place (state echoed, data_fd, EFAULT for a
 *   buffer that does not hold the struct);
 * - a device closed after many save cycles still disables every data fd the user kept;
 * - a save file that takes over the driver's buffer never changes it.
 */
import { describe, expect, it } from 'vitest';
import { Errno } from '../src/uapi/errno.js';
import {
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE as DEVICE_STATE,
  VFIO_DEVICE_FEATURE_SET as SET,
  VFIO_DEVICE_FEATURE_GET as GET,
  VFIO_DEVICE_STATE_RUNNING,
  VFIO_DEVICE_STATE_STOP,
  VFIO_DEVICE_STATE_STOP_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from '../src/uapi/vfio.js';
import { EventFd, FdTable } from '../src/vfio/fd.js';
import { MigrationSaveFile } from '../src/vfio/pci-core/mig-file.js';
import type { VfioPciVariantOps } from '../src/vfio/pci-core/ops.js';
import { accRig, feature, openCore, s32, u32 } from './vfio-pcicore-helpers.js';

describe('FdTable', () => {
  it('hands out the lowest free number from 3, reuses closed ones, counts open fds', () => {
    const t = new FdTable();
    const a = new EventFd();
    const b = new EventFd();
    const c = new EventFd();
    expect([t.install(a), t.install(b), t.install(c)]).toEqual([3, 4, 5]);
    expect(t.size).toBe(3);
    expect(t.close(4)).toBe(0);
    expect(b.closed).toBe(true);
    expect(t.size).toBe(2);
    expect(t.install(new EventFd())).toBe(4);
    expect(t.close(5)).toBe(0);
    expect(t.close(3)).toBe(0);
    expect(t.install(new EventFd())).toBe(3);
    expect(t.install(new EventFd())).toBe(5);
    expect(t.install(new EventFd())).toBe(6);
    expect(t.size).toBe(4);
  });

  it('EBADF / undefined for closed, never-opened and malformed numbers', () => {
    const t = new FdTable();
    const fd = t.install(new EventFd());
    expect(t.close(fd)).toBe(0);
    expect(t.close(fd)).toBe(-Errno.EBADF);
    for (const bad of [fd, 0, 2, 7, -1, 3.5, 2 ** 40, Number.NaN]) {
      expect(t.get(bad)).toBeUndefined();
      expect(t.close(bad)).toBe(-Errno.EBADF);
    }
    expect(t.size).toBe(0);
  });

  it('a file closed behind the table is not returned but its number stays taken until closed', () => {
    const t = new FdTable();
    const f = new EventFd();
    const fd = t.install(f);
    expect(f.close()).toBe(0);
    expect(t.get(fd)).toBeUndefined();
    expect(t.install(new EventFd())).toBe(fd + 1);
    expect(t.close(fd)).toBe(0);
    expect(t.install(new EventFd())).toBe(fd);
  });

  it('thousands of install/close pairs keep using the same numbers', () => {
    const t = new FdTable();
    t.install(new EventFd());
    for (let i = 0; i < 5000; i++) {
      const fd = t.install(new EventFd());
      expect(fd).toBe(4);
      expect(t.close(fd)).toBe(0);
    }
    expect(t.size).toBe(1);
  });
});

/** A migration variant whose save files are neither disabled on STOP nor ever closed by it. */
function keepFilesVariant() {
  const st = { state: VFIO_DEVICE_STATE_RUNNING as number };
  const variant: VfioPciVariantOps = {
    name: 'keep-files',
    migration: {
      flags: VFIO_MIGRATION_STOP_COPY,
      getState: () => st.state,
      getDataSize: () => 3,
      setState(_core, target) {
        let file: MigrationSaveFile | null = null;
        // RUNNING <-> STOP <-> STOP_COPY only (the tests never ask for more).
        if (target === VFIO_DEVICE_STATE_STOP_COPY) {
          file = new MigrationSaveFile('stopcopy');
          file.append(Uint8Array.of(1, 2, 3));
          file.finish();
        }
        st.state = target;
        return file;
      },
    },
  };
  return variant;
}

const mig8 = (state: number) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setUint32(0, state, true);
  new DataView(b.buffer).setInt32(4, 0x55, true);
  return b;
};

describe('MIG_DEVICE_STATE on the ioctl buffer (spec 2)', () => {
  it('SET echoes the state and returns data_fd; GET answers data_fd -1; a short buffer is EFAULT', () => {
    const rig = accRig(1);
    const { file } = openCore(rig.acc.vf(1)!, rig.process, keepFilesVariant());
    const set = feature(file, SET | DEVICE_STATE, mig8(VFIO_DEVICE_STATE_STOP_COPY));
    expect(set.ret).toBe(0);
    expect(u32(set.payload, 0)).toBe(VFIO_DEVICE_STATE_STOP_COPY);
    expect(rig.process.fds.get(s32(set.payload, 4))).toBeInstanceOf(MigrationSaveFile);
    const get = feature(file, GET | DEVICE_STATE, mig8(0));
    expect([get.ret, u32(get.payload, 0), s32(get.payload, 4)]).toEqual([0, VFIO_DEVICE_STATE_STOP_COPY, -1]);
    // argsz claims the whole struct, the buffer ends after 4 payload bytes: copy_from_user fails.
    const short = feature(file, SET | DEVICE_STATE, Uint8Array.of(1, 0, 0, 0), 16);
    expect(short.ret).toBe(-Errno.EFAULT);
    expect([...short.payload]).toEqual([1, 0, 0, 0]);
    expect(u32(feature(file, GET | DEVICE_STATE, mig8(0)).payload, 0)).toBe(VFIO_DEVICE_STATE_STOP_COPY);
  });
});

describe('data fds over many save cycles', () => {
  it('closing the device disables every data fd the user kept open, after 200 cycles of closed ones', () => {
    const rig = accRig(1);
    const { file } = openCore(rig.acc.vf(1)!, rig.process, keepFilesVariant());
    const fds = rig.process.fds;
    const kept: number[] = [];
    let closedEarly: MigrationSaveFile | null = null;
    for (let i = 0; i < 200; i++) {
      const r = feature(file, SET | DEVICE_STATE, mig8(VFIO_DEVICE_STATE_STOP_COPY));
      expect(r.ret).toBe(0);
      const fd = s32(r.payload, 4);
      if (i === 1) closedEarly = fds.get(fd) as MigrationSaveFile;
      // Every 50th fd stays open; the others are closed by the user (the variant never
      // disables them, so the core must still disable the open ones at close).
      if (i % 50 === 0) kept.push(fd);
      else expect(fds.close(fd)).toBe(0);
      expect(feature(file, SET | DEVICE_STATE, mig8(VFIO_DEVICE_STATE_STOP)).ret).toBe(0);
    }
    const files = kept.map((fd) => fds.get(fd) as MigrationSaveFile);
    expect(files.map((f) => f.disabled)).toEqual([false, false, false, false]);
    expect(files[3]!.read(new Uint8Array(3))).toBe(3);
    expect(closedEarly!.disabled).toBe(false);
    file.close();
    // vfio_pci_core_close_device disables the device's data files, closed by the user or not.
    expect(closedEarly!.disabled).toBe(true);
    for (const f of files) {
      expect(f.disabled).toBe(true);
      expect(f.read(new Uint8Array(3))).toBe(-Errno.ENODEV);
    }
  });
});

describe('MigrationSaveFile.appendOwned', () => {
  it('serves the given bytes without copying them and never writes to them', () => {
    const owned = Uint8Array.of(10, 20, 30, 40);
    const f = new MigrationSaveFile('precopy');
    f.appendOwned(owned);
    f.append(Uint8Array.of(50, 60));
    f.enterStopCopy();
    f.append(Uint8Array.of(70));
    f.finish();
    expect([...owned]).toEqual([10, 20, 30, 40]);
    const out = new Uint8Array(16);
    expect(f.read(out)).toBe(7);
    expect([...out.subarray(0, 7)]).toEqual([10, 20, 30, 40, 50, 60, 70]);
    expect(f.read(out)).toBe(0);
    f.disable();
    expect([...owned]).toEqual([10, 20, 30, 40]);
  });

  it('after other data it appends a copy; a finished or disabled file refuses (EINVAL / ENODEV)', () => {
    const f = new MigrationSaveFile('stopcopy');
    f.append(Uint8Array.of(1));
    const more = Uint8Array.of(2, 3);
    f.appendOwned(more);
    more[0] = 99;
    const out = new Uint8Array(8);
    expect(f.read(out)).toBe(3);
    expect([...out.subarray(0, 3)]).toEqual([1, 2, 3]);
    f.finish();
    expect(() => f.appendOwned(Uint8Array.of(4))).toThrow(/EINVAL/);
    const g = new MigrationSaveFile('stopcopy');
    g.disable();
    expect(() => g.appendOwned(Uint8Array.of(4))).toThrow(/ENODEV/);
  });
});
