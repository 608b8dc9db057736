/**
 * Device life cycle and the host driver: probe registers a group member, open enables
 * (reset, variant open; a failing variant open is undone), the last close tears down, remove
 * signals REQ and closes what the user left open; vfio-pci matches nothing by id.
 */
import { describe, expect, it } from 'vitest';
import { Errno, KernelError, fail } from '../src/uapi/errno.js';
import {
  VFIO_DEVICE_GET_INFO,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_MIGRATION_P2P,
} from '../src/uapi/vfio.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../src/hw/pci/regs.js';
import { IommuDomain, IOMMU_READ, IOMMU_WRITE } from '../src/iommu/domain.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { createVfioPciDriver, vfioPciDriver } from '../src/vfio/pci-core/driver.js';
import { VfioPciCoreDevice } from '../src/vfio/pci-core/core-device.js';
import type { VfioDeviceFile } from '../src/vfio/pci-core/device-file.js';
import type { HostPciDeviceLike, VfioGroupMember, VfioHostLink } from '../src/vfio/pci-core/host-types.js';
import type { VfioPciVariantOps } from '../src/vfio/pci-core/ops.js';
import { accRig, cfgRead, cfgWrite, eventfd, openCore, plainRig, setIrqs } from './vfio-pcicore-helpers.js';

function fakeHost(rig: ReturnType<typeof accRig>) {
  const members = new Map<string, VfioGroupMember>();
  const host: VfioHostLink = {
    process: rig.process,
    vfio: {
      registerDevice: (dev, member) => void members.set(dev.bdf, member),
      unregisterDevice: (dev) => void members.delete(dev.bdf),
    },
  };
  const devOf = (index: number, withHost = true): HostPciDeviceLike => {
    const fn = rig.acc.vf(index)!;
    return { bdf: fn.bdf, fn, vendor: fn.vendorId, device: fn.deviceId, isVirtfn: true, iommuGroup: 10 + index, host: withHost ? host : undefined };
  };
  return { host, members, devOf };
}

describe('host driver', () => {
  it('vfio-pci matches no ids; probe registers the device as a group member named by its BDF', () => {
    expect(vfioPciDriver.name).toBe('vfio-pci');
    expect(vfioPciDriver.idTable).toEqual([]);
    const rig = accRig(2);
    const { members, devOf } = fakeHost(rig);
    const dev = devOf(2);
    vfioPciDriver.probe(dev);
    expect([...members.keys()]).toEqual(['0000:75:00.2']);
    expect(dev.drvdata).toBeInstanceOf(VfioPciCoreDevice);
    expect(members.get('0000:75:00.2')!.name).toBe('0000:75:00.2');
    vfioPciDriver.remove(dev);
    expect(members.size).toBe(0);
    expect(dev.drvdata).toBeUndefined();
  });

  it('without a host link probe is ENODEV; a variant with bad migration ops is EINVAL', () => {
    const rig = accRig(1);
    const { devOf, host, members } = fakeHost(rig);
    expect(() => vfioPciDriver.probe(devOf(1, false))).toThrow(KernelError);
    try {
      vfioPciDriver.probe(devOf(1, false));
    } catch (e) {
      expect((e as KernelError).errno).toBe(Errno.ENODEV);
    }
    const bad = createVfioPciDriver('bad-variant', [{ vendor: 0x19e5, device: 0xa251 }], {
      name: 'bad',
      migration: { flags: VFIO_MIGRATION_P2P, setState: () => null, getState: () => 2, getDataSize: () => 0 },
    }, { host });
    let errno = 0;
    try {
      bad.probe(devOf(1));
    } catch (e) {
      errno = (e as KernelError).errno;
    }
    expect(errno).toBe(Errno.EINVAL);
    expect(members.size).toBe(0);
    expect(bad.idTable).toEqual([{ vendor: 0x19e5, device: 0xa251 }]);
  });

  it('remove signals REQ, then closes the fds the user still holds; the member cannot be opened again', () => {
    const rig = accRig(1);
    const { members, devOf } = fakeHost(rig);
    const dev = devOf(1);
    vfioPciDriver.probe(dev);
    const member = members.get(dev.bdf)!;
    const file = member.openDevice();
    rig.process.fds.install(file);
    const req = eventfd(rig.process);
    expect(setIrqs(file as VfioDeviceFile, { flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: 4, start: 0, count: 1, data: [req.fd] })).toBe(0);
    vfioPciDriver.remove(dev);
    expect(req.efd.signals).toBe(1);
    expect(file.closed).toBe(true);
    expect(file.ioctl(VFIO_DEVICE_GET_INFO, new Uint8Array(16))).toBe(-Errno.EBADF);
    expect(member.isOpen).toBe(false);
    expect(() => member.openDevice()).toThrow(/being removed/);
  });
});

describe('open and close', () => {
  it('open resets the function and close resets it again, leaving bus mastering off', () => {
    const rig = accRig(1);
    const vf = rig.acc.vf(1)!;
    const flrs = vf.stats.flrs;
    const { file, core } = openCore(vf, rig.process);
    expect(vf.stats.flrs).toBe(flrs + 1);
    cfgWrite(file, PCI_COMMAND, 2, PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
    expect(vf.busMasterEnabled).toBe(true);
    expect(file.close()).toBe(0);
    expect(core.isOpen).toBe(false);
    expect(vf.stats.flrs).toBe(flrs + 2);
    expect(vf.busMasterEnabled).toBe(false);
    expect(core.vconfig).toBe(null);
  });

  it('two fds share one enabled device: the variant opens and closes once', () => {
    const rig = accRig(1);
    const calls: string[] = [];
    const variant: VfioPciVariantOps = { name: 'count', open: () => calls.push('open'), close: () => calls.push('close') };
    const core = new VfioPciCoreDevice({ fn: rig.acc.vf(1)!, process: rig.process, variant });
    const a = core.openDevice();
    const b = core.openDevice();
    cfgWrite(a, 0x3c, 1, 0x21);
    expect(cfgRead(b, 0x3c, 1)).toBe(0x21); // same virtual config
    a.close();
    expect(core.isOpen).toBe(true);
    b.close();
    expect(calls).toEqual(['open', 'close']);
  });

  it('a failing variant open fails the open and undoes the enable; a later open starts clean', () => {
    const rig = accRig(1);
    const vf = rig.acc.vf(1)!;
    let refuse = true;
    const variant: VfioPciVariantOps = {
      name: 'picky',
      open(core) {
        core.registerRegion({ type: 1, subtype: 1, size: 16, flags: 1, rw: (_c, b) => b.length });
        if (refuse) fail('EINVAL', 'HiSi ACC qm driver not loaded');
      },
    };
    const core = new VfioPciCoreDevice({ fn: vf, process: rig.process, variant });
    const flrs = vf.stats.flrs;
    let errno = 0;
    try {
      core.openDevice();
    } catch (e) {
      errno = (e as KernelError).errno;
    }
    expect(errno).toBe(Errno.EINVAL);
    expect(core.isOpen).toBe(false);
    expect(vf.stats.flrs).toBe(flrs + 2); // the open-time reset and the undo's reset
    expect(core.numRegions).toBe(9);
    refuse = false;
    const f = core.openDevice();
    expect(core.numRegions).toBe(10);
    f.close();
    expect(core.numRegions).toBe(9);
  });

  it('a reset done to the function by someone else reaches the variant reset hook without a restore', () => {
    const rig = accRig(1);
    const vf = rig.acc.vf(1)!;
    let resets = 0;
    const { file } = openCore(vf, rig.process, { name: 'r', reset: () => resets++ });
    const before = resets;
    cfgWrite(file, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    vf.flr();
    expect(resets).toBe(before + 1);
    expect(vf.busMasterEnabled).toBe(false);
  });

  it('setIommu routes device DMA through the domain (requester id = BDF) and null detaches it', () => {
    const { fn, process } = plainRig();
    const core = new VfioPciCoreDevice({ fn, process });
    const domain = new IommuDomain();
    const mem = new SparseMemory(0x10000);
    domain.map(0x100000, 0x10000, mem, 0, IOMMU_READ | IOMMU_WRITE);
    core.setIommu(domain);
    fn.configWrite(PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    expect(fn.dmaPort.write(0x100010, Uint8Array.of(7, 8))).toBe(true);
    expect(mem.getU16(0x10)).toBe(0x0807);
    expect(fn.dmaPort.write(0x200000, Uint8Array.of(1))).toBe(false);
    expect(domain.faults.at(-1)!.requesterId).toBe(fn.bdf);
    core.setIommu(null);
    expect(core.iommuDomain).toBe(null);
    expect(fn.dmaPort.write(0x100010, Uint8Array.of(9))).toBe(false);
    expect(mem.getU8(0x10)).toBe(7);
  });
});
