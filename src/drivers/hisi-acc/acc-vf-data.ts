/**
 * `struct acc_vf_data`: the migration stream of one ACC VF (hisi-acc-vfio-pci.md section 3),
 * 176 bytes, little-endian. The first QM_MATCH_SIZE (40) bytes are the match data the
 * destination checks before accepting the rest.
 *
 * Two producers exist. V2 streams (magic 0xAACCFEEDDECADEDE) carry major/minor versions at
 * offset 28/30 and two reserved words; V1 streams (magic 0xCDCDCDCDFEEDAACC) had three
 * reserved words there instead, and their eqe_dma/aeqe_dma may be wrong (an old driver took
 * the wrong EQC dwords), so a V1 stream's DMA addresses are recomputed from DW2<<32 | DW1.
 * This encoder only ever produces V2 streams.
 */
import { readU16, readU32, readU64 } from '../../uapi/codec.js';
import { fail } from '../../uapi/errno.js';

export const ACC_DEV_MAGIC_V2 = 0xaaccfeeddecadeden;
export const ACC_DEV_MAGIC_V1 = 0xcdcdcdcdfeedaaccn;
export const ACC_DRV_MAJOR_VER = 1;
export const ACC_DRV_MINOR_VER = 0;
/** Bytes of match data at the head of the stream. */
export const QM_MATCH_SIZE = 40;
/** sizeof(struct acc_vf_data). */
export const ACC_VF_DATA_SIZE = 176;
/** The registers and contexts the debug view dumps: everything before the DMA addresses. */
export const ACC_VF_STATE_DUMP_SIZE = 144;
/** vf_qm_state values. */
export const QM_READY = 0;
export const QM_NOT_READY = 1;
/** Index of the address dwords inside the EQC/AEQC (qm_eqc: DW1 base_l, DW2 base_h). */
export const QM_XQC_ADDR_LOW = 1;
export const QM_XQC_ADDR_HIGH = 2;
export const QM_XEQC_DWORDS = 7;

export type StreamKind = 'v2' | 'v1';

export interface AccVfData {
  /** Which magic the stream carried; encode always writes V2. */
  kind: StreamKind;
  acc_magic: bigint;
  qp_num: number;
  dev_id: number;
  que_iso_cfg: number;
  qp_base: number;
  vf_qm_state: number;
  /** V2 only (0 in V1 streams). */
  major_ver: number;
  minor_ver: number;
  /** Two words in V2 streams, three in V1 streams (where the versions are). */
  qm_rsv_state: number[];
  aeq_int_mask: number;
  eq_int_mask: number;
  ifc_int_source: number;
  ifc_int_mask: number;
  ifc_int_set: number;
  page_size: number;
  qm_eqc_dw: number[];
  qm_aeqc_dw: number[];
  qm_rsv_regs: number[];
  padding: number;
  eqe_dma: bigint;
  aeqe_dma: bigint;
  sqc_dma: bigint;
  cqc_dma: bigint;
}

/** One field of the layout, in the kernel's names (inspect CLI, debug view, tests). */
export interface AccVfField {
  name: string;
  offset: number;
  /** Bytes per element. */
  size: 2 | 4 | 8;
  /** Elements (1 for scalars). */
  count: number;
}

const V2_MATCH: AccVfField[] = [
  { name: 'acc_magic', offset: 0, size: 8, count: 1 },
  { name: 'qp_num', offset: 8, size: 4, count: 1 },
  { name: 'dev_id', offset: 12, size: 4, count: 1 },
  { name: 'que_iso_cfg', offset: 16, size: 4, count: 1 },
  { name: 'qp_base', offset: 20, size: 4, count: 1 },
  { name: 'vf_qm_state', offset: 24, size: 4, count: 1 },
  { name: 'major_ver', offset: 28, size: 2, count: 1 },
  { name: 'minor_ver', offset: 30, size: 2, count: 1 },
  { name: 'qm_rsv_state', offset: 32, size: 4, count: 2 },
];

const V1_MATCH: AccVfField[] = [
  ...V2_MATCH.slice(0, 6),
  { name: 'qm_rsv_state', offset: 28, size: 4, count: 3 },
];

const STATE: AccVfField[] = [
  { name: 'aeq_int_mask', offset: 40, size: 4, count: 1 },
  { name: 'eq_int_mask', offset: 44, size: 4, count: 1 },
  { name: 'ifc_int_source', offset: 48, size: 4, count: 1 },
  { name: 'ifc_int_mask', offset: 52, size: 4, count: 1 },
  { name: 'ifc_int_set', offset: 56, size: 4, count: 1 },
  { name: 'page_size', offset: 60, size: 4, count: 1 },
  { name: 'qm_eqc_dw', offset: 64, size: 4, count: 7 },
  { name: 'qm_aeqc_dw', offset: 92, size: 4, count: 7 },
  { name: 'qm_rsv_regs', offset: 120, size: 4, count: 5 },
  { name: 'padding', offset: 140, size: 4, count: 1 },
  { name: 'eqe_dma', offset: 144, size: 8, count: 1 },
  { name: 'aeqe_dma', offset: 152, size: 8, count: 1 },
  { name: 'sqc_dma', offset: 160, size: 8, count: 1 },
  { name: 'cqc_dma', offset: 168, size: 8, count: 1 },
];

/** The full layout of a stream of `kind`, in offset order. */
export function accVfLayout(kind: StreamKind): readonly AccVfField[] {
  return kind === 'v2' ? V2_LAYOUT : V1_LAYOUT;
}
const V2_LAYOUT: readonly AccVfField[] = [...V2_MATCH, ...STATE];
const V1_LAYOUT: readonly AccVfField[] = [...V1_MATCH, ...STATE];

/** A zeroed V2 struct. */
export function emptyAccVfData(): AccVfData {
  return {
    kind: 'v2',
    acc_magic: ACC_DEV_MAGIC_V2,
    qp_num: 0,
    dev_id: 0,
    que_iso_cfg: 0,
    qp_base: 0,
    vf_qm_state: QM_NOT_READY,
    major_ver: ACC_DRV_MAJOR_VER,
    minor_ver: ACC_DRV_MINOR_VER,
    qm_rsv_state: [0, 0],
    aeq_int_mask: 0,
    eq_int_mask: 0,
    ifc_int_source: 0,
    ifc_int_mask: 0,
    ifc_int_set: 0,
    page_size: 0,
    qm_eqc_dw: new Array<number>(QM_XEQC_DWORDS).fill(0),
    qm_aeqc_dw: new Array<number>(QM_XEQC_DWORDS).fill(0),
    qm_rsv_regs: [0, 0, 0, 0, 0],
    padding: 0,
    eqe_dma: 0n,
    aeqe_dma: 0n,
    sqc_dma: 0n,
    cqc_dma: 0n,
  };
}

/** `dw[2] << 32 | dw[1]` of an EQC/AEQC: the ring's DMA address. */
export function xeqcDma(dw: readonly number[]): bigint {
  return (BigInt(dw[QM_XQC_ADDR_HIGH]! >>> 0) << 32n) | BigInt(dw[QM_XQC_ADDR_LOW]! >>> 0);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) fail('EINVAL', `${what} ${v} is not a u32`);
  return v;
}

function u16(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) fail('EINVAL', `${what} ${v} is not a u16`);
  return v;
}

const U64_END = 1n << 64n;

function u64(v: bigint, what: string): bigint {
  if (typeof v !== 'bigint' || v < 0n || v >= U64_END) fail('EINVAL', `${what} is not a u64`);
  return v;
}

function words(v: readonly number[], n: number, what: string): readonly number[] {
  if (v.length !== n) fail('EINVAL', `${what} needs ${n} words, got ${v.length}`);
  return v;
}

/**
 * Writes the first `length` bytes (QM_MATCH_SIZE or ACC_VF_DATA_SIZE) of `d` as a V2 stream
 * into `out` (allocated when absent). EINVAL for values that do not fit their fields.
 */
export function encodeAccVfData(d: AccVfData, length: number = ACC_VF_DATA_SIZE, out?: Uint8Array): Uint8Array {
  if (length !== QM_MATCH_SIZE && length !== ACC_VF_DATA_SIZE) fail('EINVAL', `stream length ${length}`);
  const b = out ?? new Uint8Array(length);
  if (b.length < length) fail('EINVAL', `buffer of ${b.length} bytes`);
  const v = view(b);
  v.setBigUint64(0, ACC_DEV_MAGIC_V2, true);
  v.setUint32(8, u32(d.qp_num, 'qp_num'), true);
  v.setUint32(12, u32(d.dev_id, 'dev_id'), true);
  v.setUint32(16, u32(d.que_iso_cfg, 'que_iso_cfg'), true);
  v.setUint32(20, u32(d.qp_base, 'qp_base'), true);
  v.setUint32(24, u32(d.vf_qm_state, 'vf_qm_state'), true);
  v.setUint16(28, u16(d.major_ver, 'major_ver'), true);
  v.setUint16(30, u16(d.minor_ver, 'minor_ver'), true);
  const rsv = d.qm_rsv_state;
  v.setUint32(32, u32(rsv[0] ?? 0, 'qm_rsv_state'), true);
  v.setUint32(36, u32(rsv[1] ?? 0, 'qm_rsv_state'), true);
  if (length === QM_MATCH_SIZE) return b;
  v.setUint32(40, u32(d.aeq_int_mask, 'aeq_int_mask'), true);
  v.setUint32(44, u32(d.eq_int_mask, 'eq_int_mask'), true);
  v.setUint32(48, u32(d.ifc_int_source, 'ifc_int_source'), true);
  v.setUint32(52, u32(d.ifc_int_mask, 'ifc_int_mask'), true);
  v.setUint32(56, u32(d.ifc_int_set, 'ifc_int_set'), true);
  v.setUint32(60, u32(d.page_size, 'page_size'), true);
  const eqc = words(d.qm_eqc_dw, QM_XEQC_DWORDS, 'qm_eqc_dw');
  const aeqc = words(d.qm_aeqc_dw, QM_XEQC_DWORDS, 'qm_aeqc_dw');
  for (let i = 0; i < QM_XEQC_DWORDS; i++) {
    v.setUint32(64 + 4 * i, u32(eqc[i]!, 'qm_eqc_dw'), true);
    v.setUint32(92 + 4 * i, u32(aeqc[i]!, 'qm_aeqc_dw'), true);
  }
  const regs = words(d.qm_rsv_regs, 5, 'qm_rsv_regs');
  for (let i = 0; i < 5; i++) v.setUint32(120 + 4 * i, u32(regs[i]!, 'qm_rsv_regs'), true);
  v.setUint32(140, u32(d.padding, 'padding'), true);
  v.setBigUint64(144, u64(d.eqe_dma, 'eqe_dma'), true);
  v.setBigUint64(152, u64(d.aeqe_dma, 'aeqe_dma'), true);
  v.setBigUint64(160, u64(d.sqc_dma, 'sqc_dma'), true);
  v.setBigUint64(168, u64(d.cqc_dma, 'cqc_dma'), true);
  return b;
}

export interface DecodeResult {
  data: AccVfData;
  /** Bytes the stream held: QM_MATCH_SIZE (match data only) or ACC_VF_DATA_SIZE. */
  length: number;
}

/**
 * Decodes a stream of 40 or 176 bytes. The magic must be V2 or V1 (EINVAL otherwise); a V2
 * stream's major version must be ours (EINVAL). A V1 stream gets eqe_dma/aeqe_dma recomputed
 * from its EQC/AEQC address dwords. Any other length is EINVAL.
 */
export function decodeAccVfData(b: Uint8Array): DecodeResult {
  if (b.length !== QM_MATCH_SIZE && b.length !== ACC_VF_DATA_SIZE) fail('EINVAL', `stream of ${b.length} bytes`);
  const v = view(b);
  const magic = v.getBigUint64(0, true);
  let kind: StreamKind;
  if (magic === ACC_DEV_MAGIC_V2) kind = 'v2';
  else if (magic === ACC_DEV_MAGIC_V1) kind = 'v1';
  else fail('EINVAL', `bad magic 0x${magic.toString(16)}`);
  const d: AccVfData = {
    kind,
    acc_magic: magic,
    qp_num: v.getUint32(8, true),
    dev_id: v.getUint32(12, true),
    que_iso_cfg: v.getUint32(16, true),
    qp_base: v.getUint32(20, true),
    vf_qm_state: v.getUint32(24, true),
    major_ver: 0,
    minor_ver: 0,
    qm_rsv_state: [],
    aeq_int_mask: 0,
    eq_int_mask: 0,
    ifc_int_source: 0,
    ifc_int_mask: 0,
    ifc_int_set: 0,
    page_size: 0,
    qm_eqc_dw: [0, 0, 0, 0, 0, 0, 0],
    qm_aeqc_dw: [0, 0, 0, 0, 0, 0, 0],
    qm_rsv_regs: [0, 0, 0, 0, 0],
    padding: 0,
    eqe_dma: 0n,
    aeqe_dma: 0n,
    sqc_dma: 0n,
    cqc_dma: 0n,
  };
  if (kind === 'v2') {
    d.major_ver = v.getUint16(28, true);
    d.minor_ver = v.getUint16(30, true);
    if (d.major_ver !== ACC_DRV_MAJOR_VER) fail('EINVAL', `major version ${d.major_ver}, driver has ${ACC_DRV_MAJOR_VER}`);
    d.qm_rsv_state = [v.getUint32(32, true), v.getUint32(36, true)];
  } else {
    d.qm_rsv_state = [v.getUint32(28, true), v.getUint32(32, true), v.getUint32(36, true)];
  }
  if (b.length === QM_MATCH_SIZE) return { data: d, length: QM_MATCH_SIZE };
  d.aeq_int_mask = v.getUint32(40, true);
  d.eq_int_mask = v.getUint32(44, true);
  d.ifc_int_source = v.getUint32(48, true);
  d.ifc_int_mask = v.getUint32(52, true);
  d.ifc_int_set = v.getUint32(56, true);
  d.page_size = v.getUint32(60, true);
  for (let i = 0; i < QM_XEQC_DWORDS; i++) {
    d.qm_eqc_dw[i] = v.getUint32(64 + 4 * i, true);
    d.qm_aeqc_dw[i] = v.getUint32(92 + 4 * i, true);
  }
  for (let i = 0; i < 5; i++) d.qm_rsv_regs[i] = v.getUint32(120 + 4 * i, true);
  d.padding = v.getUint32(140, true);
  d.eqe_dma = v.getBigUint64(144, true);
  d.aeqe_dma = v.getBigUint64(152, true);
  d.sqc_dma = v.getBigUint64(160, true);
  d.cqc_dma = v.getBigUint64(168, true);
  if (kind === 'v1') {
    d.eqe_dma = xeqcDma(d.qm_eqc_dw);
    d.aeqe_dma = xeqcDma(d.qm_aeqc_dw);
  }
  return { data: d, length: ACC_VF_DATA_SIZE };
}

/** The fields the destination's match check compares. */
export interface MatchFields {
  qp_num: number;
  dev_id: number;
  que_iso_cfg: number;
}

// The magics as u32 halves, so the match check needs no BigInt work.
const MAGIC_V2_LO = Number(ACC_DEV_MAGIC_V2 & 0xffffffffn);
const MAGIC_V2_HI = Number(ACC_DEV_MAGIC_V2 >> 32n);
const MAGIC_V1_LO = Number(ACC_DEV_MAGIC_V1 & 0xffffffffn);
const MAGIC_V1_HI = Number(ACC_DEV_MAGIC_V1 >> 32n);

/**
 * The match fields straight from the first QM_MATCH_SIZE bytes of `b` (at least that long),
 * with the checks decodeAccVfData makes on them: EINVAL for a magic that is neither V2 nor
 * V1 and for a V2 stream of another major version. The resume path runs this on every
 * stream, so it decodes nothing else.
 */
export function readMatchFields(b: Uint8Array): MatchFields {
  if (b.length < QM_MATCH_SIZE) fail('EINVAL', `stream of ${b.length} bytes`);
  const lo = readU32(b, 0);
  const hi = readU32(b, 4);
  if (lo === MAGIC_V2_LO && hi === MAGIC_V2_HI) {
    const major = readU16(b, 28);
    if (major !== ACC_DRV_MAJOR_VER) fail('EINVAL', `major version ${major}, driver has ${ACC_DRV_MAJOR_VER}`);
  } else if (lo !== MAGIC_V1_LO || hi !== MAGIC_V1_HI) {
    fail('EINVAL', `bad magic 0x${readU64(b, 0).toString(16)}`);
  }
  return { qp_num: readU32(b, 8), dev_id: readU32(b, 12), que_iso_cfg: readU32(b, 16) };
}
