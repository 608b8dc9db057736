/**
 * The administrator's SR-IOV flow through sysfs writes (drivers/pci/iov.c sriov_numvfs_store
 * semantics) and the PF driver's queue assignment (qm-hardware.md section 4), checked through
 * the PF VFT registers and through each VF's own SQC_VFT_V2 mailbox.
 */
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { loadProfile } from '../src/hw/firmware.js';
import { Errno } from '../src/uapi/errno.js';
import {
  CQC_WORD, SEC_PF, ZIP_PF, dev, drvDir, fakeDriver, rawVftRead, sqcWord, vfBdf, vfMailboxVft,
} from './host-helpers.js';

const ZIP_VF = { vendor: 0x19e5, device: 0xa251 };

function zipHost(extra: ConstructorParameters<typeof Host>[0] = {}): Host {
  return new Host({ devices: ['zip-v3'], ...extra });
}

/** Reads every VF's VFT both ways and checks it against the hand-computed expectation. */
function expectVfts(h: Host, pfBdf: string, expected: { vf: number; base: number; num: number }[]): void {
  const pf = h.device(pfBdf)!.fn;
  for (const e of expected) {
    expect(rawVftRead(pf, e.vf, 0), `SQC VFT of VF${e.vf}`).toBe(sqcWord(e.base, e.num));
    expect(rawVftRead(pf, e.vf, 1), `CQC VFT of VF${e.vf}`).toBe(CQC_WORD);
    const vf = h.device(vfBdf(pfBdf, e.vf))!.fn;
    expect(vfMailboxVft(vf), `VF${e.vf} mailbox view`).toEqual({ base: e.base, num: e.num, status: 0 });
  }
}

describe('sriov_numvfs: VFs appear with their own ids and groups', () => {
  it('writing 4 on a ZIP PF creates 4 VFs 19e5:a251, each in its own IOMMU group', () => {
    const h = zipHost();
    expect(h.sysfsRead(`${dev(ZIP_PF)}/sriov_totalvfs`)).toBe('63\n');
    expect(h.sysfsRead(`${dev(ZIP_PF)}/sriov_numvfs`)).toBe('0\n');
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '4\n')).toBe(0);
    expect(h.sysfsRead(`${dev(ZIP_PF)}/sriov_numvfs`)).toBe('4\n');
    const listing = h.sysfsList('/sys/bus/pci/devices');
    expect(listing).toEqual([ZIP_PF, '0000:75:00.1', '0000:75:00.2', '0000:75:00.3', '0000:75:00.4']);
    const groups = new Set<string>();
    for (let n = 1; n <= 4; n++) {
      const d = dev(vfBdf(ZIP_PF, n));
      expect(h.sysfsRead(`${d}/vendor`)).toBe('0x19e5\n');
      expect(h.sysfsRead(`${d}/device`)).toBe('0xa251\n');
      expect(h.sysfsRead(`${d}/revision`)).toBe('0x30\n');
      expect(h.sysfsRead(`${d}/class`)).toBe('0x120000\n');
      expect(h.sysfsReadlink(`${d}/physfn`)).toBe(`../${ZIP_PF}`);
      expect(h.sysfsReadlink(`${dev(ZIP_PF)}/virtfn${n - 1}`)).toBe(`../${vfBdf(ZIP_PF, n)}`);
      const link = h.sysfsReadlink(`${d}/iommu_group`) as string;
      expect(link).toMatch(/^\.\.\/\.\.\/\.\.\/kernel\/iommu_groups\/\d+$/);
      const g = link.split('/').pop()!;
      groups.add(g);
      // The group contains exactly this VF.
      expect(h.sysfsList(`/sys/kernel/iommu_groups/${g}/devices`)).toEqual([vfBdf(ZIP_PF, n)]);
      expect(h.device(vfBdf(ZIP_PF, n))!.vfIndex).toBe(n - 1);
      // VFs have no SR-IOV attributes.
      expect(h.sysfsRead(`${d}/sriov_numvfs`)).toBe(-Errno.ENOENT);
    }
    expect(groups.size).toBe(4);
    // The PF's own group is a fifth one.
    expect(groups.has((h.sysfsReadlink(`${dev(ZIP_PF)}/iommu_group`) as string).split('/').pop()!)).toBe(false);
  });

  it('spec 4: 960 queues over 4 VFs, VF4 gets the lowest base (PF registers and VF mailbox agree)', () => {
    const h = zipHost();
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '4')).toBe(0);
    const pf = h.device(ZIP_PF)!.fn;
    expect(rawVftRead(pf, 0, 0)).toBe(sqcWord(0, 64));
    expectVfts(h, ZIP_PF, [
      { vf: 4, base: 64, num: 240 },
      { vf: 3, base: 304, num: 240 },
      { vf: 2, base: 544, num: 240 },
      { vf: 1, base: 784, num: 240 },
    ]);
  });

  it('spec 4: 7 VFs, the division remainder goes to VF 7', () => {
    const h = zipHost();
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '7')).toBe(0);
    // 960 = 7 * 137 + 1
    expectVfts(h, ZIP_PF, [
      { vf: 7, base: 64, num: 138 },
      { vf: 6, base: 202, num: 137 },
      { vf: 5, base: 339, num: 137 },
      { vf: 4, base: 476, num: 137 },
      { vf: 3, base: 613, num: 137 },
      { vf: 2, base: 750, num: 137 },
      { vf: 1, base: 887, num: 137 },
    ]);
  });

  it('spec 4: SEC keeps 256 queues for the PF', () => {
    const h = new Host({ devices: ['sec-v3'] });
    expect(h.sysfsWrite(`${dev(SEC_PF)}/sriov_numvfs`, '3')).toBe(0);
    expect(h.sysfsRead(`${dev(vfBdf(SEC_PF, 1))}/device`)).toBe('0xa256\n');
    expect(rawVftRead(h.device(SEC_PF)!.fn, 0, 0)).toBe(sqcWord(0, 256));
    expectVfts(h, SEC_PF, [
      { vf: 3, base: 256, num: 256 },
      { vf: 2, base: 512, num: 256 },
      { vf: 1, base: 768, num: 256 },
    ]);
  });

  it('spec 4: each VF is capped at the per-function maximum (QM_TOTAL_QP [21:11])', () => {
    const p = structuredClone(loadProfile('zip-v3'));
    p.qm.maxQpsPerFunction = 300;
    const h = new Host({ devices: [{ profile: p }] });
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '2')).toBe(0);
    expectVfts(h, ZIP_PF, [
      { vf: 2, base: 64, num: 300 },
      { vf: 1, base: 364, num: 300 },
    ]);
  });

  it('accepts the kstrtou16 base-0 spellings: "0x3" enables 3 VFs', () => {
    const h = zipHost();
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '0x3')).toBe(0);
    expect(h.device(ZIP_PF)!.numVfs).toBe(3);
  });
});

describe('sriov_numvfs errors (sriov_numvfs_store order of checks)', () => {
  it('unparsable or out-of-u16 text is EINVAL, above TotalVFs is ERANGE; nothing changes', () => {
    const h = zipHost();
    const f = `${dev(ZIP_PF)}/sriov_numvfs`;
    for (const bad of ['abc', '-1', '4 ', ' 4', '70000', '08', '4\n\n']) {
      expect(h.sysfsWrite(f, bad), JSON.stringify(bad)).toBe(-Errno.EINVAL);
    }
    expect(h.sysfsWrite(f, '64')).toBe(-Errno.ERANGE);
    expect(h.device(ZIP_PF)!.numVfs).toBe(0);
    expect(h.sysfsList('/sys/bus/pci/devices')).toEqual([ZIP_PF]);
  });

  it('a different non-zero count while VFs exist is EBUSY; the same count is a no-op success', () => {
    const h = zipHost();
    const f = `${dev(ZIP_PF)}/sriov_numvfs`;
    expect(h.sysfsWrite(f, '4')).toBe(0);
    expect(h.sysfsWrite(f, '5')).toBe(-Errno.EBUSY);
    expect(h.bus.log.includes('4 VFs already enabled. Disable before enabling 5 VFs')).toBe(true);
    expect(h.sysfsWrite(f, '4')).toBe(0);
    expect(h.device(ZIP_PF)!.numVfs).toBe(4);
    expectVfts(h, ZIP_PF, [{ vf: 4, base: 64, num: 240 }]);
  });

  it('no driver bound to the PF: ENOENT (but writing the current count still succeeds)', () => {
    const h = zipHost({ pfDriver: false });
    const f = `${dev(ZIP_PF)}/sriov_numvfs`;
    expect(h.sysfsWrite(f, '0')).toBe(0);
    expect(h.sysfsWrite(f, '2')).toBe(-Errno.ENOENT);
    expect(h.bus.log.includes('no driver bound to device; cannot configure SR-IOV')).toBe(true);
  });

  it('a PF driver without sriov_configure: ENOENT', () => {
    const h = zipHost({ pfDriver: false });
    expect(h.registerDriver(fakeDriver('plain', [{ vendor: 0x19e5, device: 0xa250 }]))).toBe(0);
    expect(h.device(ZIP_PF)!.driver?.name).toBe('plain');
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '2')).toBe(-Errno.ENOENT);
  });

  it("the driver's own failure is returned: too few queues for the VFs -> EINVAL, no VFT written", () => {
    const h = zipHost({ pfDriver: { pfQNum: { zip: 1020 } } });
    const f = `${dev(ZIP_PF)}/sriov_numvfs`;
    expect(h.sysfsWrite(f, '5')).toBe(-Errno.EINVAL);
    const pf = h.device(ZIP_PF)!.fn;
    for (let fn = 1; fn <= 5; fn++) expect(rawVftRead(pf, fn, 0)).toBe(0n);
    expect(h.device(ZIP_PF)!.numVfs).toBe(0);
    // Four VFs get one queue each.
    expect(h.sysfsWrite(f, '4')).toBe(0);
    expectVfts(h, ZIP_PF, [{ vf: 4, base: 1020, num: 1 }, { vf: 1, base: 1023, num: 1 }]);
  });

  it('VFs that would not fit the bus range: ENOMEM, and the VFTs written first are cleared again', () => {
    const h = new Host({ devices: [{ profile: 'zip-v3', bdf: '0000:ff:1f.7' }] });
    expect(h.device('0000:ff:1f.7')!.driver?.name).toBe('hisi_zip');
    expect(h.sysfsWrite(`${dev('0000:ff:1f.7')}/sriov_numvfs`, '1')).toBe(-Errno.ENOMEM);
    expect(rawVftRead(h.device('0000:ff:1f.7')!.fn, 1, 0)).toBe(0n);
    expect(h.device('0000:ff:1f.7')!.numVfs).toBe(0);
  });
});

describe('disabling SR-IOV', () => {
  it('0 removes every VF, unbinding their drivers first, and clears their VFTs', () => {
    const h = zipHost();
    const drv = fakeDriver('vf-test', [ZIP_VF]);
    expect(h.registerDriver(drv)).toBe(0);
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '3')).toBe(0);
    expect(drv.probed).toEqual(['0000:75:00.1', '0000:75:00.2', '0000:75:00.3']);
    const vfGroups = [1, 2, 3].map((n) => h.device(vfBdf(ZIP_PF, n))!.iommuGroup);
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '0')).toBe(0);
    // Linux removes VFs from the last one down.
    expect(drv.removed).toEqual(['0000:75:00.3', '0000:75:00.2', '0000:75:00.1']);
    expect(h.sysfsList('/sys/bus/pci/devices')).toEqual([ZIP_PF]);
    expect(h.sysfsList(drvDir('vf-test'))).toEqual(['bind', 'new_id', 'remove_id', 'unbind']);
    expect(h.sysfsList(`/sys/devices/pci0000:75/${ZIP_PF}`)).not.toContain('virtfn0');
    for (const g of vfGroups) expect(h.sysfsList(`/sys/kernel/iommu_groups/${g}`)).toBe(-Errno.ENOENT);
    const pf = h.device(ZIP_PF)!.fn;
    for (let fn = 1; fn <= 3; fn++) {
      expect(rawVftRead(pf, fn, 0)).toBe(0n);
      expect(rawVftRead(pf, fn, 1)).toBe(0n);
    }
    expect(rawVftRead(pf, 0, 0)).toBe(sqcWord(0, 64));
    expect(h.sysfsRead(`${dev(ZIP_PF)}/sriov_numvfs`)).toBe('0\n');
  });

  it('re-enabling reuses the freed IOMMU group numbers', () => {
    const h = zipHost();
    const f = `${dev(ZIP_PF)}/sriov_numvfs`;
    expect(h.sysfsWrite(f, '2')).toBe(0);
    const before = [1, 2].map((n) => h.device(vfBdf(ZIP_PF, n))!.iommuGroup);
    expect(h.sysfsWrite(f, '0')).toBe(0);
    expect(h.sysfsWrite(f, '2')).toBe(0);
    expect([1, 2].map((n) => h.device(vfBdf(ZIP_PF, n))!.iommuGroup)).toEqual(before);
  });

  it('a PF function-level reset destroys the VFs: the host removes them and their drivers', () => {
    const h = zipHost();
    const drv = fakeDriver('vf-test', [ZIP_VF]);
    h.registerDriver(drv);
    h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '2');
    h.device(ZIP_PF)!.fn.flr();
    expect(drv.removed.sort()).toEqual(['0000:75:00.1', '0000:75:00.2']);
    expect(h.sysfsList('/sys/bus/pci/devices')).toEqual([ZIP_PF]);
  });

  it('VFs enabled by a raw config write (not through the driver) still appear on the bus', () => {
    const h = zipHost({ pfDriver: false });
    const pfDev = h.device(ZIP_PF)!;
    h.bus.enableSriov(pfDev, 2);
    expect(h.sysfsList('/sys/bus/pci/devices')).toEqual([ZIP_PF, '0000:75:00.1', '0000:75:00.2']);
    expect(h.sysfsRead(`${dev(ZIP_PF)}/sriov_numvfs`)).toBe('2\n');
  });
});

describe('sriov_drivers_autoprobe (pci_device_can_probe)', () => {
  it('off: new VFs stay unbound and cannot be bound without driver_override', () => {
    const h = zipHost();
    const drv = fakeDriver('vf-test', [ZIP_VF]);
    h.registerDriver(drv);
    const ap = `${dev(ZIP_PF)}/sriov_drivers_autoprobe`;
    expect(h.sysfsRead(ap)).toBe('1\n');
    expect(h.sysfsWrite(ap, 'maybe')).toBe(-Errno.EINVAL);
    expect(h.sysfsWrite(ap, 'off')).toBe(0);
    expect(h.sysfsRead(ap)).toBe('0\n');
    h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '1');
    const vf = vfBdf(ZIP_PF, 1);
    expect(drv.probed).toEqual([]);
    expect(h.sysfsWrite(`${drvDir('vf-test')}/bind`, vf)).toBe(-Errno.ENODEV);
    expect(h.sysfsWrite(`${dev(vf)}/driver_override`, 'vf-test')).toBe(0);
    expect(h.sysfsWrite(`${drvDir('vf-test')}/bind`, vf)).toBe(0);
    expect(drv.probed).toEqual([vf]);
    expect(h.sysfsWrite(ap, 'on')).toBe(0);
    expect(h.sysfsRead(ap)).toBe('1\n');
  });
});
