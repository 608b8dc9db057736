/**
 * A host PCI driver, the shape of Linux's `struct pci_driver` that this project needs.
 *
 * - `probe` claims a device; it throws a KernelError to refuse. An error from probe is
 *   returned by a sysfs bind as that errno; during automatic probing the next matching
 *   driver is tried instead, as the driver core does.
 * - `remove` releases a device; like Linux's void remove it cannot refuse. A KernelError
 *   thrown anyway is logged and the device is unbound regardless.
 * - `sriovConfigure(dev, n)` is the sriov_numvfs hook: returns the number of VFs enabled or
 *   a negative errno (n = 0 disables).
 */
import type { PciDeviceId } from './pci-ids.js';
import type { HostPciDevice } from './pci-device.js';

export interface HostPciDriver {
  readonly name: string;
  readonly idTable: readonly PciDeviceId[];
  probe(dev: HostPciDevice): void;
  remove(dev: HostPciDevice): void;
  sriovConfigure?(dev: HostPciDevice, numVfs: number): number;
}
