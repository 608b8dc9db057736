/**
 * Migration data fd base classes (vfio-uapi-and-migration.md section 3): STOP_COPY ends with
 * read() == 0, PRE_COPY's temporary end is ENOMSG, VFIO_MIG_GET_PRECOPY_INFO only in
 * PRE_COPY (else EINVAL), I/O on a disabled file is ENODEV, the fds are streams.
 */
import { describe, expect, it } from 'vitest';
import { Errno, fail } from '../src/uapi/errno.js';
import { VFIO_DEVICE_GET_INFO, VFIO_MIG_GET_PRECOPY_INFO } from '../src/uapi/vfio.js';
import { vfio_precopy_info } from '../src/uapi/structs.js';
import { MigrationResumeFile, MigrationSaveFile } from '../src/vfio/pci-core/mig-file.js';

function precopyInfo(f: MigrationSaveFile, argsz = 24, len = 24) {
  const full = vfio_precopy_info.encode({ argsz, flags: 0 });
  const buf = full.subarray(0, len);
  const ret = f.ioctl(VFIO_MIG_GET_PRECOPY_INFO, buf);
  return { ret, info: vfio_precopy_info.decode(full) };
}

const bytes = (...v: number[]) => Uint8Array.from(v);

describe('MigrationSaveFile', () => {
  it('PRE_COPY: drains what is there, then ENOMSG; PRECOPY_INFO counts the unread bytes', () => {
    const f = new MigrationSaveFile('precopy');
    f.append(bytes(1, 2, 3, 4, 5, 6, 7, 8, 9, 10));
    expect(precopyInfo(f).info.initial_bytes).toBe(10n);
    const b = new Uint8Array(4);
    expect(f.read(b)).toBe(4);
    expect([...b]).toEqual([1, 2, 3, 4]);
    const { ret, info } = precopyInfo(f);
    expect(ret).toBe(0);
    expect([info.initial_bytes, info.dirty_bytes]).toEqual([6n, 0n]);
    const big = new Uint8Array(100);
    expect(f.read(big)).toBe(6);
    expect([...big.subarray(0, 6)]).toEqual([5, 6, 7, 8, 9, 10]);
    expect(f.read(big)).toBe(-Errno.ENOMSG);
    f.append(bytes(11));
    expect(f.read(big)).toBe(1);
    expect(f.read(big)).toBe(-Errno.ENOMSG);
    expect(f.read(new Uint8Array(0))).toBe(0);
  });

  it('STOP_COPY on the same fd: PRECOPY_INFO is EINVAL, EAGAIN until finished, then 0 at the end', () => {
    const f = new MigrationSaveFile('precopy');
    f.append(bytes(1));
    f.enterStopCopy();
    expect(precopyInfo(f).ret).toBe(-Errno.EINVAL);
    const b = new Uint8Array(8);
    expect(f.read(b)).toBe(1);
    expect(f.read(b)).toBe(-Errno.EAGAIN);
    f.append(bytes(2, 3));
    f.finish();
    expect(f.read(b)).toBe(2);
    expect([...b.subarray(0, 2)]).toEqual([2, 3]);
    expect(f.read(b)).toBe(0);
    expect(f.read(b)).toBe(0);
    expect([f.totalLength, f.position, f.pending]).toEqual([3, 3, 0]);
    expect(() => f.append(bytes(4))).toThrow(/finished/);
  });

  it('a disabled file fails reads with ENODEV and PRECOPY_INFO with EINVAL (no longer in PRE_COPY)', () => {
    const f = new MigrationSaveFile('precopy');
    f.append(bytes(1, 2));
    f.disable();
    expect(f.disabled).toBe(true);
    expect(f.read(new Uint8Array(4))).toBe(-Errno.ENODEV);
    expect(precopyInfo(f).ret).toBe(-Errno.EINVAL);
    expect(() => f.append(bytes(3))).toThrow(/disabled/);
    expect(f.close()).toBe(0);
    expect(f.read(new Uint8Array(4))).toBe(-Errno.EBADF);
  });

  it('stream, read-only, one ioctl: pread ESPIPE, write EBADF, other ioctls ENOTTY, argsz/short buffer', () => {
    const f = new MigrationSaveFile('precopy');
    f.append(bytes(1, 2, 3));
    expect(f.read(new Uint8Array(2), 1)).toBe(-Errno.ESPIPE);
    expect(f.write(bytes(1))).toBe(-Errno.EBADF);
    expect(f.ioctl(VFIO_DEVICE_GET_INFO, new Uint8Array(16))).toBe(-Errno.ENOTTY);
    expect(precopyInfo(f, 23).ret).toBe(-Errno.EINVAL);
    expect(precopyInfo(f, 24, 20).ret).toBe(-Errno.EFAULT);
    expect(f.ioctl(VFIO_MIG_GET_PRECOPY_INFO)).toBe(-Errno.EFAULT);
    expect(f.pending).toBe(3);
  });

  it('a subclass can report dirty bytes (re-sent state) through precopySizes', () => {
    class Dirty extends MigrationSaveFile {
      protected override precopySizes() {
        return { initial: 40, dirty: 136 };
      }
    }
    const { ret, info } = precopyInfo(new Dirty('precopy'));
    expect(ret).toBe(0);
    expect([info.initial_bytes, info.dirty_bytes]).toEqual([40n, 136n]);
  });
});

describe('MigrationResumeFile', () => {
  it('collects written chunks in order; maxBytes bounds the stream with ENOMEM', () => {
    const f = new MigrationResumeFile(6);
    expect(f.write(bytes(1, 2, 3))).toBe(3);
    expect(f.write(bytes(4, 5))).toBe(2);
    expect(f.write(bytes(6, 7))).toBe(-Errno.ENOMEM);
    expect(f.write(bytes(6))).toBe(1);
    expect([...f.received]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(f.write(new Uint8Array(0))).toBe(0);
  });

  it('write-only stream: read EBADF, pwrite ESPIPE, ENODEV once disabled (ENOMEM is checked first)', () => {
    const f = new MigrationResumeFile(4);
    expect(f.read(new Uint8Array(4))).toBe(-Errno.EBADF);
    expect(f.write(bytes(1), 3)).toBe(-Errno.ESPIPE);
    f.disable();
    expect(f.write(bytes(1))).toBe(-Errno.ENODEV);
    expect(f.write(bytes(1, 2, 3, 4, 5))).toBe(-Errno.ENOMEM);
    expect(f.length).toBe(0);
    expect(f.ioctl(VFIO_MIG_GET_PRECOPY_INFO, new Uint8Array(24))).toBe(-Errno.ENOTTY);
  });

  it('onData can refuse a chunk: the write fails and nothing is stored', () => {
    class Checked extends MigrationResumeFile {
      protected override onData(chunk: Uint8Array, offset: number): void {
        if (offset === 0 && chunk[0] !== 0xaa) fail('EINVAL', 'bad magic');
      }
    }
    const f = new Checked();
    expect(f.write(bytes(0x55, 1))).toBe(-Errno.EINVAL);
    expect(f.length).toBe(0);
    expect(f.write(bytes(0xaa, 1))).toBe(2);
    expect(f.write(bytes(0x55))).toBe(1);
    expect([...f.received]).toEqual([0xaa, 1, 0x55]);
  });
});
