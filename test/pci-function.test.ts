import { describe, expect, it } from 'vitest';
import { profileFor } from '../src/hw/firmware.js';
import { formatBdf, parseBdf } from '../src/hw/pci/bdf.js';
import { PciPf } from '../src/hw/pci/pf.js';
import { KernelError } from '../src/uapi/errno.js';
import { FlatDma, SparseRegion } from './pci-helpers.js';

// Offsets typed from the PCI/PCIe specs (type-0 header, PCIe capability), not imported.
const CMD = 0x04;
const STATUS = 0x06;
const MEM = 0x2;
const BM = 0x4;
const PCIE = 0x40; // first capability of every ACC function
const DEVCTL = PCIE + 0x08;
const DEVSTA = PCIE + 0x0a;

function zipPf(): PciPf {
  return new PciPf(profileFor('zip', 'v3'), '0000:75:00.0');
}

function errnoOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return undefined;
}

describe('PCI addresses', () => {
  it('parses and formats dddd:bb:dd.f with the routing id bus<<8|dev<<3|fn', () => {
    expect(parseBdf('0000:75:00.0')).toEqual({ domain: 0, routingId: 0x7500 });
    expect(parseBdf('0001:b5:1f.7')).toEqual({ domain: 1, routingId: 0xb5ff });
    expect(formatBdf(0, 0x7509)).toBe('0000:75:01.1');
    expect(errnoOf(() => parseBdf('75:00.0'))).toBe('EINVAL');
    expect(errnoOf(() => parseBdf('0000:75:20.0'))).toBe('EINVAL');
  });
});

describe('type-0 header of a PF (zip-v3)', () => {
  it('reports the profile identity', () => {
    const f = zipPf();
    expect(f.bdf).toBe('0000:75:00.0');
    expect(f.configRead(0x00, 4)).toBe(0xa25019e5);
    expect(f.configRead(0x08, 4)).toBe(0x12000030); // class 0x120000, revision 0x30
    expect(f.configRead(0x0e, 1)).toBe(0x00); // type 0, multi-function bit clear
    expect(f.configRead(0x2c, 4)).toBe(0xa25019e5); // subsystem id : subsystem vendor
    expect(f.configRead(0x3d, 1)).toBe(0); // no INTx pin
    expect(f.configRead(STATUS, 2) & 0x10).toBe(0x10); // capabilities list
    expect(f.configRead(0x34, 1)).toBe(PCIE);
    expect(f.vendorId).toBe(0x19e5);
    expect(f.deviceId).toBe(0xa250);
  });

  it('read-only header fields drop writes', () => {
    const f = zipPf();
    const before = [0x00, 0x08, 0x0c, 0x2c, 0x30, 0x34, 0x3c].map((o) => f.configRead(o, 4));
    for (const off of [0x00, 0x08, 0x28, 0x2c, 0x30, 0x34]) f.configWrite(off, 4, 0);
    f.configWrite(0x0e, 1, 0x80);
    f.configWrite(0x3d, 1, 1);
    f.configWrite(0x30, 4, 0xffffffff); // no expansion ROM
    const after = [0x00, 0x08, 0x0c, 0x2c, 0x30, 0x34, 0x3c].map((o) => f.configRead(o, 4));
    expect(after).toEqual(before);
    expect(f.configRead(0x30, 4)).toBe(0);
  });

  it('Command implements Memory, Bus Master, Parity, SERR and INTx Disable only', () => {
    const f = zipPf();
    f.configWrite(CMD, 2, 0xffff);
    expect(f.configRead(CMD, 2)).toBe(0x0546);
    f.configWrite(CMD, 2, 0x0400);
    expect(f.configRead(CMD, 2)).toBe(0x0400);
  });

  it('Status error bits are write-1-to-clear; the capability bit is read-only', () => {
    const f = zipPf();
    f.config.set(STATUS, 2, 0xf910); // the device records every error
    f.configWrite(STATUS, 2, 0x2000 | 0x0010);
    expect(f.configRead(STATUS, 2)).toBe(0xd910);
    f.configWrite(STATUS, 2, 0xffff);
    expect(f.configRead(STATUS, 2)).toBe(0x0010);
  });

  it('Cache Line Size and Interrupt Line are scratch registers', () => {
    const f = zipPf();
    f.configWrite(0x0c, 1, 0x10);
    f.configWrite(0x3c, 1, 0x2a);
    expect(f.configRead(0x0c, 1)).toBe(0x10);
    expect(f.configRead(0x3c, 1)).toBe(0x2a);
  });

  it('BAR2 (4 MiB) and BAR4 (64 MiB) size as 64-bit BARs; the other slots read 0', () => {
    const f = zipPf();
    for (let off = 0x10; off < 0x28; off += 4) f.configWrite(off, 4, 0xffffffff);
    expect([0x10, 0x14, 0x18, 0x1c, 0x20, 0x24].map((o) => f.configRead(o, 4))).toEqual([
      0, 0, 0xffc00004, 0xffffffff, 0xfc000004, 0xffffffff,
    ]);
    // Restore an assignment the way Linux does after sizing.
    f.configWrite(0x18, 4, 0x00400000);
    f.configWrite(0x1c, 4, 0x00000200);
    expect(f.barAddress(2)).toBe(0x200_0040_0000);
    expect(f.barSizes).toEqual([0, 0, 0x400000, 0, 0x4000000, 0]);
  });

  it('config accesses outside 4 KiB or of size 3 are EINVAL', () => {
    const f = zipPf();
    expect(errnoOf(() => f.configRead(4095, 2))).toBe('EINVAL');
    expect(errnoOf(() => f.configWrite(0, 3 as 4, 0))).toBe('EINVAL');
  });
});

describe('Memory Space Enable gates MMIO', () => {
  it('disabled: reads are all-ones, writes dropped and counted, the region is never called', () => {
    const f = zipPf();
    const r = new SparseRegion(0x400000);
    f.attachBar(2, r);
    expect(f.mmioRead(2, 0x100, 1, 'driver')).toBe(0xff);
    expect(f.mmioRead(2, 0x100, 2, 'driver')).toBe(0xffff);
    expect(f.mmioRead(2, 0x100, 4, 'driver')).toBe(0xffffffff);
    expect(f.mmioRead64(2, 0x100, 'driver')).toEqual([0xffffffff, 0xffffffff]);
    f.mmioWrite(2, 0x100, 4, 0x1234, 'driver');
    f.mmioWrite64(2, 0x1000, 1, 2, 'driver');
    expect(r.accesses).toEqual([]);
    expect(f.stats.mmioReadsBlocked).toBe(4);
    expect(f.stats.mmioWritesDropped).toBe(2);
  });

  it('enabled: accesses reach the region with their size and origin', () => {
    const f = zipPf();
    const r = new SparseRegion(0x400000);
    f.attachBar(2, r);
    f.configWrite(CMD, 2, MEM);
    f.mmioWrite(2, 0x300, 4, 0xdeadbeef, 'guest');
    expect(f.mmioRead(2, 0x302, 2, 'vmm')).toBe(0xdead);
    f.mmioWrite64(2, 0x1000, 0x11223344, 0x55667788, 'driver');
    expect(f.mmioRead64(2, 0x1000, 'test')).toEqual([0x11223344, 0x55667788]);
    expect(r.accesses.map((a) => `${a.op}@${a.off.toString(16)}:${a.origin}`)).toEqual([
      'w4@300:guest', 'r2@302:vmm', 'w8@1000:driver', 'r8@1000:test',
    ]);
    // Clearing the bit closes the window again; the register keeps its value.
    f.configWrite(CMD, 2, 0);
    expect(f.mmioRead(2, 0x300, 4, 'guest')).toBe(0xffffffff);
    f.configWrite(CMD, 2, MEM);
    expect(f.mmioRead(2, 0x300, 4, 'guest')).toBe(0xdeadbeef);
  });

  it('accesses outside a BAR, or to a BAR with no region, are all-ones / dropped', () => {
    const f = zipPf();
    const r = new SparseRegion(0x400000);
    f.attachBar(2, r);
    f.configWrite(CMD, 2, MEM);
    expect(f.mmioRead(2, 0x3ffffe, 4, 'guest')).toBe(0xffffffff);
    expect(f.mmioRead64(2, 0x3ffffc, 'guest')).toEqual([0xffffffff, 0xffffffff]);
    expect(f.mmioRead(2, -4, 4, 'guest')).toBe(0xffffffff);
    expect(f.mmioRead(0, 0, 4, 'guest')).toBe(0xffffffff);
    expect(f.mmioRead(7, 0, 4, 'guest')).toBe(0xffffffff);
    f.mmioWrite(2, 0x400000, 1, 1, 'guest');
    expect(r.accesses).toEqual([]);
    expect(f.stats.mmioOutOfBounds).toBe(6);
    expect(f.mmioRead(2, 0x3ffffc, 4, 'guest')).toBe(0);
  });

  it('attachBar refuses regions larger than the BAR and bad indexes; size 3 is EINVAL', () => {
    const f = zipPf();
    expect(errnoOf(() => f.attachBar(2, new SparseRegion(0x800000)))).toBe('EINVAL');
    expect(errnoOf(() => f.attachBar(1, new SparseRegion(16)))).toBe('EINVAL');
    expect(errnoOf(() => f.attachBar(6, undefined))).toBe('EINVAL');
    f.attachBar(4, new SparseRegion(0x4000000));
    f.configWrite(CMD, 2, MEM);
    expect(errnoOf(() => f.mmioRead(4, 0, 3 as 4, 'guest'))).toBe('EINVAL');
  });
});

describe('Bus Master Enable gates DMA', () => {
  it('clear: the DmaPort fails, the upstream never sees it, the attempt is recorded', () => {
    const f = zipPf();
    const up = new FlatDma(0x10000);
    f.setUpstreamDma(up);
    expect(f.dmaPort.read(0x100, new Uint8Array(16))).toBe(false);
    expect(f.dmaPort.write(0x200, new Uint8Array(8))).toBe(false);
    expect(up.log).toEqual([]);
    expect(f.stats.dmaBlocked).toBe(2);
    expect(f.lastBlockedDma).toEqual({ iova: 0x200, length: 8, write: true });
  });

  it('set: DMA is forwarded and the upstream result returned', () => {
    const f = zipPf();
    const up = new FlatDma(0x1000);
    f.setUpstreamDma(up);
    f.configWrite(CMD, 2, BM);
    expect(f.dmaPort.write(0x10, Uint8Array.of(1, 2, 3))).toBe(true);
    const back = new Uint8Array(3);
    expect(f.dmaPort.read(0x10, back)).toBe(true);
    expect([...back]).toEqual([1, 2, 3]);
    expect(f.dmaPort.read(0xfff, new Uint8Array(2))).toBe(false); // upstream fault passes through
    expect(up.log).toEqual(['w 16 3', 'r 16 3', 'r 4095 2']);
    expect(f.stats.dmaBlocked).toBe(0);
  });

  it('no upstream port attached: DMA fails and is counted separately', () => {
    const f = zipPf();
    f.configWrite(CMD, 2, BM);
    expect(f.dmaPort.read(0, new Uint8Array(4))).toBe(false);
    expect(f.stats.dmaNoUpstream).toBe(1);
    expect(f.stats.dmaBlocked).toBe(0);
  });
});

describe('PCIe capability (RCiEP, FLR)', () => {
  it('is a version-2 Root Complex Integrated Endpoint advertising FLR', () => {
    const f = zipPf();
    expect(f.configRead(PCIE, 1)).toBe(0x10);
    expect(f.configRead(PCIE + 2, 2)).toBe(0x0092);
    expect(f.configRead(PCIE + 4, 4) & 0x10000000).toBe(0x10000000);
    expect(f.configRead(DEVCTL, 2)).toBe(0x2810); // relaxed ordering, no snoop, MRRS 512
  });

  it('has no link: link registers read zero and ignore writes', () => {
    const f = zipPf();
    for (const off of [0x0c, 0x10, 0x2c, 0x30]) f.configWrite(PCIE + off, 4, 0xffffffff);
    expect([0x0c, 0x10, 0x2c, 0x30].map((o) => f.configRead(PCIE + o, 4))).toEqual([0, 0, 0, 0]);
  });

  it('Device Status error bits are write-1-to-clear', () => {
    const f = zipPf();
    f.config.set(DEVSTA, 2, 0x000f);
    f.configWrite(DEVSTA, 2, 0x0005);
    expect(f.configRead(DEVSTA, 2)).toBe(0x000a);
  });

  it('Initiate FLR resets the registers, runs the reset callback once and reads back 0', () => {
    const f = zipPf();
    f.configWrite(CMD, 2, MEM | BM);
    f.configWrite(0x18, 4, 0x00400000);
    f.configWrite(DEVCTL, 2, 0x2830); // MPS 256 bytes
    const seen: number[] = [];
    const off = f.onReset(() => seen.push(f.configRead(CMD, 2)));
    f.configWrite(DEVCTL, 2, 0xa830);
    expect(seen).toEqual([0]); // the callback runs after the registers were reset
    expect(f.configRead(DEVCTL, 2)).toBe(0x2830); // bit 15 reads 0; MPS survives (PCIe 6.6.2)
    expect(f.configRead(CMD, 2)).toBe(0);
    expect(f.configRead(0x18, 4)).toBe(0x4);
    expect(f.stats.flrs).toBe(1);
    off();
    f.flr();
    expect(seen).toEqual([0]);
    expect(f.stats.flrs).toBe(2);
  });

  it('writing 0 to bit 15 does not reset', () => {
    const f = zipPf();
    let resets = 0;
    f.onReset(() => resets++);
    f.configWrite(CMD, 2, MEM);
    f.configWrite(DEVCTL, 2, 0x2810);
    expect(resets).toBe(0);
    expect(f.configRead(CMD, 2)).toBe(MEM);
  });
});
