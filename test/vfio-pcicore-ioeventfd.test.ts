/**
 * VFIO_DEVICE_IOEVENTFD (Linux vfio_pci_ioctl_ioeventfd / vfio_pci_ioeventfd): a signalled
 * eventfd writes `data` of 1/2/4/8 bytes at a BAR offset; identity is (BAR, offset, size,
 * data); fd -1 removes; EINVAL/EEXIST/ENODEV/ENOSPC as the kernel.
 */
import { describe, expect, it } from 'vitest';
import { Errno } from '../src/uapi/errno.js';
import {
  VFIO_DEVICE_IOEVENTFD_16,
  VFIO_DEVICE_IOEVENTFD_32,
  VFIO_DEVICE_IOEVENTFD_64,
  VFIO_DEVICE_IOEVENTFD_8,
  VFIO_PCI_INDEX_TO_OFFSET,
} from '../src/uapi/vfio.js';
import { PCI_COMMAND } from '../src/hw/pci/regs.js';
import { VFIO_PCI_IOEVENTFD_MAX } from '../src/vfio/pci-core/ioeventfd.js';
import { cfgWrite, eventfd, ioeventfd, openCore, plainRig } from './vfio-pcicore-helpers.js';

const BAR2 = VFIO_PCI_INDEX_TO_OFFSET(2);

function plain() {
  const rig = plainRig();
  const opened = openCore(rig.fn, rig.process);
  return { ...rig, ...opened, efd: () => eventfd(rig.process) };
}

describe('VFIO_DEVICE_IOEVENTFD', () => {
  it('each signal writes the data once at the BAR offset and consumes the eventfd counter', () => {
    const { file, bar2, efd } = plain();
    const e = efd();
    expect(ioeventfd(file, { flags: VFIO_DEVICE_IOEVENTFD_32, offset: BAR2 + 0x100, data: 0x12345678, fd: e.fd })).toBe(0);
    bar2.accesses.length = 0;
    e.efd.signal();
    expect(bar2.accesses).toEqual([{ op: 'w4', off: 0x100, origin: 'guest' }]);
    expect(bar2.read(0x100, 4, 'test')).toBe(0x12345678);
    expect(e.efd.count).toBe(0n);
    e.efd.signal();
    expect(bar2.accesses.filter((a) => a.op === 'w4').length).toBe(2);
  });

  it('sizes 1, 2 and 8 write that many bytes of data (8 as one transaction)', () => {
    const { file, bar2, efd } = plain();
    const e1 = efd();
    const e2 = efd();
    const e8 = efd();
    expect(ioeventfd(file, { flags: VFIO_DEVICE_IOEVENTFD_8, offset: BAR2 + 0x10, data: 0x1ab, fd: e1.fd })).toBe(0);
    expect(ioeventfd(file, { flags: VFIO_DEVICE_IOEVENTFD_16, offset: BAR2 + 0x20, data: 0xbeefcafe, fd: e2.fd })).toBe(0);
    expect(ioeventfd(file, { flags: VFIO_DEVICE_IOEVENTFD_64, offset: BAR2 + 0x1000, data: 0x0001_0002_0000_0007n, fd: e8.fd })).toBe(0);
    bar2.accesses.length = 0;
    e1.efd.signal();
    e2.efd.signal();
    e8.efd.signal();
    expect(bar2.accesses.map((a) => `${a.op}@${a.off.toString(16)}`)).toEqual(['w1@10', 'w2@20', 'w8@1000']);
    expect(bar2.read(0x10, 1, 'test')).toBe(0xab);
    expect(bar2.read(0x20, 2, 'test')).toBe(0xcafe);
    expect(bar2.read64(0x1000, 'test')).toEqual([7, 0x00010002]);
  });

  it('a signal already pending at registration fires immediately', () => {
    const { file, bar2, efd } = plain();
    const e = efd();
    e.efd.signal(3n);
    expect(ioeventfd(file, { flags: VFIO_DEVICE_IOEVENTFD_32, offset: BAR2 + 0x40, data: 9, fd: e.fd })).toBe(0);
    expect(bar2.read(0x40, 4, 'test')).toBe(9);
    expect(e.efd.count).toBe(0n);
  });

  it('the same tuple twice is EEXIST; fd -1 removes; removing again is ENODEV; no write after removal', () => {
    const { file, bar2, efd } = plain();
    const e = efd();
    const a = { flags: VFIO_DEVICE_IOEVENTFD_32, offset: BAR2 + 0x80, data: 1 };
    expect(ioeventfd(file, { ...a, fd: e.fd })).toBe(0);
    expect(ioeventfd(file, { ...a, fd: e.fd })).toBe(-Errno.EEXIST);
    // Same place, other data: a second ioeventfd.
    expect(ioeventfd(file, { ...a, data: 2, fd: e.fd })).toBe(0);
    expect(ioeventfd(file, { ...a, fd: -1 })).toBe(0);
    expect(ioeventfd(file, { ...a, fd: -1 })).toBe(-Errno.ENODEV);
    bar2.accesses.length = 0;
    e.efd.signal();
    expect(bar2.accesses.length).toBe(1);
    expect(bar2.read(0x80, 4, 'test')).toBe(2);
  });

  it('header and range errors (EINVAL), bad fds (EBADF / EINVAL), short buffer (EFAULT)', () => {
    const { file, fd, efd } = plain();
    const e = efd();
    const ok = { flags: VFIO_DEVICE_IOEVENTFD_32, offset: BAR2, data: 0, fd: e.fd };
    expect(ioeventfd(file, { ...ok, argsz: 27 })).toBe(-Errno.EINVAL);
    expect(ioeventfd(file, { ...ok, flags: 0 })).toBe(-Errno.EINVAL);
    expect(ioeventfd(file, { ...ok, flags: 3 })).toBe(-Errno.EINVAL);
    expect(ioeventfd(file, { ...ok, flags: 0x14 })).toBe(-Errno.EINVAL);
    expect(ioeventfd(file, { ...ok, fd: -2 })).toBe(-Errno.EINVAL);
    expect(ioeventfd(file, { ...ok, offset: VFIO_PCI_INDEX_TO_OFFSET(7) })).toBe(-Errno.EINVAL); // config
    expect(ioeventfd(file, { ...ok, offset: VFIO_PCI_INDEX_TO_OFFSET(0) })).toBe(-Errno.EINVAL); // absent BAR
    expect(ioeventfd(file, { ...ok, offset: BAR2 + 0xfffe })).toBe(-Errno.EINVAL); // past the end
    expect(ioeventfd(file, { ...ok, offset: (1n << 63n) | 0x10n })).toBe(-Errno.EINVAL);
    expect(ioeventfd(file, { ...ok, fd: 777 })).toBe(-Errno.EBADF);
    expect(ioeventfd(file, { ...ok, fd })).toBe(-Errno.EINVAL); // the device fd is no eventfd
    expect(ioeventfd(file, { ...ok, bufLen: 24 })).toBe(-Errno.EFAULT);
    expect(ioeventfd(file, ok)).toBe(0); // the exact same call, well formed
  });

  it(`at most ${VFIO_PCI_IOEVENTFD_MAX} ioeventfds: the next is ENOSPC`, () => {
    const { file, efd, core } = plain();
    const e = efd();
    for (let i = 0; i < VFIO_PCI_IOEVENTFD_MAX; i++) {
      expect(ioeventfd(file, { flags: VFIO_DEVICE_IOEVENTFD_32, offset: BAR2, data: i, fd: e.fd })).toBe(0);
    }
    expect(ioeventfd(file, { flags: VFIO_DEVICE_IOEVENTFD_32, offset: BAR2, data: -1, fd: e.fd })).toBe(-Errno.ENOSPC);
    expect(core.ioeventfds.size).toBe(VFIO_PCI_IOEVENTFD_MAX);
  });

  it('memory decoding off drops the write; closing the device removes every ioeventfd', () => {
    const { file, bar2, efd, core } = plain();
    const e = efd();
    ioeventfd(file, { flags: VFIO_DEVICE_IOEVENTFD_32, offset: BAR2 + 4, data: 5, fd: e.fd });
    cfgWrite(file, PCI_COMMAND, 2, 0);
    bar2.accesses.length = 0;
    e.efd.signal();
    expect(bar2.accesses).toEqual([]);
    expect(core.ioeventfds.dropped).toBe(1);
    file.close();
    expect(core.ioeventfds.size).toBe(0);
    e.efd.signal();
    expect(bar2.accesses).toEqual([]);
    expect(e.efd.onSignal).toBeUndefined();
  });
});
