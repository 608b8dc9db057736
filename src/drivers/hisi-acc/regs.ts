/**
 * The registers and constants hisi-acc-vfio-pci uses: the shared QM host-driver header
 * (src/drivers/common/qm-regs.ts, Linux's hisi_acc_qm.h) plus what only this driver knows
 * (hisi-acc-vfio-pci.md sections 2, 4, 5), as hisi_acc_vfio_pci.h does.
 */
export * from '../common/qm-regs.js';

// ---- PCI ids (qm-hardware.md section 7) ----
export const PCI_VENDOR_ID_HUAWEI = 0x19e5;
export const PCI_DEVICE_ID_HUAWEI_SEC_VF = 0xa256;
export const PCI_DEVICE_ID_HUAWEI_HPRE_VF = 0xa259;
export const PCI_DEVICE_ID_HUAWEI_ZIP_VF = 0xa251;

// ---- VF BAR2 migration-control half ----
export const QM_EQC_DW0 = 0x8000;
export const QM_AEQC_DW0 = 0x8020;
/** V4 PF-control mode: each VF's migration window in the PF BAR2. */
export const QM_MIG_REGION_OFFSET = 0x180000;
export const QM_MIG_REGION_SIZE = 0x2000;
export const QM_EQC_PF_DW0 = 0x1c00;
export const QM_AEQC_PF_DW0 = 0x1c20;

// ---- qm_check_reg_state (hisi-acc-vfio-pci.md section 4) ----
/** Up to ERROR_CHECK_TIMEOUT reads, CHECK_DELAY_TIME apart. */
export const ERROR_CHECK_TIMEOUT = 100;
export const CHECK_DELAY_NS = 100_000;

/** The VF BAR2 is 64 KiB; the user sees the low half unless the PF controls migration. */
export const VF_BAR2_SIZE = 0x10000;
export const VF_BAR2_FUNCTIONAL_SIZE = 0x8000;
