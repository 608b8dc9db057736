/**
 * The registers and constants hisi-acc-vfio-pci uses (qm-hardware.md sections 1, 2, 4;
 * hisi-acc-vfio-pci.md sections 2, 4, 5). Kept apart from the device model's table on
 * purpose: the driver and the model meet only through the spec.
 */

// ---- QM versions ----
export const QM_HW_V3 = 0x30;

// ---- PCI ids (qm-hardware.md section 7) ----
export const PCI_VENDOR_ID_HUAWEI = 0x19e5;
export const PCI_DEVICE_ID_HUAWEI_SEC_VF = 0xa256;
export const PCI_DEVICE_ID_HUAWEI_HPRE_VF = 0xa259;
export const PCI_DEVICE_ID_HUAWEI_ZIP_VF = 0xa251;

// ---- VF BAR2 (function-relative) ----
export const QM_BAR = 2;
export const QM_DB_BAR = 4;
export const QM_VF_AEQ_INT_MASK = 0x0004;
export const QM_VF_EQ_INT_MASK = 0x000c;
export const QM_IFC_INT_SOURCE_V = 0x0020;
export const QM_IFC_INT_MASK = 0x0024;
export const QM_IFC_INT_STATUS = 0x0028;
export const QM_IFC_INT_SET_V = 0x002c;
export const QM_QUE_ISO_CFG_V = 0x0030;
export const QM_PAGE_SIZE = 0x0034;
export const QM_VF_STATE = 0x0060;
export const QM_CACHE_WB_START = 0x0204;
export const QM_CACHE_WB_DONE = 0x0208;
export const QM_MB_CMD_SEND_BASE = 0x0300;
export const QM_MB_CMD_DATA_ADDR_L = 0x0304;
export const QM_MB_CMD_DATA_ADDR_H = 0x0308;
export const QM_DOORBELL_SQ_CQ_BASE_V2 = 0x1000;
export const QM_DOORBELL_EQ_AEQ_BASE_V2 = 0x2000;
/** Migration-control half of the VF BAR2. */
export const QM_EQC_DW0 = 0x8000;
export const QM_AEQC_DW0 = 0x8020;
/** BAR4 doorbell page of qp n under isolation: n * 0x10000 + 0x1000. */
export const QM_DB_ISO_INTERVAL = 0x10000;
export const QM_DB_ISO_SQ_CQ = 0x1000;

// ---- PF BAR2 ----
export const QM_ABNORMAL_INT_STATUS = 0x100008;
export const QM_QUE_ISO_CFG = 0x301154;
export const SEC_CORE_INT_STATUS = 0x301008;
export const HPRE_HAC_INT_STATUS = 0x301800;
export const HZIP_CORE_INT_STATUS = 0x3010ac;
/** V4 PF-control mode: each VF's migration window in the PF BAR2. */
export const QM_MIG_REGION_OFFSET = 0x180000;
export const QM_MIG_REGION_SIZE = 0x2000;
export const QM_EQC_PF_DW0 = 0x1c00;
export const QM_AEQC_PF_DW0 = 0x1c20;

// ---- mailbox w0 ----
export const QM_MB_BUSY = 1 << 13;
export const QM_MB_OP_SHIFT = 14;
export const QM_MB_STATUS_SHIFT = 9;
export const QM_MB_STATUS_MASK = 0xf;
export const QM_MB_CMD_SQC_BT = 0x4;
export const QM_MB_CMD_CQC_BT = 0x5;
export const QM_MB_CMD_SQC_VFT_V2 = 0x6;
export const QM_MB_CMD_PAUSE_QM = 0xe;

// ---- doorbells ----
export const QM_DOORBELL_CMD_SQ = 0;
export const QM_DOORBELL_CMD_EQ = 2;
export const QM_DOORBELL_CMD_AEQ = 3;

// ---- SQC VFT word (qm-hardware.md section 4) ----
export const QM_SQC_VFT_BASE_SHIFT = 28n;
export const QM_SQC_VFT_BASE_MASK = 0xffffn;
export const QM_SQC_VFT_NUM_SHIFT = 45n;
export const QM_SQC_VFT_NUM_MASK = 0x3ffn;
export const QM_SQC_VFT_VALID = 1n << 44n;

// ---- polling (hisi-acc-vfio-pci.md section 4) ----
/** MB_POLL_PERIOD_US / MB_POLL_TIMEOUT_US: mailbox, VF state and cache write-back polls. */
export const MB_POLL_PERIOD_NS = 10_000;
export const MB_POLL_TIMEOUT_NS = 1_000_000;
/** qm_check_reg_state: up to ERROR_CHECK_TIMEOUT reads, CHECK_DELAY_TIME apart. */
export const ERROR_CHECK_TIMEOUT = 100;
export const CHECK_DELAY_NS = 100_000;

/** The VF BAR2 is 64 KiB; the user sees the low half unless the PF controls migration. */
export const VF_BAR2_SIZE = 0x10000;
export const VF_BAR2_FUNCTIONAL_SIZE = 0x8000;
