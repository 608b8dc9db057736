/**
 * Host assembly: where accelerators land on the bus, the static sysfs attributes of a PF
 * (pci-sysfs.c / iov.c formats), hot removal, and the memfs view staying in step.
 */
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { loadProfile } from '../src/hw/firmware.js';
import { PciPf } from '../src/hw/pci/pf.js';
import { Errno } from '../src/uapi/errno.js';
import { HPRE_PF, SEC_PF, ZIP_PF, dev, fakeDriver, vfBdf } from './host-helpers.js';

describe('accelerator placement', () => {
  it('engines take their usual slots; a second one of a kind goes to the second socket (+0x80)', () => {
    const h = new Host({ devices: ['zip-v3', 'sec-v3', 'hpre-v3', 'zip-v2', { profile: 'sec-v2', bdf: '0000:30:00.0' }] });
    expect(h.sysfsList('/sys/bus/pci/devices')).toEqual(['0000:30:00.0', ZIP_PF, SEC_PF, HPRE_PF, '0000:f5:00.0']);
    expect(h.accelerators.map((a) => a.pf.bdf)).toEqual([ZIP_PF, SEC_PF, HPRE_PF, '0000:f5:00.0', '0000:30:00.0']);
    expect(h.accelerator('0000:f5:00.0')!.profile.name).toBe('zip-v2');
    expect(h.sysfsReadlink('/sys/bus/pci/devices/0000:f5:00.0')).toBe('../../../devices/pci0000:f5/0000:f5:00.0');
    // Every PF bound to its engine's PF driver, each in its own group.
    const groups = h.bus.devices().map((d) => d.iommuGroup);
    expect(new Set(groups).size).toBe(5);
    expect(h.bus.devices().map((d) => d.driver?.name)).toEqual(['hisi_zip', 'hisi_sec2', 'hisi_hpre', 'hisi_zip', 'hisi_sec2']);
  });

  it('addDevice: EEXIST for a taken address, EINVAL for a VF', () => {
    const h = new Host({ devices: ['zip-v3'] });
    expect(() => h.bus.addDevice(new PciPf(loadProfile('sec-v3'), ZIP_PF))).toThrow(/EEXIST/);
    h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '1');
    expect(() => h.bus.addDevice(h.device(vfBdf(ZIP_PF, 1))!.fn)).toThrow(/EINVAL/);
  });
});

describe('PF attributes', () => {
  it('ids, SR-IOV geometry and group type in the Linux formats', () => {
    const h = new Host({ devices: ['hpre-v3'] });
    const d = dev(HPRE_PF);
    expect(h.sysfsRead(`${d}/vendor`)).toBe('0x19e5\n');
    expect(h.sysfsRead(`${d}/device`)).toBe('0xa258\n');
    expect(h.sysfsRead(`${d}/subsystem_vendor`)).toBe('0x19e5\n');
    expect(h.sysfsRead(`${d}/subsystem_device`)).toBe(`0x${loadProfile('hpre-v3').pci.subsystemId.toString(16).padStart(4, '0')}\n`);
    expect(h.sysfsRead(`${d}/sriov_offset`)).toBe('1\n');
    expect(h.sysfsRead(`${d}/sriov_stride`)).toBe('1\n');
    expect(h.sysfsRead(`${d}/sriov_vf_device`)).toBe('a259\n');
    const g = (h.sysfsReadlink(`${d}/iommu_group`) as string).split('/').pop();
    expect(h.sysfsRead(`/sys/kernel/iommu_groups/${g}/type`)).toBe('identity\n');
    expect(h.sysfsReadlink(`${d}/vendor`)).toBe(-Errno.EINVAL);
    expect(h.sysfsList(`${d}/vendor`)).toBe(-Errno.ENOTDIR);
  });

  it('the memfs tree shows live values after sync()', () => {
    const h = new Host({ devices: ['zip-v3'] });
    const file = `/sys/devices/pci0000:75/${ZIP_PF}/sriov_numvfs`;
    expect(String(h.fs.vol.readFileSync(file, 'utf8'))).toBe('0\n');
    h.bus.enableSriov(h.device(ZIP_PF)!, 2);
    h.fs.sync();
    expect(String(h.fs.vol.readFileSync(file, 'utf8'))).toBe('2\n');
  });
});

describe('hot removal', () => {
  it('removing a PF unbinds its driver (which disables SR-IOV) and frees its groups and files', () => {
    const h = new Host({ devices: ['zip-v3', 'sec-v3'] });
    const vfDrv = fakeDriver('vf-test', [{ vendor: 0x19e5, device: 0xa251 }]);
    h.registerDriver(vfDrv);
    h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '2');
    const groupsBefore = h.groups.ids().length;
    h.bus.removeDevice(ZIP_PF);
    expect(vfDrv.removed).toEqual([vfBdf(ZIP_PF, 2), vfBdf(ZIP_PF, 1)]);
    expect(h.sysfsList('/sys/bus/pci/devices')).toEqual([SEC_PF]);
    expect(h.sysfsList('/sys/devices/pci0000:75')).toEqual([]);
    expect(h.groups.ids().length).toBe(groupsBefore - 3);
    expect(h.sysfsList('/sys/bus/pci/drivers/hisi_zip')).toEqual(['bind', 'new_id', 'remove_id', 'unbind']);
    expect(() => h.bus.removeDevice(ZIP_PF)).toThrow(/ENODEV/);
  });

  it('a PF whose driver left SR-IOV on is cleaned up by the core', () => {
    const h = new Host({ devices: ['zip-v3'], pfDriver: false });
    h.registerDriver(fakeDriver('careless', [{ vendor: 0x19e5, device: 0xa250 }]));
    h.bus.enableSriov(h.device(ZIP_PF)!, 3);
    expect(() => h.bus.removeDevice(vfBdf(ZIP_PF, 1))).toThrow(/EINVAL/);
    h.bus.removeDevice(ZIP_PF);
    expect(h.bus.log.includes('driver left SR-IOV enabled after remove')).toBe(true);
    expect(h.sysfsList('/sys/bus/pci/devices')).toEqual([]);
    expect(h.groups.ids()).toEqual([]);
  });
});
