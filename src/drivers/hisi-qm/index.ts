/** The host PF QM driver (hisi_zip / hisi_sec2 / hisi_hpre + hisi_qm). */
export {
  createHisiQmPfDriver, createHisiQmPfDrivers, getPfQm, hisiQmPfOf, HISI_QM_IDS, HUAWEI_VENDOR_ID,
  type HisiQmPfDriverOptions,
} from './pf-driver.js';
export { HisiQmPf, DEFAULT_PF_Q_NUM, type HisiQmPfOptions, type VftSlice, type Word64 } from './qm-pf.js';
export { PfIfc, type VfMessage } from './pf-ifc.js';
export { planVfQueues, type VfQueueSlice } from './vf-queues.js';
export { QmIfcCmd, QmMbCmd, QmVftType, QM_HW_V2, QM_HW_V3, QM_HW_V4 } from '../common/qm-regs.js';
