/**
 * The shapes vfio-pci-core needs from code that lives elsewhere: the host's PCI device and
 * driver model (src/host) and the VFIO group (src/vfio/group.ts). They are declared here
 * structurally so this folder depends on the contract, not on those files.
 */
import type { PciFunction } from '../../hw/pci/function.js';
import type { IommuDomain } from '../../iommu/domain.js';
import type { UserAddressSpace } from '../../mem/user-space.js';
import type { FdTable, VfioFile } from '../fd.js';

/** The simulated VMM process: its descriptor table and address space (Linux `current`). */
export interface VfioProcess {
  readonly fds: FdTable;
  readonly user: UserAddressSpace;
}

/** What the group asks of a device bound to a vfio driver. */
export interface VfioGroupMember {
  readonly name: string;
  setIommu(domain: IommuDomain | null): void;
  openDevice(): VfioFile;
  readonly isOpen?: boolean;
}

/** The host's registry of vfio devices, and the process the device fds belong to. */
export interface VfioHostLink {
  readonly vfio: {
    registerDevice(dev: HostPciDeviceLike, member: VfioGroupMember): void;
    unregisterDevice(dev: HostPciDeviceLike): void;
  };
  readonly process: VfioProcess;
}

/** The host's view of one PCI function (HostPciDevice in src/host). */
export interface HostPciDeviceLike {
  readonly bdf: string;
  readonly fn: PciFunction;
  readonly vendor: number;
  readonly device: number;
  readonly isVirtfn: boolean;
  readonly physfn?: HostPciDeviceLike;
  readonly iommuGroup: number;
  drvdata?: unknown;
  /** The host the device sits in, when the host exposes it (how a shared driver finds it). */
  readonly host?: VfioHostLink;
}

export interface PciIdMatch {
  vendor: number;
  device: number;
}

/** A host PCI driver (HostPciDriver in src/host). */
export interface HostPciDriverLike {
  readonly name: string;
  readonly idTable: PciIdMatch[];
  probe(dev: HostPciDeviceLike): void;
  remove(dev: HostPciDeviceLike): void;
}
