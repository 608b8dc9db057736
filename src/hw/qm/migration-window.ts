/**
 * The migration-control registers of a VF: its live EQC and AEQC as 7 dwords each. They
 * appear in the upper half of the VF's BAR2 (EQC at 0x8000, AEQC at 0x8020) or, on V4 with
 * PF QM_MIG_REGION_SEL bit0 set, in the PF BAR2 window of that VF (EQC at +0x1C00, AEQC at
 * +0x1C20). Both views read and write the same live state (see eq.ts). Other offsets of a
 * window read 0 and ignore writes.
 */
import type { EventQueue } from './eq.js';
import { QM_XEQC_DWORDS } from './registers.js';

const SPAN = QM_XEQC_DWORDS * 4;

export function migWindowRead(eq: EventQueue, aeq: EventQueue, rel: number, eqcOff: number,
  aeqcOff: number): number {
  if (rel >= eqcOff && rel < eqcOff + SPAN) return eq.readDword((rel - eqcOff) >>> 2);
  if (rel >= aeqcOff && rel < aeqcOff + SPAN) return aeq.readDword((rel - aeqcOff) >>> 2);
  return 0;
}

export function migWindowWrite(eq: EventQueue, aeq: EventQueue, rel: number, eqcOff: number,
  aeqcOff: number, value: number, mask: number): void {
  let q: EventQueue | null = null;
  let i = 0;
  if (rel >= eqcOff && rel < eqcOff + SPAN) {
    q = eq;
    i = (rel - eqcOff) >>> 2;
  } else if (rel >= aeqcOff && rel < aeqcOff + SPAN) {
    q = aeq;
    i = (rel - aeqcOff) >>> 2;
  }
  if (q === null) return;
  q.writeDword(i, (q.readDword(i) & ~mask) | (value & mask));
}
