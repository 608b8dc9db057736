import { describe, expect, it } from 'vitest';
import { profileFor } from '../src/hw/firmware.js';
import { PciPf } from '../src/hw/pci/pf.js';
import type { PciVf } from '../src/hw/pci/vf.js';
import { FlatDma, SparseRegion } from './pci-helpers.js';

// SR-IOV extended capability layout (SR-IOV 1.1, 3.3), typed here independently.
const SRIOV = 0x100; // first extended capability
const CTRL = SRIOV + 0x08;
const NUM_VF = SRIOV + 0x10;
const SYS_PGSIZE = SRIOV + 0x20;
const VF_BAR = (i: number) => SRIOV + 0x24 + 4 * i;
const VFE = 0x1;
const MSE = 0x8;
const CMD = 0x04;

function setup(engine: 'zip' | 'sec' | 'hpre' = 'zip') {
  const pf = new PciPf(profileFor(engine, 'v3'), '0000:75:00.0');
  const enabled: (readonly PciVf[])[] = [];
  const disabled: (readonly PciVf[])[] = [];
  pf.onVfEnable((vfs) => enabled.push(vfs));
  pf.onVfDisable((vfs) => disabled.push(vfs));
  /** The PCI core's sriov_enable: NumVFs, then VF Enable + VF MSE in one write. */
  const enableVfs = (n: number, ctrl = VFE | MSE) => {
    pf.configWrite(NUM_VF, 2, n);
    pf.configWrite(CTRL, 2, ctrl);
  };
  return { pf, enabled, disabled, enableVfs };
}

describe('SR-IOV capability registers', () => {
  it('is the first extended capability with the profile values', () => {
    const { pf } = setup();
    expect(pf.configRead(SRIOV, 4)).toBe(0x00010010); // id 0x10, version 1, last
    expect(pf.configRead(SRIOV + 0x04, 4)).toBe(0); // no VF migration
    expect(pf.configRead(SRIOV + 0x0c, 4)).toBe(0x003f003f); // InitialVFs = TotalVFs = 63
    expect(pf.configRead(SRIOV + 0x14, 4)).toBe(0x00010001); // First VF Offset 1, VF Stride 1
    expect(pf.configRead(SRIOV + 0x1a, 2)).toBe(0xa251); // VF Device ID
    expect(pf.configRead(SRIOV + 0x1c, 4)).toBe(0x553); // supported page sizes
    expect(pf.configRead(SYS_PGSIZE, 4)).toBe(0x1); // 4 KiB
  });

  it('read-only fields drop writes; NumVFs is writable while VFs are disabled', () => {
    const { pf } = setup();
    for (const off of [0x04, 0x0c, 0x14, 0x18, 0x1c, 0x3c]) pf.configWrite(SRIOV + off, 4, 0xffffffff);
    pf.configWrite(CTRL, 2, 0xfffe); // every bit but VF Enable
    pf.configWrite(NUM_VF, 2, 7);
    expect(pf.configRead(SRIOV + 0x0c, 4)).toBe(0x003f003f);
    expect(pf.configRead(SRIOV + 0x14, 4)).toBe(0x00010001);
    expect(pf.configRead(SRIOV + 0x18, 4)).toBe(0xa2510000);
    expect(pf.configRead(CTRL, 2)).toBe(MSE | 0x10); // VF MSE and ARI Capable Hierarchy only
    expect(pf.configRead(NUM_VF, 2)).toBe(7);
  });

  it('VF BAR2 (64 KiB) and VF BAR4 size like 64-bit BARs', () => {
    const { pf } = setup();
    for (let i = 0; i < 6; i++) pf.configWrite(VF_BAR(i), 4, 0xffffffff);
    expect([0, 1, 2, 3, 4, 5].map((i) => pf.configRead(VF_BAR(i), 4))).toEqual([
      0, 0, 0xffff0004, 0xffffffff, 0xfc000004, 0xffffffff,
    ]);
  });
});

describe('VF Enable creates and destroys VFs', () => {
  it('NumVFs + VF Enable creates N VFs with routing id PF + offset + stride*(i-1)', () => {
    const { pf, enabled, enableVfs } = setup();
    enableVfs(4);
    expect(enabled.length).toBe(1);
    const vfs = enabled[0]!;
    expect(vfs.map((v) => v.routingId)).toEqual([0x7501, 0x7502, 0x7503, 0x7504]);
    expect(vfs.map((v) => v.bdf)).toEqual(['0000:75:00.1', '0000:75:00.2', '0000:75:00.3', '0000:75:00.4']);
    expect(vfs.map((v) => v.vfIndex)).toEqual([1, 2, 3, 4]);
    expect(pf.vfs).toEqual(vfs);
    expect(pf.vf(3)).toBe(vfs[2]);
    expect(pf.vf(5)).toBeUndefined();
    expect(pf.configRead(CTRL, 2) & VFE).toBe(VFE);
  });

  it('63 VFs stride through device numbers: VF 8 is 75:01.0, VF 63 is 75:07.7', () => {
    const { pf, enableVfs } = setup();
    enableVfs(63);
    expect(pf.vf(8)!.bdf).toBe('0000:75:01.0');
    expect(pf.vf(63)!.bdf).toBe('0000:75:07.7');
  });

  it('VF config space: ids read 0xFFFF, BARs read 0, the getters give the real ids', () => {
    const { pf, enableVfs } = setup('sec');
    enableVfs(2);
    const vf = pf.vf(1)!;
    expect(vf.configRead(0x00, 4)).toBe(0xffffffff);
    expect(vf.vendorId).toBe(0x19e5);
    expect(vf.deviceId).toBe(0xa256);
    expect(vf.configRead(0x08, 4)).toBe(0x10000030); // same revision and class as the PF
    expect(vf.configRead(0x2c, 4)).toBe(0xa25519e5);
    for (let off = 0x10; off < 0x28; off += 4) vf.configWrite(off, 4, 0xffffffff);
    for (let off = 0x10; off < 0x28; off += 4) expect(vf.configRead(off, 4)).toBe(0);
    expect(vf.barSizes).toEqual([0, 0, 0x10000, 0, 0x4000000, 0]);
    expect(vf.msi.vectors).toBe(3);
    expect(vf.configRead(vf.msi.offset + 2, 2) & 0xe).toBe(2 << 1); // MMC = log2(4)
  });

  it('NumVFs is locked while VF Enable is set', () => {
    const { pf, enableVfs } = setup();
    enableVfs(4);
    pf.configWrite(NUM_VF, 2, 8);
    expect(pf.configRead(NUM_VF, 2)).toBe(4);
    expect(pf.sriov.numVfs).toBe(4);
  });

  it('clearing VF Enable runs onVfDisable and destroys the VFs', () => {
    const { pf, disabled, enableVfs } = setup();
    enableVfs(3);
    const vfs = pf.vfs;
    const up = new FlatDma(0x1000);
    vfs[0]!.setUpstreamDma(up);
    vfs[0]!.configWrite(CMD, 2, 0x4);
    vfs[0]!.attachBar(2, new SparseRegion(0x10000));
    pf.configWrite(CTRL, 2, 0);
    expect(disabled).toEqual([vfs]);
    expect(pf.vfs).toEqual([]);
    for (const vf of vfs) {
      expect(vf.present).toBe(false);
      expect(vf.configRead(0x00, 4)).toBe(0xffffffff);
      expect(vf.configRead(0x08, 2)).toBe(0xffff);
      expect(vf.mmioRead(2, 0, 4, 'guest')).toBe(0xffffffff);
    }
    expect(vfs[0]!.bars[2]).toBeUndefined();
    expect(vfs[0]!.dmaPort.write(0, new Uint8Array(4))).toBe(false);
    expect(up.log).toEqual([]);
    pf.configWrite(NUM_VF, 2, 8);
    expect(pf.configRead(NUM_VF, 2)).toBe(8);
  });

  it('VF Enable with NumVFs > TotalVFs is refused: no VFs, VF Enable stays 0', () => {
    const { pf, enabled, enableVfs } = setup();
    enableVfs(64);
    expect(enabled).toEqual([]);
    expect(pf.configRead(CTRL, 2)).toBe(MSE);
    expect(pf.sriov.rejectedEnables).toBe(1);
    expect(pf.vfs).toEqual([]);
  });

  it('unsubscribed callbacks are not called', () => {
    const { pf, enableVfs } = setup();
    let calls = 0;
    const off = pf.onVfEnable(() => calls++);
    off();
    enableVfs(1);
    expect(calls).toBe(0);
  });
});

describe('VF gating and reset', () => {
  it('VF memory decoding follows the PF VF MSE bit; the VF Memory bit is not writable', () => {
    const { pf, enableVfs } = setup();
    enableVfs(2, VFE);
    const vf = pf.vf(2)!;
    const r = new SparseRegion(0x10000);
    vf.attachBar(2, r);
    vf.configWrite(CMD, 2, 0xffff);
    expect(vf.configRead(CMD, 2)).toBe(0x0004); // only Bus Master Enable exists in a VF
    expect(vf.mmioRead(2, 0x60, 4, 'guest')).toBe(0xffffffff);
    vf.mmioWrite(2, 0x60, 4, 0, 'guest');
    expect(vf.stats.mmioReadsBlocked).toBe(1);
    expect(vf.stats.mmioWritesDropped).toBe(1);
    pf.configWrite(CTRL, 2, VFE | MSE);
    vf.mmioWrite(2, 0x60, 4, 0x5a, 'guest');
    expect(vf.mmioRead(2, 0x60, 4, 'guest')).toBe(0x5a);
    expect(r.accesses.length).toBe(2);
    // The PF's own Memory Space Enable has no say over VFs.
    expect(pf.configRead(CMD, 2) & 0x2).toBe(0);
  });

  it("a VF's bus mastering is its own", () => {
    const { pf, enableVfs } = setup();
    enableVfs(2);
    const [a, b] = pf.vfs as PciVf[];
    const up = new FlatDma(0x100);
    a!.setUpstreamDma(up);
    b!.setUpstreamDma(up);
    a!.configWrite(CMD, 2, 0x4);
    expect(a!.dmaPort.write(0, Uint8Array.of(1))).toBe(true);
    expect(b!.dmaPort.write(0, Uint8Array.of(2))).toBe(false);
    expect(b!.stats.dmaBlocked).toBe(1);
    expect(up.mem[0]).toBe(1);
  });

  it('VF FLR: only Initiate FLR is writable in a VF Device Control; resets that VF alone', () => {
    const { pf, enableVfs } = setup();
    enableVfs(2);
    const [a, b] = pf.vfs as PciVf[];
    const devctl = a!.pcie.offset + 8;
    let resets = 0;
    a!.onReset(() => resets++);
    a!.configWrite(CMD, 2, 0x4);
    b!.configWrite(CMD, 2, 0x4);
    a!.configWrite(devctl, 2, 0x70ff);
    expect(a!.configRead(devctl, 2)).toBe(0);
    a!.configWrite(devctl, 2, 0x8000);
    expect(resets).toBe(1);
    expect(a!.configRead(devctl, 2)).toBe(0);
    expect(a!.configRead(CMD, 2)).toBe(0);
    expect(b!.configRead(CMD, 2)).toBe(0x4);
    expect(pf.vfs.length).toBe(2);
  });

  it('PF FLR clears VF Enable (SR-IOV 2.2.2): VFs are destroyed, NumVFs back to 0', () => {
    const { pf, disabled, enableVfs } = setup();
    enableVfs(5);
    const vfs = pf.vfs;
    const order: string[] = [];
    pf.onVfDisable(() => order.push('vf-disable'));
    pf.onReset(() => order.push(`pf-reset ctrl=${pf.configRead(CTRL, 2)}`));
    pf.flr();
    expect(order).toEqual(['vf-disable', 'pf-reset ctrl=0']);
    expect(disabled).toEqual([vfs]);
    expect(vfs.every((v) => !v.present)).toBe(true);
    expect(pf.configRead(NUM_VF, 2)).toBe(0);
  });

  it('VF MSI goes to the VF sink, with its own enable and bus master', () => {
    const { pf, enableVfs } = setup();
    enableVfs(1);
    const vf = pf.vf(1)!;
    const got: number[] = [];
    vf.setMsiSink((v) => got.push(v));
    vf.configWrite(CMD, 2, 0x4);
    vf.configWrite(vf.msi.offset + 2, 2, 0x21); // 4 vectors allocated, enable
    vf.msi.signal(2);
    pf.msi.signal(2);
    expect(got).toEqual([2]);
  });
});

describe('System Page Size and VF BAR placement', () => {
  it('accepts one supported page size while disabled; VF BARs grow to a page', () => {
    const { pf, enableVfs } = setup();
    pf.configWrite(SYS_PGSIZE, 4, 0x100); // 1 MiB pages
    expect(pf.configRead(SYS_PGSIZE, 4)).toBe(0x100);
    pf.configWrite(VF_BAR(2), 4, 0xffffffff);
    expect(pf.configRead(VF_BAR(2), 4)).toBe(0xfff00004);
    enableVfs(1);
    expect(pf.vf(1)!.barSizes[2]).toBe(0x100000);
    expect(pf.vf(1)!.barSizes[4]).toBe(0x4000000);
  });

  it('ignores several bits, unsupported sizes and writes while VFs exist', () => {
    const { pf, enableVfs } = setup();
    pf.configWrite(SYS_PGSIZE, 4, 0x11);
    pf.configWrite(SYS_PGSIZE, 4, 0x4); // 16 KiB is not supported
    expect(pf.configRead(SYS_PGSIZE, 4)).toBe(0x1);
    pf.configWrite(SYS_PGSIZE, 4, 0x10);
    enableVfs(1);
    pf.configWrite(SYS_PGSIZE, 4, 0x1);
    expect(pf.configRead(SYS_PGSIZE, 4)).toBe(0x10);
    expect(pf.sriov.systemPageSize).toBe(64 * 1024);
  });

  it('each VF BAR is the VF BAR base plus (index-1) apertures', () => {
    const { pf, enableVfs } = setup();
    pf.configWrite(VF_BAR(2), 4, 0x80000000);
    pf.configWrite(VF_BAR(3), 4, 0x2);
    enableVfs(4);
    expect(pf.vf(1)!.barAddress(2)).toBe(0x2_8000_0000);
    expect(pf.vf(3)!.barAddress(2)).toBe(0x2_8000_0000 + 2 * 0x10000);
    expect(pf.vf(3)!.barAddress(0)).toBe(0);
  });

  it('PF FLR restores the 4 KiB page size and the 64 KiB VF BAR2 mask', () => {
    const { pf } = setup();
    pf.configWrite(SYS_PGSIZE, 4, 0x100);
    pf.flr();
    pf.configWrite(VF_BAR(2), 4, 0xffffffff);
    expect(pf.configRead(VF_BAR(2), 4)).toBe(0xffff0004);
  });
});
