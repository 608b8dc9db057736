/**
 * QM register map (qm-hardware.md sections 1-5). Function-relative offsets are the same in
 * every function's BAR2 (the PF's own QM registers sit at the bottom of the PF BAR2); the
 * PF-only block lives at 0x100000 and above in the PF BAR2.
 */

// ---- function-relative (VF BAR2 low half, PF BAR2 bottom) ----
export const QM_VF_AEQ_INT_SOURCE = 0x0000;
export const QM_VF_AEQ_INT_MASK = 0x0004;
export const QM_VF_EQ_INT_SOURCE = 0x0008;
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
export const QM_MB_CMD_RSVD = 0x030c;
export const QM_VF2PF_VF_W = 0x0320;
export const QM_DOORBELL_BASE_V1 = 0x0340;
export const QM_PF2VF_VF_R = 0x0380;
export const QM_DOORBELL_SQ_CQ_BASE_V2 = 0x1000;
export const QM_DOORBELL_EQ_AEQ_BASE_V2 = 0x2000;

export const QM_FUNC_CAPS_REG = 0x3100;
export const QM_XEQ_DEPTH_CAP = 0x3104;
export const QM_QP_DEPTH_CAP = 0x3108;
export const QM_EQ_IRQ_TYPE_CAP = 0x310c;
export const QM_AEQ_IRQ_TYPE_CAP = 0x3110;
export const QM_ABN_IRQ_TYPE_CAP = 0x3114;
export const QM_PF2VF_IRQ_TYPE_CAP = 0x3118;
export const QM_IRQ_NUM_CAP = 0x311c;
export const QM_EXT_BAR_INDEX = 0x3120;
export const QM_ENGINE_CAP_FIRST = 0x3124;
export const QM_ENGINE_CAP_LAST = 0x317c;

/** Upper (migration-control) half of a VF BAR2. */
export const QM_MIG_WINDOW_BASE = 0x8000;
export const QM_EQC_DW0 = 0x8000;
export const QM_AEQC_DW0 = 0x8020;
export const QM_XEQC_DWORDS = 7;

// ---- PF-only registers (PF BAR2) ----
export const QM_ABNORMAL_INT_SOURCE = 0x100000;
export const QM_ABNORMAL_INT_MASK = 0x100004;
export const QM_ABNORMAL_INT_STATUS = 0x100008;
export const QM_ABNORMAL_INT_SET = 0x10000c;
export const QM_ABNORMAL_INF00 = 0x100010;
export const QM_ABNORMAL_INF01 = 0x100014;
export const QM_ABNORMAL_INF02 = 0x100018;
/** Error bits the abnormal block implements; the mask resets to all of them masked. */
export const QM_ABNORMAL_INT_MASK_VALUE = 0x7fff;

export const QM_VFT_CFG_OP_ENABLE = 0x100054;
export const QM_VFT_CFG_OP_WR = 0x100058;
export const QM_VFT_CFG_TYPE = 0x10005c;
export const QM_VFT_CFG = 0x100060;
export const QM_VFT_CFG_DATA_L = 0x100064;
export const QM_VFT_CFG_DATA_H = 0x100068;
export const QM_VFT_CFG_RDY = 0x10006c;
export const QM_DB_TIMEOUT_CFG = 0x100074;

export const QM_IFC_READY_STATUS = 0x100128;
export const QM_IFC_INT_SET_P = 0x100130;
export const QM_IFC_INT_CFG = 0x100134;
export const QM_IFC_INT_SOURCE_P = 0x100138;
/** INT_CFG [6:0] target value addressing every VF at once. */
export const QM_IFC_SEND_ALL_VFS = 0x7f;

export const QM_TOTAL_QP = 0x100158;
export const QM_MIG_REGION_SEL = 0x100198;

/** V4 PF side of the IFC data registers: PF->VF message, and one u32 slot per VF (cmd half). */
export const QM_PF2VF_PF_W = 0x104700;
export const QM_VF2PF_PF_R = 0x104800;
export const QM_VF2PF_REG_SIZE = 4;

/** V4 PF-control mode: per-VF migration windows inside the PF BAR2. */
export const QM_MIG_REGION_OFFSET = 0x180000;
export const QM_MIG_REGION_SIZE = 0x2000;
export const QM_EQC_PF_DW0 = 0x1c00;
export const QM_AEQC_PF_DW0 = 0x1c20;

export const SEC_CORE_INT_STATUS = 0x301008;
export const HZIP_CORE_INT_STATUS = 0x3010ac;
export const HPRE_HAC_INT_STATUS = 0x301800;
export const QM_QUE_ISO_CFG = 0x301154;

// ---- BAR4 doorbell isolation ----
export const QM_DB_ISO_INTERVAL = 0x10000;
export const QM_DB_ISO_SQ_CQ = 0x1000;

// ---- mailbox (section 2) ----
export const MB_CMD_MASK = 0xff;
export const MB_EVENT_BIT = 1 << 8;
export const MB_STATUS_SHIFT = 9;
export const MB_STATUS_MASK = 0xf << MB_STATUS_SHIFT;
export const MB_BUSY_BIT = 1 << 13;
export const MB_OP_BIT = 1 << 14;

export const MbCmd = {
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

/** Queue number addressing every VF in a PF's SRC command. */
export const MB_PING_ALL_VFS = 0xffff;

/**
 * Mailbox completion status codes in w0 [12:9]. The hardware documents only "non-zero means
 * failure"; these model-specific values let tests and debug views tell the causes apart.
 */
export const MbStatus = {
  OK: 0,
  UNDEFINED_CMD: 1,
  DMA_FAULT: 2,
  BAD_QUEUE: 3,
  BAD_OP: 4,
  UNSUPPORTED: 5,
  NO_CONTEXT: 6,
} as const;

// ---- doorbells (section 3) ----
export const DbCmd = { SQ: 0, CQ: 1, EQ: 2, AEQ: 3 } as const;

// ---- event queue entries ----
export const AeqeType = { CQ_OVERFLOW: 0, EQ_OVERFLOW: 1, CQE_ERROR: 2 } as const;

// ---- interrupt vectors (section 5) ----
export const Vector = { EQ: 0, AEQ: 1, IFC: 2, ABNORMAL: 3 } as const;

// ---- QM_FUNC_CAPS_REG bits ----
export const Cap = {
  FUNC_QOS: 8,
  STOP_QP: 9,
  STOP_FUNC: 10,
  MB_COMMAND: 11,
  RPM_VF: 12,
  RPM_PF: 13,
  SVA_PREFETCH: 14,
  DAE: 15,
} as const;
/** What a V3 part reports when cap_ver [7:0] is 0 ("use the defaults"). */
export const QM_FUNC_CAPS_V3_DEFAULT = 0x6f01;

// ---- VFT (section 4) ----
export const VftType = { SQC: 0, CQC: 1, SHAPER: 2 } as const;

// ---- IFC message commands (section 5), for debug views and tests ----
export const IfcCmd = {
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

// ---- QM_VF_STATE ----
export const QM_READY = 0;
export const QM_NOT_READY = 1;

/** VF BAR2 size: 32 KiB functional window + 32 KiB migration window. */
export const VF_BAR2_SIZE = 0x10000;
export const VF_BAR2_HALF = 0x8000;
