/**
 * vfio-pci in the whole host stack: sysfs enables a VF, driver_override + bind attach it to
 * vfio-pci, /dev/vfio/<group> and /dev/vfio/vfio give a group and a type1 container, the guest
 * RAM is mapped with VFIO_IOMMU_MAP_DMA, GET_DEVICE_FD returns our device fd, and the device
 * reaches guest memory only through the container's IOMMU domain.
 */
import { describe, expect, it } from 'vitest';
import { Errno } from '../src/uapi/errno.js';
import {
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_TYPE1v2_IOMMU,
} from '../src/uapi/vfio.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_DEVICE_ID, PCI_VENDOR_ID } from '../src/hw/pci/regs.js';
import { Host } from '../src/host/host.js';
import type { HostPciDriver } from '../src/host/driver.js';
import type { VfioBackend } from '../src/host/vfio-registry.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { UserAddressSpace } from '../src/mem/user-space.js';
import { FdTable } from '../src/vfio/fd.js';
import { VfioContainer } from '../src/vfio/container.js';
import { VfioGroup, encodeCString } from '../src/vfio/group.js';
import { vfioPciDriver } from '../src/vfio/pci-core/driver.js';
import { VfioDeviceFile } from '../src/vfio/pci-core/device-file.js';
import { VfioPciCoreDevice } from '../src/vfio/pci-core/core-device.js';
import { cfgRead, cfgWrite } from './vfio-pcicore-helpers.js';

// Compile-time check: the vfio-pci driver object is a HostPciDriver of the real host.
const asHostDriver: HostPciDriver = vfioPciDriver;

function bootHost() {
  const user = new UserAddressSpace();
  const fds = new FdTable();
  const backend: VfioBackend = {
    createGroup: (id, iommuBacked) => new VfioGroup({ id, fds, iommuBacked }),
    createContainer: (proc) => new VfioContainer({ user: proc.user, fds: proc.fds }),
  };
  const host = new Host({ devices: ['zip-v3'], vfio: backend, user, fds });
  return { host, user, fds };
}

describe('vfio-pci under the real host, group and container', () => {
  it('bind through driver_override, open through group + container, DMA through the container domain', () => {
    const { host, user, fds } = bootHost();
    const pf = '0000:75:00.0';
    expect(host.sysfsWrite(`/sys/bus/pci/devices/${pf}/sriov_numvfs`, '1')).toBe(0);
    const bdf = '0000:75:00.1';
    expect(host.registerDriver(asHostDriver)).toBe(0);
    expect(host.sysfsWrite(`/sys/bus/pci/devices/${bdf}/driver_override`, 'vfio-pci')).toBe(0);
    const dev = host.device(bdf)!;
    if (dev.driver === undefined) expect(host.sysfsWrite('/sys/bus/pci/drivers/vfio-pci/bind', bdf)).toBe(0);
    expect(dev.driver?.name).toBe('vfio-pci');
    expect(dev.drvdata).toBeInstanceOf(VfioPciCoreDevice);

    const container = host.openDev('/dev/vfio/vfio');
    const group = host.openDev(`/dev/vfio/${dev.iommuGroup}`);
    expect(container).toBeGreaterThanOrEqual(3);
    expect(group).toBeGreaterThanOrEqual(3);
    expect(fds.get(group)!.ioctl(VFIO_GROUP_SET_CONTAINER, container)).toBe(0);
    const c = fds.get(container) as VfioContainer;
    expect(c.setIommu(VFIO_TYPE1v2_IOMMU)).toBe(0);
    const ram = new SparseMemory(0x100000);
    const vaddr = user.mapMemory(ram, 0, ram.size);
    expect(c.mapDma({ vaddr, iova: 0x4000_0000, size: ram.size })).toBe(0);

    const devFd = fds.get(group)!.ioctl(VFIO_GROUP_GET_DEVICE_FD, encodeCString(bdf));
    expect(devFd).toBeGreaterThanOrEqual(3);
    const file = fds.get(devFd);
    expect(file).toBeInstanceOf(VfioDeviceFile);
    const df = file as VfioDeviceFile;
    expect(cfgRead(df, PCI_VENDOR_ID, 2)).toBe(0x19e5);
    expect(cfgRead(df, PCI_DEVICE_ID, 2)).toBe(0xa251);

    // The device now DMAs through the container's domain: mapped IOVA works, the host's
    // identity addresses do not.
    cfgWrite(df, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    const vf = dev.fn;
    expect(vf.dmaPort.write(0x4000_0100, Uint8Array.of(0xab))).toBe(true);
    expect(ram.getU8(0x100)).toBe(0xab);
    expect(vf.dmaPort.write(0x100, Uint8Array.of(1))).toBe(false);

    // Unbinding takes the device away from the user: its fd is closed.
    expect(host.sysfsWrite(`/sys/bus/pci/devices/${bdf}/driver/unbind`, bdf)).toBe(0);
    expect(df.closed).toBe(true);
    expect(df.read(new Uint8Array(4), 0)).toBe(-Errno.EBADF);
  });
});
