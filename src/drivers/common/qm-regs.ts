/**
 * The QM register header the host drivers share (the hisi-qm PF driver and hisi-acc-vfio-pci),
 * as Linux's hisi_acc_qm.h serves both (qm-hardware.md sections 1, 2, 4, 5, 7;
 * hisi-acc-vfio-pci.md sections 2, 4, 5). Kept separate from the device model's own table
 * (src/hw/qm/registers.ts) on purpose: driver and model meet only through the spec, so a wrong
 * offset on either side shows up as a failing test.
 */

// ---- versions (PCI revision / QM_SUB_VERSION_ID) ----
export const QM_HW_V2 = 0x21;
export const QM_HW_V3 = 0x30;
export const QM_HW_V4 = 0x50;

// ---- function-relative registers (every function's BAR2; the PF's at its bottom) ----
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
export const QM_SUB_VERSION_ID = 0x0210;
export const QM_MB_CMD_SEND_BASE = 0x0300;
export const QM_MB_CMD_DATA_ADDR_L = 0x0304;
export const QM_MB_CMD_DATA_ADDR_H = 0x0308;
export const QM_DOORBELL_SQ_CQ_BASE_V2 = 0x1000;
export const QM_DOORBELL_EQ_AEQ_BASE_V2 = 0x2000;
/** BAR4 doorbell page of qp n under isolation: n * 0x10000 + 0x1000. */
export const QM_DB_ISO_INTERVAL = 0x10000;
export const QM_DB_ISO_SQ_CQ = 0x1000;
export const QM_FUNC_CAPS_REG = 0x3100;
export const QM_ABN_IRQ_TYPE_CAP = 0x3114;
export const QM_PF2VF_IRQ_TYPE_CAP = 0x3118;
export const QM_IRQ_NUM_CAP = 0x311c;

// ---- PF-only registers ----
export const QM_ABNORMAL_INT_STATUS = 0x100008;
export const QM_VFT_CFG_OP_ENABLE = 0x100054;
export const QM_VFT_CFG_OP_WR = 0x100058;
export const QM_VFT_CFG_TYPE = 0x10005c;
export const QM_VFT_CFG = 0x100060;
export const QM_VFT_CFG_DATA_L = 0x100064;
export const QM_VFT_CFG_DATA_H = 0x100068;
export const QM_VFT_CFG_RDY = 0x10006c;
export const QM_IFC_READY_STATUS = 0x100128;
export const QM_IFC_INT_SET_P = 0x100130;
export const QM_IFC_INT_CFG = 0x100134;
export const QM_IFC_INT_SOURCE_P = 0x100138;
export const QM_TOTAL_QP = 0x100158;
export const QM_MIG_REGION_SEL = 0x100198;
export const QM_QUE_ISO_CFG = 0x301154;
/** The engines' interrupt status (PF BAR2). */
export const SEC_CORE_INT_STATUS = 0x301008;
export const HPRE_HAC_INT_STATUS = 0x301800;
export const HZIP_CORE_INT_STATUS = 0x3010ac;

/** QM_IFC_INT_CFG [6:0]: target function; this value addresses every VF. */
export const QM_IFC_SEND_ALL_VFS = 0x7f;

// ---- mailbox w0 ----
export const QM_MB_BUSY = 1 << 13;
export const QM_MB_OP_SHIFT = 14;
export const QM_MB_STATUS_SHIFT = 9;
export const QM_MB_STATUS_MASK = 0xf;

export const QmMbCmd = {
  SQC: 0x0,
  CQC: 0x1,
  EQC: 0x2,
  AEQC: 0x3,
  SQC_BT: 0x4,
  CQC_BT: 0x5,
  SQC_VFT_V2: 0x6,
  STOP_QP: 0x8,
  FLUSH_QM: 0x9,
  SRC: 0xc,
  DST: 0xd,
  PAUSE_QM: 0xe,
} as const;

export const QM_MB_CMD_SQC_BT = QmMbCmd.SQC_BT;
export const QM_MB_CMD_CQC_BT = QmMbCmd.CQC_BT;
export const QM_MB_CMD_SQC_VFT_V2 = QmMbCmd.SQC_VFT_V2;
export const QM_MB_CMD_PAUSE_QM = QmMbCmd.PAUSE_QM;

// ---- doorbells ----
export const QM_DOORBELL_CMD_SQ = 0;
export const QM_DOORBELL_CMD_EQ = 2;
export const QM_DOORBELL_CMD_AEQ = 3;

/** SRC queue number addressing every VF. */
export const QM_MB_PING_ALL_VFS = 0xffff;

// ---- VFT ----
export const QmVftType = { SQC: 0, CQC: 1, SHAPER: 2 } as const;
export const QM_SQC_VFT_BASE_SHIFT = 28n;
export const QM_SQC_VFT_BASE_MASK = 0xffffn;
export const QM_SQC_VFT_VALID = 1n << 44n;
export const QM_SQC_VFT_NUM_SHIFT = 45n;
export const QM_SQC_VFT_NUM_MASK = 0x3ffn;
export const QM_CQC_VFT_VALID = 1n << 28n;

// ---- capabilities ----
export const QM_CAP_FUNC_QOS = 8;
export const QM_CAP_MB_COMMAND = 11;
/** QM_FUNC_CAPS_REG when cap_ver [7:0] is 0: the V3 defaults. */
export const QM_FUNC_CAPS_V3_DEFAULT = 0x6f01;

// ---- IFC messages (u64 cmd | data << 32) ----
export const QmIfcCmd = {
  PF_FLR_PREPARE: 1,
  PF_SRST_PREPARE: 2,
  PF_RESET_DONE: 3,
  VF_PREPARE_DONE: 4,
  VF_PREPARE_FAIL: 5,
  VF_START_DONE: 6,
  VF_START_FAIL: 7,
  PF_SET_QOS: 8,
  VF_GET_QOS: 9,
} as const;

/** The highest QoS value (no limit), what the PF answers VF_GET_QOS with. */
export const QM_QOS_MAX_VAL = 1000;

/** Most VFs a V2+ QM supports (`QM_MAX_VFS_NUM_V2`). */
export const QM_MAX_VFS_NUM_V2 = 63;

// ---- polling (readl_relaxed_poll_timeout parameters of the drivers) ----
export const POLL_PERIOD_NS = 10_000;
export const POLL_TIMEOUT_NS = 1_000_000;
/** MB_POLL_PERIOD_US / MB_POLL_TIMEOUT_US: mailbox, VF state and cache write-back polls. */
export const MB_POLL_PERIOD_NS = 10_000;
export const MB_POLL_TIMEOUT_NS = 1_000_000;
/** qm_ping_single_vf: 10 ms sleeps, give up after 10 of them. */
export const QM_WAIT_DST_ACK_NS = 10_000_000;
export const QM_MAX_PF_WAIT_COUNT = 10;
