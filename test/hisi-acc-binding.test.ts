/**
 * Binding and open of hisi-acc-vfio-pci (hisi-acc-vfio-pci.md section 1): the VF-only,
 * override-only id table, open failing EINVAL without PF QM state with the core enable
 * undone, old hardware (merged: pass-through without migration; rfc: ENODEV), vf_id.
 */
import { describe, expect, it } from 'vitest';
import { AccHost, AccVm, assignVf } from '../src/drivers/hisi-acc/testbed.js';
import { createHisiAccVfioPciDriver, HISI_ACC_VFIO_PCI_IDS } from '../src/drivers/hisi-acc/driver.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { KernelError } from '../src/uapi/errno.js';
import type { VfioPciCoreDevice } from '../src/vfio/pci-core/core-device.js';
import {
  FEATURE_GET, F_DMA_LOGGING_START, F_MIGRATION, FEATURE_PROBE, FEATURE_SET, REGION_OFFSET, errno, feature,
  precopyInfo, pread, regionInfo, setState, S, u32,
} from './hisi-acc-helpers.js';

function openErr(host: AccHost, n: number): number {
  try {
    assignVf(host, n, new SparseMemory(16 * 2 ** 20));
  } catch (e) {
    if (e instanceof KernelError) return -e.errno;
    throw e;
  }
  return 0;
}

describe('id table and binding (spec 1)', () => {
  it('lists the three VF ids of vendor 0x19e5, override-only, and no sriov_configure', () => {
    expect(HISI_ACC_VFIO_PCI_IDS.map((i) => [i.vendor, i.device, i.overrideOnly])).toEqual([
      [0x19e5, 0xa256, true], [0x19e5, 0xa259, true], [0x19e5, 0xa251, true],
    ]);
    expect(createHisiAccVfioPciDriver().sriovConfigure).toBeUndefined();
  });

  it('binds a VF only through driver_override, never by id alone', () => {
    const host = new AccHost({ numVfs: 2 });
    const vf1 = host.vf(1);
    expect(vf1.driver).toBeUndefined();
    expect(host.host.sysfsWrite('/sys/bus/pci/drivers/hisi-acc-vfio-pci/bind', vf1.bdf)).toBe(errno('ENODEV'));
    expect(host.bind(1)).toBe(0);
    expect(vf1.driver?.name).toBe('hisi-acc-vfio-pci');
    expect(host.vf(2).driver).toBeUndefined();
    expect(host.host.sysfsReadlink(`/sys/bus/pci/devices/${vf1.bdf}/driver`)).toMatch(/hisi-acc-vfio-pci$/);
    // The PF stays with its QM driver.
    expect(host.pf.driver?.name).toBe('hisi_zip');
  });

  it('binds SEC and HPRE VFs too', () => {
    for (const profile of ['sec-v3', 'hpre-v3']) {
      const host = new AccHost({ profile, numVfs: 1 });
      expect(host.bind(1)).toBe(0);
      const vm = new AccVm(host, 1, { start: false });
      const r = feature(vm.device, FEATURE_GET | F_MIGRATION, new Uint8Array(8));
      expect(r.ret).toBe(0);
      expect(u32(r.payload, 0)).toBe(1 | 4);
    }
  });
});

describe('open checks (spec 1)', () => {
  it('fails EINVAL without PF QM driver state and undoes the core enable', () => {
    const host = new AccHost({ numVfs: 1, noPfDriver: true });
    expect(host.bind(1)).toBe(0);
    expect(openErr(host, 1)).toBe(errno('EINVAL'));
    const core = host.driver.coreOf(host.vf(1)) as VfioPciCoreDevice;
    expect(core.isOpen).toBe(false);
    expect(core.vconfig).toBeNull();
    // A second try fails the same way (nothing half-open left behind).
    expect(openErr(host, 1)).toBe(errno('EINVAL'));
    expect(core.isOpen).toBe(false);
  });

  it('V2 hardware, merged policy: plain pass-through, no migration, whole BAR2', () => {
    const host = new AccHost({ profile: 'zip-v2', numVfs: 1 });
    expect(host.bind(1)).toBe(0);
    const vm = new AccVm(host, 1, { start: false });
    expect(feature(vm.device, FEATURE_GET | F_MIGRATION, new Uint8Array(8)).ret).toBe(errno('ENOTTY'));
    expect(feature(vm.device, FEATURE_SET | FEATURE_PROBE | F_DMA_LOGGING_START).ret).toBe(errno('ENOTTY'));
    expect(regionInfo(vm.device, 2).size).toBe(0x10000n);
    expect(host.driver.deviceOf(host.vf(1))).toBeUndefined();
  });

  it('V2 hardware, rfc policy: open fails ENODEV', () => {
    const host = new AccHost({ profile: 'zip-v2', numVfs: 1, driver: { oldHwPolicy: 'rfc' } });
    expect(host.bind(1)).toBe(0);
    expect(openErr(host, 1)).toBe(errno('ENODEV'));
    expect((host.driver.coreOf(host.vf(1)) as VfioPciCoreDevice).isOpen).toBe(false);
  });

  it('uses vf_id = pci_iov_vf_id()+1: VF 2 gets the VFT of function 2', () => {
    const host = new AccHost({ numVfs: 3 });
    expect(host.bind(2)).toBe(0);
    const vm = new AccVm(host, 2, { start: false });
    const r = setState(vm.device, S.PRE_COPY);
    expect(r.ret).toBe(0);
    const f = host.fds.get(r.fd)!;
    expect(precopyInfo(f).initial).toBe(40n);
    const b = new Uint8Array(40);
    expect(f.read(b)).toBe(40);
    const dv = new DataView(b.buffer);
    // Independent: the model's VFT for function 2 (VF n down to VF 1 from pf_q_num 64: VF3, VF2, VF1).
    expect(dv.getUint32(20, true)).toBe(host.acc.qm.vft.qpBase(2));
    expect(dv.getUint32(8, true)).toBe(host.acc.qm.vft.qpNum(2));
    expect(dv.getUint32(20, true)).toBe(64 + 320);
    expect(dv.getUint32(8, true)).toBe(320);
    expect(dv.getUint32(12, true)).toBe(0xa251);
  });

  it('registers no device region with the v2 protocol (VFIO_PCI_NUM_REGIONS only)', () => {
    const host = new AccHost({ numVfs: 1 });
    host.bind(1);
    const vm = new AccVm(host, 1, { start: false });
    expect(regionInfo(vm.device, 9).ret).toBe(errno('EINVAL'));
    expect(pread(vm.device, REGION_OFFSET(9), 4)[0]).toBe(errno('EINVAL'));
  });
});
