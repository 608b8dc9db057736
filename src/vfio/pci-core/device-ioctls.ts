/**
 * vfio_pci_core_ioctl: the device fd ioctls the PCI core answers itself (everything but
 * VFIO_DEVICE_FEATURE, which the VFIO core dispatches). Each handler first reads its minsz
 * bytes (EFAULT if the user buffer is shorter), then checks argsz (EINVAL), then acts.
 */
import { fail } from '../../uapi/errno.js';
import { readS32, readU32, readU64, writeU32 } from '../../uapi/codec.js';
import { buildInfoWithCaps, writeInfoReply } from '../../uapi/capchain.js';
import {
  VFIO_DEVICE_FLAGS_CAPS,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_IOEVENTFD,
  VFIO_DEVICE_IOEVENTFD_SIZE_MASK,
  VFIO_DEVICE_PCI_HOT_RESET,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_PCI_NUM_IRQS,
  VFIO_REGION_INFO_FLAG_CAPS,
} from '../../uapi/vfio.js';
import {
  VFIO_DEVICE_INFO_MINSZ,
  VFIO_DEVICE_IOEVENTFD_MINSZ,
  VFIO_IRQ_INFO_MINSZ,
  VFIO_IRQ_SET_MINSZ,
  VFIO_PCI_HOT_RESET_INFO_MINSZ,
  VFIO_PCI_HOT_RESET_MINSZ,
  VFIO_REGION_INFO_MINSZ,
  vfio_device_info,
  vfio_region_info,
} from '../../uapi/structs.js';
import type { VfioPciCoreDevice } from './core-device.js';
import { validateIrqSet } from './irqs.js';
import type { IoctlArg } from './ops.js';

function userBytes(arg: IoctlArg, minsz: number): Uint8Array {
  if (!(arg instanceof Uint8Array) || arg.length < minsz) fail('EFAULT', `cannot read ${minsz} bytes of the argument`);
  return arg;
}

export function coreDeviceIoctl(core: VfioPciCoreDevice, request: number, arg: IoctlArg): number {
  switch (request) {
    case VFIO_DEVICE_GET_INFO:
      return getInfo(core, arg);
    case VFIO_DEVICE_GET_REGION_INFO:
      return getRegionInfo(core, arg);
    case VFIO_DEVICE_GET_IRQ_INFO:
      return getIrqInfo(core, arg);
    case VFIO_DEVICE_SET_IRQS:
      return setIrqs(core, arg);
    case VFIO_DEVICE_RESET:
      if (!core.canReset) fail('EINVAL', 'device cannot be reset');
      core.resetFunction();
      return 0;
    case VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: {
      const b = userBytes(arg, VFIO_PCI_HOT_RESET_INFO_MINSZ);
      if (readU32(b, 0) < VFIO_PCI_HOT_RESET_INFO_MINSZ) fail('EINVAL', 'argsz');
      return noHotReset();
    }
    case VFIO_DEVICE_PCI_HOT_RESET: {
      const b = userBytes(arg, VFIO_PCI_HOT_RESET_MINSZ);
      if (readU32(b, 0) < VFIO_PCI_HOT_RESET_MINSZ || readU32(b, 4) !== 0) fail('EINVAL', 'argsz or flags');
      return noHotReset();
    }
    case VFIO_DEVICE_IOEVENTFD:
      return ioeventfd(core, arg);
    default:
      fail('ENOTTY', `ioctl 0x${request.toString(16)}`);
  }
}

/**
 * The ACC functions are integrated endpoints on a root bus: no slot and no bridge above them,
 * so neither a slot nor a bus reset exists (pci_probe_reset_slot/bus fail) and Linux answers
 * ENODEV to both hot-reset ioctls. FLR (VFIO_DEVICE_RESET) is the reset they have.
 */
function noHotReset(): never {
  fail('ENODEV', 'no slot or bus reset for this device');
}

function getInfo(core: VfioPciCoreDevice, arg: IoctlArg): number {
  const b = userBytes(arg, VFIO_DEVICE_INFO_MINSZ);
  const flags = VFIO_DEVICE_FLAGS_PCI | (core.canReset ? VFIO_DEVICE_FLAGS_RESET : 0);
  // Linux 6.1 adds device capabilities only for s390 zPCI: none here, and minsz is copied back.
  const reply = buildInfoWithCaps(
    vfio_device_info,
    { flags, num_regions: core.numRegions, num_irqs: VFIO_PCI_NUM_IRQS, cap_offset: 0 },
    [],
    readU32(b, 0),
    { minsz: VFIO_DEVICE_INFO_MINSZ, capsFlag: VFIO_DEVICE_FLAGS_CAPS },
  );
  writeInfoReply(reply, b);
  return 0;
}

function getRegionInfo(core: VfioPciCoreDevice, arg: IoctlArg): number {
  const b = userBytes(arg, VFIO_REGION_INFO_MINSZ);
  const hdr = vfio_region_info.decode(b);
  if (hdr.argsz < VFIO_REGION_INFO_MINSZ) fail('EINVAL', `argsz ${hdr.argsz}`);
  const info = core.regionInfo(hdr.index);
  const reply = buildInfoWithCaps(
    vfio_region_info,
    { index: hdr.index, flags: info.flags, size: info.size, offset: info.offset, cap_offset: hdr.cap_offset },
    info.caps,
    hdr.argsz,
    { minsz: VFIO_REGION_INFO_MINSZ, capsFlag: VFIO_REGION_INFO_FLAG_CAPS },
  );
  writeInfoReply(reply, b);
  return 0;
}

function getIrqInfo(core: VfioPciCoreDevice, arg: IoctlArg): number {
  const b = userBytes(arg, VFIO_IRQ_INFO_MINSZ);
  if (readU32(b, 0) < VFIO_IRQ_INFO_MINSZ) fail('EINVAL', 'argsz');
  const { flags, count } = core.irqs.info(readU32(b, 8));
  writeU32(b, 4, flags);
  writeU32(b, 12, count);
  return 0;
}

function setIrqs(core: VfioPciCoreDevice, arg: IoctlArg): number {
  const b = userBytes(arg, VFIO_IRQ_SET_MINSZ);
  const hdr = { argsz: readU32(b, 0), flags: readU32(b, 4), index: readU32(b, 8), start: readU32(b, 12), count: readU32(b, 16) };
  const size = validateIrqSet(hdr, core.irqs.count(hdr.index), VFIO_IRQ_SET_MINSZ);
  if (b.length < VFIO_IRQ_SET_MINSZ + size) fail('EFAULT', 'cannot read the irq data');
  core.irqs.set(hdr.flags, hdr.index, hdr.start, hdr.count, b.subarray(VFIO_IRQ_SET_MINSZ, VFIO_IRQ_SET_MINSZ + size));
  return 0;
}

function ioeventfd(core: VfioPciCoreDevice, arg: IoctlArg): number {
  const b = userBytes(arg, VFIO_DEVICE_IOEVENTFD_MINSZ);
  if (readU32(b, 0) < VFIO_DEVICE_IOEVENTFD_MINSZ) fail('EINVAL', 'argsz');
  const flags = readU32(b, 4);
  if ((flags & ~VFIO_DEVICE_IOEVENTFD_SIZE_MASK) !== 0) fail('EINVAL', 'unknown ioeventfd flags');
  const size = flags & VFIO_DEVICE_IOEVENTFD_SIZE_MASK;
  const fd = readS32(b, 24);
  // hweight8(size) must be 1: exactly one of the 1/2/4/8-byte flags.
  if (size === 0 || (size & (size - 1)) !== 0 || fd < -1) fail('EINVAL', 'ioeventfd size or fd');
  core.ioeventfds.handle(readU64(b, 8), readU64(b, 16), size as 1 | 2 | 4 | 8, fd);
  return 0;
}
