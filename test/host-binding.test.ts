/**
 * Driver binding through sysfs, with the errno of each store as Linux 6.1 returns it
 * (drivers/base/bus.c bind_store/unbind_store/drivers_probe_store, dd.c, pci-driver.c
 * new_id/remove_id, pci_match_device and driver_set_override).
 */
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER } from '../src/hw/pci/regs.js';
import type { DmaPort } from '../src/hw/dma.js';
import { Errno } from '../src/uapi/errno.js';
import { ZIP_PF, dev, drvDir, fakeDriver, vfBdf } from './host-helpers.js';

const ZIP_VF = { vendor: 0x19e5, device: 0xa251 };
const HPRE_VF = { vendor: 0x19e5, device: 0xa259 };
const VF1 = vfBdf(ZIP_PF, 1);
const VF2 = vfBdf(ZIP_PF, 2);

/** A ZIP PF with two VFs and no VF driver loaded. */
function hostWithVfs(): Host {
  const h = new Host({ devices: ['zip-v3'] });
  expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '2')).toBe(0);
  return h;
}

describe('automatic probing', () => {
  it('registering a driver binds the unbound devices its id table matches, with sysfs links', () => {
    const h = hostWithVfs();
    const drv = fakeDriver('zipvf', [ZIP_VF]);
    expect(h.registerDriver(drv)).toBe(0);
    expect(drv.probed).toEqual([VF1, VF2]);
    expect(h.sysfsReadlink(`${dev(VF1)}/driver`)).toBe('../../../bus/pci/drivers/zipvf');
    expect(h.sysfsList(drvDir('zipvf'))).toEqual([VF1, VF2, 'bind', 'new_id', 'remove_id', 'unbind']);
    expect(h.sysfsReadlink(`${drvDir('zipvf')}/${VF1}`)).toBe(`../../../../devices/pci0000:75/${VF1}`);
    expect(h.sysfsRead(`${drvDir('zipvf')}/${VF1}/device`)).toBe('0xa251\n');
  });

  it('only matching ids bind: an HPRE VF driver leaves ZIP VFs alone and cannot be bound to them', () => {
    const h = hostWithVfs();
    const drv = fakeDriver('hprevf', [HPRE_VF]);
    h.registerDriver(drv);
    expect(drv.probed).toEqual([]);
    expect(h.sysfsWrite(`${drvDir('hprevf')}/bind`, VF1)).toBe(-Errno.ENODEV);
    expect(h.sysfsReadlink(`${dev(VF1)}/driver`)).toBe(-Errno.ENOENT);
  });

  it('a probe error lets the next matching driver try', () => {
    const h = hostWithVfs();
    const bad = fakeDriver('bad', [ZIP_VF], { failWith: 'EIO' });
    const good = fakeDriver('good', [ZIP_VF]);
    h.registerDriver(bad);
    h.registerDriver(good);
    expect(good.probed).toEqual([VF1, VF2]);
    expect(h.device(VF1)!.driver?.name).toBe('good');
    expect(h.bus.log.includes('probe with driver bad failed with error -5')).toBe(true);
  });

  it('drivers_autoprobe=0 stops probing at registration; drivers_probe then binds', () => {
    const h = hostWithVfs();
    expect(h.sysfsRead('/sys/bus/pci/drivers_autoprobe')).toBe('1\n');
    expect(h.sysfsWrite('/sys/bus/pci/drivers_autoprobe', '0')).toBe(0);
    const drv = fakeDriver('zipvf', [ZIP_VF]);
    h.registerDriver(drv);
    expect(drv.probed).toEqual([]);
    expect(h.sysfsWrite('/sys/bus/pci/drivers_probe', `${VF2}\n`)).toBe(0);
    expect(drv.probed).toEqual([VF2]);
    expect(h.sysfsWrite('/sys/bus/pci/drivers_autoprobe', 'yes')).toBe(0);
    expect(h.sysfsRead('/sys/bus/pci/drivers_autoprobe')).toBe('1\n');
  });

  it('registering a second driver with a taken name is EBUSY; unregistering unbinds its devices', () => {
    const h = hostWithVfs();
    const drv = fakeDriver('zipvf', [ZIP_VF]);
    expect(h.registerDriver(drv)).toBe(0);
    expect(h.registerDriver(fakeDriver('zipvf', [HPRE_VF]))).toBe(-Errno.EBUSY);
    expect(h.registerDriver(fakeDriver('a/b', [HPRE_VF]))).toBe(-Errno.EINVAL);
    expect(h.unregisterDriver('zipvf')).toBe(0);
    expect(drv.removed).toEqual([VF1, VF2]);
    expect(h.sysfsList(drvDir('zipvf'))).toBe(-Errno.ENOENT);
    expect(h.device(VF1)!.driver).toBeUndefined();
    expect(h.unregisterDriver('zipvf')).toBe(-Errno.ENODEV);
  });
});

describe('bind / unbind stores', () => {
  function boundHost(): { h: Host; a: ReturnType<typeof fakeDriver>; b: ReturnType<typeof fakeDriver> } {
    const h = new Host({ devices: ['zip-v3'] });
    h.sysfsWrite('/sys/bus/pci/drivers_autoprobe', '0');
    const a = fakeDriver('drv-a', [ZIP_VF]);
    const b = fakeDriver('drv-b', [ZIP_VF]);
    h.registerDriver(a);
    h.registerDriver(b);
    h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '2');
    return { h, a, b };
  }

  it('bind: ENODEV for an unknown device, EBUSY when bound (to this or another driver)', () => {
    const { h, a } = boundHost();
    expect(h.sysfsWrite(`${drvDir('drv-a')}/bind`, '0000:75:07.7')).toBe(-Errno.ENODEV);
    expect(h.sysfsWrite(`${drvDir('drv-a')}/bind`, 'garbage')).toBe(-Errno.ENODEV);
    expect(h.sysfsWrite(`${drvDir('drv-a')}/bind`, `${VF1}\n`)).toBe(0);
    expect(a.probed).toEqual([VF1]);
    expect(h.device(VF1)!.drvdata).toEqual({ owner: 'drv-a' });
    expect(h.sysfsWrite(`${drvDir('drv-a')}/bind`, VF1)).toBe(-Errno.EBUSY);
    expect(h.sysfsWrite(`${drvDir('drv-b')}/bind`, VF1)).toBe(-Errno.EBUSY);
    // A name with a trailing space is not the device (sysfs_streq forgives only "\n").
    expect(h.sysfsWrite(`${drvDir('drv-a')}/bind`, `${VF2} `)).toBe(-Errno.ENODEV);
  });

  it("bind returns the probe's own errno and leaves the device unbound", () => {
    const h = hostWithVfs();
    h.registerDriver(fakeDriver('picky', [{ vendor: 0x19e5, device: 0xa251 }], { failWith: 'EOPNOTSUPP' }));
    expect(h.sysfsWrite(`${drvDir('picky')}/bind`, VF1)).toBe(-Errno.EOPNOTSUPP);
    expect(h.device(VF1)!.driver).toBeUndefined();
    expect(h.device(VF1)!.drvdata).toBeUndefined();
    expect(h.sysfsReadlink(`${dev(VF1)}/driver`)).toBe(-Errno.ENOENT);
  });

  it('unbind: ENODEV unless bound to that driver; success runs remove and drops links/drvdata', () => {
    const { h, a } = boundHost();
    expect(h.sysfsWrite(`${drvDir('drv-a')}/unbind`, VF1)).toBe(-Errno.ENODEV);
    h.sysfsWrite(`${drvDir('drv-a')}/bind`, VF1);
    expect(h.sysfsWrite(`${drvDir('drv-b')}/unbind`, VF1)).toBe(-Errno.ENODEV);
    expect(h.sysfsWrite(`${drvDir('drv-a')}/unbind`, '0000:75:07.7')).toBe(-Errno.ENODEV);
    expect(h.sysfsWrite(`${drvDir('drv-a')}/unbind`, `${VF1}\n`)).toBe(0);
    expect(a.removed).toEqual([VF1]);
    expect(h.device(VF1)!.driver).toBeUndefined();
    expect(h.device(VF1)!.drvdata).toBeUndefined();
    expect(h.sysfsReadlink(`${dev(VF1)}/driver`)).toBe(-Errno.ENOENT);
    expect(h.sysfsList(drvDir('drv-a'))).not.toContain(VF1);
  });

  it('bind/unbind/new_id/remove_id/drivers_probe are write-only (EACCES on read); ids are read-only', () => {
    const h = hostWithVfs();
    h.registerDriver(fakeDriver('zipvf', [ZIP_VF]));
    for (const f of ['bind', 'unbind', 'new_id', 'remove_id']) expect(h.sysfsRead(`${drvDir('zipvf')}/${f}`)).toBe(-Errno.EACCES);
    expect(h.sysfsRead('/sys/bus/pci/drivers_probe')).toBe(-Errno.EACCES);
    for (const f of ['vendor', 'device', 'revision', 'class', 'subsystem_vendor', 'subsystem_device', 'sriov_totalvfs']) {
      expect(h.sysfsWrite(`${dev(ZIP_PF)}/${f}`, '1'), f).toBe(-Errno.EACCES);
    }
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/nonexistent`, '1')).toBe(-Errno.ENOENT);
    expect(h.sysfsWrite(dev(ZIP_PF), '1')).toBe(-Errno.EISDIR);
    expect(h.sysfsRead(dev(ZIP_PF))).toBe(-Errno.EISDIR);
    expect(h.sysfsRead('relative/path')).toBe(-Errno.EINVAL);
  });

  it('an empty write does nothing (sysfs_kf_write with count 0)', () => {
    const h = hostWithVfs();
    h.sysfsWrite(`${dev(VF1)}/driver_override`, 'x');
    expect(h.sysfsWrite(`${dev(VF1)}/driver_override`, '')).toBe(0);
    expect(h.sysfsRead(`${dev(VF1)}/driver_override`)).toBe('x\n');
  });
});

describe('driver_override', () => {
  it('reads "(null)" when unset; "\\n" clears; NUL and newline end the name; too long is EINVAL', () => {
    const h = hostWithVfs();
    const f = `${dev(VF1)}/driver_override`;
    expect(h.sysfsRead(f)).toBe('(null)\n');
    expect(h.sysfsWrite(f, 'vfio-pci\n')).toBe(0);
    expect(h.sysfsRead(f)).toBe('vfio-pci\n');
    expect(h.sysfsWrite(f, 'abc\0def')).toBe(0);
    expect(h.sysfsRead(f)).toBe('abc\n');
    expect(h.sysfsWrite(f, 'one\ntwo')).toBe(0);
    expect(h.sysfsRead(f)).toBe('one\n');
    expect(h.sysfsWrite(f, 'x'.repeat(4095))).toBe(-Errno.EINVAL);
    expect(h.sysfsRead(f)).toBe('one\n');
    expect(h.sysfsWrite(f, '\n')).toBe(0);
    expect(h.sysfsRead(f)).toBe('(null)\n');
    expect(h.sysfsWrite(f, 'y'.repeat(4094))).toBe(0);
    expect((h.sysfsRead(f) as string).length).toBe(4095);
  });

  it('an override binds only its named driver, even one whose ids do not match', () => {
    const h = hostWithVfs();
    h.sysfsWrite('/sys/bus/pci/drivers_autoprobe', '0');
    const byId = fakeDriver('zipvf', [ZIP_VF]);
    const other = fakeDriver('other', [HPRE_VF]);
    h.registerDriver(byId);
    h.registerDriver(other);
    expect(h.sysfsWrite(`${dev(VF1)}/driver_override`, 'other')).toBe(0);
    expect(h.sysfsWrite(`${drvDir('zipvf')}/bind`, VF1)).toBe(-Errno.ENODEV);
    expect(h.sysfsWrite('/sys/bus/pci/drivers_probe', VF1)).toBe(0);
    expect(other.probed).toEqual([VF1]);
    expect(byId.probed).toEqual([]);
    // Setting an override does not change an existing binding.
    expect(h.sysfsWrite(`${dev(VF1)}/driver_override`, 'zipvf')).toBe(0);
    expect(h.device(VF1)!.driver?.name).toBe('other');
  });

  it('the vfio-pci style "override only" id matches nothing without an override', () => {
    const h = hostWithVfs();
    const catchAll = fakeDriver('vfio-like', [{ vendor: 0xffffffff, device: 0xffffffff, overrideOnly: true }]);
    h.registerDriver(catchAll);
    expect(catchAll.probed).toEqual([]);
    expect(h.sysfsWrite(`${drvDir('vfio-like')}/bind`, VF1)).toBe(-Errno.ENODEV);
    h.sysfsWrite(`${dev(VF1)}/driver_override`, 'vfio-like');
    expect(h.sysfsWrite(`${drvDir('vfio-like')}/bind`, VF1)).toBe(0);
  });
});

describe('drivers_probe', () => {
  it('ENODEV for an unknown device; success without a matching driver; no-op when bound', () => {
    const h = hostWithVfs();
    expect(h.sysfsWrite('/sys/bus/pci/drivers_probe', '0000:75:07.7')).toBe(-Errno.ENODEV);
    expect(h.sysfsWrite('/sys/bus/pci/drivers_probe', VF1)).toBe(0);
    expect(h.device(VF1)!.driver).toBeUndefined();
    expect(h.sysfsWrite('/sys/bus/pci/drivers_probe', ZIP_PF)).toBe(0);
    expect(h.device(ZIP_PF)!.driver?.name).toBe('hisi_zip');
  });
});

describe('new_id / remove_id', () => {
  it('new_id adds an id and probes; EEXIST for an id already handled; EINVAL for bad input', () => {
    const h = hostWithVfs();
    const drv = fakeDriver('dyn', [HPRE_VF]);
    h.registerDriver(drv);
    const f = `${drvDir('dyn')}/new_id`;
    expect(h.sysfsWrite(f, '19e5')).toBe(-Errno.EINVAL);
    expect(h.sysfsWrite(f, 'zz yy')).toBe(-Errno.EINVAL);
    expect(h.sysfsWrite(f, '19e5 a259')).toBe(-Errno.EEXIST);
    // All seven fields skip the EEXIST check, but driver_data must be one the table has (0).
    expect(h.sysfsWrite(f, '19e5 a251 ffffffff ffffffff 0 0 1')).toBe(-Errno.EINVAL);
    expect(h.sysfsWrite(f, '0x19e5 0xa251\n')).toBe(0);
    expect(drv.probed).toEqual([VF1, VF2]);
    expect(h.bus.dynIds('dyn')).toEqual([{ vendor: 0x19e5, device: 0xa251, subvendor: 0xffffffff, subdevice: 0xffffffff, class: 0, classMask: 0 }]);
    expect(h.sysfsWrite(f, '19e5 a251')).toBe(-Errno.EEXIST);
  });

  it('remove_id: ENODEV when no dynamic id matches, EINVAL with fewer than two fields', () => {
    const h = hostWithVfs();
    h.registerDriver(fakeDriver('dyn', [HPRE_VF]));
    const f = `${drvDir('dyn')}/remove_id`;
    expect(h.sysfsWrite(f, '19e5 a251')).toBe(-Errno.ENODEV);
    expect(h.sysfsWrite(f, '19e5')).toBe(-Errno.EINVAL);
    h.sysfsWrite(`${drvDir('dyn')}/new_id`, '19e5 a251');
    // Static ids cannot be removed.
    expect(h.sysfsWrite(f, '19e5 a259')).toBe(-Errno.ENODEV);
    expect(h.sysfsWrite(f, '19e5 a251')).toBe(0);
    expect(h.bus.dynIds('dyn')).toEqual([]);
    // Existing bindings stay.
    expect(h.device(VF1)!.driver?.name).toBe('dyn');
  });
});

describe('host DMA and interrupt routing', () => {
  it('PF DMA goes through the identity domain onto host memory', () => {
    const h = new Host({ devices: ['zip-v3'] });
    const pf = h.device(ZIP_PF)!.fn;
    expect(pf.configRead(PCI_COMMAND, 2) & PCI_COMMAND_MASTER).toBe(PCI_COMMAND_MASTER);
    const data = new Uint8Array([1, 2, 3, 4, 5]);
    expect(pf.dmaPort.write(0x12345, data)).toBe(true);
    const back = new Uint8Array(5);
    h.memory.read(0x12345, back);
    expect([...back]).toEqual([1, 2, 3, 4, 5]);
    // Outside host RAM: an IOMMU fault, not an exception.
    expect(pf.dmaPort.write(h.memory.size + 0x1000, data)).toBe(false);
    expect(h.dmaDomain.faultCount).toBe(1);
  });

  it('a driver that redirects DMA and MSI gets the host defaults restored when unbound', () => {
    const h = hostWithVfs();
    const writes: number[] = [];
    const trap: DmaPort = { read: () => false, write: (iova) => { writes.push(iova); return true; } };
    const drv = fakeDriver('redirect', [ZIP_VF], {
      onProbe: (d) => { d.fn.setUpstreamDma(trap); d.fn.setMsiSink(() => {}); },
    });
    h.registerDriver(drv);
    const vf = h.device(VF1)!;
    vf.enableMemoryAndMaster();
    expect(vf.fn.dmaPort.write(0x2000, new Uint8Array([7]))).toBe(true);
    expect(writes).toEqual([0x2000]);
    expect(h.sysfsWrite(`${drvDir('redirect')}/unbind`, VF1)).toBe(0);
    expect(vf.fn.dmaPort.write(0x3000, new Uint8Array([9]))).toBe(true);
    expect(writes).toEqual([0x2000]);
    const b = new Uint8Array(1);
    h.memory.read(0x3000, b);
    expect(b[0]).toBe(9);
  });

  it('allocIrqVectors programs MSI and delivers vectors to the handler; ENOSPC beyond the capability', () => {
    const h = hostWithVfs();
    const vf = h.device(VF1)!;
    vf.enableMemoryAndMaster();
    // Multiple Message Capable rounds the VF's 3 vectors up to 4 (pci_msi_vec_count).
    expect(() => vf.allocIrqVectors(5, () => {})).toThrow(/ENOSPC/);
    const got: number[] = [];
    expect(vf.allocIrqVectors(3, (v) => got.push(v))).toBe(3);
    expect(vf.fn.msi.enabledVectors).toBe(4);
    expect(() => vf.allocIrqVectors(1, () => {})).toThrow(/EINVAL/);
    vf.fn.msi.signal(2);
    expect(got).toEqual([2]);
    vf.freeIrqVectors();
    expect(vf.fn.msi.enabled).toBe(false);
  });
});
