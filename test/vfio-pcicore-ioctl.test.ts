/**
 * Device fd ioctls other than SET_IRQS / IOEVENTFD / FEATURE: GET_INFO, GET_REGION_INFO with
 * its capability chain and argsz rule, GET_IRQ_INFO, RESET, the hot-reset pair, unknown
 * requests (vfio-uapi-and-migration.md section 1; Linux vfio_pci_core_ioctl).
 */
import { describe, expect, it } from 'vitest';
import { Errno } from '../src/uapi/errno.js';
import {
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
  VFIO_DEVICE_PCI_HOT_RESET,
  VFIO_DEVICE_RESET,
  VFIO_GROUP_GET_STATUS,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_PCI_INDEX_TO_OFFSET,
  VFIO_REGION_INFO_CAP_SPARSE_MMAP,
  VFIO_REGION_INFO_CAP_TYPE,
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_TYPE_PCI_VENDOR_TYPE,
} from '../src/uapi/vfio.js';
import { vfio_device_info, vfio_pci_hot_reset, vfio_pci_hot_reset_info } from '../src/uapi/structs.js';
import { walkCapChain } from '../src/uapi/capchain.js';
import { sparseMmapCap } from '../src/vfio/pci-core/region-caps.js';
import type { VfioPciVariantOps } from '../src/vfio/pci-core/ops.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER } from '../src/hw/pci/regs.js';
import { accRig, cfgWrite, irqInfo, openCore, regionInfo, u32, u64 } from './vfio-pcicore-helpers.js';

const R = 1; // READ
const W = 2; // WRITE
const M = 4; // MMAP

function vf1() {
  const rig = accRig(1);
  return { rig, ...openCore(rig.acc.vf(1)!, rig.process) };
}

describe('VFIO_DEVICE_GET_INFO', () => {
  it('reports PCI|RESET, 9 regions and 5 irqs (Linux 6.1 vfio_pci_ioctl_get_info)', () => {
    const { file } = vf1();
    const buf = vfio_device_info.encode({ argsz: 16 });
    expect(file.ioctl(VFIO_DEVICE_GET_INFO, buf)).toBe(0);
    expect(u32(buf, 4)).toBe(VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
    expect(u32(buf, 8)).toBe(9);
    expect(u32(buf, 12)).toBe(5);
    expect(u32(buf, 0)).toBe(16);
  });

  it('copies back only minsz: cap_offset bytes stay as the user left them', () => {
    const { file } = vf1();
    const buf = vfio_device_info.encode({ argsz: 20, cap_offset: 0xdead });
    expect(file.ioctl(VFIO_DEVICE_GET_INFO, buf)).toBe(0);
    expect(u32(buf, 16)).toBe(0xdead);
    expect(u32(buf, 8)).toBe(9);
  });

  it('argsz below 16 is EINVAL, a buffer shorter than 16 is EFAULT', () => {
    const { file } = vf1();
    const small = vfio_device_info.encode({ argsz: 15 });
    expect(file.ioctl(VFIO_DEVICE_GET_INFO, small)).toBe(-Errno.EINVAL);
    expect(u32(small, 8)).toBe(0); // nothing written
    expect(file.ioctl(VFIO_DEVICE_GET_INFO, new Uint8Array(12))).toBe(-Errno.EFAULT);
    expect(file.ioctl(VFIO_DEVICE_GET_INFO, 0)).toBe(-Errno.EFAULT);
  });

  it('a closed fd is EBADF', () => {
    const { file } = vf1();
    expect(file.close()).toBe(0);
    expect(file.ioctl(VFIO_DEVICE_GET_INFO, vfio_device_info.encode({ argsz: 16 }))).toBe(-Errno.EBADF);
  });
});

describe('VFIO_DEVICE_GET_REGION_INFO', () => {
  it('VF BARs from the function: BAR2 64 KiB and BAR4 64 MiB read/write/mmap, absent BARs size 0 flags 0', () => {
    const { file } = vf1();
    const expected: [number, number, number][] = [
      [0, 0, 0],
      [1, 0, 0],
      [2, 0x10000, R | W | M],
      [3, 0, 0],
      [4, 0x4000000, R | W | M],
      [5, 0, 0],
    ];
    for (const [index, size, flags] of expected) {
      const { ret, info } = regionInfo(file, index);
      expect(ret).toBe(0);
      expect(info.size).toBe(BigInt(size));
      expect(info.flags).toBe(flags);
      expect(info.offset).toBe(BigInt(VFIO_PCI_INDEX_TO_OFFSET(index)));
      expect(info.index).toBe(index);
    }
  });

  it('config is 4096 bytes read/write, the ROM is empty, VGA and index 9 are EINVAL', () => {
    const { file } = vf1();
    const cfg = regionInfo(file, 7);
    expect(cfg.ret).toBe(0);
    expect(cfg.info.size).toBe(4096n);
    expect(cfg.info.flags).toBe(R | W);
    expect(cfg.info.offset).toBe(7n << 40n);
    const rom = regionInfo(file, 6);
    expect(rom.ret).toBe(0);
    expect(rom.info.size).toBe(0n);
    expect(rom.info.flags).toBe(0);
    expect(regionInfo(file, 8).ret).toBe(-Errno.EINVAL);
    expect(regionInfo(file, 9).ret).toBe(-Errno.EINVAL);
    expect(regionInfo(file, 0xffffffff).ret).toBe(-Errno.EINVAL);
  });

  it('without caps cap_offset is echoed, argsz 31 is EINVAL, a short buffer is EFAULT', () => {
    const { file } = vf1();
    const buf = new Uint8Array(32);
    new DataView(buf.buffer).setUint32(0, 32, true);
    new DataView(buf.buffer).setUint32(8, 2, true);
    new DataView(buf.buffer).setUint32(12, 0x77, true);
    expect(file.ioctl(VFIO_DEVICE_GET_REGION_INFO, buf)).toBe(0);
    expect(u32(buf, 12)).toBe(0x77);
    expect(regionInfo(file, 2, 31).ret).toBe(-Errno.EINVAL);
    expect(regionInfo(file, 2, 32, 24).ret).toBe(-Errno.EFAULT);
  });

  // A variant that narrows BAR2 to its low half and describes it with a sparse-mmap cap.
  const sparse: VfioPciVariantOps = {
    name: 'sparse-test',
    regionInfo(core, index, next) {
      const info = next(index);
      if (index !== 2) return info;
      return { ...info, size: 0x8000, caps: [sparseMmapCap([{ offset: 0, size: 0x8000 }])] };
    },
  };

  it('caps with a too-small argsz: CAPS flag, argsz raised to the needed size, cap_offset 0, no chain', () => {
    const rig = accRig(1);
    const { file } = openCore(rig.acc.vf(1)!, rig.process, sparse);
    const { ret, buf, info } = regionInfo(file, 2, 32, 80);
    expect(ret).toBe(0);
    expect(info.flags).toBe(R | W | M | VFIO_REGION_INFO_FLAG_CAPS);
    expect(info.argsz).toBe(32 + 32); // 16-byte header + one 16-byte area
    expect(info.cap_offset).toBe(0);
    expect(info.size).toBe(0x8000n);
    expect(buf.subarray(32).every((b) => b === 0)).toBe(true);
  });

  it('caps with enough argsz: the chain follows the struct and walks to one SPARSE_MMAP cap', () => {
    const rig = accRig(1);
    const { file } = openCore(rig.acc.vf(1)!, rig.process, sparse);
    const { ret, buf, info } = regionInfo(file, 2, 64);
    expect(ret).toBe(0);
    expect(info.argsz).toBe(64);
    expect(info.cap_offset).toBe(32);
    const walk = walkCapChain(buf, info.cap_offset, { minOffset: 32 });
    expect(walk.ok).toBe(true);
    expect(walk.caps.map((c) => [c.id, c.version, c.next])).toEqual([[VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, 0]]);
    expect(u32(buf, 32 + 8)).toBe(1); // nr_areas
    expect(u64(buf, 32 + 16)).toBe(0n);
    expect(u64(buf, 32 + 24)).toBe(0x8000n);
    // Other regions are untouched by the variant.
    expect(regionInfo(file, 4).info.size).toBe(0x4000000n);
  });

  it('device-specific regions registered at open get index 9 and a CAP_TYPE capability', () => {
    const rig = accRig(1);
    const variant: VfioPciVariantOps = {
      name: 'region-test',
      open(core) {
        core.registerRegion({
          type: VFIO_REGION_TYPE_PCI_VENDOR_TYPE | 0x19e5,
          subtype: 3,
          size: 0x1000,
          flags: R | W,
          rw: (_c, buf) => buf.length,
        });
      },
    };
    const { file } = openCore(rig.acc.vf(1)!, rig.process, variant);
    const info = vfio_device_info.encode({ argsz: 16 });
    file.ioctl(VFIO_DEVICE_GET_INFO, info);
    expect(u32(info, 8)).toBe(10);
    const { ret, buf, info: ri } = regionInfo(file, 9, 64);
    expect(ret).toBe(0);
    expect(ri.size).toBe(0x1000n);
    expect(ri.flags).toBe(R | W | VFIO_REGION_INFO_FLAG_CAPS);
    expect(ri.offset).toBe(9n << 40n);
    const walk = walkCapChain(buf, ri.cap_offset, { minOffset: 32 });
    expect(walk.caps[0]!.id).toBe(VFIO_REGION_INFO_CAP_TYPE);
    expect(u32(buf, 32 + 8)).toBe((VFIO_REGION_TYPE_PCI_VENDOR_TYPE | 0x19e5) >>> 0);
    expect(u32(buf, 32 + 12)).toBe(3);
    expect(regionInfo(file, 10).ret).toBe(-Errno.EINVAL);
  });
});

describe('VFIO_DEVICE_GET_IRQ_INFO', () => {
  it('a QM VF: no INTx, MSI count = Multiple Message Capable (3 vectors -> 4), no MSI-X, ERR and REQ 1', () => {
    const { file } = vf1();
    const rows: [number, number, number][] = [
      [0, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 0],
      [1, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 4],
      [2, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 0],
      [3, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1],
      [4, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1],
    ];
    for (const [index, flags, count] of rows) {
      const { ret, info } = irqInfo(file, index);
      expect(ret).toBe(0);
      expect([info.flags, info.count, info.index, info.argsz]).toEqual([flags, count, index, 16]);
    }
  });

  it('index 5 and argsz 15 are EINVAL; a short buffer is EFAULT', () => {
    const { file } = vf1();
    expect(irqInfo(file, 5).ret).toBe(-Errno.EINVAL);
    expect(irqInfo(file, 1, 15).ret).toBe(-Errno.EINVAL);
    expect(file.ioctl(VFIO_DEVICE_GET_IRQ_INFO, new Uint8Array(15))).toBe(-Errno.EFAULT);
  });
});

describe('VFIO_DEVICE_RESET', () => {
  it('FLRs the function: QM registers return to reset values, config state survives, reset hook runs', () => {
    const rig = accRig(1);
    const vf = rig.acc.vf(1)!;
    let resets = 0;
    const { file } = openCore(vf, rig.process, { name: 'reset-test', reset: () => resets++ });
    const flrsAtOpen = vf.stats.flrs;
    const hooksAtOpen = resets;
    expect(hooksAtOpen).toBe(1); // the reset done at open is a reset too (reset_done)
    cfgWrite(file, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    // QM_VF_AEQ_INT_MASK (0x4) resets to 1 (masked); unmask it through the fd.
    const zero = new Uint8Array(4);
    expect(file.write(zero, VFIO_PCI_INDEX_TO_OFFSET(2) + 0x4)).toBe(4);
    expect(vf.mmioRead(2, 0x4, 4, 'test')).toBe(0);
    expect(file.ioctl(VFIO_DEVICE_RESET)).toBe(0);
    expect(vf.stats.flrs).toBe(flrsAtOpen + 1);
    expect(vf.mmioRead(2, 0x4, 4, 'test')).toBe(1);
    expect(vf.configRead(PCI_COMMAND, 2) & PCI_COMMAND_MASTER).toBe(PCI_COMMAND_MASTER);
    expect(resets).toBe(hooksAtOpen + 1);
  });
});

describe('PCI hot reset', () => {
  it('integrated endpoints on a root bus have no slot/bus reset: ENODEV after the header checks', () => {
    const { file } = vf1();
    expect(file.ioctl(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, vfio_pci_hot_reset_info.encode({ argsz: 12 }))).toBe(-Errno.ENODEV);
    expect(file.ioctl(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, vfio_pci_hot_reset_info.encode({ argsz: 11 }))).toBe(-Errno.EINVAL);
    expect(file.ioctl(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, new Uint8Array(8))).toBe(-Errno.EFAULT);
    expect(file.ioctl(VFIO_DEVICE_PCI_HOT_RESET, vfio_pci_hot_reset.encode({ argsz: 12, count: 1 }))).toBe(-Errno.ENODEV);
    expect(file.ioctl(VFIO_DEVICE_PCI_HOT_RESET, vfio_pci_hot_reset.encode({ argsz: 12, flags: 1 }))).toBe(-Errno.EINVAL);
    expect(file.ioctl(VFIO_DEVICE_PCI_HOT_RESET, vfio_pci_hot_reset.encode({ argsz: 8 }))).toBe(-Errno.EINVAL);
  });
});

describe('unknown requests', () => {
  it('container and group ioctls on a device fd are ENOTTY', () => {
    const { file } = vf1();
    expect(file.ioctl(VFIO_GROUP_GET_STATUS, new Uint8Array(8))).toBe(-Errno.ENOTTY);
    expect(file.ioctl(VFIO_IOMMU_UNMAP_DMA, new Uint8Array(24))).toBe(-Errno.ENOTTY);
    expect(file.ioctl(0x3b00 + 200)).toBe(-Errno.ENOTTY);
  });

  it('VFIO_IOMMU_MAP_DMA shares its number with VFIO_DEVICE_PCI_HOT_RESET (113): on a device fd it is the latter', () => {
    const { file } = vf1();
    expect(VFIO_IOMMU_MAP_DMA).toBe(VFIO_DEVICE_PCI_HOT_RESET);
    expect(file.ioctl(VFIO_IOMMU_MAP_DMA, new Uint8Array(32))).toBe(-Errno.EINVAL); // argsz 0
  });

  it('a variant ioctl hook sees every request and reaches the core through next', () => {
    const rig = accRig(1);
    const seen: number[] = [];
    const { file } = openCore(rig.acc.vf(1)!, rig.process, {
      name: 'ioctl-test',
      ioctl(_core, request, arg, next) {
        seen.push(request);
        if (request === VFIO_DEVICE_RESET) return -Errno.EPERM; // a driver may answer itself
        return next(request, arg);
      },
    });
    expect(file.ioctl(VFIO_DEVICE_RESET)).toBe(-Errno.EPERM);
    const buf = vfio_device_info.encode({ argsz: 16 });
    expect(file.ioctl(VFIO_DEVICE_GET_INFO, buf)).toBe(0);
    expect(u32(buf, 12)).toBe(5);
    expect(seen).toEqual([VFIO_DEVICE_RESET, VFIO_DEVICE_GET_INFO]);
  });
});
