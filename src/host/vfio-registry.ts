/**
 * The host side of VFIO's group layer: which devices a vfio driver has registered, the group
 * object of each IOMMU group and its /dev/vfio/<group> node.
 *
 * A vfio bus driver (vfio-pci or a variant) calls `registerDevice(dev, member)` from its
 * probe and `unregisterDevice(dev)` from its remove. The first member of a group creates the
 * group object (through the backend) and the device node; the last one leaving removes both
 * (an fd already open on the group keeps its object). `/dev/vfio/vfio` always exists and
 * each open gives a new container.
 *
 * The group and container classes come from src/vfio (group.ts, container.ts) through a
 * small backend interface, so this file depends only on their shape. Without a backend the
 * nodes still appear, but opening them fails with ENXIO, as a character device whose driver
 * is missing does.
 */
import type { IommuDomain } from '../iommu/domain.js';
import type { FdTable, VfioFile } from '../vfio/fd.js';
import type { UserAddressSpace } from '../mem/user-space.js';
import { Errno, fail, syscall } from '../uapi/errno.js';
import type { HostPciDevice } from './pci-device.js';
import type { PseudoFs } from './pseudo-fs.js';

/** A device as a VFIO group sees it (implemented by vfio-pci-core). */
export interface VfioGroupMember {
  readonly name: string;
  setIommu(domain: IommuDomain | null): void;
  openDevice(): VfioFile;
  readonly isOpen?: boolean;
}

/** What the host needs from a VFIO group object. */
export interface HostVfioGroup {
  readonly id: number;
  addMember(member: VfioGroupMember): void;
  removeMember(member: VfioGroupMember): void;
  /** The file an open() of /dev/vfio/<id> returns; throws EBUSY while one is open. */
  open(): VfioFile;
}

/** The process an open() happens in. */
export interface VfioProcess {
  readonly user: UserAddressSpace;
  readonly fds: FdTable;
}

/** Factories for the src/vfio objects. */
export interface VfioBackend {
  /** `iommuBacked` is always true here: every PCI group sits behind the SMMU. */
  createGroup(id: number, iommuBacked: boolean): HostVfioGroup;
  createContainer(proc: VfioProcess): VfioFile;
}

export const VFIO_DEV_DIR = '/dev/vfio';
export const VFIO_CONTAINER_PATH = '/dev/vfio/vfio';

export class HostVfio {
  private readonly members = new Map<HostPciDevice, VfioGroupMember>();
  private readonly groups = new Map<number, HostVfioGroup>();
  private readonly groupMembers = new Map<number, number>();

  constructor(private readonly fs: PseudoFs, private readonly backend: VfioBackend | undefined) {
    fs.mkdir(VFIO_DEV_DIR);
    fs.node(VFIO_CONTAINER_PATH);
  }

  get hasBackend(): boolean {
    return this.backend !== undefined;
  }

  /**
   * Adds a device to its IOMMU group's VFIO group. ENODEV for a removed device, EBUSY if it
   * is already registered.
   */
  registerDevice(dev: HostPciDevice, member: VfioGroupMember): void {
    if (!dev.present) fail('ENODEV', `${dev.bdf} is not on the bus`);
    if (this.members.has(dev)) fail('EBUSY', `${dev.bdf} is already registered with vfio`);
    const id = dev.iommuGroup;
    let group = this.groups.get(id);
    if (group === undefined && this.backend) group = this.backend.createGroup(id, true);
    group?.addMember(member);
    if (group) this.groups.set(id, group);
    this.members.set(dev, member);
    const n = (this.groupMembers.get(id) ?? 0) + 1;
    this.groupMembers.set(id, n);
    if (n === 1) this.fs.node(`${VFIO_DEV_DIR}/${id}`);
  }

  /** Removes a device from its VFIO group; ENODEV if it was not registered. */
  unregisterDevice(dev: HostPciDevice): void {
    const member = this.members.get(dev);
    if (!member) fail('ENODEV', `${dev.bdf} is not registered with vfio`);
    const id = dev.iommuGroup;
    this.members.delete(dev);
    this.groups.get(id)?.removeMember(member);
    const n = (this.groupMembers.get(id) ?? 1) - 1;
    if (n > 0) {
      this.groupMembers.set(id, n);
      return;
    }
    this.groupMembers.delete(id);
    this.groups.delete(id);
    this.fs.remove(`${VFIO_DEV_DIR}/${id}`);
  }

  /** The member a device registered, if any. */
  memberOf(dev: HostPciDevice): VfioGroupMember | undefined {
    return this.members.get(dev);
  }

  /** The group object of IOMMU group `id` while it has members. */
  group(id: number): HostVfioGroup | undefined {
    return this.groups.get(id);
  }

  /** Group numbers with a /dev/vfio node, ascending. */
  groupIds(): number[] {
    return [...this.groupMembers.keys()].sort((a, b) => a - b);
  }

  /**
   * open(2) of a /dev/vfio path in process `proc`: the new fd number or -errno (ENOENT for
   * a missing node, ENXIO without a backend, EBUSY for a group already open).
   */
  open(path: string, proc: VfioProcess): number {
    return syscall(() => {
      if (path === VFIO_CONTAINER_PATH) {
        if (!this.backend) fail('ENXIO', 'no VFIO container implementation');
        return proc.fds.install(this.backend.createContainer(proc));
      }
      const m = /^\/dev\/vfio\/(0|[1-9][0-9]*)$/.exec(path);
      if (!m) return -Errno.ENOENT;
      const id = Number(m[1]);
      if (!this.groupMembers.has(id)) return -Errno.ENOENT;
      const group = this.groups.get(id);
      if (!group) fail('ENXIO', 'no VFIO group implementation');
      return proc.fds.install(group.open());
    });
  }
}
