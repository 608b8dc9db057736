/** The simulated host: PCI bus, driver core, sysfs/devfs, IOMMU groups and VFIO registry. */
export { Host, type HostOptions, type HostDeviceSpec } from './host.js';
export { HostPciBus, type BusListener, type HostLink, type HostPciBusOptions } from './pci-bus.js';
export { HostPciDevice, HOST_MSI_ADDRESS, type IrqHandler } from './pci-device.js';
export type { HostPciDriver } from './driver.js';
export { PCI_ANY_ID, driverMatches, idMatches, type PciDeviceId, type PciMatchTarget } from './pci-ids.js';
export { IommuGroups } from './iommu-groups.js';
export { KernelLog } from './kernel-log.js';
export { PseudoFs, SYSFS_PAGE_SIZE, type PseudoAttr } from './pseudo-fs.js';
export { PciSysfs, deviceDir, SYS_PCI_DEVICES, SYS_PCI_DRIVERS, SYS_IOMMU_GROUPS } from './pci-sysfs.js';
export {
  HostVfio, VFIO_CONTAINER_PATH, VFIO_DEV_DIR, type HostVfioGroup, type VfioBackend, type VfioGroupMember,
  type VfioProcess,
} from './vfio-registry.js';
export { kstrtobool, kstrtou16, kstrtoull, sscanfHex, sysfsStreq } from './kstr.js';
