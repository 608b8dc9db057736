/**
 * BAR access through read/write on the device fd (vfio_pci_bar_rw / vfio_pci_core_do_io_rw:
 * naturally aligned 8/4/2/1-byte accesses, clamped to the BAR, EIO while memory decoding is
 * off) and through mmap (vfio_pci_core_mmap bounds; mapping lifetime).
 */
import { describe, expect, it } from 'vitest';
import { Errno, fail } from '../src/uapi/errno.js';
import { VFIO_PCI_INDEX_TO_OFFSET } from '../src/uapi/vfio.js';
import { PCI_COMMAND, PCI_COMMAND_MEMORY } from '../src/hw/pci/regs.js';
import type { VfioMapping } from '../src/vfio/pci-core/ops.js';
import { accRig, cfgWrite, openCore, plainRig } from './vfio-pcicore-helpers.js';

const BAR2 = VFIO_PCI_INDEX_TO_OFFSET(2);
const BAR4 = VFIO_PCI_INDEX_TO_OFFSET(4);

function plain() {
  const rig = plainRig();
  const opened = openCore(rig.fn, rig.process);
  rig.bar2.accesses.length = 0;
  return { ...rig, ...opened };
}

describe('read/write splitting (vfio_pci_core_do_io_rw)', () => {
  it('16 aligned bytes are two 8-byte transactions, with the guest origin', () => {
    const { file, bar2 } = plain();
    const data = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    expect(file.write(data, BAR2 + 0x100)).toBe(16);
    expect(bar2.accesses).toEqual([
      { op: 'w8', off: 0x100, origin: 'guest' },
      { op: 'w8', off: 0x108, origin: 'guest' },
    ]);
    const back = new Uint8Array(16);
    expect(file.read(back, BAR2 + 0x100)).toBe(16);
    expect([...back]).toEqual([...data]);
  });

  it('7 bytes at an odd offset go 1+2+4; 3 bytes at 0x105 go 1+2', () => {
    const { file, bar2 } = plain();
    expect(file.write(Uint8Array.of(0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77), BAR2 + 0x101)).toBe(7);
    expect(bar2.accesses.map((a) => `${a.op}@${a.off.toString(16)}`)).toEqual(['w1@101', 'w2@102', 'w4@104']);
    bar2.accesses.length = 0;
    const b = new Uint8Array(3);
    expect(file.read(b, BAR2 + 0x105)).toBe(3);
    expect(bar2.accesses.map((a) => `${a.op}@${a.off.toString(16)}`)).toEqual(['r1@105', 'r2@106']);
    expect([...b]).toEqual([0x55, 0x66, 0x77]);
    // Little-endian: the dword at 0x104 holds 0x77665544.
    expect(bar2.read(0x104, 4, 'test')).toBe(0x77665544);
  });

  it('a transfer running past the BAR end is clamped; starting at or past the end is EINVAL', () => {
    const { file } = plain();
    expect(file.read(new Uint8Array(16), BAR2 + 0xfffc)).toBe(4);
    expect(file.write(new Uint8Array(16), BAR4 + 0x3ff8)).toBe(8);
    expect(file.read(new Uint8Array(4), BAR2 + 0x10000)).toBe(-Errno.EINVAL);
    expect(file.read(new Uint8Array(0), BAR2 + 0x10000)).toBe(0); // count 0 is checked first
  });

  it('absent BARs, the ROM (read or write), VGA and regions past the last are EINVAL', () => {
    const { file } = plain();
    for (const idx of [0, 1, 3, 5, 6, 8, 9, 100]) {
      expect(file.read(new Uint8Array(4), VFIO_PCI_INDEX_TO_OFFSET(idx))).toBe(-Errno.EINVAL);
      expect(file.write(new Uint8Array(4), VFIO_PCI_INDEX_TO_OFFSET(idx))).toBe(-Errno.EINVAL);
    }
    expect(file.read(new Uint8Array(4), -4)).toBe(-Errno.EINVAL);
  });

  it('memory decoding off (PF): every BAR access is EIO and never reaches the device', () => {
    const { file, bar2, fn } = plain();
    cfgWrite(file, PCI_COMMAND, 2, 0);
    expect(fn.memoryEnabled).toBe(false);
    expect(file.read(new Uint8Array(4), BAR2)).toBe(-Errno.EIO);
    expect(file.write(new Uint8Array(8), BAR2)).toBe(-Errno.EIO);
    expect(bar2.accesses).toEqual([]);
    cfgWrite(file, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    expect(file.write(Uint8Array.of(1, 2, 3, 4), BAR2)).toBe(4);
    expect(bar2.read(0, 4, 'test')).toBe(0x04030201);
  });

  it('a VF has no memory bit: BAR access works whatever the virtual Memory Space Enable says', () => {
    const rig = accRig(1);
    const vf = rig.acc.vf(1)!;
    const { file } = openCore(vf, rig.process);
    cfgWrite(file, PCI_COMMAND, 2, 0);
    const caps = new Uint8Array(4);
    expect(file.read(caps, BAR2 + 0x3100)).toBe(4);
    expect(new DataView(caps.buffer).getUint32(0, true)).toBe(0x6f01); // QM_FUNC_CAPS_REG, V3 default
  });
});

describe('mmap', () => {
  it('maps a BAR page range; accesses are single transactions at region offset + mapping offset', () => {
    const { file, bar2 } = plain();
    const m = file.mmap(BAR2 + 0x1000, 0x2000) as VfioMapping;
    expect(typeof m).toBe('object');
    expect([m.index, m.offset, m.length, m.mapped]).toEqual([2, 0x1000, 0x2000, true]);
    m.write32(0x10, 0xdeadbeef);
    m.write64(0x18, 0x11111111, 0x22222222);
    m.write16(0x20, 0xabcd);
    m.write8(0x22, 0x7f);
    expect(bar2.read(0x1010, 4, 'test')).toBe(0xdeadbeef);
    expect(m.read64(0x18)).toEqual([0x11111111, 0x22222222]);
    expect(m.read16(0x20)).toBe(0xabcd);
    expect(m.read8(0x22)).toBe(0x7f);
    expect(m.read32(0x10)).toBe(0xdeadbeef);
    expect(bar2.accesses.filter((a) => a.origin === 'guest').map((a) => a.op)).toEqual(['w4', 'w8', 'w2', 'w1', 'r8', 'r2', 'r1', 'r4']);
    expect(m.faults).toBe(0);
  });

  it('EINVAL: unaligned offset, zero length, past the BAR, absent BAR, config/ROM/VGA, unknown region', () => {
    const { file } = plain();
    expect(file.mmap(BAR2 + 0x800, 0x1000)).toBe(-Errno.EINVAL);
    expect(file.mmap(BAR2, 0)).toBe(-Errno.EINVAL);
    expect(file.mmap(BAR2 + 0x8000, 0x9000)).toBe(-Errno.EINVAL);
    expect(file.mmap(BAR4, 0x5000)).toBe(-Errno.EINVAL);
    for (const idx of [0, 6, 7, 8, 9]) expect(file.mmap(VFIO_PCI_INDEX_TO_OFFSET(idx), 0x1000)).toBe(-Errno.EINVAL);
  });

  it('a length that is not a page multiple is rounded up to whole pages', () => {
    const { file } = plain();
    const m = file.mmap(BAR2 + 0xf000, 100) as VfioMapping;
    expect(m.length).toBe(0x1000);
    expect(file.mmap(BAR2 + 0xf000, 0x1001)).toBe(-Errno.EINVAL); // two pages would pass the end
  });

  it('faults: past the mapping, after unmap, and while memory decoding is off (then works again)', () => {
    const { file, bar2 } = plain();
    const m = file.mmap(BAR2, 0x1000) as VfioMapping;
    expect(m.read32(0x1000)).toBe(0xffffffff);
    m.write32(0xffe, 1); // crosses the end
    expect(m.faults).toBe(2);
    cfgWrite(file, PCI_COMMAND, 2, 0);
    m.write32(0, 5);
    expect(m.read32(0)).toBe(0xffffffff);
    expect(m.faults).toBe(4);
    cfgWrite(file, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    m.write32(0, 5);
    expect(m.read32(0)).toBe(5);
    m.unmap();
    expect(m.mapped).toBe(false);
    expect(m.read32(0)).toBe(0xffffffff);
    expect(m.faults).toBe(5);
    expect(bar2.accesses.filter((a) => a.op === 'w4').length).toBe(1);
  });

  it('a mapping keeps the device open after its fd is closed; the last unmap closes it', () => {
    const { file, core, fn } = plain();
    const m = file.mmap(BAR2, 0x1000) as VfioMapping;
    const flrs = fn.stats.flrs;
    expect(file.close()).toBe(0);
    expect(core.isOpen).toBe(true);
    m.write32(0, 9);
    expect(m.read32(0)).toBe(9);
    m.unmap();
    expect(core.isOpen).toBe(false);
    expect(fn.stats.flrs).toBe(flrs + 1); // the close-time reset
    expect(file.mmap(BAR2, 0x1000)).toBe(-Errno.EBADF);
  });

  it('a variant can restrict mmap and still defer to the core for the rest', () => {
    const rig = plainRig();
    const { file } = openCore(rig.fn, rig.process, {
      name: 'half-bar2',
      mmap(_core, index, offset, length, next) {
        if (index === 2 && offset + length > 0x8000) fail('EINVAL', 'upper half of BAR2 is hidden');
        return next(index, offset, length);
      },
    });
    const m = file.mmap(BAR2, 0x8000);
    expect(typeof m).toBe('object');
    expect(file.mmap(BAR2, 0x9000)).toBe(-Errno.EINVAL);
    expect(typeof file.mmap(BAR4, 0x4000)).toBe('object');
  });
});
