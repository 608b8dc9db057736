/**
 * Config space through the device fd (region 7): the virtualization of vfio_pci_config.c
 * (vfio-uapi-and-migration.md section 1: "BAR registers read back the emulated sizing values,
 * writes to read-only fields are dropped, the command register's memory/bus-master bits gate
 * BAR access and DMA").
 */
import { describe, expect, it } from 'vitest';
import { Errno } from '../src/uapi/errno.js';
import {
  PCI_BASE_ADDRESS_0,
  PCI_CAPABILITY_LIST,
  PCI_CLASS_DEVICE,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL_BCR_FLR,
  PCI_EXP_DEVCTL_PAYLOAD,
  PCI_EXP_DEVCTL_READRQ,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_MSI_ADDRESS_HI,
  PCI_MSI_ADDRESS_LO,
  PCI_MSI_DATA_64,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_ENABLE,
  PCI_MSI_FLAGS_QSIZE,
  PCI_MSI_MASK_64,
  PCI_ROM_ADDRESS,
  PCI_SRIOV_NUM_VF,
  PCI_STATUS,
  PCI_VENDOR_ID,
} from '../src/hw/pci/regs.js';
import { VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD } from '../src/uapi/vfio.js';
import { CFG, accRig, cfgRead, cfgWrite, eventfd, openCore, plainRig, setIrqs } from './vfio-pcicore-helpers.js';

function vf1() {
  const rig = accRig(1);
  const vf = rig.acc.vf(1)!;
  return { rig, vf, ...openCore(vf, rig.process) };
}

describe('identity and read-only header fields', () => {
  it('a VF shows vendor 0x19e5 / device 0xa251 although its hardware registers read 0xffff', () => {
    const { vf, file } = vf1();
    expect(vf.configRead(PCI_VENDOR_ID, 4)).toBe(0xffffffff);
    expect(cfgRead(file, PCI_VENDOR_ID, 2)).toBe(0x19e5);
    expect(cfgRead(file, PCI_DEVICE_ID, 2)).toBe(0xa251);
    expect(cfgRead(file, PCI_VENDOR_ID, 4)).toBe(0xa25119e5);
  });

  it('writes to ids, class, status, capability pointer and interrupt pin are dropped', () => {
    const { file } = vf1();
    const before = [0, 2, 6, 0x0a, PCI_CAPABILITY_LIST, PCI_INTERRUPT_PIN].map((o) => cfgRead(file, o, 1));
    cfgWrite(file, PCI_VENDOR_ID, 4, 0x12345678);
    cfgWrite(file, PCI_STATUS, 2, 0xffff);
    cfgWrite(file, PCI_CLASS_DEVICE, 2, 0x0300);
    cfgWrite(file, PCI_CAPABILITY_LIST, 1, 0x80);
    cfgWrite(file, PCI_INTERRUPT_PIN, 1, 1);
    expect([0, 2, 6, 0x0a, PCI_CAPABILITY_LIST, PCI_INTERRUPT_PIN].map((o) => cfgRead(file, o, 1))).toEqual(before);
    expect(cfgRead(file, PCI_CLASS_DEVICE, 2)).toBe(0x1200);
    expect(cfgRead(file, PCI_STATUS, 2)).toBe(0x0010); // capability list only
  });

  it('Interrupt Line is a virtual scratch byte: the hardware keeps its own value', () => {
    const { fn, process } = plainRig();
    fn.configWrite(PCI_INTERRUPT_LINE, 1, 0x0b);
    const { file } = openCore(fn, process);
    cfgWrite(file, PCI_INTERRUPT_LINE, 1, 0x42);
    expect(cfgRead(file, PCI_INTERRUPT_LINE, 1)).toBe(0x42);
    expect(fn.configRead(PCI_INTERRUPT_LINE, 1)).toBe(0x0b);
  });
});

describe('BAR sizing through the fd', () => {
  it('all-ones reads back the size mask with the 64-bit type, never reaching the hardware (VF)', () => {
    const { vf, file } = vf1();
    for (let i = 0; i < 6; i++) cfgWrite(file, PCI_BASE_ADDRESS_0 + 4 * i, 4, 0xffffffff);
    cfgWrite(file, PCI_ROM_ADDRESS, 4, 0xffffffff);
    // BAR2 64 KiB, BAR4 64 MiB, both 64-bit non-prefetchable (type bits 0b100).
    expect([0, 1, 2, 3, 4, 5].map((i) => cfgRead(file, PCI_BASE_ADDRESS_0 + 4 * i, 4))).toEqual([
      0, 0, 0xffff0004, 0xffffffff, 0xfc000004, 0xffffffff,
    ]);
    expect(cfgRead(file, PCI_ROM_ADDRESS, 4)).toBe(0);
    for (let i = 0; i < 6; i++) expect(vf.configRead(PCI_BASE_ADDRESS_0 + 4 * i, 4)).toBe(0);
  });

  it('an address written by the user is kept, masked to the BAR size (PF: the host BAR is untouched)', () => {
    const { fn, process } = plainRig();
    fn.configWrite(PCI_BASE_ADDRESS_0 + 8, 4, 0x80000000); // the host's assignment for BAR2
    fn.configWrite(PCI_BASE_ADDRESS_0 + 12, 4, 0x20);
    const { file } = openCore(fn, process);
    // Before any write the user sees the host-programmed value, as vfio's shadow copy.
    expect(cfgRead(file, PCI_BASE_ADDRESS_0 + 8, 4)).toBe(0x80000004);
    cfgWrite(file, PCI_BASE_ADDRESS_0 + 8, 4, 0x1234_5678);
    cfgWrite(file, PCI_BASE_ADDRESS_0 + 12, 4, 0x1);
    expect(cfgRead(file, PCI_BASE_ADDRESS_0 + 8, 4)).toBe(0x1234_0004);
    expect(cfgRead(file, PCI_BASE_ADDRESS_0 + 12, 4)).toBe(0x1);
    // BAR4 is 16 KiB: low 14 bits are not address bits.
    cfgWrite(file, PCI_BASE_ADDRESS_0 + 16, 4, 0xffffffff);
    expect(cfgRead(file, PCI_BASE_ADDRESS_0 + 16, 4)).toBe(0xffffc004);
    expect(fn.configRead(PCI_BASE_ADDRESS_0 + 8, 4)).toBe(0x80000004);
    expect(fn.configRead(PCI_BASE_ADDRESS_0 + 12, 4)).toBe(0x20);
  });
});

describe('Command register', () => {
  it('VF: Bus Master reaches the hardware; Memory Space Enable is virtual and reads back as written', () => {
    const { vf, file } = vf1();
    cfgWrite(file, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    expect(vf.configRead(PCI_COMMAND, 2)).toBe(PCI_COMMAND_MASTER);
    expect(cfgRead(file, PCI_COMMAND, 2)).toBe(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    expect(vf.busMasterEnabled).toBe(true);
    cfgWrite(file, PCI_COMMAND, 2, 0);
    expect(cfgRead(file, PCI_COMMAND, 2)).toBe(0);
    expect(vf.busMasterEnabled).toBe(false);
  });

  it('PF: memory and bus master go to the hardware; INTx Disable stays virtual', () => {
    const { fn, process } = plainRig();
    const { file } = openCore(fn, process);
    // Open enabled memory decoding (pci_enable_device).
    expect(fn.memoryEnabled).toBe(true);
    expect(cfgRead(file, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY).toBe(PCI_COMMAND_MEMORY);
    cfgWrite(file, PCI_COMMAND, 2, PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    expect(fn.configRead(PCI_COMMAND, 2)).toBe(PCI_COMMAND_MASTER);
    expect(cfgRead(file, PCI_COMMAND, 2)).toBe(PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    expect(fn.memoryEnabled).toBe(false);
  });
});

describe('MSI capability', () => {
  it('address/data/flags are virtual: the user cannot enable MSI by config writes', () => {
    const { vf, file } = vf1();
    const msi = vf.msi.offset;
    // Before any write the flags are the hardware's: 64-bit, per-vector mask, 4 vectors capable.
    expect(cfgRead(file, msi + PCI_MSI_FLAGS, 2)).toBe(0x0184);
    cfgWrite(file, msi + PCI_MSI_ADDRESS_LO, 4, 0xfee01000);
    cfgWrite(file, msi + PCI_MSI_ADDRESS_HI, 4, 0x1);
    cfgWrite(file, msi + PCI_MSI_DATA_64, 2, 0x4021);
    cfgWrite(file, msi + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE | (1 << 4));
    expect(cfgRead(file, msi + PCI_MSI_ADDRESS_LO, 4)).toBe(0xfee01000);
    expect(cfgRead(file, msi + PCI_MSI_ADDRESS_HI, 4)).toBe(1);
    expect(cfgRead(file, msi + PCI_MSI_DATA_64, 2)).toBe(0x4021);
    // Enable cleared and Multiple Message Enable clamped to msi_qmax (0 before SET_IRQS).
    expect(cfgRead(file, msi + PCI_MSI_FLAGS, 2) & (PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE)).toBe(0);
    expect(vf.msi.enabled).toBe(false);
    expect(vf.msi.messageAddress).toBe(0);
    // The whole low flags byte is virtual and writable in Linux (Multiple Message Capable too),
    // so it reads back what was written; the hardware keeps its capability bits.
    expect(cfgRead(file, msi + PCI_MSI_FLAGS, 2)).toBe(0x0100);
    expect(vf.msi.capableVectors).toBe(4);
  });

  it('after SET_IRQS the flags may keep Enable and up to the allocated Multiple Message Enable', () => {
    const { vf, file, rig } = vf1();
    const msi = vf.msi.offset;
    const a = eventfd(rig.process);
    expect(setIrqs(file, { flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: 1, start: 0, count: 2, data: [a.fd, -1] })).toBe(0);
    cfgWrite(file, msi + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE | (2 << 4));
    expect(cfgRead(file, msi + PCI_MSI_FLAGS, 2) & (PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE)).toBe(PCI_MSI_FLAGS_ENABLE | (1 << 4));
    expect(vf.msi.enabled).toBe(true);
    expect(vf.msi.enabledVectors).toBe(2);
  });

  it('the per-vector mask register passes through to the hardware', () => {
    const { vf, file } = vf1();
    cfgWrite(file, vf.msi.offset + PCI_MSI_MASK_64, 4, 0x5);
    expect(vf.msi.isMasked(0)).toBe(true);
    expect(vf.msi.isMasked(1)).toBe(false);
    expect(vf.msi.isMasked(2)).toBe(true);
    expect(cfgRead(file, vf.msi.offset + PCI_MSI_MASK_64, 4)).toBe(0x5);
  });
});

describe('PCI Express capability', () => {
  it('writing Initiate FLR resets the function (reset value comes back) and the bit reads 0', () => {
    const { vf, file } = vf1();
    const pcie = vf.pcie.offset;
    const flrs = vf.stats.flrs;
    vf.mmioWrite(2, 0x4, 4, 0, 'test');
    cfgWrite(file, pcie + PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_BCR_FLR);
    expect(vf.stats.flrs).toBe(flrs + 1);
    expect(vf.mmioRead(2, 0x4, 4, 'test')).toBe(1);
    expect(cfgRead(file, pcie + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR).toBe(0);
  });

  it('Max Payload Size is virtual; Max Read Request reaches the PF hardware, floored at MPS', () => {
    const { fn, process } = plainRig();
    const { file } = openCore(fn, process);
    const ctl = fn.pcie.offset + PCI_EXP_DEVCTL;
    const hwMps = fn.configRead(ctl, 2) & PCI_EXP_DEVCTL_PAYLOAD;
    cfgWrite(file, ctl, 2, (3 << 5) | (0 << 12)); // MPS 1024, MRRS 128
    expect(cfgRead(file, ctl, 2) & (PCI_EXP_DEVCTL_PAYLOAD | PCI_EXP_DEVCTL_READRQ)).toBe(3 << 5);
    expect(fn.configRead(ctl, 2) & PCI_EXP_DEVCTL_PAYLOAD).toBe(hwMps);
    // MRRS 128 < the hardware MPS (128 << hwMps field): the hardware gets max(128, MPS).
    const expectRq = Math.max(128, 128 << (hwMps >> 5));
    expect(128 << ((fn.configRead(ctl, 2) & PCI_EXP_DEVCTL_READRQ) >> 12)).toBe(expectRq);
    cfgWrite(file, ctl, 2, 3 << 12); // MRRS 1024
    expect((fn.configRead(ctl, 2) & PCI_EXP_DEVCTL_READRQ) >> 12).toBe(3);
  });
});

describe('capability chain and extended capabilities', () => {
  it('the chain walks PCIe (0x40) then MSI (0x7c) through the fd', () => {
    const { file } = vf1();
    const chain: number[] = [];
    for (let p = cfgRead(file, PCI_CAPABILITY_LIST, 1); p !== 0; p = cfgRead(file, p + 1, 1)) chain.push(p, cfgRead(file, p, 1));
    expect(chain).toEqual([0x40, 0x10, 0x7c, 0x05]);
  });

  it('a PF shows its SR-IOV capability read-only: NumVFs writes through the fd are dropped', () => {
    const rig = accRig(0);
    const pf = rig.acc.pf;
    const { file } = openCore(pf, rig.process);
    const so = pf.sriov.offset;
    expect(cfgRead(file, so, 4) & 0xffff).toBe(0x10);
    cfgWrite(file, so + PCI_SRIOV_NUM_VF, 2, 3);
    expect(pf.configRead(so + PCI_SRIOV_NUM_VF, 2)).toBe(0);
    expect(cfgRead(file, so + 0x0e, 2)).toBe(63); // TotalVFs from the hardware
  });

  it('a VF has no extended capabilities: 0x100 reads 0', () => {
    const { file } = vf1();
    expect(cfgRead(file, 0x100, 4)).toBe(0);
  });
});

describe('config access bounds and splitting', () => {
  it('EFAULT past 4 KiB, and a multi-byte read equals the concatenation of byte reads', () => {
    const { file } = vf1();
    expect(file.read(new Uint8Array(2), CFG + 4095)).toBe(-Errno.EFAULT);
    expect(file.read(new Uint8Array(1), CFG + 4096)).toBe(-Errno.EFAULT);
    expect(file.write(new Uint8Array(8), CFG + 4092)).toBe(-Errno.EFAULT);
    const whole = new Uint8Array(0x100);
    expect(file.read(whole, CFG)).toBe(0x100);
    const bytes = new Uint8Array(0x100);
    for (let i = 0; i < 0x100; i++) bytes[i] = cfgRead(file, i, 1);
    expect(Buffer.from(whole).equals(Buffer.from(bytes))).toBe(true);
    // An unaligned 4-byte read across the PCIe/MSI boundary.
    const odd = new Uint8Array(4);
    expect(file.read(odd, CFG + 0x7a)).toBe(4);
    expect([...odd]).toEqual([...bytes.subarray(0x7a, 0x7e)]);
  });
});
