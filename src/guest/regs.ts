/**
 * The VF driver's own view of the QM register interface, written from qm-hardware.md
 * (sections 1-5) rather than imported from the device model, so that a model bug cannot
 * hide behind a shared constant. Offsets are VF BAR2-relative unless noted.
 */

export const QM_BAR = 2;
/** BAR holding the per-qp doorbell pages when doorbell isolation is on. */
export const QM_DB_BAR = 4;

export const VF_AEQ_INT_MASK = 0x0004;
export const VF_EQ_INT_MASK = 0x000c;
export const IFC_INT_SOURCE_V = 0x0020;
export const IFC_INT_MASK = 0x0024;
export const IFC_INT_SET_V = 0x002c;
export const QUE_ISO_CFG_V = 0x0030;
export const PAGE_SIZE_REG = 0x0034;
export const VF_STATE = 0x0060;
export const CACHE_WB_START = 0x0204;
export const CACHE_WB_DONE = 0x0208;
export const SUB_VERSION_ID = 0x0210;
export const MB_BASE = 0x0300;
export const MB_DATA_L = 0x0304;
export const MB_DATA_H = 0x0308;
export const VF2PF_VF_W = 0x0320;
export const PF2VF_VF_R = 0x0380;
export const DB_SQ_CQ = 0x1000;
export const DB_EQ_AEQ = 0x2000;
export const FUNC_CAPS = 0x3100;
export const XEQ_DEPTH_CAP = 0x3104;
export const QP_DEPTH_CAP = 0x3108;
export const EQ_IRQ_TYPE_CAP = 0x310c;
export const AEQ_IRQ_TYPE_CAP = 0x3110;
export const PF2VF_IRQ_TYPE_CAP = 0x3118;
export const IRQ_NUM_CAP = 0x311c;

/** Per-qp doorbell page stride in BAR4 under isolation; the SQ/CQ doorbell sits at +0x1000. */
export const DB_ISO_STRIDE = 0x10000;
export const DB_ISO_SQ_CQ = 0x1000;

// ---- mailbox w0 (section 2) ----
export const MB_STATUS_SHIFT = 9;
export const MB_STATUS_MASK = 0xf;
export const MB_BUSY = 1 << 13;
export const MB_OP_READ = 1 << 14;

export const Mb = {
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
} as const;

// ---- doorbells (section 3) ----
export const Db = { SQ: 0, CQ: 1, EQ: 2, AEQ: 3 } as const;

// ---- QM_FUNC_CAPS_REG bits ----
export const CAP_STOP_QP = 1 << 9;
export const CAP_STOP_FUNC = 1 << 10;
export const CAP_MB_COMMAND = 1 << 11;
export const CAP_SVA_PREFETCH = 1 << 14;
/** What a V3+ part means by cap_ver 0. */
export const FUNC_CAPS_V3_DEFAULT = 0x6f01;
export const XEQ_DEPTH_DEFAULT = 0x04000800;
export const QP_DEPTH_DEFAULT = 0x04000400;

// ---- contexts (section 3) ----
export const XQC_SIZE = 32;
export const XEQC_SIZE = 28;
export const CQE_SIZE = 16;
export const EQE_SIZE = 4;
export const CQE_SQ_HEAD = 8;
export const CQE_SQ_NUM = 10;
export const CQE_W7 = 14;
export const XQC_W11_TAIL_WRAP = 1 << 6;
export const CQC_PHASE = 1 << 0;
export const CQC_C_FLAG = 1 << 1;
export const XEQC_PHASE_SHIFT = 16;

export const AeqType = { CQ_OVERFLOW: 0, EQ_OVERFLOW: 1, CQE_ERROR: 2 } as const;

// ---- IFC messages (section 5) ----
export const Ifc = {
  PF_FLR_PREPARE: 1,
  PF_SRST_PREPARE: 2,
  PF_RESET_DONE: 3,
  VF_PREPARE_DONE: 4,
  VF_PREPARE_FAIL: 5,
  VF_START_DONE: 6,
  VF_START_FAIL: 7,
} as const;

// ---- versions and ids (section 7) ----
export const REV_V1 = 0x20;
export const REV_V2 = 0x21;
export const REV_V3 = 0x30;
export const REV_V4 = 0x50;

export const HUAWEI_VENDOR = 0x19e5;
export const VF_DEVICE_IDS: Readonly<Record<number, 'zip' | 'sec' | 'hpre'>> = {
  0xa251: 'zip',
  0xa256: 'sec',
  0xa259: 'hpre',
};
export const SQE_SIZES = { zip: 128, sec: 128, hpre: 64 } as const;
