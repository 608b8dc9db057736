/**
 * The virtual function table (qm-hardware.md section 4): which physical queues each function
 * owns. One table per device, written and read only through the PF's VFT_CFG registers with
 * the RDY/OP handshake; a VF learns its own SQC-VFT word through the SQC_VFT_V2 mailbox.
 *
 * Encodings (V2/V3/V4): SQC `base<<28 | 1<<44 (valid) | (num-1)<<45`, CQC `1<<28`,
 * a zero word clears. The shaper word is stored for read-back; the model does not rate-limit.
 */
import {
  QM_VFT_CFG, QM_VFT_CFG_DATA_H, QM_VFT_CFG_DATA_L, QM_VFT_CFG_OP_ENABLE, QM_VFT_CFG_OP_WR,
  QM_VFT_CFG_RDY, QM_VFT_CFG_TYPE, VftType,
} from './registers.js';

/** Functions a VFT can describe: the PF and up to 63 VFs. */
export const VFT_FUNCTIONS = 64;
const VFT_TYPES = 3;

export interface VftEntry {
  valid: boolean;
  base: number;
  num: number;
}

/** SQC-VFT word as [lo, hi] u32 halves; `num` 0 gives the clearing word. */
export function encodeSqcVft(base: number, num: number): [number, number] {
  if (num <= 0) return [0, 0];
  const lo = ((base & 0xf) << 28) >>> 0;
  const hi = (((base >>> 4) & 0xfff) | (1 << 12) | (((num - 1) & 0x3ff) << 13)) >>> 0;
  return [lo, hi];
}

/** CQC-VFT word: only the valid bit 28. */
export function encodeCqcVft(num: number): [number, number] {
  return num > 0 ? [(1 << 28) >>> 0, 0] : [0, 0];
}

/** Decodes an SQC-VFT word the way the VF driver does: base = (vft>>28)&0xFFFF, num = ((vft>>45)&0x3FF)+1. */
export function decodeSqcVft(lo: number, hi: number): VftEntry {
  return {
    valid: ((hi >>> 12) & 1) === 1,
    base: ((lo >>> 28) | ((hi & 0xfff) << 4)) >>> 0,
    num: ((hi >>> 13) & 0x3ff) + 1,
  };
}

export class VftTable {
  private readonly lo = new Uint32Array(VFT_TYPES * VFT_FUNCTIONS);
  private readonly hi = new Uint32Array(VFT_TYPES * VFT_FUNCTIONS);

  constructor(private readonly onChange: (fn: number) => void) {}

  word(type: number, fn: number): [number, number] {
    const i = type * VFT_FUNCTIONS + fn;
    return [this.lo[i]!, this.hi[i]!];
  }

  setWord(type: number, fn: number, lo: number, hi: number): void {
    const i = type * VFT_FUNCTIONS + fn;
    this.lo[i] = lo >>> 0;
    this.hi[i] = hi >>> 0;
    this.onChange(fn);
  }

  sqc(fn: number): VftEntry {
    const [lo, hi] = this.word(VftType.SQC, fn);
    return decodeSqcVft(lo, hi);
  }

  /** Queues function `fn` owns: the SQC-VFT count when its valid bit is set, else 0. */
  qpNum(fn: number): number {
    const e = this.sqc(fn);
    return e.valid ? e.num : 0;
  }

  qpBase(fn: number): number {
    const e = this.sqc(fn);
    return e.valid ? e.base : 0;
  }

  clear(): void {
    this.lo.fill(0);
    this.hi.fill(0);
    for (let fn = 0; fn < VFT_FUNCTIONS; fn++) this.onChange(fn);
  }
}

/**
 * The PF's VFT_CFG register block. RDY (bit0) reads 1 when the block is idle; software
 * clears it, sets OP_ENABLE, and the hardware performs the access and sets RDY again. The
 * model performs the access at once, so the driver's poll sees RDY on its first read.
 */
export class VftConfigRegs {
  private opWr = 0;
  private type = 0;
  private fn = 0;
  private dataL = 0;
  private dataH = 0;
  private rdy = 1;
  /** Operations that named a function or type the table does not have (ignored). */
  rejected = 0;

  constructor(private readonly table: VftTable) {}

  handles(off: number): boolean {
    return off >= QM_VFT_CFG_OP_ENABLE && off <= QM_VFT_CFG_RDY;
  }

  read(off: number): number {
    switch (off) {
      case QM_VFT_CFG_OP_ENABLE: return 0;
      case QM_VFT_CFG_OP_WR: return this.opWr;
      case QM_VFT_CFG_TYPE: return this.type;
      case QM_VFT_CFG: return this.fn;
      case QM_VFT_CFG_DATA_L: return this.dataL;
      case QM_VFT_CFG_DATA_H: return this.dataH;
      case QM_VFT_CFG_RDY: return this.rdy;
      default: return 0;
    }
  }

  write(off: number, value: number): void {
    value >>>= 0;
    switch (off) {
      case QM_VFT_CFG_OP_ENABLE:
        if (value & 1) this.execute();
        return;
      case QM_VFT_CFG_OP_WR: this.opWr = value & 1; return;
      case QM_VFT_CFG_TYPE: this.type = value & 0x3; return;
      case QM_VFT_CFG: this.fn = value & 0xff; return;
      case QM_VFT_CFG_DATA_L: this.dataL = value; return;
      case QM_VFT_CFG_DATA_H: this.dataH = value; return;
      case QM_VFT_CFG_RDY: this.rdy = value & 1; return;
      default: return;
    }
  }

  private execute(): void {
    if (this.type < VFT_TYPES && this.fn < VFT_FUNCTIONS) {
      if (this.opWr === 1) {
        [this.dataL, this.dataH] = this.table.word(this.type, this.fn);
      } else {
        this.table.setWord(this.type, this.fn, this.dataL, this.dataH);
      }
    } else {
      this.rejected++;
    }
    this.rdy = 1;
  }

  reset(): void {
    this.opWr = 0;
    this.type = 0;
    this.fn = 0;
    this.dataL = 0;
    this.dataH = 0;
    this.rdy = 1;
  }
}

/**
 * The PF driver's queue split (section 4): the PF keeps [0, pfQNum); the rest is divided
 * evenly over the VFs, handed out from VF n down to VF 1 starting at pfQNum, each capped at
 * the per-function maximum. The division remainder goes to VF n when that stays within the
 * cap, otherwise one extra queue each to the first VFs served.
 */
export function planVftAssignment(totalQps: number, pfQNum: number, maxPerFunction: number,
  numVfs: number): { fn: number; base: number; num: number }[] {
  const out: { fn: number; base: number; num: number }[] = [{ fn: 0, base: 0, num: pfQNum }];
  if (numVfs <= 0) return out;
  const pool = totalQps - pfQNum;
  if (pool < numVfs) return out;
  const each = Math.floor(pool / numVfs);
  let rem = pool % numVfs;
  let base = pfQNum;
  for (let vf = numVfs; vf >= 1; vf--) {
    let n: number;
    if (vf === numVfs && each + rem <= maxPerFunction) {
      n = each + rem;
      rem = 0;
    } else if (rem > 0) {
      n = each + 1;
      rem--;
    } else {
      n = each;
    }
    n = Math.min(n, maxPerFunction);
    out.push({ fn: vf, base, num: n });
    base += n;
  }
  return out;
}
