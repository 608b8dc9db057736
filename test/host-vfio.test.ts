/**
 * /dev/vfio and the VFIO registry: a vfio driver's probe registers its device in the IOMMU
 * group's VFIO group, which then has a /dev/vfio/<group> node; the group opens once at a
 * time (vfio_group_fops_open: EBUSY); /dev/vfio/vfio gives a new container per open.
 * The group/container here are small fakes with the shapes src/vfio provides.
 */
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import type { HostVfioGroup, VfioBackend, VfioGroupMember } from '../src/host/vfio-registry.js';
import type { HostPciDevice } from '../src/host/pci-device.js';
import type { IommuDomain } from '../src/iommu/domain.js';
import { VfioFile } from '../src/vfio/fd.js';
import { Errno, KernelError } from '../src/uapi/errno.js';
import { ZIP_PF, dev, drvDir, fakeDriver, vfBdf } from './host-helpers.js';

class GroupFile extends VfioFile {
  constructor(readonly group: FakeGroup) {
    super();
  }
  protected override release(): void {
    this.group.openFile = undefined;
  }
}

class FakeGroup implements HostVfioGroup {
  readonly members: VfioGroupMember[] = [];
  openFile: GroupFile | undefined;
  constructor(readonly id: number, readonly iommuBacked: boolean) {}
  addMember(m: VfioGroupMember): void {
    this.members.push(m);
  }
  removeMember(m: VfioGroupMember): void {
    this.members.splice(this.members.indexOf(m), 1);
  }
  open(): VfioFile {
    if (this.openFile) throw new KernelError('EBUSY', 'group already open');
    this.openFile = new GroupFile(this);
    return this.openFile;
  }
}

class FakeContainer extends VfioFile {}

function fakeBackend(): VfioBackend & { created: FakeGroup[] } {
  const created: FakeGroup[] = [];
  return {
    created,
    createGroup(id, iommuBacked) {
      const g = new FakeGroup(id, iommuBacked);
      created.push(g);
      return g;
    },
    createContainer() {
      return new FakeContainer();
    },
  };
}

function member(name: string): VfioGroupMember {
  return {
    name,
    setIommu(_d: IommuDomain | null) {},
    openDevice() {
      return new FakeContainer();
    },
  };
}

/** A vfio-pci-like test driver: override-only, registers/unregisters with the host. */
function vfioTestDriver(h: Host) {
  return fakeDriver('vfio-test', [{ vendor: 0xffffffff, device: 0xffffffff, overrideOnly: true }], {
    onProbe: (d: HostPciDevice) => h.vfio.registerDevice(d, member(d.bdf)),
    onRemove: (d: HostPciDevice) => h.vfio.unregisterDevice(d),
  });
}

const VF1 = vfBdf(ZIP_PF, 1);
const VF2 = vfBdf(ZIP_PF, 2);

function setup(backend: VfioBackend | null = fakeBackend()) {
  const h = new Host({ devices: ['zip-v3'], vfio: backend });
  expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '2')).toBe(0);
  h.registerDriver(vfioTestDriver(h));
  return h;
}

function bindVfio(h: Host, bdf: string): number {
  expect(h.sysfsWrite(`${dev(bdf)}/driver_override`, 'vfio-test')).toBe(0);
  expect(h.sysfsWrite(`${drvDir('vfio-test')}/bind`, bdf)).toBe(0);
  return h.device(bdf)!.iommuGroup;
}

describe('/dev/vfio nodes follow vfio-bound devices', () => {
  it('only /dev/vfio/vfio exists before any device is bound to vfio', () => {
    const h = setup();
    expect(h.sysfsList('/dev/vfio')).toEqual(['vfio']);
    expect(h.openDev('/dev/vfio/0')).toBe(-Errno.ENOENT);
  });

  it("binding a VF creates its group's node; the group gets the device as member", () => {
    const backend = fakeBackend();
    const h = setup(backend);
    const g = bindVfio(h, VF1);
    expect(h.sysfsReadlink(`${dev(VF1)}/iommu_group`)).toBe(`../../../kernel/iommu_groups/${g}`);
    expect(h.sysfsList('/dev/vfio')).toEqual([String(g), 'vfio']);
    expect(backend.created.map((c) => [c.id, c.iommuBacked])).toEqual([[g, true]]);
    expect(backend.created[0]!.members.map((m) => m.name)).toEqual([VF1]);
    expect(h.vfio.group(g)).toBe(backend.created[0]);
    expect(h.vfio.groupIds()).toEqual([g]);
  });

  it('open returns an fd in the process table; a second open is EBUSY until the first closes', () => {
    const h = setup();
    const g = bindVfio(h, VF1);
    const fd = h.openDev(`/dev/vfio/${g}`);
    expect(fd).toBeGreaterThanOrEqual(3);
    expect(h.process.fds.get(fd)).toBeInstanceOf(GroupFile);
    expect(h.openDev(`/dev/vfio/${g}`)).toBe(-Errno.EBUSY);
    expect(h.process.fds.close(fd)).toBe(0);
    const again = h.openDev(`/dev/vfio/${g}`);
    expect(again).toBeGreaterThanOrEqual(3);
  });

  it('/dev/vfio/vfio gives a new container per open', () => {
    const h = setup();
    const a = h.openDev('/dev/vfio/vfio');
    const b = h.openDev('/dev/vfio/vfio');
    expect(a).not.toBe(b);
    expect(h.process.fds.get(a)).toBeInstanceOf(FakeContainer);
    expect(h.process.fds.get(a)).not.toBe(h.process.fds.get(b));
  });

  it('malformed group paths are ENOENT', () => {
    const h = setup();
    const g = bindVfio(h, VF1);
    for (const p of [`/dev/vfio/0${g}`, '/dev/vfio/abc', '/dev/vfio/', `/dev/vfio/${g}/x`, '/dev/vfio/-1']) {
      expect(h.openDev(p), p).toBe(-Errno.ENOENT);
    }
  });

  it('unbinding removes the member and the node', () => {
    const backend = fakeBackend();
    const h = setup(backend);
    const g = bindVfio(h, VF1);
    expect(h.sysfsWrite(`${drvDir('vfio-test')}/unbind`, VF1)).toBe(0);
    expect(backend.created[0]!.members).toEqual([]);
    expect(h.sysfsList('/dev/vfio')).toEqual(['vfio']);
    expect(h.openDev(`/dev/vfio/${g}`)).toBe(-Errno.ENOENT);
    expect(h.vfio.group(g)).toBeUndefined();
  });

  it('sriov_numvfs=0 removes vfio-bound VFs: drivers removed, nodes gone', () => {
    const h = setup();
    const g1 = bindVfio(h, VF1);
    const g2 = bindVfio(h, VF2);
    expect(h.sysfsList('/dev/vfio')).toEqual([String(g1), String(g2), 'vfio'].sort());
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '0')).toBe(0);
    expect(h.sysfsList('/dev/vfio')).toEqual(['vfio']);
    expect(h.vfio.groupIds()).toEqual([]);
  });
});

describe('registry errors', () => {
  it('double registration is EBUSY, unregistering an unknown device ENODEV, a removed device ENODEV', () => {
    const h = setup();
    const d = h.device(VF1)!;
    h.vfio.registerDevice(d, member('a'));
    expect(() => h.vfio.registerDevice(d, member('b'))).toThrow(/EBUSY/);
    expect(() => h.vfio.unregisterDevice(h.device(VF2)!)).toThrow(/ENODEV/);
    h.vfio.unregisterDevice(d);
    const vf2 = h.device(VF2)!;
    h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '0');
    expect(() => h.vfio.registerDevice(vf2, member('c'))).toThrow(/ENODEV/);
  });

  it('without a VFIO backend the nodes exist but open fails with ENXIO', () => {
    const h = setup(null);
    const g = bindVfio(h, VF1);
    expect(h.sysfsList('/dev/vfio')).toContain(String(g));
    expect(h.openDev(`/dev/vfio/${g}`)).toBe(-Errno.ENXIO);
    expect(h.openDev('/dev/vfio/vfio')).toBe(-Errno.ENXIO);
    expect(h.process.fds.size).toBe(0);
  });

  it('device nodes are not sysfs attributes: read/write give EINVAL', () => {
    const h = setup();
    expect(h.sysfsRead('/dev/vfio/vfio')).toBe(-Errno.EINVAL);
    expect(h.sysfsWrite('/dev/vfio/vfio', '1')).toBe(-Errno.EINVAL);
  });
});
