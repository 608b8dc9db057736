/** hisi-acc-vfio-pci: the vendor VFIO driver of the HiSilicon ACC VFs. */
export {
  createHisiAccVfioPciDriver, hisiAccStateOf, HISI_ACC_VFIO_PCI, HISI_ACC_VFIO_PCI_IDS,
  type HisiAccState, type HisiAccVfioPciDriver,
} from './driver.js';
export {
  HisiAccVfDevice, HISI_ACC_MIG_FLAGS, resolveOptions, type ArcRecord, type HisiAccDriverOptions,
  type MigfSnapshot, type RegsSnapshot, type ResolvedOptions,
} from './device.js';
export * from './acc-vf-data.js';
export { debugView, hexDump, type HisiAccDebugView, type RegsSource } from './debug-view.js';
export { DirtyLogger } from './dirty-log.js';
export { V1MigrationRegion, V1_HEADER_SIZE, V1_REGION_SIZE } from './v1-region.js';
