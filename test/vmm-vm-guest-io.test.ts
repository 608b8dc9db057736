/**
 * The VMM's GuestPciIo over a VFIO device fd (src/vmm/vfio-guest-io.ts): the MSI capability
 * emulated by the VMM (QEMU-style), per-vector mask bits, the hidden upper half of BAR2
 * (hisi-acc-vfio-pci.md section 2), the pread/pwrite slow path, and the DEV_CONFIG_STATE blob.
 */
import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  PCI_MSI_ADDRESS_HI, PCI_MSI_ADDRESS_LO, PCI_MSI_DATA_64, PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE, PCI_MSI_MASK_64,
  PCI_MSI_PENDING_64,
} from '../src/hw/pci/regs.js';
import { HOST_MSI_ADDRESS } from '../src/vfio/pci-core/irqs.js';
import { DEVICE_CONFIG_MAGIC, DEVICE_CONFIG_SIZE, VfioGuestIo } from '../src/vmm/vfio-guest-io.js';
import { Vm } from '../src/vmm/vm.js';
import { errnoCode as code, smallSources } from './vmm-vm-helpers.js';

const source = smallSources();

const DATA = Buffer.from('guest io test '.repeat(200));

describe('emulated MSI capability (QEMU-style: MSI writes become SET_IRQS)', () => {
  it('the guest reads back its own MSI address/data; the device holds the host doorbell', () => {
    const s = source();
    const cap = s.io.msiCap;
    expect(cap).toBeGreaterThan(0x40);
    // QmVfDriver defaults: address 0xfee00000, data 0x40 (vectors OR their index into data)
    expect(s.io.cfgRead(cap + PCI_MSI_ADDRESS_LO, 4)).toBe(0xfee0_0000);
    expect(s.io.cfgRead(cap + PCI_MSI_ADDRESS_HI, 4)).toBe(0);
    expect(s.io.cfgRead(cap + PCI_MSI_DATA_64, 2)).toBe(0x40);
    expect(s.io.cfgRead(cap + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_ENABLE).toBe(1);
    // the physical capability carries what the host kernel programmed for SET_IRQS
    const fn = s.host.device(s.bdf)!.fn;
    expect(fn.configRead(cap + PCI_MSI_ADDRESS_LO, 4)).toBe(HOST_MSI_ADDRESS);
    expect(fn.configRead(cap + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_ENABLE).toBe(1);
  });

  it('disabling MSI in the guest tears down the eventfds (SET_IRQS DATA_NONE)', () => {
    const s = source();
    const cap = s.io.msiCap;
    expect(s.device.core.irqs.msiEnabled).toBe(true);
    const flags = s.io.cfgRead(cap + PCI_MSI_FLAGS, 2);
    s.io.cfgWrite(cap + PCI_MSI_FLAGS, 2, flags & ~PCI_MSI_FLAGS_ENABLE);
    expect(s.device.core.irqs.msiEnabled).toBe(false);
    expect(s.io.msiVectors).toBe(0);
    s.io.cfgWrite(cap + PCI_MSI_FLAGS, 2, flags);
    expect(s.device.core.irqs.msiEnabled).toBe(true);
    expect(s.io.stats.msiEnables).toBe(2);
  });

  it('a masked vector sets its pending bit instead of interrupting; unmasking delivers it (PCI 6.8.1.7)', () => {
    const s = source();
    const cap = s.io.msiCap;
    const d = s.vm.driver!;
    const eq = d.info.vectors.eq;
    const a = s.vm.accel!;
    s.io.cfgWrite(cap + PCI_MSI_MASK_64, 4, 1 << eq);
    expect(s.io.cfgRead(cap + PCI_MSI_MASK_64, 4)).toBe(1 << eq);
    const t = a.submitJob({ op: 'compress', format: 'deflate', data: DATA });
    s.vm.run(200_000);
    expect(a.result(t)).toBeUndefined();
    expect(d.stats.interrupts).toBe(0);
    expect(s.io.cfgRead(cap + PCI_MSI_PENDING_64, 4)).toBe(1 << eq);
    expect(s.io.stats.maskedPending).toBe(1);
    s.io.cfgWrite(cap + PCI_MSI_MASK_64, 4, 0);
    expect(s.io.cfgRead(cap + PCI_MSI_PENDING_64, 4)).toBe(0);
    s.vm.run(0);
    const r = a.result(t)!;
    expect(r.ok && Buffer.from(inflateRawSync(r.output)).equals(DATA)).toBe(true);
    expect(d.stats.interrupts).toBe(1);
  });

  it('pending bits are read-only to the guest', () => {
    const s = source();
    const cap = s.io.msiCap;
    s.io.cfgWrite(cap + PCI_MSI_PENDING_64, 4, 0xffffffff);
    expect(s.io.cfgRead(cap + PCI_MSI_PENDING_64, 4)).toBe(0);
  });
});

describe('BARs as the guest sees them', () => {
  it('BAR2 above 32 KiB is absent for the guest: reads all ones, writes never reach the device', () => {
    const s = source();
    const fn = s.host.device(s.bdf)!.fn;
    const before = fn.mmioRead(2, 0x8000, 4, 'test');
    expect(s.io.read32(2, 0x8000)).toBe(0xffffffff);
    expect(s.io.read64(2, 0xfff8)).toEqual([0xffffffff, 0xffffffff]);
    s.io.write32(2, 0x8000, 0x1234_5678);
    s.io.write64(2, 0x8020, 0xdead, 0xbeef);
    expect(fn.mmioRead(2, 0x8000, 4, 'test')).toBe(before);
    expect(s.io.stats.unassigned).toBe(4);
    // a straddling access at the edge is refused whole
    expect(s.io.read64(2, 0x7ffc)).toEqual([0xffffffff, 0xffffffff]);
  });

  it('without mmap every BAR access takes the fd path and jobs still complete', () => {
    const s = source();
    s.vm.shutdown();
    // a second VM on the same VF with x-no-mmap
    const vm = new Vm(s.host, { bdf: s.bdf, ramBytes: 16 * 2 ** 20, noMmap: true });
    try {
      expect(vm.io.barMapped(2)).toBe(false);
      const out = vm.accel!.compress(DATA, 'deflate');
      expect(Buffer.from(inflateRawSync(out)).equals(DATA)).toBe(true);
      expect(vm.io.stats.slowPath).toBeGreaterThan(10);
    } finally {
      vm.shutdown();
    }
  });
});

describe('64 KiB host pages (hisi-acc-vfio-pci.md 2: BAR2 mmap refused, never rounded up)', () => {
  it('BAR2 goes through pread/pwrite of the fd and the guest still works', () => {
    const s = source({ hostPageSize: 65536 });
    expect(s.io.barSize(2)).toBe(0x8000);
    expect(s.io.barMapped(2)).toBe(false);
    const slow = s.io.stats.slowPath;
    expect(slow).toBeGreaterThan(0);
    const out = s.vm.accel!.compress(DATA, 'deflate');
    expect(Buffer.from(inflateRawSync(out)).equals(DATA)).toBe(true);
    expect(s.io.stats.slowPath).toBeGreaterThan(slow);
    expect(s.io.read32(2, 0x8000)).toBe(0xffffffff);
  });
});

describe('DEV_CONFIG_STATE blob (saveDeviceConfig / loadDeviceConfig)', () => {
  it('has the documented layout: magic, version 1, length 40, command, MSI fields', () => {
    const s = source();
    const b = s.io.saveDeviceConfig();
    const dv = new DataView(b.buffer);
    expect(b.length).toBe(DEVICE_CONFIG_SIZE);
    expect(dv.getUint32(0, true)).toBe(DEVICE_CONFIG_MAGIC);
    expect(String.fromCharCode(...b.subarray(0, 4))).toBe('VGIO');
    expect(dv.getUint16(4, true)).toBe(1);
    expect(dv.getUint16(8, true) & 0x6).toBe(0x6); // memory + bus master
    expect(dv.getUint16(10, true) & PCI_MSI_FLAGS_ENABLE).toBe(1);
    expect(dv.getUint32(12, true)).toBe(0xfee0_0000);
    expect(dv.getUint16(20, true)).toBe(0x40);
    expect(dv.getUint32(36, true)).toBe(s.io.msiCap);
  });

  it('re-programs a fresh VFIO open of the VF: command register and MSI eventfds', () => {
    const s = source();
    const blob = s.io.saveDeviceConfig();
    s.vm.shutdown();
    const vm = new Vm(s.host, { bdf: s.bdf, ramBytes: 16 * 2 ** 20, boot: false });
    try {
      expect(vm.device.core.irqs.msiEnabled).toBe(false);
      vm.io.loadDeviceConfig(blob);
      expect(vm.device.core.irqs.msiEnabled).toBe(true);
      expect(vm.io.cfgRead(vm.io.msiCap + PCI_MSI_ADDRESS_LO, 4)).toBe(0xfee0_0000);
      expect(Buffer.from(vm.io.saveDeviceConfig()).equals(Buffer.from(blob))).toBe(true);
      const fn = s.host.device(s.bdf)!.fn;
      expect(fn.configRead(vm.io.msiCap + PCI_MSI_ADDRESS_LO, 4)).toBe(HOST_MSI_ADDRESS);
    } finally {
      vm.shutdown();
    }
  });

  it('rejects a blob of the wrong size, magic, version or MSI layout with EINVAL and changes nothing', () => {
    const s = source();
    const good = s.io.saveDeviceConfig();
    const before = Buffer.from(good);
    const bad = (edit: (b: Uint8Array) => void): Uint8Array => {
      const b = good.slice();
      edit(b);
      return b;
    };
    expect(code(() => s.io.loadDeviceConfig(good.subarray(0, 39)))).toBe('EINVAL');
    expect(code(() => s.io.loadDeviceConfig(bad((b) => (b[0] = 0))))).toBe('EINVAL');
    expect(code(() => s.io.loadDeviceConfig(bad((b) => (b[4] = 2))))).toBe('EINVAL');
    expect(code(() => s.io.loadDeviceConfig(bad((b) => (b[36] = b[36]! + 4))))).toBe('EINVAL');
    expect(code(() => s.io.loadDeviceConfig(bad((b) => (b[11] = 0x80))))).toBe('EINVAL');
    expect(Buffer.from(s.io.saveDeviceConfig()).equals(before)).toBe(true);
    expect(s.device.core.irqs.msiEnabled).toBe(true);
  });

  it('interrupts held while the vCPUs are paused travel in the blob and are delivered on the other side', () => {
    const s = source();
    const a = s.vm.accel!;
    const t = a.submitJob({ op: 'compress', format: 'deflate', data: DATA });
    s.vm.pauseVcpus();
    s.vm.run(200_000);
    expect(a.result(t)).toBeUndefined();
    const eq = s.vm.driver!.info.vectors.eq;
    expect(s.io.heldVectors).toBe(1 << eq);
    const blob = s.io.saveDeviceConfig();
    expect(new DataView(blob.buffer).getUint32(32, true)).toBe(1 << eq);
    s.vm.resumeVcpus();
    s.vm.run(0);
    const r = a.result(t)!;
    expect(r.ok && Buffer.from(inflateRawSync(r.output)).equals(DATA)).toBe(true);
  });

  it('constructor refuses a file that is not a vfio-pci device', () => {
    const s = source();
    expect(code(() => new VfioGuestIo(s.container as never, s.host.process.fds))).toBe('ENOTTY');
  });
});
