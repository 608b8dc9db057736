import { describe, expect, it } from 'vitest';
import { profileFor } from '../src/hw/firmware.js';
import { msiLog2 } from '../src/hw/pci/msi.js';
import { PciPf } from '../src/hw/pci/pf.js';

// MSI capability layout with 64-bit address and per-vector masking (PCI 3.0 6.8.1):
// +2 Message Control, +4 Address, +8 Upper Address, +0xC Data, +0x10 Mask, +0x14 Pending.
const CTRL = 2;
const ADDR_LO = 4;
const ADDR_HI = 8;
const DATA = 0xc;
const MASK = 0x10;
const PENDING = 0x14;
const CMD = 0x04;
const BM = 0x4;

function setup() {
  const f = new PciPf(profileFor('zip', 'v3'), '0000:75:00.0');
  const at = f.config.findCapability(0x05);
  const got: number[] = [];
  f.setMsiSink((v) => got.push(v));
  const rd = (off: number, size: 1 | 2 | 4 = 4) => f.configRead(at + off, size);
  const wr = (off: number, size: 1 | 2 | 4, v: number) => f.configWrite(at + off, size, v);
  /** What Linux does for pci_alloc_irq_vectors(..., PCI_IRQ_MSI): bus master, MME, enable. */
  const enable = (log2: number) => {
    f.configWrite(CMD, 2, BM);
    wr(ADDR_LO, 4, 0xfee00000);
    wr(DATA, 2, 0x4020);
    wr(CTRL, 2, (log2 << 4) | 1);
  };
  return { f, at, got, rd, wr, enable };
}

describe('MSI capability layout (qm-hardware.md 5: MSI, not MSI-X)', () => {
  it('PF: 4 vectors -> Multiple Message Capable 2, 64-bit, per-vector masking; follows the PCIe cap', () => {
    const { f, at, rd } = setup();
    expect(at).toBe(0x7c);
    expect(f.configRead(0x41, 1)).toBe(0x7c); // PCIe cap's next pointer
    expect(rd(0, 1)).toBe(0x05);
    expect(rd(1, 1)).toBe(0); // last in the list
    expect(rd(CTRL, 2)).toBe(0x0184);
    expect(f.msi.capableVectors).toBe(4);
  });

  it('Multiple Message Capable = log2 of the vector count rounded up', () => {
    expect([1, 2, 3, 4, 5, 8, 9, 32].map(msiLog2)).toEqual([0, 1, 2, 2, 3, 3, 4, 5]);
  });

  it('register write masks: enable/MME, dword-aligned address, 16-bit data, mask bits of capable vectors', () => {
    const { rd, wr } = setup();
    wr(CTRL, 2, 0xffff); // MME 7 exceeds MMC 2: the field keeps its value, enable still sets
    expect(rd(CTRL, 2)).toBe(0x0185);
    wr(CTRL, 2, 0x0021);
    expect(rd(CTRL, 2)).toBe(0x01a5);
    wr(ADDR_LO, 4, 0xfee00003);
    wr(ADDR_HI, 4, 0x12345678);
    wr(DATA, 4, 0xffffffff);
    wr(MASK, 4, 0xffffffff);
    wr(PENDING, 4, 0xffffffff);
    expect([rd(ADDR_LO), rd(ADDR_HI), rd(DATA), rd(MASK), rd(PENDING)]).toEqual([0xfee00000, 0x12345678, 0xffff, 0xf, 0]);
  });

  it('exposes the programmed message address and data', () => {
    const { f, wr, enable } = setup();
    enable(2);
    wr(ADDR_HI, 4, 0x1);
    expect(f.msi.messageAddress).toBe(0x1_fee0_0000);
    expect(f.msi.messageData).toBe(0x4020);
    expect(f.msi.enabledVectors).toBe(4);
  });
});

describe('MSI delivery', () => {
  it('MSI disabled: the message is dropped and counted', () => {
    const { f, got } = setup();
    f.configWrite(CMD, 2, BM);
    f.msi.signal(0);
    expect(got).toEqual([]);
    expect(f.msi.stats.droppedDisabled).toBe(1);
  });

  it('enabled: vectors below the enabled count are delivered, others dropped', () => {
    const { f, got, enable } = setup();
    enable(2);
    for (const v of [0, 3, 1, 2, 4, -1, 1.5]) f.msi.signal(v);
    expect(got).toEqual([0, 3, 1, 2]);
    expect(f.msi.stats.delivered).toBe(4);
    expect(f.msi.stats.droppedVector).toBe(3);
  });

  it('only one vector allocated: vector 1 is not sent', () => {
    const { f, got, enable } = setup();
    enable(0);
    f.msi.signal(1);
    f.msi.signal(0);
    expect(got).toEqual([0]);
  });

  it('masked vectors set pending (coalesced); unmask delivers each once in ascending order', () => {
    const { f, got, rd, wr, enable } = setup();
    enable(2);
    wr(MASK, 4, 0b0110);
    f.msi.signal(2);
    f.msi.signal(1);
    f.msi.signal(2);
    f.msi.signal(0);
    expect(got).toEqual([0]);
    expect(rd(PENDING)).toBe(0b0110);
    expect(f.msi.stats.pended).toBe(3);
    wr(MASK, 4, 0b0010); // unmask vector 2 only
    expect(got).toEqual([0, 2]);
    expect(rd(PENDING)).toBe(0b0010);
    expect(f.msi.isPending(1)).toBe(true);
    wr(MASK, 4, 0);
    expect(got).toEqual([0, 2, 1]);
    expect(rd(PENDING)).toBe(0);
    expect(f.msi.stats.delivered).toBe(3);
  });

  it('Bus Master Enable clear blocks the message write; pending vectors wait for it', () => {
    const { f, got, rd, wr, enable } = setup();
    enable(2);
    f.configWrite(CMD, 2, 0);
    f.msi.signal(0);
    expect(f.msi.stats.droppedBusMaster).toBe(1);
    wr(MASK, 4, 0b1000);
    f.msi.signal(3);
    wr(MASK, 4, 0);
    expect(got).toEqual([]);
    expect(rd(PENDING)).toBe(0b1000);
    f.configWrite(CMD, 2, BM);
    expect(got).toEqual([3]);
    expect(rd(PENDING)).toBe(0);
  });

  it('pending survives MSI disable and is sent once MSI is enabled again', () => {
    const { f, got, rd, wr, enable } = setup();
    enable(2);
    wr(MASK, 4, 0b1);
    f.msi.signal(0);
    wr(CTRL, 2, 0x0020); // disable, keep MME
    wr(MASK, 4, 0);
    expect(got).toEqual([]);
    expect(rd(PENDING)).toBe(1);
    wr(CTRL, 2, 0x0021);
    expect(got).toEqual([0]);
  });

  it('a message with no sink attached is lost and counted', () => {
    const { f, enable } = setup();
    enable(2);
    f.setMsiSink(undefined);
    f.msi.signal(1);
    expect(f.msi.stats.lostNoSink).toBe(1);
  });

  it('FLR disables MSI and clears masks and pending bits', () => {
    const { f, got, rd, wr, enable } = setup();
    enable(2);
    wr(MASK, 4, 0b1);
    f.msi.signal(0);
    f.flr();
    expect([rd(CTRL, 2), rd(MASK), rd(PENDING), rd(ADDR_LO)]).toEqual([0x0184, 0, 0, 0]);
    f.msi.signal(0);
    expect(got).toEqual([]);
  });
});
