/**
 * Queue context layouts (qm-hardware.md section 3): `qm_sqc`, `qm_cqc` (32 bytes each) and
 * `qm_eqc`/`qm_aeqc` (28 bytes = 7 dwords), plus the CQE/EQE/AEQE entry encodings.
 * Everything is little-endian. Decoders accept any bytes (a guest may hand garbage); they
 * never throw for a buffer of the right length.
 */

export const SQC_SIZE = 32;
export const CQC_SIZE = 32;
export const XEQC_SIZE = 28;
export const CQE_SIZE = 16;
export const EQE_SIZE = 4;

/** Byte offsets shared by `qm_sqc` and `qm_cqc` up to w11. */
export const XQC = {
  HEAD: 0,
  TAIL: 2,
  BASE_L: 4,
  BASE_H: 8,
  DW3: 12,
  W8: 16,
  RSVD0: 18,
  PASID: 20,
  W11: 22,
} as const;
export const SQC_CQ_NUM = 24;
export const SQC_W13 = 26;
export const CQC_DW6 = 24;

/** w11 bit6: the tail wrap bit software compares when draining without STOP_QP. */
export const XQC_W11_TAIL_WRAP = 1 << 6;
export const XQC_W11_PASID_EN = 1 << 7;
/** dw3 V2+: [11:0] depth-1, [15:12] log2(entry size). */
export const XQC_DW3_DEPTH_MASK = 0xfff;
export const XQC_DW3_SIZE_SHIFT = 12;
export const CQC_DW6_PHASE = 1 << 0;
export const CQC_DW6_C_FLAG = 1 << 1;
/** log2 of the 16-byte CQE, the only size the CQ engine writes. */
export const CQE_SIZE_LOG2 = 4;

/** EQC/AEQC dword indices. */
export const XEQC_DW_HEAD_TAIL = 0;
export const XEQC_DW_BASE_L = 1;
export const XEQC_DW_BASE_H = 2;
export const XEQC_DW_DW3 = 3;
export const XEQC_DW_DEPTH_PHASE = 6;
export const XEQC_PHASE_BIT = 1 << 16;

/** CQE field offsets. */
export const CQE = { CMD_ID: 4, SQ_HEAD: 8, SQ_NUM: 10, W7: 14 } as const;

export interface SqcFields {
  head: number;
  tail: number;
  baseL: number;
  baseH: number;
  dw3: number;
  w8: number;
  pasid: number;
  w11: number;
  cqNum: number;
  w13: number;
}

export interface CqcFields {
  head: number;
  tail: number;
  baseL: number;
  baseH: number;
  dw3: number;
  w8: number;
  pasid: number;
  w11: number;
  dw6: number;
}

export interface XeqcFields {
  head: number;
  tail: number;
  baseL: number;
  baseH: number;
  dw3: number;
  dw6: number;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

type XqcHead = Omit<CqcFields, 'dw6'>;

/** The first 24 bytes SQC and CQC share (qm-hardware.md section 3). */
function decodeXqcHead(v: DataView): XqcHead {
  return {
    head: v.getUint16(XQC.HEAD, true),
    tail: v.getUint16(XQC.TAIL, true),
    baseL: v.getUint32(XQC.BASE_L, true),
    baseH: v.getUint32(XQC.BASE_H, true),
    dw3: v.getUint32(XQC.DW3, true),
    w8: v.getUint16(XQC.W8, true),
    pasid: v.getUint16(XQC.PASID, true),
    w11: v.getUint16(XQC.W11, true),
  };
}

function encodeXqcHead(v: DataView, f: XqcHead): void {
  v.setUint16(XQC.HEAD, f.head, true);
  v.setUint16(XQC.TAIL, f.tail, true);
  v.setUint32(XQC.BASE_L, f.baseL >>> 0, true);
  v.setUint32(XQC.BASE_H, f.baseH >>> 0, true);
  v.setUint32(XQC.DW3, f.dw3 >>> 0, true);
  v.setUint16(XQC.W8, f.w8, true);
  v.setUint16(XQC.PASID, f.pasid, true);
  v.setUint16(XQC.W11, f.w11, true);
}

export function decodeSqc(b: Uint8Array): SqcFields {
  const v = view(b);
  return {
    ...decodeXqcHead(v),
    cqNum: v.getUint16(SQC_CQ_NUM, true),
    w13: v.getUint16(SQC_W13, true),
  };
}

export function encodeSqc(f: SqcFields, out: Uint8Array = new Uint8Array(SQC_SIZE)): Uint8Array {
  out.fill(0, 0, SQC_SIZE);
  const v = view(out);
  encodeXqcHead(v, f);
  v.setUint16(SQC_CQ_NUM, f.cqNum, true);
  v.setUint16(SQC_W13, f.w13, true);
  return out;
}

export function decodeCqc(b: Uint8Array): CqcFields {
  const v = view(b);
  return {
    ...decodeXqcHead(v),
    dw6: v.getUint32(CQC_DW6, true),
  };
}

export function encodeCqc(f: CqcFields, out: Uint8Array = new Uint8Array(CQC_SIZE)): Uint8Array {
  out.fill(0, 0, CQC_SIZE);
  const v = view(out);
  encodeXqcHead(v, f);
  v.setUint32(CQC_DW6, f.dw6 >>> 0, true);
  return out;
}

/** EQC/AEQC as the 7 dwords the hardware exposes (also its byte layout, little-endian). */
export function decodeXeqcDwords(dw: ArrayLike<number>): XeqcFields {
  return {
    head: dw[XEQC_DW_HEAD_TAIL]! & 0xffff,
    tail: dw[XEQC_DW_HEAD_TAIL]! >>> 16,
    baseL: dw[XEQC_DW_BASE_L]! >>> 0,
    baseH: dw[XEQC_DW_BASE_H]! >>> 0,
    dw3: dw[XEQC_DW_DW3]! >>> 0,
    dw6: dw[XEQC_DW_DEPTH_PHASE]! >>> 0,
  };
}

export function encodeXeqc(f: XeqcFields, out: Uint8Array = new Uint8Array(XEQC_SIZE)): Uint8Array {
  out.fill(0, 0, XEQC_SIZE);
  const v = view(out);
  v.setUint16(0, f.head, true);
  v.setUint16(2, f.tail, true);
  v.setUint32(4, f.baseL >>> 0, true);
  v.setUint32(8, f.baseH >>> 0, true);
  v.setUint32(12, f.dw3 >>> 0, true);
  v.setUint32(24, f.dw6 >>> 0, true);
  return out;
}

/** SQC dw3 for V2+: `(depth-1) | log2(sqeSize)<<12`. */
export function sqcDw3(depth: number, sqeSize: number): number {
  return ((depth - 1) | (Math.log2(sqeSize) << XQC_DW3_SIZE_SHIFT)) >>> 0;
}

/** CQC dw3 for V2+: `(depth-1) | 4<<12` (16-byte CQE). */
export function cqcDw3(depth: number): number {
  return ((depth - 1) | (CQE_SIZE_LOG2 << XQC_DW3_SIZE_SHIFT)) >>> 0;
}

/** EQC/AEQC dw6: `(depth-1) | phase<<16`. */
export function xeqcDw6(depth: number, phase = 1): number {
  return ((depth - 1) | (phase ? XEQC_PHASE_BIT : 0)) >>> 0;
}

/** SQC w13: [3:0] priority, [7:4] orders, [11:8] alg_type. */
export function sqcW13(priority: number, orders: number, algType: number): number {
  return (priority & 0xf) | ((orders & 0xf) << 4) | ((algType & 0xf) << 8);
}

export function sqcAlgType(w13: number): number {
  return (w13 >>> 8) & 0xf;
}

/** EQE: [15:0] CQ number, [16] phase. */
export function eqeValue(cqn: number, phase: number): number {
  return ((cqn & 0xffff) | ((phase & 1) << 16)) >>> 0;
}

/** AEQE: [15:0] qp number, [16] phase, [20:17] type. */
export function aeqeValue(qpn: number, phase: number, type: number): number {
  return ((qpn & 0xffff) | ((phase & 1) << 16) | ((type & 0xf) << 17)) >>> 0;
}

/** Combines two u32 register halves into a bus address (see DmaPort for the 2^53 caveat). */
export function dmaAddr(lo: number, hi: number): number {
  return (hi >>> 0) * 0x1_0000_0000 + (lo >>> 0);
}
