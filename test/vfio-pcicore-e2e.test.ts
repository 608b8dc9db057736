/**
 * Plain vfio-pci end to end against the real model: a ZIP V3 VF bound to vfio-pci through a
 * host-style probe, opened as a group member, driven by a minimal user-space QM driver that
 * only uses the device fd (config space, SET_IRQS, read/write at BAR2 offsets, an ioeventfd
 * doorbell), with DMA through an IOMMU domain. The job is a deflate compression checked with
 * node:zlib, and completion arrives as a signalled MSI eventfd (qm-hardware.md 3, 5, 8).
 */
import { describe, expect, it } from 'vitest';
import { inflateRawSync } from 'node:zlib';
import {
  VFIO_DEVICE_IOEVENTFD_64,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_PCI_INDEX_TO_OFFSET,
} from '../src/uapi/vfio.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_DEVICE_ID, PCI_VENDOR_ID } from '../src/hw/pci/regs.js';
import {
  ZIP_CONSUMED,
  ZIP_DEST_ADDR_H,
  ZIP_DEST_ADDR_L,
  ZIP_DEST_AVAIL_OUT,
  ZIP_DW3,
  ZIP_DW7,
  ZIP_DW9,
  ZIP_INPUT_DATA_LENGTH,
  ZIP_PRODUCED,
  ZIP_REQ_DEFLATE,
  ZIP_SOURCE_ADDR_H,
  ZIP_SOURCE_ADDR_L,
  ZIP_SQE_SIZE,
  ZIP_SQE_TYPE_SHIFT,
  ZIP_SQE_TYPE_V3,
  ZIP_TAG_DW26,
} from '../src/hw/engines/zip-sqe.js';
import { IommuDomain, IOMMU_READ, IOMMU_WRITE } from '../src/iommu/domain.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { vfioPciDriver } from '../src/vfio/pci-core/driver.js';
import type { VfioDeviceFile } from '../src/vfio/pci-core/device-file.js';
import type { HostPciDeviceLike, VfioGroupMember, VfioHostLink } from '../src/vfio/pci-core/host-types.js';
import type { VfioMapping } from '../src/vfio/pci-core/ops.js';
import { accRig, cfgRead, cfgWrite, eventfd, ioeventfd, setIrqs } from './vfio-pcicore-helpers.js';

const BAR2 = VFIO_PCI_INDEX_TO_OFFSET(2);
const IOVA = 0x1_0000_0000; // above 4 GiB so the high address words matter
const MEM = 0x100000;
// Guest memory layout (offsets from IOVA).
const MB_CTX = 0x0;
const EQE = 0x1000;
const AEQE = 0x2000;
const SQC = 0x3000;
const CQC = 0x4000;
const SQ = 0x10000;
const CQ = 0x11000;
const SRC = 0x20000;
const DST = 0x60000;
const EQ_DEPTH = 64;
const AEQ_DEPTH = 32;
const Q_DEPTH = 16;

/** The user-space side: everything goes through the device fd. */
class FdQmDriver {
  constructor(
    readonly file: VfioDeviceFile,
    readonly mem: SparseMemory,
    readonly run: () => void,
  ) {}

  w32(off: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    expect(this.file.write(b, BAR2 + off)).toBe(4);
  }

  r32(off: number): number {
    const b = new Uint8Array(4);
    expect(this.file.read(b, BAR2 + off)).toBe(4);
    return new DataView(b.buffer).getUint32(0, true);
  }

  /** One 8-byte write through the fd: a single 64-bit transaction. */
  w64(off: number, lo: number, hi: number): void {
    const b = new Uint8Array(8);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, lo >>> 0, true);
    dv.setUint32(4, hi >>> 0, true);
    expect(this.file.write(b, BAR2 + off)).toBe(8);
  }

  /** Mailbox (spec 2): 16 bytes in one write (two 64-bit stores), then poll busy. */
  mailbox(cmd: number, queue: number, addr: number): number {
    const w0 = (cmd & 0xff) | (1 << 13) | ((queue & 0xffff) << 16);
    const b = new Uint8Array(16);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, w0 >>> 0, true);
    dv.setUint32(4, addr % 2 ** 32, true);
    dv.setUint32(8, Math.floor(addr / 2 ** 32), true);
    expect(this.file.write(b, BAR2 + 0x300)).toBe(16);
    for (let i = 0; i < 100 && this.r32(0x300) & (1 << 13); i++) this.run();
    return (this.r32(0x300) >>> 9) & 0xf;
  }

  ctx(words: [number, number][], size: number): number {
    const b = new Uint8Array(size);
    const dv = new DataView(b.buffer);
    for (const [off, v] of words) dv.setUint32(off, v >>> 0, true);
    this.mem.write(MB_CTX, b);
    return IOVA + MB_CTX;
  }

  start(): void {
    const hi = Math.floor(IOVA / 2 ** 32);
    expect(this.mailbox(0x2, 0, this.ctx([[4, IOVA + EQE], [8, hi], [12, 2 << 12], [24, (EQ_DEPTH - 1) | (1 << 16)]], 28))).toBe(0);
    expect(this.mailbox(0x3, 0, this.ctx([[4, IOVA + AEQE], [8, hi], [12, 2 << 12], [24, (AEQ_DEPTH - 1) | (1 << 16)]], 28))).toBe(0);
    expect(this.mailbox(0x4, 0, IOVA + SQC)).toBe(0);
    expect(this.mailbox(0x5, 0, IOVA + CQC)).toBe(0);
    this.w64(0x2000, 3 << 12, 0); // AEQ doorbell, head 0
    this.w64(0x2000, 2 << 12, 0); // EQ doorbell, head 0
    this.w32(0xc, 0); // unmask EQ
    this.w32(0x4, 0); // unmask AEQ
    this.w32(0x60, 0); // QM_VF_STATE = ready
    const sqc = this.ctx([[4, IOVA + SQ], [8, hi], [12, (Q_DEPTH - 1) | (7 << 12)], [24, 0], [26, 0]], 32);
    expect(this.mailbox(0x0, 0, sqc)).toBe(0);
    const cqc = this.ctx([[4, IOVA + CQ], [8, hi], [12, (Q_DEPTH - 1) | (4 << 12)], [24, 1 | 2]], 32);
    expect(this.mailbox(0x1, 0, cqc)).toBe(0);
  }

  /** A deflate compression SQE at slot 0 (zip-sqe.ts layout, sqe_type 3, flat buffers). */
  writeSqe(input: Uint8Array, tag: number): void {
    this.mem.write(SRC, input);
    const sqe = new Uint8Array(ZIP_SQE_SIZE);
    const dv = new DataView(sqe.buffer);
    dv.setUint32(ZIP_INPUT_DATA_LENGTH, input.length, true);
    dv.setUint32(ZIP_DW7, ZIP_SQE_TYPE_V3 << ZIP_SQE_TYPE_SHIFT, true);
    dv.setUint32(ZIP_DW9, ZIP_REQ_DEFLATE, true);
    dv.setUint32(ZIP_DEST_AVAIL_OUT, 0x40000, true);
    dv.setUint32(ZIP_SOURCE_ADDR_L, (IOVA + SRC) % 2 ** 32, true);
    dv.setUint32(ZIP_SOURCE_ADDR_H, Math.floor((IOVA + SRC) / 2 ** 32), true);
    dv.setUint32(ZIP_DEST_ADDR_L, (IOVA + DST) % 2 ** 32, true);
    dv.setUint32(ZIP_DEST_ADDR_H, Math.floor((IOVA + DST) / 2 ** 32), true);
    dv.setUint32(ZIP_TAG_DW26, tag, true);
    this.mem.write(SQ, sqe);
  }
}

function boot() {
  const rig = accRig(1);
  const vf = rig.acc.vf(1)!;
  const members = new Map<string, VfioGroupMember>();
  const host: VfioHostLink = {
    process: rig.process,
    vfio: { registerDevice: (d, m) => void members.set(d.bdf, m), unregisterDevice: (d) => void members.delete(d.bdf) },
  };
  const dev: HostPciDeviceLike = { bdf: vf.bdf, fn: vf, vendor: vf.vendorId, device: vf.deviceId, isVirtfn: true, iommuGroup: 1, host };
  // driver_override=vfio-pci + bind, then what the group does: attach the container's domain and open.
  vfioPciDriver.probe(dev);
  const member = members.get(vf.bdf)!;
  const mem = new SparseMemory(MEM);
  const domain = new IommuDomain();
  domain.map(IOVA, MEM, mem, 0, IOMMU_READ | IOMMU_WRITE);
  member.setIommu(domain);
  const file = member.openDevice() as VfioDeviceFile;
  rig.process.fds.install(file);
  const drv = new FdQmDriver(file, mem, () => rig.sched.runUntilIdle());
  return { rig, vf, dev, member, mem, domain, file, drv };
}

describe('vfio-pci end to end with a ZIP V3 VF', () => {
  it('config, MSI eventfds, BAR2 doorbells through read/write: a compression job completes with an interrupt', () => {
    const { rig, file, drv, mem, vf, dev } = boot();
    expect(cfgRead(file, PCI_VENDOR_ID, 2)).toBe(0x19e5);
    expect(cfgRead(file, PCI_DEVICE_ID, 2)).toBe(0xa251);
    cfgWrite(file, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const eq = eventfd(rig.process);
    const aeq = eventfd(rig.process);
    expect(setIrqs(file, { flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: 1, start: 0, count: 3, data: [eq.fd, aeq.fd, -1] })).toBe(0);
    // The VF's own queue count through its mailbox (SQC_VFT_V2, op 1): one VF gets all 960 non-PF queues.
    const w0 = 0x6 | (1 << 13) | (1 << 14);
    const b = new Uint8Array(16);
    new DataView(b.buffer).setUint32(0, w0, true);
    expect(file.write(b, BAR2 + 0x300)).toBe(16);
    rig.sched.runUntilIdle();
    const vft = drv.r32(0x304) + drv.r32(0x308) * 2 ** 32;
    expect(Math.floor(vft / 2 ** 45) % 1024 + 1).toBe(960);

    drv.start();
    const input = Buffer.from('vfio-pci end to end: '.repeat(200));
    drv.writeSqe(input, 0xc0ffee);
    drv.w64(0x1000, 0, 1); // SQ doorbell: qn 0, cmd 0, tail 1
    rig.sched.runUntilIdle();

    expect(eq.efd.count).toBe(1n);
    expect(aeq.efd.signals).toBe(0);
    const sqe = mem.readBytes(SQ, ZIP_SQE_SIZE);
    const sv = new DataView(sqe.buffer);
    expect(sv.getUint32(ZIP_DW3, true) & 0xff).toBe(0);
    expect(sv.getUint32(ZIP_CONSUMED, true)).toBe(input.length);
    const produced = sv.getUint32(ZIP_PRODUCED, true);
    const out = mem.readBytes(DST, produced);
    expect(inflateRawSync(out).equals(input)).toBe(true);
    expect(produced).toBeLessThan(input.length / 10); // repetitive text compresses well
    expect(sv.getUint32(ZIP_TAG_DW26, true)).toBe(0xc0ffee);
    // CQE 0: sq_head 0, phase 1; EQE 0 names CQ 0 with phase 1.
    expect(mem.getU16(CQ + 8)).toBe(0);
    expect(mem.getU16(CQ + 14) & 1).toBe(1);
    expect(mem.getU32(EQE)).toBe(1 << 16);
    expect(vf.stats.dmaBlocked).toBe(0);

    vfioPciDriver.remove(dev);
    expect(file.closed).toBe(true);
  });

  it('an ioeventfd rings the SQ doorbell and an mmap of BAR2 reads the completion registers', () => {
    const { rig, file, drv, mem } = boot();
    cfgWrite(file, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const eq = eventfd(rig.process);
    setIrqs(file, { flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: 1, start: 0, count: 1, data: [eq.fd] });
    drv.start();
    const input = Buffer.alloc(5000, 0x61);
    drv.writeSqe(input, 7);
    const kick = eventfd(rig.process);
    // doorbell value: qn 0 | cmd 0 << 12 in the low word, tail 1 in the high word.
    expect(ioeventfd(file, { flags: VFIO_DEVICE_IOEVENTFD_64, offset: BAR2 + 0x1000, data: 1n << 32n, fd: kick.fd })).toBe(0);
    kick.efd.signal();
    rig.sched.runUntilIdle();
    expect(eq.efd.count).toBe(1n);
    const produced = mem.getU32(SQ + ZIP_PRODUCED);
    expect(inflateRawSync(mem.readBytes(DST, produced)).equals(input)).toBe(true);
    const map = file.mmap(BAR2, 0x4000) as VfioMapping;
    expect(map.read32(0x3100)).toBe(0x6f01);
    expect(map.read32(0xc)).toBe(0); // EQ unmasked by start()
    map.write32(0xc, 1);
    expect(drv.r32(0xc)).toBe(1);
  });
});
