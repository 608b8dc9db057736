/**
 * The device-fd calls a VMM makes for migration, spelled with the Linux structs
 * (vfio-uapi-and-migration.md sections 1-5): VFIO_DEVICE_FEATURE for MIGRATION,
 * MIG_DEVICE_STATE, MIG_DATA_SIZE and DMA_LOGGING_*, VFIO_MIG_GET_PRECOPY_INFO on a data fd,
 * VFIO_DEVICE_RESET, region info with its capability chain, and config-space reads. Every
 * function returns the syscall result (0 / value or -errno); nothing throws for a failing
 * call.
 */
import { readS32, readU16, readU32, readU64Number } from '../../uapi/codec.js';
import { findCap } from '../../uapi/capchain.js';
import { Errno } from '../../uapi/errno.js';
import {
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_MIG_GET_PRECOPY_INFO,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_INDEX_TO_OFFSET,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_NUM_REGIONS,
  VFIO_REGION_INFO_CAP_TYPE,
  VFIO_REGION_INFO_FLAG_CAPS,
} from '../../uapi/vfio.js';
import {
  VFIO_DEVICE_FEATURE_MINSZ,
  VFIO_DEVICE_INFO_MINSZ,
  VFIO_IRQ_SET_MINSZ,
  VFIO_PRECOPY_INFO_MINSZ,
  VFIO_REGION_INFO_MINSZ,
  vfio_device_feature,
  vfio_device_feature_dma_logging_control,
  vfio_device_feature_dma_logging_range,
  vfio_device_feature_dma_logging_report,
  vfio_device_feature_mig_data_size,
  vfio_device_feature_mig_state,
  vfio_device_feature_migration,
  vfio_device_info,
  vfio_irq_set,
  vfio_precopy_info,
  vfio_region_info,
  vfio_region_info_cap_type,
} from '../../uapi/structs.js';
import type { UserAddressSpace } from '../../mem/user-space.js';
import type { VfioFile } from '../../vfio/fd.js';

const HDR = VFIO_DEVICE_FEATURE_MINSZ;

/** A vfio_device_feature buffer with `payload` bytes after the header. */
function featureBuf(flags: number, payload: number): Uint8Array {
  const buf = new Uint8Array(HDR + payload);
  vfio_device_feature.encode({ argsz: HDR + payload, flags }, buf);
  return buf;
}

/** PROBE of a feature with GET and/or SET: 0 when supported, else -errno (ENOTTY: not at all). */
export function probeFeature(dev: VfioFile, feature: number, ops: number): number {
  return dev.ioctl(VFIO_DEVICE_FEATURE, featureBuf(feature | ops | VFIO_DEVICE_FEATURE_PROBE, 0));
}

/** VFIO_DEVICE_FEATURE_MIGRATION GET: the VFIO_MIGRATION_* flags, or -errno. */
export function migrationFlags(dev: VfioFile): number {
  const buf = featureBuf(VFIO_DEVICE_FEATURE_MIGRATION | VFIO_DEVICE_FEATURE_GET, vfio_device_feature_migration.size);
  const r = dev.ioctl(VFIO_DEVICE_FEATURE, buf);
  if (r < 0) return r;
  return Number(vfio_device_feature_migration.read(buf, 'flags', HDR));
}

/** MIG_DEVICE_STATE GET: the v2 state, or -errno. */
export function getMigState(dev: VfioFile): number {
  const buf = featureBuf(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE | VFIO_DEVICE_FEATURE_GET, vfio_device_feature_mig_state.size);
  const r = dev.ioctl(VFIO_DEVICE_FEATURE, buf);
  return r < 0 ? r : vfio_device_feature_mig_state.read(buf, 'device_state', HDR);
}

/** MIG_DEVICE_STATE SET: the ioctl result and the data fd the kernel returned (-1 if none). */
export function setMigState(dev: VfioFile, state: number): { ret: number; dataFd: number } {
  const buf = featureBuf(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE | VFIO_DEVICE_FEATURE_SET, vfio_device_feature_mig_state.size);
  vfio_device_feature_mig_state.encode({ device_state: state, data_fd: -1 }, buf, HDR);
  const ret = dev.ioctl(VFIO_DEVICE_FEATURE, buf);
  return { ret, dataFd: ret < 0 ? -1 : readS32(buf, HDR + vfio_device_feature_mig_state.offsetOf('data_fd')) };
}

/** MIG_DATA_SIZE GET: the device's estimate of its STOP_COPY bytes, or -errno. */
export function migDataSize(dev: VfioFile): number {
  const codec = vfio_device_feature_mig_data_size;
  const buf = featureBuf(VFIO_DEVICE_FEATURE_MIG_DATA_SIZE | VFIO_DEVICE_FEATURE_GET, codec.size);
  const r = dev.ioctl(VFIO_DEVICE_FEATURE, buf);
  return r < 0 ? r : readU64Number(buf, HDR);
}

/** VFIO_MIG_GET_PRECOPY_INFO on a PRE_COPY data fd. */
export function precopyInfo(data: VfioFile): { ret: number; initial: number; dirty: number } {
  const buf = vfio_precopy_info.encode({ argsz: VFIO_PRECOPY_INFO_MINSZ });
  const ret = data.ioctl(VFIO_MIG_GET_PRECOPY_INFO, buf);
  if (ret < 0) return { ret, initial: 0, dirty: 0 };
  return {
    ret,
    initial: readU64Number(buf, vfio_precopy_info.offsetOf('initial_bytes')),
    dirty: readU64Number(buf, vfio_precopy_info.offsetOf('dirty_bytes')),
  };
}

export function deviceReset(dev: VfioFile): number {
  return dev.ioctl(VFIO_DEVICE_RESET);
}

/** SET_IRQS MSI with DATA_NONE|ACTION_TRIGGER and count 0: tears down every MSI vector. */
export function disableMsi(dev: VfioFile): number {
  const buf = vfio_irq_set.encode({
    argsz: VFIO_IRQ_SET_MINSZ,
    flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
    index: VFIO_PCI_MSI_IRQ_INDEX,
    start: 0,
    count: 0,
  });
  return dev.ioctl(VFIO_DEVICE_SET_IRQS, buf.subarray(0, VFIO_IRQ_SET_MINSZ));
}

/**
 * DMA_LOGGING_START for `ranges`, the range array placed in the process's memory (the ioctl
 * takes a user pointer). Returns the result and the page size the driver settled on.
 */
export function dmaLoggingStart(
  dev: VfioFile,
  user: UserAddressSpace,
  ranges: readonly { iova: number; length: number }[],
  pageSize: number,
): { ret: number; pageSize: number } {
  const rc = vfio_device_feature_dma_logging_range;
  const arr = new Uint8Array(Math.max(1, ranges.length) * rc.size);
  ranges.forEach((r, i) => rc.encode({ iova: r.iova, length: r.length }, arr, i * rc.size));
  const ptr = user.alloc(arr.length);
  try {
    user.copyToUser(ptr, arr);
    const cc = vfio_device_feature_dma_logging_control;
    const buf = featureBuf(VFIO_DEVICE_FEATURE_DMA_LOGGING_START | VFIO_DEVICE_FEATURE_SET, cc.size);
    cc.encode({ page_size: pageSize, num_ranges: ranges.length, ranges: ptr }, buf, HDR);
    const ret = dev.ioctl(VFIO_DEVICE_FEATURE, buf);
    return { ret, pageSize: ret < 0 ? pageSize : readU64Number(buf, HDR) };
  } finally {
    user.unmap(ptr);
  }
}

export function dmaLoggingStop(dev: VfioFile): number {
  return dev.ioctl(VFIO_DEVICE_FEATURE, featureBuf(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP | VFIO_DEVICE_FEATURE_SET, 0));
}

/** DMA_LOGGING_REPORT of [iova, iova+length) into the user bitmap at `bitmapPtr` (read and clear). */
export function dmaLoggingReport(dev: VfioFile, iova: number, length: number, pageSize: number, bitmapPtr: number): number {
  const rc = vfio_device_feature_dma_logging_report;
  const buf = featureBuf(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT | VFIO_DEVICE_FEATURE_GET, rc.size);
  rc.encode({ iova, length, page_size: pageSize, bitmap: bitmapPtr }, buf, HDR);
  return dev.ioctl(VFIO_DEVICE_FEATURE, buf);
}

/** VFIO_DEVICE_GET_INFO num_regions, or -errno. */
export function numRegions(dev: VfioFile): number {
  const buf = vfio_device_info.encode({ argsz: vfio_device_info.size });
  const r = dev.ioctl(VFIO_DEVICE_GET_INFO, buf);
  if (r < 0) return r;
  if (readU32(buf, 0) < VFIO_DEVICE_INFO_MINSZ) return -Errno.EINVAL;
  return vfio_device_info.read(buf, 'num_regions');
}

export interface RegionInfo {
  index: number;
  flags: number;
  size: number;
  offset: number;
  type: number | null;
  subtype: number | null;
}

/** GET_REGION_INFO with room for the capability chain; the type capability decoded. */
export function regionInfo(dev: VfioFile, index: number): RegionInfo | number {
  let argsz = 256;
  for (let attempt = 0; attempt < 2; attempt++) {
    const buf = vfio_region_info.encode({ argsz, index }, new Uint8Array(argsz));
    const r = dev.ioctl(VFIO_DEVICE_GET_REGION_INFO, buf);
    if (r < 0) return r;
    const need = vfio_region_info.read(buf, 'argsz');
    const flags = vfio_region_info.read(buf, 'flags');
    if (flags & VFIO_REGION_INFO_FLAG_CAPS && need > argsz) {
      argsz = need;
      continue;
    }
    let type: number | null = null;
    let subtype: number | null = null;
    const capOff = vfio_region_info.read(buf, 'cap_offset');
    if (flags & VFIO_REGION_INFO_FLAG_CAPS && capOff !== 0) {
      let cap;
      try {
        cap = findCap(buf, capOff, VFIO_REGION_INFO_CAP_TYPE, { minOffset: VFIO_REGION_INFO_MINSZ, end: need });
      } catch {
        return -Errno.EINVAL;
      }
      if (cap) {
        type = vfio_region_info_cap_type.read(buf, 'type', cap.offset);
        subtype = vfio_region_info_cap_type.read(buf, 'subtype', cap.offset);
      }
    }
    return {
      index,
      flags,
      size: readU64Number(buf, vfio_region_info.offsetOf('size')),
      offset: readU64Number(buf, vfio_region_info.offsetOf('offset')),
      type,
      subtype,
    };
  }
  return -Errno.EINVAL;
}

/** The first device-specific region of a given type/subtype, or null. */
export function findRegion(dev: VfioFile, type: number, subtype: number): RegionInfo | null {
  const n = numRegions(dev);
  if (n < 0) return null;
  for (let i = VFIO_PCI_NUM_REGIONS; i < n; i++) {
    const ri = regionInfo(dev, i);
    if (typeof ri !== 'number' && ri.type === type && ri.subtype === subtype) return ri;
  }
  return null;
}

/** Identity of the function from its (virtualized) config space. */
export interface PciIdentity {
  vendor: number;
  device: number;
  revision: number;
}

export function pciIdentity(dev: VfioFile): PciIdentity | number {
  const buf = new Uint8Array(12);
  const r = dev.read(buf, VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX));
  if (r < 0) return r;
  if (r < 12) return -Errno.EIO;
  return { vendor: readU16(buf, 0), device: readU16(buf, 2), revision: buf[8]! };
}
