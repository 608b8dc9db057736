/**
 * What the driver does to a VF's QM during a migration (hisi-acc-vfio-pci.md sections 4-5):
 * match data through the PF, stopping the function, reading its state, loading a state and
 * starting the function again.
 *
 * Everything that touches the VF's own registers takes the transition's VfRegs mapping;
 * match data uses PF registers only, so it can be produced while the guest runs. The EQC/AEQC
 * dwords live in the VF's upper BAR2 half, or, once the PF moved the migration windows
 * (QM_MIG_REGION_SEL, V4), in the PF BAR2 window of the VF.
 */
import type { Scheduler } from '../../sim/scheduler.js';
import { KernelError, fail } from '../../uapi/errno.js';
import type { RegReader } from '../hisi-qm/poll.js';
import type { HisiQmPf } from '../hisi-qm/qm-pf.js';
import { QmVftType } from '../common/qm-regs.js';
import {
  ACC_DRV_MAJOR_VER, ACC_DRV_MINOR_VER, ACC_DEV_MAGIC_V2, ACC_VF_DATA_SIZE, QM_MATCH_SIZE,
  QM_NOT_READY, QM_READY, QM_XEQC_DWORDS, QM_XQC_ADDR_HIGH, QM_XQC_ADDR_LOW, type AccVfData, emptyAccVfData,
} from './acc-vf-data.js';
import {
  CHECK_DELAY_NS, ERROR_CHECK_TIMEOUT, HPRE_HAC_INT_STATUS, HZIP_CORE_INT_STATUS,
  PCI_DEVICE_ID_HUAWEI_HPRE_VF, PCI_DEVICE_ID_HUAWEI_SEC_VF, PCI_DEVICE_ID_HUAWEI_ZIP_VF,
  QM_ABNORMAL_INT_STATUS, QM_AEQC_DW0, QM_AEQC_PF_DW0, QM_CACHE_WB_DONE, QM_CACHE_WB_START,
  QM_DB_ISO_INTERVAL, QM_DB_ISO_SQ_CQ, QM_DOORBELL_CMD_AEQ, QM_DOORBELL_CMD_EQ,
  QM_DOORBELL_CMD_SQ, QM_DOORBELL_EQ_AEQ_BASE_V2, QM_DOORBELL_SQ_CQ_BASE_V2, QM_EQC_DW0,
  QM_EQC_PF_DW0, QM_IFC_INT_MASK, QM_IFC_INT_SET_V, QM_IFC_INT_SOURCE_V, QM_IFC_INT_STATUS,
  QM_MB_CMD_CQC_BT, QM_MB_CMD_PAUSE_QM, QM_MB_CMD_SQC_BT, QM_MB_CMD_SQC_VFT_V2,
  QM_MIG_REGION_OFFSET, QM_MIG_REGION_SIZE, QM_PAGE_SIZE, QM_QUE_ISO_CFG, QM_QUE_ISO_CFG_V,
  QM_SQC_VFT_BASE_MASK, QM_SQC_VFT_BASE_SHIFT, QM_SQC_VFT_NUM_MASK, QM_SQC_VFT_NUM_SHIFT,
  QM_SQC_VFT_VALID, QM_VF_AEQ_INT_MASK, QM_VF_EQ_INT_MASK, QM_VF_STATE, SEC_CORE_INT_STATUS,
} from './regs.js';
import type { VfRegs } from './vf-regs.js';

/** The fixed facts of one VF under one PF. */
export interface VfQmTarget {
  readonly pf: HisiQmPf;
  /** 1-based VF number (pci_iov_vf_id() + 1). */
  readonly vfId: number;
  /** The VF's PCI device id. */
  readonly devId: number;
  readonly sched: Scheduler;
}

export interface QueueSlice {
  base: number;
  num: number;
}

/** Bits [shift, shift + width(mask)) of the 64-bit word hi:lo (mask below 2^31). */
function field64(lo: number, hi: number, shift: number, mask: number): number {
  if (shift >= 32) return (hi >>> (shift - 32)) & mask;
  if (shift === 0) return lo & mask;
  return ((lo >>> shift) | (hi << (32 - shift))) & mask;
}

// The VFT layout as plain numbers: decoding runs on every match-data read, and BigInt
// arithmetic there cost more than the register accesses.
/** The valid bit (44) as a mask of the high word. */
const VFT_VALID_HI = Number(QM_SQC_VFT_VALID >> 32n);
const VFT_BASE_SHIFT = Number(QM_SQC_VFT_BASE_SHIFT);
const VFT_BASE_MASK = Number(QM_SQC_VFT_BASE_MASK);
const VFT_NUM_SHIFT = Number(QM_SQC_VFT_NUM_SHIFT);
const VFT_NUM_MASK = Number(QM_SQC_VFT_NUM_MASK);

function decodeVft(lo: number, hi: number): QueueSlice | null {
  if ((hi & VFT_VALID_HI) === 0) return null;
  return {
    base: field64(lo, hi, VFT_BASE_SHIFT, VFT_BASE_MASK),
    num: field64(lo, hi, VFT_NUM_SHIFT, VFT_NUM_MASK) + 1,
  };
}

/** The VF's queues as the PF's VFT registers say (null when the VFT gives it none). */
export function pfVfQueues(t: VfQmTarget): QueueSlice | null {
  const w = t.pf.vftRead(t.vfId, QmVftType.SQC);
  return decodeVft(w.lo, w.hi);
}

/** The VF's queues as the VF itself learns them: mailbox SQC_VFT_V2 (op 1). */
export function vfMailboxQueues(regs: VfRegs): QueueSlice | null {
  const w = regs.mailbox(QM_MB_CMD_SQC_VFT_V2, 0, 0, 0, 1);
  return decodeVft(w.lo, w.hi);
}

/** PF QM_QUE_ISO_CFG. */
export function pfQueIsoCfg(t: VfQmTarget): number {
  return t.pf.readReg(QM_QUE_ISO_CFG);
}

/**
 * vf_qm_get_match_data: magic, versions, dev_id, the VF's queues through the PF VFT registers
 * and QM_QUE_ISO_CFG, all with PF register accesses only. EINVAL when the VFT gives the VF
 * no queues.
 */
export function matchData(t: VfQmTarget, vfQmState: number): AccVfData {
  const q = pfVfQueues(t);
  if (q === null) fail('EINVAL', `failed to get vft qp nums of VF ${t.vfId}`);
  const d = emptyAccVfData();
  d.acc_magic = ACC_DEV_MAGIC_V2;
  d.major_ver = ACC_DRV_MAJOR_VER;
  d.minor_ver = ACC_DRV_MINOR_VER;
  d.dev_id = t.devId;
  d.qp_base = q.base;
  d.qp_num = q.num;
  d.que_iso_cfg = pfQueIsoCfg(t);
  d.vf_qm_state = vfQmState;
  return d;
}

/**
 * qm_check_reg_state: the register must read 0 within 100 reads 100 us apart, else EBUSY.
 * A register that already reads 0 costs one read and no scheduler work.
 */
function checkRegState(sched: Scheduler, regs: RegReader, off: number, what: string): void {
  let state = regs.readReg32(off);
  let n = 0;
  while (state !== 0 && n < ERROR_CHECK_TIMEOUT) {
    sched.advance(CHECK_DELAY_NS);
    state = regs.readReg32(off);
    n++;
  }
  if (n >= ERROR_CHECK_TIMEOUT) fail('EBUSY', `${what} stays 0x${state.toString(16)}`);
}

function engineStatusReg(devId: number): number {
  switch (devId) {
    case PCI_DEVICE_ID_HUAWEI_SEC_VF: return SEC_CORE_INT_STATUS;
    case PCI_DEVICE_ID_HUAWEI_HPRE_VF: return HPRE_HAC_INT_STATUS;
    case PCI_DEVICE_ID_HUAWEI_ZIP_VF: return HZIP_CORE_INT_STATUS;
    default: fail('EINVAL', `failed to detect acc module type of device 0x${devId.toString(16)}`);
  }
}

/**
 * hisi_acc_vf_stop_device: PAUSE_QM, then RAS / IFC / engine status must settle (EBUSY), then
 * the context cache is written back (EINVAL if QM_CACHE_WB_DONE never rises).
 */
export function stopDevice(t: VfQmTarget, regs: VfRegs): void {
  regs.mailbox(QM_MB_CMD_PAUSE_QM, 0, 0, 0, 0);
  const pf = t.pf;
  checkRegState(t.sched, pf, QM_ABNORMAL_INT_STATUS, 'QM RAS state');
  checkRegState(t.sched, regs, QM_IFC_INT_STATUS, 'QM IFC INT state');
  checkRegState(t.sched, regs, QM_IFC_INT_SET_V, 'QM IFC INT SET state');
  const engine = engineStatusReg(t.devId);
  checkRegState(t.sched, pf, engine, 'engine status');
  regs.write(QM_CACHE_WB_START, 1);
  if (regs.pollMasked(QM_CACHE_WB_DONE, 1, 1) === null) fail('EINVAL', 'vf QM writeback sqc cache fail');
}

/** The PF BAR2 offset of dword i of the VF's EQC (or AEQC) window in PF-control mode. */
function pfWindowOffset(vfId: number, aeq: boolean, i: number): number {
  return QM_MIG_REGION_OFFSET + vfId * QM_MIG_REGION_SIZE + (aeq ? QM_AEQC_PF_DW0 : QM_EQC_PF_DW0) + 4 * i;
}

function readXeqc(t: VfQmTarget, regs: VfRegs, aeq: boolean, out: number[]): void {
  const inPf = t.pf.migRegionInPf;
  for (let i = 0; i < QM_XEQC_DWORDS; i++) {
    out[i] = inPf ? t.pf.readReg(pfWindowOffset(t.vfId, aeq, i)) : regs.read((aeq ? QM_AEQC_DW0 : QM_EQC_DW0) + 4 * i);
  }
}

function writeXeqc(t: VfQmTarget, regs: VfRegs, aeq: boolean, dw: readonly number[]): void {
  const inPf = t.pf.migRegionInPf;
  for (let i = 0; i < QM_XEQC_DWORDS; i++) {
    if (inPf) t.pf.writeReg(pfWindowOffset(t.vfId, aeq, i), dw[i]!);
    else regs.write((aeq ? QM_AEQC_DW0 : QM_EQC_DW0) + 4 * i, dw[i]!);
  }
}

// DMA addresses cross between bigint fields and u32 register halves on every save and load;
// BigInt arithmetic allocates a BigInt per operation, so the split goes through 8 bytes of
// scratch seen both as one u64 and as two u32 (which of the two is low depends on the host).
const SPLIT64 = new BigUint64Array(1);
const SPLIT32 = new Uint32Array(SPLIT64.buffer);
const LOW_WORD = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
const HIGH_WORD = 1 - LOW_WORD;

/** Bits [31:0] of `v` (as a u64, like the C assignment). */
function lo32(v: bigint): number {
  SPLIT64[0] = v;
  return SPLIT32[LOW_WORD]!;
}

/** Bits [63:32] of `v` (as a u64). */
function hi32(v: bigint): number {
  SPLIT64[0] = v;
  return SPLIT32[HIGH_WORD]!;
}

/** hi << 32 | lo as a u64 (xeqcDma's value without its BigInt shifts). */
function dmaOf(lo: number, hi: number): bigint {
  SPLIT32[LOW_WORD] = lo;
  SPLIT32[HIGH_WORD] = hi;
  return SPLIT64[0]!;
}

function dmaFromWords(w: { lo: number; hi: number }): bigint {
  return dmaOf(w.lo, w.hi);
}

/**
 * vf_qm_read_data: the registers the stream carries (never the mailbox), EQC/AEQC dwords,
 * eqe/aeqe DMA from DW2<<32 | DW1, and the SQC/CQC array bases through mailbox SQC_BT/CQC_BT
 * reads. EBUSY when the mailbox never becomes ready.
 */
export function readState(t: VfQmTarget, regs: VfRegs, d: AccVfData): void {
  if (!regs.waitMailboxReady()) fail('EBUSY', 'QM device is not ready to read');
  d.aeq_int_mask = regs.read(QM_VF_AEQ_INT_MASK);
  d.eq_int_mask = regs.read(QM_VF_EQ_INT_MASK);
  d.ifc_int_source = regs.read(QM_IFC_INT_SOURCE_V);
  d.ifc_int_mask = regs.read(QM_IFC_INT_MASK);
  d.ifc_int_set = regs.read(QM_IFC_INT_SET_V);
  d.page_size = regs.read(QM_PAGE_SIZE);
  readXeqc(t, regs, false, d.qm_eqc_dw);
  readXeqc(t, regs, true, d.qm_aeqc_dw);
  d.eqe_dma = dmaOf(d.qm_eqc_dw[QM_XQC_ADDR_LOW]!, d.qm_eqc_dw[QM_XQC_ADDR_HIGH]!);
  d.aeqe_dma = dmaOf(d.qm_aeqc_dw[QM_XQC_ADDR_LOW]!, d.qm_aeqc_dw[QM_XQC_ADDR_HIGH]!);
  d.sqc_dma = dmaFromWords(regs.mailbox(QM_MB_CMD_SQC_BT, 0, 0, 0, 1));
  d.cqc_dma = dmaFromWords(regs.mailbox(QM_MB_CMD_CQC_BT, 0, 0, 0, 1));
}

function eqDoorbell(regs: VfRegs, cmd: number, head: number): void {
  regs.write64(QM_DOORBELL_EQ_AEQ_BASE_V2, (cmd << 12) >>> 0, head & 0xffff);
}

/**
 * Does the function show a guest driver that started it, whatever QM_VF_STATE says? The
 * guest's start (qm-hardware.md section 8) programs the EQC/AEQC and SQC_BT/CQC_BT and then
 * unmasks the EQ and AEQ interrupts (0xC, 0x4 = 0) before it writes QM_VF_STATE = 0; its stop
 * masks them again before uninit writes QM_VF_STATE = 1, and out of reset both read 1. Uninit
 * leaves the bases in place, so the bases alone cannot tell "removed after use" from
 * "running": the unmasked interrupts can. Reads only registers the save reads anyway, no
 * mailbox, so a genuinely not-loaded function costs two extra reads.
 */
function guestStartedByRegs(regs: VfRegs): boolean {
  return (regs.read(QM_VF_EQ_INT_MASK) & 1) === 0 && (regs.read(QM_VF_AEQ_INT_MASK) & 1) === 0;
}

/**
 * vf_qm_state_save. If QM_VF_STATE never reads ready (no guest driver) the stream is the
 * match data only and `d.vf_qm_state` becomes QM_NOT_READY; otherwise the state is read
 * (failures are EINVAL, as in the driver) and the EQ/AEQ doorbells are rung with the saved
 * heads so an interrupt pending at the stop is raised again. Returns the stream length.
 *
 * Deviation from hisi-acc-vfio-pci.md section 4 (which sends match data whenever QM_VF_STATE
 * stays NOT_READY): when QM_VF_STATE reads NOT_READY but the function shows a started guest
 * (EQ/AEQ interrupts unmasked, see guestStartedByRegs) and its state has all four DMA
 * addresses set, the full 176-byte state is saved with vf_qm_state = QM_READY. Match data
 * alone would make the destination load nothing and start nothing, so the guest's in-flight
 * jobs would never complete there (lost); a register misreporting NOT_READY, or a guest
 * stopped between unmasking and writing QM_VF_STATE, both leave a configured function whose
 * state is safe to load. Recording QM_READY is what lets the destination's STOP -> RUNNING
 * ring the SQ doorbells (section 5 starts only a QM_READY function) and leaves the
 * destination's QM_VF_STATE as a started guest would have it. A function never probed, or
 * whose guest was removed (its stop masked the interrupts), still sends 40 bytes. On this path
 * the state is read through the mailbox, so a hung mailbox fails the save with EINVAL where the
 * spec's not-ready path would have sent 40 bytes: the source then recovers and keeps its guest.
 */
export function saveState(t: VfQmTarget, regs: VfRegs, d: AccVfData): number {
  const ready = regs.pollMasked(QM_VF_STATE, 1, 0) !== null;
  if (!ready && !guestStartedByRegs(regs)) {
    d.vf_qm_state = QM_NOT_READY;
    return QM_MATCH_SIZE;
  }
  try {
    readState(t, regs, d);
  } catch (e) {
    if (e instanceof KernelError) fail('EINVAL', `failed to read the VF state: ${e.message}`);
    throw e;
  }
  if (!ready && (d.eqe_dma === 0n || d.aeqe_dma === 0n || d.sqc_dma === 0n || d.cqc_dma === 0n)) {
    // Unmasked but not configured: no queues to carry, as the spec's not-ready case.
    d.vf_qm_state = QM_NOT_READY;
    return QM_MATCH_SIZE;
  }
  d.vf_qm_state = QM_READY;
  eqDoorbell(regs, QM_DOORBELL_CMD_EQ, d.qm_eqc_dw[0]! & 0xffff);
  eqDoorbell(regs, QM_DOORBELL_CMD_AEQ, d.qm_aeqc_dw[0]! & 0xffff);
  return ACC_VF_DATA_SIZE;
}

/** qm_dev_cmd_init: clear the PF->VF message status and enable PF<->VF messages. */
export function devCmdInit(regs: VfRegs): void {
  regs.write(QM_IFC_INT_SOURCE_V, 1);
  regs.write(QM_IFC_INT_MASK, 0);
}

export type LoadOutcome = 'nothing' | 'not-ready' | 'loaded';

/**
 * vf_qm_load_data. 40 bytes: nothing to load. Fewer than 176: EINVAL. A zero DMA address:
 * the device is marked not ready and the load succeeds. Otherwise: mailbox ready (EBUSY
 * "QM device is not ready to write"), QM_VF_STATE, the registers, EQC/AEQC dwords,
 * SQC_BT/CQC_BT with the saved bases, then qm_dev_cmd_init.
 */
export function loadState(t: VfQmTarget, regs: VfRegs, d: AccVfData, length: number): LoadOutcome {
  if (length === QM_MATCH_SIZE) return 'nothing';
  if (length < ACC_VF_DATA_SIZE) fail('EINVAL', `${length} bytes of migration data`);
  if (d.eqe_dma === 0n || d.aeqe_dma === 0n || d.sqc_dma === 0n || d.cqc_dma === 0n) return 'not-ready';
  if (!regs.waitMailboxReady()) fail('EBUSY', 'QM device is not ready to write');
  regs.write(QM_VF_STATE, d.vf_qm_state);
  regs.write(QM_VF_AEQ_INT_MASK, d.aeq_int_mask);
  regs.write(QM_VF_EQ_INT_MASK, d.eq_int_mask);
  regs.write(QM_IFC_INT_SOURCE_V, d.ifc_int_source);
  regs.write(QM_IFC_INT_MASK, d.ifc_int_mask);
  regs.write(QM_IFC_INT_SET_V, d.ifc_int_set);
  regs.write(QM_QUE_ISO_CFG_V, d.que_iso_cfg);
  regs.write(QM_PAGE_SIZE, d.page_size);
  writeXeqc(t, regs, false, d.qm_eqc_dw);
  writeXeqc(t, regs, true, d.qm_aeqc_dw);
  regs.mailbox(QM_MB_CMD_SQC_BT, 0, lo32(d.sqc_dma), hi32(d.sqc_dma), 0);
  regs.mailbox(QM_MB_CMD_CQC_BT, 0, lo32(d.cqc_dma), hi32(d.cqc_dma), 0);
  devCmdInit(regs);
  return 'loaded';
}

/**
 * vf_qm_fun_restart: an SQ doorbell with index 0 and priority 1 on every queue, which makes
 * the function fetch its contexts and carry on with what was submitted. Under doorbell
 * isolation the SQ doorbells live in the qp's BAR4 page.
 */
export function restartQueues(t: VfQmTarget, regs: VfRegs, qpNum: number): void {
  const isolated = (pfQueIsoCfg(t) & 1) === 1;
  const hi = 1 << 16;
  for (let qn = 0; qn < qpNum; qn++) {
    const lo = ((qn & 0xfff) | (QM_DOORBELL_CMD_SQ << 12)) >>> 0;
    if (isolated) regs.dbWrite64(qn * QM_DB_ISO_INTERVAL + QM_DB_ISO_SQ_CQ, lo, hi);
    else regs.write64(QM_DOORBELL_SQ_CQ_BASE_V2, lo, hi);
  }
}

/** hisi_acc_vf_start_device body (the caller checks QM_READY): qm_dev_cmd_init, restart. */
export function startDevice(t: VfQmTarget, regs: VfRegs, qpNum: number): void {
  devCmdInit(regs);
  restartQueues(t, regs, qpNum);
}

/** QM_VF_STATE as the hardware reports it now (one read, no wait). */
export function readVfState(regs: VfRegs): number {
  return (regs.read(QM_VF_STATE) & 1) === 0 ? QM_READY : QM_NOT_READY;
}
