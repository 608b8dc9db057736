/** vfio-pci-core: the device fd of a PCI function and the variant-driver ops table. */
export { VfioPciCoreDevice, type VfioPciCoreOptions } from './core-device.js';
export { VfioDeviceFile } from './device-file.js';
export { createVfioPciDriver, vfioPciDriver, type VfioPciDriverOptions, type VfioPciHostDriver } from './driver.js';
export type {
  DmaLoggingRange,
  IoctlArg,
  VfioLogOps,
  VfioMapping,
  VfioMigrationOps,
  VfioPciDeviceRegion,
  VfioPciVariantOps,
  VfioRegionInfo,
} from './ops.js';
export type {
  HostPciDeviceLike,
  HostPciDriverLike,
  PciIdMatch,
  VfioGroupMember,
  VfioHostLink,
  VfioProcess,
} from './host-types.js';
export { MigrationDataFile, MigrationResumeFile, MigrationSaveFile, type SavePhase } from './mig-file.js';
export { allocBytes } from './byte-slab.js';
export { combineIovaRanges } from './iova-ranges.js';
export { regionTypeCap, sparseMmapCap } from './region-caps.js';
export { checkFeature, LOG_MAX_RANGES } from './feature.js';
export { HOST_MSI_ADDRESS, HOST_MSI_DATA } from './irqs.js';
export { VFIO_PCI_IOEVENTFD_MAX } from './ioeventfd.js';
export { watchEventFd } from './eventfd-watch.js';
