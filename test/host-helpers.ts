/**
 * Helpers for the host tests: raw register protocols written from the spec (independent of
 * the driver under test), and small fake drivers.
 */
import type { PciFunction } from '../src/hw/pci/function.js';
import type { HostPciDriver } from '../src/host/driver.js';
import type { PciDeviceId } from '../src/host/pci-ids.js';
import type { HostPciDevice } from '../src/host/pci-device.js';
import { KernelError, type ErrnoName } from '../src/uapi/errno.js';

export const ZIP_PF = '0000:75:00.0';
export const SEC_PF = '0000:76:00.0';
export const HPRE_PF = '0000:79:00.0';
export const dev = (bdf: string) => `/sys/bus/pci/devices/${bdf}`;
export const drvDir = (name: string) => `/sys/bus/pci/drivers/${name}`;
/** VF n (1-based) of a PF at bus:00.0 with offset 1 / stride 1. */
export const vfBdf = (pf: string, n: number) => {
  const bus = pf.slice(5, 7);
  return `0000:${bus}:${((n >> 3) & 0x1f).toString(16).padStart(2, '0')}.${n & 7}`;
};

/** Independent model of the V2+ SQC VFT word (qm-hardware.md 4). */
export function sqcWord(base: number, num: number): bigint {
  return (BigInt(base) << 28n) | (1n << 44n) | (BigInt(num - 1) << 45n);
}
export const CQC_WORD = 1n << 28n;

/** qm-hardware.md 4: reads one VFT word through the PF's VFT_CFG registers. */
export function rawVftRead(pf: PciFunction, fn: number, type: number): bigint {
  const r = (off: number) => pf.mmioRead(2, off, 4, 'test');
  const w = (off: number, v: number) => pf.mmioWrite(2, off, 4, v, 'test');
  if ((r(0x10006c) & 1) !== 1) throw new Error('VFT RDY not set');
  w(0x100058, 1);
  w(0x10005c, type);
  w(0x100060, fn);
  w(0x10006c, 0);
  w(0x100054, 1);
  if ((r(0x10006c) & 1) !== 1) throw new Error('VFT op did not complete');
  return BigInt(r(0x100064)) | (BigInt(r(0x100068)) << 32n);
}

/**
 * qm-hardware.md 2: one mailbox command through a function's BAR2 as two 64-bit stores;
 * returns w0 after completion and the data words. Requires a zero-latency mailbox.
 */
export function rawMailbox(fn: PciFunction, cmd: number, queue: number, lo: number, hi: number, op: 0 | 1): { w0: number; lo: number; hi: number } {
  const w0 = cmd | (op << 14) | (1 << 13) | (queue << 16);
  fn.mmioWrite64(2, 0x300, w0 >>> 0, lo >>> 0, 'test');
  fn.mmioWrite64(2, 0x308, hi >>> 0, 0, 'test');
  return { w0: fn.mmioRead(2, 0x300, 4, 'test'), lo: fn.mmioRead(2, 0x304, 4, 'test'), hi: fn.mmioRead(2, 0x308, 4, 'test') };
}

/** A VF's own SQC VFT through mailbox SQC_VFT_V2 (spec 4: base = (vft>>28)&0xFFFF, num = ((vft>>45)&0x3FF)+1). */
export function vfMailboxVft(vf: PciFunction): { base: number; num: number; status: number } {
  const r = rawMailbox(vf, 0x6, 0, 0, 0, 1);
  const vft = BigInt(r.lo) | (BigInt(r.hi) << 32n);
  return { base: Number((vft >> 28n) & 0xffffn), num: Number((vft >> 45n) & 0x3ffn) + 1, status: (r.w0 >> 9) & 0xf };
}

export interface FakeDriver extends HostPciDriver {
  probed: string[];
  removed: string[];
}

/** A driver that records probe/remove; `failWith` makes probe refuse with that errno. */
export function fakeDriver(name: string, ids: PciDeviceId[], opts: {
  failWith?: ErrnoName;
  onProbe?: (d: HostPciDevice) => void;
  onRemove?: (d: HostPciDevice) => void;
  sriov?: (d: HostPciDevice, n: number) => number;
} = {}): FakeDriver {
  const drv: FakeDriver = {
    name,
    idTable: ids,
    probed: [],
    removed: [],
    probe(d) {
      if (opts.failWith) throw new KernelError(opts.failWith, 'refused');
      drv.probed.push(d.bdf);
      d.drvdata = { owner: name };
      opts.onProbe?.(d);
    },
    remove(d) {
      drv.removed.push(d.bdf);
      opts.onRemove?.(d);
    },
  };
  if (opts.sriov) drv.sriovConfigure = opts.sriov;
  return drv;
}
