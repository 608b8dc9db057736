/**
 * Helpers for the vfio-pci-core tests: an ACC device with VFs, a plain recording PCI function,
 * a process (fd table + address space), and encoders for the device ioctls built with the uAPI
 * codecs so every call goes through the same bytes a VMM would pass.
 */
import { AccDevice } from '../src/hw/acc-device.js';
import { PciFunction } from '../src/hw/pci/function.js';
import { parseBdf } from '../src/hw/pci/bdf.js';
import { PCI_SRIOV_CTRL, PCI_SRIOV_CTRL_MSE, PCI_SRIOV_CTRL_VFE, PCI_SRIOV_NUM_VF } from '../src/hw/pci/regs.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { UserAddressSpace } from '../src/mem/user-space.js';
import { EventFd, FdTable } from '../src/vfio/fd.js';
import { VfioPciCoreDevice } from '../src/vfio/pci-core/core-device.js';
import type { VfioDeviceFile } from '../src/vfio/pci-core/device-file.js';
import type { VfioPciVariantOps } from '../src/vfio/pci-core/ops.js';
import type { VfioProcess } from '../src/vfio/pci-core/host-types.js';
import {
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_IOEVENTFD,
  VFIO_DEVICE_SET_IRQS,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_INDEX_TO_OFFSET,
} from '../src/uapi/vfio.js';
import { vfio_device_ioeventfd, vfio_irq_info, vfio_irq_set, vfio_region_info } from '../src/uapi/structs.js';
import { SparseRegion } from './pci-helpers.js';

export const CFG = VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX);

export function makeProcess(): VfioProcess & { fds: FdTable; user: UserAddressSpace } {
  return { fds: new FdTable(), user: new UserAddressSpace() };
}

export interface AccRig {
  sched: Scheduler;
  acc: AccDevice;
  process: ReturnType<typeof makeProcess>;
}

/** A ZIP (or other) PF with `numVfs` VFs enabled through its SR-IOV capability and the default VFT. */
export function accRig(numVfs = 2, profile = 'zip-v3'): AccRig {
  const sched = new Scheduler();
  const acc = new AccDevice({ profile, scheduler: sched });
  const so = acc.pf.sriov.offset;
  acc.pf.configWrite(so + PCI_SRIOV_NUM_VF, 2, numVfs);
  acc.pf.configWrite(so + PCI_SRIOV_CTRL, 2, PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
  acc.qm.applyDefaultVft(numVfs);
  return { sched, acc, process: makeProcess() };
}

export interface PlainRig {
  fn: PciFunction;
  bar2: SparseRegion;
  bar4: SparseRegion;
  process: ReturnType<typeof makeProcess>;
}

/** A non-VF function (memory enable in hardware) with recording BAR2 (64 KiB) and BAR4 (16 KiB). */
export function plainRig(msiVectors = 4): PlainRig {
  const fn = new PciFunction(
    parseBdf('0000:3a:00.0'),
    { vendorId: 0x19e5, deviceId: 0xa250, revision: 0x30, classCode: 0x120000, subsystemVendorId: 0x19e5, subsystemId: 0xa250 },
    { barSizes: [0, 0, 0x10000, 0, 0x4000, 0], msiVectors },
  );
  const bar2 = new SparseRegion(0x10000);
  const bar4 = new SparseRegion(0x4000);
  fn.attachBar(2, bar2);
  fn.attachBar(4, bar4);
  return { fn, bar2, bar4, process: makeProcess() };
}

export interface Opened {
  core: VfioPciCoreDevice;
  file: VfioDeviceFile;
  fd: number;
}

export function openCore(fn: PciFunction, process: VfioProcess, variant?: VfioPciVariantOps): Opened {
  const core = new VfioPciCoreDevice({ fn, process, variant });
  const file = core.openDevice();
  const fd = process.fds.install(file);
  return { core, file, fd };
}

export function eventfd(process: VfioProcess): { fd: number; efd: EventFd } {
  const { fd, file } = process.fds.eventfd();
  return { fd, efd: file };
}

// ---- config space through the fd ---------------------------------------------------------

export function cfgRead(file: VfioDeviceFile, off: number, size: 1 | 2 | 4): number {
  const b = new Uint8Array(size);
  const r = file.read(b, CFG + off);
  if (r !== size) throw new Error(`config read at ${off} returned ${r}`);
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + b[i]!;
  return v;
}

export function cfgWrite(file: VfioDeviceFile, off: number, size: 1 | 2 | 4, value: number): void {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (value >>> (8 * i)) & 0xff;
  const r = file.write(b, CFG + off);
  if (r !== size) throw new Error(`config write at ${off} returned ${r}`);
}

// ---- ioctl encoders ----------------------------------------------------------------------

export function regionInfo(file: VfioDeviceFile, index: number, argsz = 32, bufLen = Math.max(argsz, 32)) {
  const full = new Uint8Array(Math.max(bufLen, 32));
  vfio_region_info.encode({ argsz, index }, full);
  const buf = full.subarray(0, bufLen);
  const ret = file.ioctl(VFIO_DEVICE_GET_REGION_INFO, buf);
  return { ret, buf, info: vfio_region_info.decode(full) };
}

export function irqInfo(file: VfioDeviceFile, index: number, argsz = 16) {
  const buf = vfio_irq_info.encode({ argsz, index });
  const ret = file.ioctl(VFIO_DEVICE_GET_IRQ_INFO, buf);
  return { ret, info: vfio_irq_info.decode(buf) };
}

export interface IrqSetArgs {
  flags: number;
  index: number;
  start: number;
  count: number;
  /** eventfd numbers (EVENTFD) or booleans as 0/1 (BOOL). */
  data?: number[];
  argsz?: number;
  /** Truncate the buffer to this many bytes. */
  bufLen?: number;
}

export function setIrqs(file: VfioDeviceFile, a: IrqSetArgs): number {
  const eventfds = (a.flags & 4) !== 0;
  const data = a.data ?? [];
  const dataBytes = eventfds ? 4 * data.length : data.length;
  const buf = new Uint8Array(20 + dataBytes);
  vfio_irq_set.encode({ argsz: a.argsz ?? 20 + dataBytes, flags: a.flags, index: a.index, start: a.start, count: a.count }, buf);
  const dv = new DataView(buf.buffer);
  data.forEach((v, i) => (eventfds ? dv.setInt32(20 + 4 * i, v, true) : dv.setUint8(20 + i, v)));
  return file.ioctl(VFIO_DEVICE_SET_IRQS, a.bufLen === undefined ? buf : buf.subarray(0, a.bufLen));
}

export function ioeventfd(
  file: VfioDeviceFile,
  a: { flags: number; offset: number | bigint; data: number | bigint; fd: number; argsz?: number; bufLen?: number },
): number {
  const buf = vfio_device_ioeventfd.encode({
    argsz: a.argsz ?? 32,
    flags: a.flags,
    offset: BigInt(a.offset),
    data: BigInt(a.data),
    fd: a.fd,
  });
  return file.ioctl(VFIO_DEVICE_IOEVENTFD, a.bufLen === undefined ? buf : buf.subarray(0, a.bufLen));
}

/** VFIO_DEVICE_FEATURE with `payload` after the 8-byte header; returns the whole buffer. */
export function feature(file: VfioDeviceFile, flags: number, payload: Uint8Array, argsz = 8 + payload.length) {
  const buf = new Uint8Array(8 + payload.length);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, argsz, true);
  dv.setUint32(4, flags, true);
  buf.set(payload, 8);
  const ret = file.ioctl(VFIO_DEVICE_FEATURE, buf);
  return { ret, buf, payload: buf.subarray(8) };
}

export function u32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(off, true);
}

export function s32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getInt32(off, true);
}

export function u64(b: Uint8Array, off: number): bigint {
  return new DataView(b.buffer, b.byteOffset).getBigUint64(off, true);
}
