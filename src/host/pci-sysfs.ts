/**
 * The PCI part of sysfs, laid out as on Linux:
 *
 *   /sys/devices/pci<dddd>:<bb>/<bdf>/        vendor device subsystem_vendor subsystem_device
 *                                            revision class driver_override iommu_group@
 *                                            driver@ (bound) physfn@ (VF) virtfnN@ (PF)
 *                                            sriov_numvfs sriov_totalvfs sriov_offset
 *                                            sriov_stride sriov_vf_device
 *                                            sriov_drivers_autoprobe (PF)
 *   /sys/bus/pci/devices/<bdf>@              -> the device directory
 *   /sys/bus/pci/drivers/<name>/             bind unbind new_id remove_id <bdf>@
 *   /sys/bus/pci/drivers_probe, drivers_autoprobe
 *   /sys/kernel/iommu_groups/<n>/            devices/<bdf>@ type
 *
 * Formats follow drivers/pci/pci-sysfs.c and iov.c: ids "0x%04x", revision "0x%02x", class
 * "0x%06x", sriov_vf_device "%x", counts "%u", driver_override "(null)" when unset.
 */
import type { HostPciDriver } from './driver.js';
import { kstrtobool } from './kstr.js';
import type { BusListener, HostPciBus } from './pci-bus.js';
import type { HostPciDevice } from './pci-device.js';
import type { PseudoFs } from './pseudo-fs.js';
import { fail } from '../uapi/errno.js';

export const SYS_PCI_DEVICES = '/sys/bus/pci/devices';
export const SYS_PCI_DRIVERS = '/sys/bus/pci/drivers';
export const SYS_IOMMU_GROUPS = '/sys/kernel/iommu_groups';

const hex = (v: number, width: number) => `0x${v.toString(16).padStart(width, '0')}\n`;

/** /sys/devices/pci<domain>:<bus>/<bdf> */
export function deviceDir(bdf: string): string {
  return `/sys/devices/pci${bdf.slice(0, 4)}:${bdf.slice(5, 7)}/${bdf}`;
}

function relDeviceDir(bdf: string, depth: number): string {
  return `${'../'.repeat(depth)}${deviceDir(bdf).slice('/sys/'.length)}`;
}

export class PciSysfs implements BusListener {
  constructor(private readonly fs: PseudoFs, private readonly bus: HostPciBus) {
    fs.mkdir(SYS_PCI_DEVICES);
    fs.mkdir(SYS_PCI_DRIVERS);
    fs.mkdir(SYS_IOMMU_GROUPS);
    fs.attr('/sys/bus/pci/drivers_probe', { store: (t) => bus.driversProbe(t) });
    fs.attr('/sys/bus/pci/drivers_autoprobe', {
      show: () => `${bus.driversAutoprobe ? 1 : 0}\n`,
      // bus.c drivers_autoprobe_store: '0' first turns it off, anything else on.
      store: (t) => { bus.driversAutoprobe = t[0] !== '0'; },
    });
    bus.addListener(this);
  }

  deviceAdded(dev: HostPciDevice): void {
    const fs = this.fs;
    const dir = deviceDir(dev.bdf);
    fs.mkdir(dir);
    const fixed: [string, string][] = [
      ['vendor', hex(dev.vendor, 4)],
      ['device', hex(dev.device, 4)],
      ['subsystem_vendor', hex(dev.subsystemVendor, 4)],
      ['subsystem_device', hex(dev.subsystemDevice, 4)],
      ['revision', hex(dev.revision, 2)],
      ['class', hex(dev.classCode, 6)],
    ];
    for (const [name, text] of fixed) fs.attr(`${dir}/${name}`, { show: () => text });
    fs.attr(`${dir}/driver_override`, {
      show: () => `${dev.driverOverride ?? '(null)'}\n`,
      store: (t) => {
        this.live(dev);
        this.bus.driverOverrideStore(dev, t);
      },
    });
    this.iommuGroupAdded(dev);
    fs.symlink(`../../../kernel/iommu_groups/${dev.iommuGroup}`, `${dir}/iommu_group`);
    if (dev.pf) this.sriovAttrs(dev, dir);
    if (dev.physfn) {
      fs.symlink(`../${dev.physfn.bdf}`, `${dir}/physfn`);
      const pfDir = deviceDir(dev.physfn.bdf);
      if (fs.exists(pfDir)) fs.symlink(`../${dev.bdf}`, `${pfDir}/virtfn${dev.vfIndex}`);
    }
    fs.symlink(relDeviceDir(dev.bdf, 3), `${SYS_PCI_DEVICES}/${dev.bdf}`);
  }

  deviceRemoved(dev: HostPciDevice): void {
    const fs = this.fs;
    fs.remove(`${SYS_PCI_DEVICES}/${dev.bdf}`);
    if (dev.physfn) fs.remove(`${deviceDir(dev.physfn.bdf)}/virtfn${dev.vfIndex}`);
    fs.remove(deviceDir(dev.bdf));
    fs.remove(`${SYS_IOMMU_GROUPS}/${dev.iommuGroup}`);
  }

  driverAdded(drv: HostPciDriver): void {
    const dir = `${SYS_PCI_DRIVERS}/${drv.name}`;
    const bus = this.bus;
    this.fs.mkdir(dir);
    this.fs.attr(`${dir}/bind`, { store: (t) => bus.bind(t, drv.name) });
    this.fs.attr(`${dir}/unbind`, { store: (t) => bus.unbindFrom(t, drv.name) });
    this.fs.attr(`${dir}/new_id`, { store: (t) => bus.newIdStore(drv.name, t) });
    this.fs.attr(`${dir}/remove_id`, { store: (t) => bus.removeIdStore(drv.name, t) });
  }

  driverRemoved(drv: HostPciDriver): void {
    this.fs.remove(`${SYS_PCI_DRIVERS}/${drv.name}`);
  }

  bound(dev: HostPciDevice, drv: HostPciDriver): void {
    this.fs.symlink(`../../../bus/pci/drivers/${drv.name}`, `${deviceDir(dev.bdf)}/driver`);
    this.fs.symlink(relDeviceDir(dev.bdf, 4), `${SYS_PCI_DRIVERS}/${drv.name}/${dev.bdf}`);
  }

  unbound(dev: HostPciDevice, drv: HostPciDriver): void {
    this.fs.remove(`${deviceDir(dev.bdf)}/driver`);
    this.fs.remove(`${SYS_PCI_DRIVERS}/${drv.name}/${dev.bdf}`);
  }

  /** A store on a device that has left the bus (its file was open) fails with ENODEV. */
  private live(dev: HostPciDevice): void {
    if (!dev.present) fail('ENODEV', `${dev.bdf} was removed`);
  }

  private iommuGroupAdded(dev: HostPciDevice): void {
    const g = `${SYS_IOMMU_GROUPS}/${dev.iommuGroup}`;
    this.fs.mkdir(`${g}/devices`);
    this.fs.attr(`${g}/type`, { show: () => 'identity\n' });
    this.fs.symlink(relDeviceDir(dev.bdf, 4), `${g}/devices/${dev.bdf}`);
  }

  private sriovAttrs(dev: HostPciDevice, dir: string): void {
    const pf = dev.pf!;
    const fs = this.fs;
    fs.attr(`${dir}/sriov_totalvfs`, { show: () => `${pf.sriov.totalVfs}\n` });
    fs.attr(`${dir}/sriov_numvfs`, {
      show: () => `${pf.vfs.length}\n`,
      store: (t) => {
        this.live(dev);
        this.bus.sriovNumvfsStore(dev, t);
      },
    });
    fs.attr(`${dir}/sriov_offset`, { show: () => `${pf.sriov.vfOffset}\n` });
    fs.attr(`${dir}/sriov_stride`, { show: () => `${pf.sriov.vfStride}\n` });
    fs.attr(`${dir}/sriov_vf_device`, { show: () => `${pf.sriov.vfDeviceId.toString(16)}\n` });
    fs.attr(`${dir}/sriov_drivers_autoprobe`, {
      show: () => `${dev.sriovDriversAutoprobe ? 1 : 0}\n`,
      store: (t) => {
        const v = kstrtobool(t);
        if (typeof v === 'number') fail('EINVAL', `cannot parse "${t}" as a boolean`);
        dev.sriovDriversAutoprobe = v;
      },
    });
  }
}
