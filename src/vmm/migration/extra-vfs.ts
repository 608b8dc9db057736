/**
 * More VFs for one VM: binds VF n of the host's accelerator to hisi-acc-vfio-pci and
 * assigns it to the VM's container the way a VMM adds a second vfio-pci device (open its
 * group, VFIO_GROUP_SET_CONTAINER on the same container, VFIO_GROUP_GET_DEVICE_FD). The guest
 * runs no driver on these VFs: they migrate as idle functions (match data only, QM_NOT_READY),
 * which is what the per-device cost of a migration with many VFs needs.
 */
import type { Host } from '../../host/host.js';
import { HISI_ACC_VFIO_PCI } from '../../drivers/hisi-acc/driver.js';
import { errnoName } from '../../uapi/errno.js';
import { VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_SET_CONTAINER } from '../../uapi/vfio.js';
import { encodeCString } from '../../vfio/group.js';
import { MigrationError } from './errors.js';
import type { MigrationEndpoint, PassthroughDevice } from './types.js';

export interface ExtraVf extends PassthroughDevice {
  readonly groupFd: number;
}

function must(r: number, what: string): number {
  if (r < 0) throw new MigrationError('setup', `${what}: ${errnoName(r)}`, { errno: -r });
  return r;
}

/** Assigns VFs `indexes` (1-based) of `host`'s first accelerator to the endpoint's container. */
export function assignExtraVfs(host: Host, ep: MigrationEndpoint, indexes: readonly number[]): ExtraVf[] {
  const acc = host.accelerators[0];
  if (!acc) throw new MigrationError('setup', 'the host has no accelerator');
  const pf = host.device(acc.pf.bdf);
  if (!pf) throw new MigrationError('setup', 'the PF did not enumerate');
  const vfs = host.bus.vfsOf(pf);
  const out: ExtraVf[] = [];
  for (const n of indexes) {
    const vf = vfs.find((d) => d.vfIndex === n - 1);
    if (!vf) throw new MigrationError('setup', `no VF ${n} (enable more VFs)`);
    if (vf.driver?.name !== HISI_ACC_VFIO_PCI) {
      must(host.sysfsWrite(`/sys/bus/pci/devices/${vf.bdf}/driver_override`, `${HISI_ACC_VFIO_PCI}\n`), `${vf.bdf} driver_override`);
      must(host.sysfsWrite('/sys/bus/pci/drivers_probe', `${vf.bdf}\n`), `${vf.bdf} drivers_probe`);
    }
    const link = host.sysfsReadlink(`/sys/bus/pci/devices/${vf.bdf}/iommu_group`);
    if (typeof link === 'number') must(link, `${vf.bdf} iommu_group`);
    const group = Number(String(link).slice(String(link).lastIndexOf('/') + 1));
    const groupFd = must(host.openDev(`/dev/vfio/${group}`), `open /dev/vfio/${group}`);
    const gf = ep.process.fds.get(groupFd)!;
    must(gf.ioctl(VFIO_GROUP_SET_CONTAINER, ep.containerFd), `${vf.bdf} VFIO_GROUP_SET_CONTAINER`);
    const fd = must(gf.ioctl(VFIO_GROUP_GET_DEVICE_FD, encodeCString(vf.bdf)), `${vf.bdf} VFIO_GROUP_GET_DEVICE_FD`);
    out.push({ name: vf.bdf, fd, file: ep.process.fds.get(fd)!, groupFd });
  }
  return out;
}

/** The endpoint with extra devices after its own. */
export function withDevices<T extends MigrationEndpoint>(ep: T, extra: readonly PassthroughDevice[]): T {
  return { ...ep, devices: [...ep.devices, ...extra] };
}

/** Closes what assignExtraVfs opened. */
export function releaseExtraVfs(ep: MigrationEndpoint, vfs: readonly ExtraVf[]): void {
  for (const v of vfs) {
    ep.process.fds.close(v.fd);
    ep.process.fds.close(v.groupFd);
  }
}
