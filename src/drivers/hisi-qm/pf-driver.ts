/**
 * The host PF drivers hisi_zip, hisi_sec2 and hisi_hpre (their PF half plus hisi_qm).
 *
 * probe: enable memory decoding and bus mastering, read the QM version (revision, then
 * QM_SUB_VERSION_ID on 0x30 parts), capabilities and QM_TOTAL_QP, program the PF's own VFT,
 * allocate the PF's MSI vectors (IRQ_NUM_CAP) and, on V3+ with MB_COMMAND, enable PF<->VF
 * messaging. The state object `HisiQmPf` is the device's drvdata.
 *
 * The id tables hold only the PF ids. The Linux drivers also claim their VF ids (for a
 * host-side VF driver); the host VF driver is not modelled, so VFs stay unbound until an
 * administrator binds them (to vfio-pci or the vendor VFIO driver).
 *
 * sriov_configure(n): n VFs get the queue split of qm-hardware.md section 4 and SR-IOV is
 * enabled; n = 0 removes the VFs and clears their VFTs.
 */
import type { EngineKind } from '../../hw/profile.js';
import type { HostPciDriver } from '../../host/driver.js';
import type { HostPciDevice } from '../../host/pci-device.js';
import { Errno, KernelError, syscall } from '../../uapi/errno.js';
import { HisiQmPf } from './qm-pf.js';
import { QM_ABN_IRQ_TYPE_CAP, QM_HW_V3, QM_IRQ_NUM_CAP, QM_PF2VF_IRQ_TYPE_CAP } from '../common/qm-regs.js';

export const HUAWEI_VENDOR_ID = 0x19e5;

/** PF and VF device ids of each engine (qm-hardware.md section 7). */
export const HISI_QM_IDS: Readonly<Record<EngineKind, { pf: number; vf: number; driver: string }>> = {
  zip: { pf: 0xa250, vf: 0xa251, driver: 'hisi_zip' },
  sec: { pf: 0xa255, vf: 0xa256, driver: 'hisi_sec2' },
  hpre: { pf: 0xa258, vf: 0xa259, driver: 'hisi_hpre' },
};

/** V2 has no IRQ capability registers: 4 PF vectors, abnormal on vector 3. */
const V2_PF_VECTORS = 4;
const V2_ABNORMAL_VECTOR = 3;

export interface HisiQmPfDriverOptions {
  /** pf_q_num per engine (module parameters); the engine defaults otherwise. */
  pfQNum?: Partial<Record<EngineKind, number>>;
}

const driverEngine = new WeakMap<HostPciDriver, EngineKind>();

function irqType(qm: HisiQmPf, off: number): number | undefined {
  const v = qm.readReg(off);
  return ((v >>> 16) & 1) === 1 ? v & 0xffff : undefined;
}

function setupIrqs(qm: HisiQmPf): void {
  const dev = qm.dev;
  let vectors = V2_PF_VECTORS;
  let ifcVector: number | undefined;
  let abnVector: number | undefined = V2_ABNORMAL_VECTOR;
  if (qm.ver >= QM_HW_V3) {
    vectors = qm.readReg(QM_IRQ_NUM_CAP) >>> 16;
    ifcVector = qm.supportsIfc ? irqType(qm, QM_PF2VF_IRQ_TYPE_CAP) : undefined;
    abnVector = irqType(qm, QM_ABN_IRQ_TYPE_CAP);
  }
  dev.allocIrqVectors(vectors, (v) => {
    if (v === ifcVector) qm.ifc.interrupt();
    else if (v === abnVector) {
      qm.stats.abnormalIrqs++;
      dev.bus.log.print(dev.bdf, 'QM abnormal interrupt');
    }
  });
  if (ifcVector !== undefined) qm.ifc.enable();
}

function probe(dev: HostPciDevice, engine: EngineKind, opts: HisiQmPfDriverOptions): void {
  dev.enableMemoryAndMaster();
  try {
    const qm = new HisiQmPf(dev, engine, { pfQNum: opts.pfQNum?.[engine] });
    qm.init();
    setupIrqs(qm);
    dev.drvdata = qm;
  } catch (e) {
    dev.freeIrqVectors();
    dev.clearMaster();
    throw e;
  }
}

function remove(dev: HostPciDevice): void {
  const qm = dev.drvdata;
  if (qm instanceof HisiQmPf) {
    if (qm.vfsNum > 0 || dev.numVfs > 0) {
      try {
        qm.sriovDisable();
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        dev.bus.log.print(dev.bdf, `failed to disable SR-IOV on remove: ${e.message}`);
      }
    }
    qm.ifc.disable();
  }
  dev.freeIrqVectors();
  dev.clearMaster();
}

/** One PF driver (e.g. hisi_zip) for `engine`. */
export function createHisiQmPfDriver(engine: EngineKind, opts: HisiQmPfDriverOptions = {}): HostPciDriver {
  const ids = HISI_QM_IDS[engine];
  const drv: HostPciDriver = {
    name: ids.driver,
    idTable: [{ vendor: HUAWEI_VENDOR_ID, device: ids.pf }],
    probe: (dev) => probe(dev, engine, opts),
    remove,
    sriovConfigure(dev: HostPciDevice, numVfs: number): number {
      const qm = dev.drvdata;
      if (!(qm instanceof HisiQmPf)) return -Errno.EINVAL;
      return syscall(() => (numVfs === 0 ? qm.sriovDisable() : qm.sriovEnable(numVfs)));
    },
  };
  driverEngine.set(drv, engine);
  return drv;
}

/** hisi_zip, hisi_sec2 and hisi_hpre. */
export function createHisiQmPfDrivers(opts: HisiQmPfDriverOptions = {}): HostPciDriver[] {
  return (['zip', 'sec', 'hpre'] as const).map((e) => createHisiQmPfDriver(e, opts));
}

/** The PF state of a PF bound to one of these drivers. */
export function hisiQmPfOf(pf: HostPciDevice): HisiQmPf | undefined {
  if (!pf.driver || !driverEngine.has(pf.driver)) return undefined;
  return pf.drvdata instanceof HisiQmPf ? pf.drvdata : undefined;
}

/**
 * `hisi_acc_get_pf_qm`: for a ZIP/SEC/HPRE VF, the QM state of its PF, if the PF is bound to
 * the matching PF driver; undefined otherwise (the vendor driver's open then fails EINVAL).
 */
export function getPfQm(vf: HostPciDevice): HisiQmPf | undefined {
  if (!vf.isVirtfn || !vf.physfn) return undefined;
  const engine = (Object.keys(HISI_QM_IDS) as EngineKind[]).find((e) => HISI_QM_IDS[e].vf === vf.device);
  const pf = vf.physfn;
  if (engine === undefined || !pf.present || !pf.driver || driverEngine.get(pf.driver) !== engine) return undefined;
  return hisiQmPfOf(pf);
}
