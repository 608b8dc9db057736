/**
 * VFIO group fd: GET_STATUS, SET_CONTAINER, UNSET_CONTAINER, GET_DEVICE_FD with Linux 6.1
 * errno order (vfio_main.c / vfio_container.c), the open/close rules of /dev/vfio/<id>, and
 * how members get and lose the container's IOMMU domain.
 */
import { describe, expect, it } from 'vitest';
import { UserAddressSpace } from '../src/mem/user-space.js';
import { Errno, KernelError } from '../src/uapi/errno.js';
import { vfio_group_status } from '../src/uapi/structs.js';
import {
  VFIO_GROUP_FLAGS_CONTAINER_SET,
  VFIO_GROUP_FLAGS_VIABLE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_MAP_DMA,
  VFIO_TYPE1v2_IOMMU,
} from '../src/uapi/vfio.js';
import { VfioContainer } from '../src/vfio/container.js';
import { FdTable } from '../src/vfio/fd.js';
import { VfioGroup, encodeCString } from '../src/vfio/group.js';
import { B, P, TestDeviceFile, TestMember, makeRig, mapRam } from './vfio-type1-helpers.js';

function setup(iommuBacked = true) {
  const user = new UserAddressSpace();
  const fds = new FdTable();
  const container = new VfioContainer({ user, fds });
  const cfd = fds.install(container);
  const group = new VfioGroup({ id: 3, fds, iommuBacked });
  const dev = new TestMember('0000:00:02.1');
  group.addMember(dev);
  const gfd = group.openFd();
  return { user, fds, container, cfd, group, dev, gfd };
}

describe('open and close of /dev/vfio/<id>', () => {
  it('one open at a time (EBUSY); closed fds are EBADF; the group can be opened again', () => {
    const s = setup();
    expect(s.gfd).toBeGreaterThanOrEqual(3);
    expect(s.fds.get(s.gfd)).toBe(s.group);
    expect(s.group.openFd()).toBe(-Errno.EBUSY);
    expect(() => s.group.open()).toThrow(KernelError);
    expect(s.fds.close(s.gfd)).toBe(0);
    expect(s.group.getStatus().ret).toBe(-Errno.EBADF);
    expect(s.group.close()).toBe(-Errno.EBADF);
    const again = s.group.openFd();
    expect(again).toBeGreaterThanOrEqual(3);
    expect(s.group.getStatus()).toEqual({ ret: 0, flags: VFIO_GROUP_FLAGS_VIABLE });
  });

  it('a group without devices cannot be opened (ENODEV)', () => {
    const g = new VfioGroup({ id: 1, fds: new FdTable(), iommuBacked: true });
    expect(g.openFd()).toBe(-Errno.ENODEV);
  });

  it('closing the group fd detaches it from the container, unless device fds still hold it', () => {
    const s = setup();
    expect(s.group.setContainer(s.cfd)).toBe(0);
    expect(s.container.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
    const dfd = s.group.getDeviceFd('0000:00:02.1');
    expect(dfd).toBeGreaterThan(0);
    expect(s.fds.close(s.gfd)).toBe(0);
    expect(s.group.container).toBe(s.container); // still attached: the device fd references it
    expect(s.group.openFd()).toBe(-Errno.EBUSY);
    expect(s.fds.close(dfd)).toBe(0);
    expect(s.group.container).toBeNull();
    expect(s.container.type1).toBeNull(); // it was the last group: the IOMMU is gone
    expect(s.dev.domain).toBeNull();
    expect(s.group.openFd()).toBeGreaterThan(0);
  });
});

describe('VFIO_GROUP_GET_STATUS', () => {
  it('EFAULT short struct, EINVAL argsz < 8; VIABLE, then VIABLE|CONTAINER_SET', () => {
    const s = setup();
    expect(s.group.ioctl(VFIO_GROUP_GET_STATUS, new Uint8Array(7))).toBe(-Errno.EFAULT);
    expect(s.group.ioctl(VFIO_GROUP_GET_STATUS, vfio_group_status.encode({ argsz: 7 }))).toBe(-Errno.EINVAL);
    const buf = vfio_group_status.encode({ argsz: 8, flags: 0xff });
    expect(s.group.ioctl(VFIO_GROUP_GET_STATUS, buf)).toBe(0);
    expect(vfio_group_status.decode(buf)).toEqual({ argsz: 8, flags: VFIO_GROUP_FLAGS_VIABLE });
    expect(s.group.setContainer(s.cfd)).toBe(0);
    expect(s.group.getStatus()).toEqual({ ret: 0, flags: VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET });
  });

  it('not viable while a kernel driver owns a device; ENODEV once the last device is gone', () => {
    const s = setup();
    s.group.kernelDmaOwner = true;
    expect(s.group.getStatus()).toEqual({ ret: 0, flags: 0 });
    s.group.kernelDmaOwner = false;
    expect(s.group.removeMember(s.dev)).toBe(true);
    expect(s.group.getStatus().ret).toBe(-Errno.ENODEV);
  });
});

describe('VFIO_GROUP_SET_CONTAINER', () => {
  it('EBADF for an unknown fd, EINVAL for a non-container fd, EINVAL when already set', () => {
    const s = setup();
    expect(s.group.setContainer(999)).toBe(-Errno.EBADF);
    expect(s.group.setContainer(-1)).toBe(-Errno.EBADF);
    const ev = s.fds.eventfd();
    expect(s.group.setContainer(ev.fd)).toBe(-Errno.EINVAL);
    expect(s.group.setContainer(s.gfd)).toBe(-Errno.EINVAL);
    expect(s.group.setContainer(s.cfd)).toBe(0);
    const other = s.fds.install(new VfioContainer({ user: s.user, fds: s.fds }));
    expect(s.group.setContainer(other)).toBe(-Errno.EINVAL);
    expect(s.group.setContainer(999)).toBe(-Errno.EBADF); // the fd lookup comes first
    expect(s.container.groups).toEqual([s.group]);
  });

  it('the argument may be a pointer to an int (4 bytes); a shorter buffer is EFAULT', () => {
    const s = setup();
    const arg = new Uint8Array(4);
    new DataView(arg.buffer).setInt32(0, s.cfd, true);
    expect(s.group.ioctl(VFIO_GROUP_SET_CONTAINER, new Uint8Array(2))).toBe(-Errno.EFAULT);
    expect(s.group.ioctl(VFIO_GROUP_SET_CONTAINER, arg)).toBe(0);
    expect(s.group.container).toBe(s.container);
  });

  it('EPERM while a kernel driver owns DMA in the group; ENODEV for a group without devices', () => {
    const s = setup();
    s.group.kernelDmaOwner = true;
    expect(s.group.setContainer(s.cfd)).toBe(-Errno.EPERM);
    s.group.kernelDmaOwner = false;
    const empty = new VfioGroup({ id: 4, fds: s.fds, iommuBacked: true });
    const m = new TestMember('x');
    empty.addMember(m);
    empty.openFd();
    empty.removeMember('x');
    expect(empty.setContainer(s.cfd)).toBe(-Errno.ENODEV);
  });

  it('joining a container with an IOMMU set gives the members its domain at once', () => {
    const rig = makeRig();
    const g = new VfioGroup({ id: 8, fds: rig.fds, iommuBacked: true });
    const m = new TestMember('late');
    g.addMember(m);
    g.openFd();
    expect(g.setContainer(rig.cfd)).toBe(0);
    expect(m.domain).toBe(rig.container.type1!.domain);
    expect(m.domain).toBe(rig.members[0]![0]!.domain);
    // a device added later joins too, and leaves with null
    const late = new TestMember('later');
    g.addMember(late);
    expect(late.domain).toBe(m.domain);
    g.removeMember(late);
    expect(late.domainLog).toEqual([m.domain, null]);
    expect(() => g.addMember(new TestMember('late'))).toThrow(expect.objectContaining({ code: 'EEXIST' }));
  });
});

describe('VFIO_GROUP_UNSET_CONTAINER', () => {
  it('EINVAL when not set; EBUSY while a device fd is open; members lose the domain', () => {
    const s = setup();
    expect(s.group.unsetContainer()).toBe(-Errno.EINVAL);
    expect(s.group.setContainer(s.cfd)).toBe(0);
    expect(s.container.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
    const dom = s.dev.domain;
    expect(dom).not.toBeNull();
    const dfd = s.group.getDeviceFd('0000:00:02.1');
    expect(s.group.unsetContainer()).toBe(-Errno.EBUSY);
    expect(s.group.openDeviceCount).toBe(1);
    expect(s.fds.close(dfd)).toBe(0);
    expect(s.group.unsetContainer()).toBe(0);
    expect(s.dev.domainLog).toEqual([dom, null]);
    expect(s.group.getStatus()).toEqual({ ret: 0, flags: VFIO_GROUP_FLAGS_VIABLE });
  });

  it('the last group leaving removes every mapping; another group keeps them', () => {
    const rig = makeRig({ groups: [{ iommuBacked: true }, { iommuBacked: true }] });
    expect(mapRam(rig, B, 2 * P)).toBe(0);
    expect(rig.groups[0]!.unsetContainer()).toBe(0);
    expect(rig.container.type1!.mappings()).toHaveLength(1);
    expect(rig.members[1]![0]!.domain!.translate(B)).not.toBeNull();
    expect(rig.groups[1]!.unsetContainer()).toBe(0);
    expect(rig.container.type1).toBeNull();
  });
});

describe('VFIO_GROUP_GET_DEVICE_FD', () => {
  it('ENODEV for an unknown name comes before the container check; EINVAL without container or IOMMU', () => {
    const s = setup();
    expect(s.group.getDeviceFd('0000:00:09.0')).toBe(-Errno.ENODEV);
    expect(s.group.getDeviceFd('0000:00:02.1')).toBe(-Errno.EINVAL);
    expect(s.group.setContainer(s.cfd)).toBe(0);
    expect(s.group.getDeviceFd('0000:00:02.1')).toBe(-Errno.EINVAL); // no SET_IOMMU yet
    expect(s.container.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
    const fd = s.group.getDeviceFd('0000:00:02.1');
    expect(fd).toBeGreaterThan(s.gfd);
    expect(s.fds.get(fd)).toBeInstanceOf(TestDeviceFile);
    expect(s.dev.opens).toBe(1);
  });

  it('the name is a NUL-terminated string: no NUL in a short buffer is EFAULT, none in 4096 bytes EINVAL', () => {
    const s = setup();
    expect(s.group.setContainer(s.cfd)).toBe(0);
    expect(s.container.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
    const name = encodeCString('0000:00:02.1');
    expect(s.group.ioctl(VFIO_GROUP_GET_DEVICE_FD, name.subarray(0, name.length - 1))).toBe(-Errno.EFAULT);
    expect(s.group.ioctl(VFIO_GROUP_GET_DEVICE_FD, new Uint8Array(4096).fill(0x41))).toBe(-Errno.EINVAL);
    expect(s.group.ioctl(VFIO_GROUP_GET_DEVICE_FD, 5)).toBe(-Errno.EFAULT);
    const withTail = new Uint8Array(64).fill(0x7a);
    withTail.set(name);
    expect(s.group.ioctl(VFIO_GROUP_GET_DEVICE_FD, withTail)).toBeGreaterThan(0); // bytes after the NUL are ignored
  });

  it("the device's open error is returned and no fd is installed; a member's match hook is used", () => {
    const s = setup();
    expect(s.group.setContainer(s.cfd)).toBe(0);
    expect(s.container.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
    s.dev.openError = new KernelError('EIO', 'device refuses');
    const before = s.fds.size;
    expect(s.group.getDeviceFd('0000:00:02.1')).toBe(-Errno.EIO);
    expect(s.fds.size).toBe(before);
    const tokened = Object.assign(new TestMember('0000:00:03.0'), {
      match(buf: string): number {
        const [bdf, token] = buf.split(' ');
        if (bdf !== '0000:00:03.0') return 0;
        return token === 'vf_token=ok' ? 1 : -Errno.EACCES;
      },
    });
    s.group.addMember(tokened);
    expect(s.group.getDeviceFd('0000:00:03.0 vf_token=bad')).toBe(-Errno.EACCES);
    expect(s.group.getDeviceFd('0000:00:03.0 vf_token=ok')).toBeGreaterThan(0);
  });

  it('removing a member closes its device fds; the last member out detaches the group', () => {
    const s = setup();
    expect(s.group.setContainer(s.cfd)).toBe(0);
    expect(s.container.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
    const fd = s.group.getDeviceFd('0000:00:02.1');
    const file = s.fds.get(fd)!;
    expect(s.group.removeMember('nope')).toBe(false);
    expect(s.group.removeMember(new TestMember('0000:00:02.1'))).toBe(false); // same name, other object
    expect(s.group.removeMember('0000:00:02.1')).toBe(true);
    expect(file.closed).toBe(true);
    expect(s.fds.get(fd)).toBeUndefined();
    expect(s.group.container).toBeNull();
    expect(s.container.type1).toBeNull();
    expect(s.dev.domain).toBeNull();
  });
});

describe('ioctls on the wrong object are ENOTTY', () => {
  it('a type1 ioctl on a group fd', () => {
    const s = setup();
    expect(s.group.ioctl(VFIO_IOMMU_MAP_DMA, new Uint8Array(32))).toBe(-Errno.ENOTTY);
    expect(s.group.ioctl(0x3b00)).toBe(-Errno.ENOTTY);
  });
});

describe('emulated groups', () => {
  it('never receive a domain and can share a container with IOMMU-backed ones', () => {
    const rig = makeRig({ groups: [{ iommuBacked: false }, { iommuBacked: true }] });
    expect(rig.members[0]![0]!.domainLog).toEqual([]);
    expect(rig.groups[0]!.reservedRegions).toEqual([]);
    expect(rig.groups[1]!.reservedRegions).toEqual([{ start: 0x8000000n, end: 0x80fffffn }]);
    expect(rig.groups[0]!.getDeviceFd('dev1')).toBeGreaterThan(0);
  });
});
