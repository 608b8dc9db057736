/**
 * MMIO decoding and bus mastering are cached per function and revalidated only when some
 * config space changed. These tests flip the underlying register state through every path
 * that can change it — software config writes, device-side register updates, FLR, the PF's
 * SR-IOV control (VF MSE / VF Enable) — and check the very next access sees the new state.
 * Offsets are typed from the PCI and SR-IOV specs, not imported.
 */
import { describe, expect, it } from 'vitest';
import { profileFor } from '../src/hw/firmware.js';
import { PciPf } from '../src/hw/pci/pf.js';
import { FlatDma, SparseRegion } from './pci-helpers.js';

const CMD = 0x04;
const MEM = 0x2;
const BM = 0x4;
const SRIOV = 0x100;
const SRIOV_CTRL = SRIOV + 0x08;
const SRIOV_NUM_VF = SRIOV + 0x10;
const VFE = 0x1;
const VF_MSE = 0x8;

function pfWithBar(): { pf: PciPf; region: SparseRegion } {
  const pf = new PciPf(profileFor('zip', 'v3'), '0000:75:00.0');
  const region = new SparseRegion(0x1000);
  region.bytes.set(0x10, 0x5a);
  pf.attachBar(2, region);
  return { pf, region };
}

describe('memory decoding follows the Command register on the next access (PCI 6.2.2)', () => {
  it('software writes to Command open and close BAR decoding', () => {
    const { pf } = pfWithBar();
    expect(pf.mmioRead(2, 0x10, 1, 'test')).toBe(0xff); // reset: decoding off
    expect(pf.stats.mmioReadsBlocked).toBe(1);
    pf.configWrite(CMD, 2, MEM);
    expect(pf.mmioRead(2, 0x10, 1, 'test')).toBe(0x5a);
    pf.configWrite(CMD, 2, 0);
    expect(pf.mmioRead(2, 0x10, 1, 'test')).toBe(0xff);
    pf.mmioWrite(2, 0x10, 1, 0x11, 'test');
    expect(pf.stats).toMatchObject({ mmioReadsBlocked: 2, mmioWritesDropped: 1 });
    pf.configWrite(CMD, 2, MEM);
    expect(pf.mmioRead(2, 0x10, 1, 'test')).toBe(0x5a); // the dropped write never landed
  });

  it('a device-side register update (no write hooks) is seen at once', () => {
    const { pf } = pfWithBar();
    pf.configWrite(CMD, 2, MEM);
    expect(pf.mmioRead(2, 0x10, 1, 'test')).toBe(0x5a);
    pf.config.set(CMD, 2, 0);
    expect(pf.mmioRead(2, 0x10, 1, 'test')).toBe(0xff);
    pf.config.set(CMD, 2, MEM);
    expect(pf.mmioRead(2, 0x10, 1, 'test')).toBe(0x5a);
  });

  it('FLR returns Command to its reset value, so decoding stops (PCIe 6.6.2)', () => {
    const { pf } = pfWithBar();
    pf.configWrite(CMD, 2, MEM);
    expect(pf.mmioRead(2, 0x10, 1, 'test')).toBe(0x5a);
    pf.flr();
    expect(pf.mmioRead(2, 0x10, 1, 'test')).toBe(0xff);
    expect(pf.stats.mmioReadsBlocked).toBe(1);
  });

  it('a region attached while decoding is on is reachable up to its own size only', () => {
    const { pf } = pfWithBar();
    pf.configWrite(CMD, 2, MEM);
    const small = new SparseRegion(0x20);
    small.bytes.set(0x1f, 0x77);
    pf.attachBar(2, small);
    expect(pf.mmioRead(2, 0x1f, 1, 'test')).toBe(0x77);
    expect(pf.mmioRead(2, 0x1f, 2, 'test')).toBe(0xffff);
    pf.attachBar(2, undefined);
    expect(pf.mmioRead(2, 0x00, 4, 'test')).toBe(0xffffffff);
    expect(pf.stats.mmioOutOfBounds).toBe(2);
  });
});

describe('bus mastering gates DMA on the next transaction (PCI 6.2.2)', () => {
  it('config writes and device-side updates of Bus Master Enable apply at once', () => {
    const { pf } = pfWithBar();
    const up = new FlatDma(0x100);
    up.mem[5] = 9;
    pf.setUpstreamDma(up);
    const b = new Uint8Array(1);
    expect(pf.dmaPort.read(5, b)).toBe(false);
    pf.configWrite(CMD, 2, BM);
    expect(pf.dmaPort.read(5, b)).toBe(true);
    expect(b[0]).toBe(9);
    pf.config.set(CMD, 2, 0);
    expect(pf.dmaPort.write(5, b)).toBe(false);
    expect(pf.stats.dmaBlocked).toBe(2);
    expect(pf.lastBlockedDma).toEqual({ iova: 5, length: 1, write: true });
    expect(up.log).toEqual(['r 5 1']);
  });
});

describe('VF decoding follows the PF SR-IOV control (SR-IOV 3.3.3.4) and VF lifetime', () => {
  function withVf() {
    const { pf } = pfWithBar();
    pf.configWrite(SRIOV_NUM_VF, 2, 2);
    pf.configWrite(SRIOV_CTRL, 2, VFE | VF_MSE);
    const vf = pf.vf(2)!;
    const region = new SparseRegion(0x100);
    region.bytes.set(0x8, 0x42);
    vf.attachBar(2, region);
    return { pf, vf };
  }

  it('clearing and setting VF MSE in the PF flips MMIO of the VF', () => {
    const { pf, vf } = withVf();
    expect(vf.mmioRead(2, 0x8, 1, 'guest')).toBe(0x42);
    pf.configWrite(SRIOV_CTRL, 2, VFE);
    expect(vf.mmioRead(2, 0x8, 1, 'guest')).toBe(0xff);
    expect(vf.stats.mmioReadsBlocked).toBe(1);
    pf.configWrite(SRIOV_CTRL, 2, VFE | VF_MSE);
    expect(vf.mmioRead(2, 0x8, 1, 'guest')).toBe(0x42);
  });

  it('the PF Command register does not gate VF MMIO', () => {
    const { pf, vf } = withVf();
    pf.configWrite(CMD, 2, 0);
    expect(vf.mmioRead(2, 0x8, 1, 'guest')).toBe(0x42);
  });

  it('a destroyed VF stops decoding and DMA even though the PF still has VF MSE', () => {
    const { pf, vf } = withVf();
    const up = new FlatDma(0x100);
    vf.setUpstreamDma(up);
    vf.configWrite(CMD, 2, BM);
    expect(vf.dmaPort.read(0, new Uint8Array(4))).toBe(true);
    expect(vf.mmioRead(2, 0x8, 1, 'guest')).toBe(0x42);
    vf.destroy(); // what the PF does on VF Enable 1 -> 0; here with no config change at all
    expect(pf.configRead(SRIOV_CTRL, 2) & VF_MSE).toBe(VF_MSE);
    expect(vf.mmioRead(2, 0x8, 1, 'guest')).toBe(0xff);
    expect(vf.stats.mmioReadsBlocked).toBe(1);
    expect(vf.dmaPort.read(0, new Uint8Array(4))).toBe(false);
    expect(vf.stats.dmaBlocked).toBe(1);
  });
});
