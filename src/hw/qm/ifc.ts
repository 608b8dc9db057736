/**
 * PF<->VF communication (IFC, V3+; qm-hardware.md section 5).
 *
 * Messages are u64 `cmd | data<<32`. On V3 they travel through the mailbox: SRC stores a
 * message for the destination, DST reads the message a given source left. On V4 they can
 * also travel through data registers: the PF writes QM_PF2VF_PF_W (0x104700) and the message
 * is copied to the targeted VFs' QM_PF2VF_VF_R (0x380) when the PF triggers the interrupt; a
 * VF writes QM_VF2PF_VF_W (0x320) and the PF reads the low word at QM_VF2PF_PF_R + 4*vf.
 *
 * Doorbell-like interrupt bits, one bit per VF (bit n = VF n):
 * - PF->VF: the PF picks targets in QM_IFC_INT_CFG [6:0] (0x7F = all VFs) and writes
 *   QM_IFC_INT_SET_P bit0. Each target's QM_IFC_INT_SOURCE_V bit0 rises and its vector 2
 *   fires; QM_IFC_READY_STATUS shows the bit until the VF acks by writing 1 to 0x20.
 * - VF->PF: the VF writes QM_IFC_INT_SET_V (0x2C) bit0; the bit stays set (and shows in the
 *   PF's QM_IFC_INT_SOURCE_P) until the PF writes it back to QM_IFC_INT_SOURCE_P (W1C).
 */
import { MB_PING_ALL_VFS, MbStatus, QM_IFC_SEND_ALL_VFS, Vector } from './registers.js';

const SLOTS = 64;

function bit(words: Uint32Array, n: number): number {
  return (words[n >>> 5]! >>> (n & 31)) & 1;
}
function setBit(words: Uint32Array, n: number): void {
  words[n >>> 5] = (words[n >>> 5]! | (1 << (n & 31))) >>> 0;
}
function clearBit(words: Uint32Array, n: number): void {
  words[n >>> 5] = (words[n >>> 5]! & ~(1 << (n & 31))) >>> 0;
}

export interface IfcHost {
  /** Existing VF indices (1-based). */
  vfIndices(): Iterable<number>;
  hasVf(n: number): boolean;
  raise(fn: number, vector: number): void;
}

export class IfcHub {
  /** bit n: PF->VF interrupt pending at VF n (not yet acked). */
  readonly pfToVf = new Uint32Array(2);
  /** bit n: VF n raised an interrupt to the PF (not yet acked). */
  readonly vfToPf = new Uint32Array(2);
  intCfg = 0;
  /** Mailbox SRC messages: [n*2] lo, [n*2+1] hi. toPf[n] came from VF n; toVf[n] from the PF. */
  private readonly toPf = new Uint32Array(SLOTS * 2);
  private readonly toVf = new Uint32Array(SLOTS * 2);
  /** V4 data registers. */
  private readonly pf2vfPfW = new Uint32Array(2);
  private readonly vf2pfVfW = new Uint32Array(SLOTS * 2);
  private readonly pf2vfVfR = new Uint32Array(SLOTS * 2);
  readonly counters = { pfToVfInterrupts: 0, vfToPfInterrupts: 0, messages: 0 };

  constructor(private readonly host: IfcHost) {}

  reset(): void {
    this.pfToVf.fill(0);
    this.vfToPf.fill(0);
    this.intCfg = 0;
    this.toPf.fill(0);
    this.toVf.fill(0);
    this.pf2vfPfW.fill(0);
    this.vf2pfVfW.fill(0);
    this.pf2vfVfR.fill(0);
  }

  /** Function reset / removal: everything addressed to or pending from VF n disappears. */
  resetVf(n: number): void {
    clearBit(this.pfToVf, n);
    clearBit(this.vfToPf, n);
    this.toVf[n * 2] = 0; this.toVf[n * 2 + 1] = 0;
    this.pf2vfVfR[n * 2] = 0; this.pf2vfVfR[n * 2 + 1] = 0;
    this.vf2pfVfW[n * 2] = 0; this.vf2pfVfW[n * 2 + 1] = 0;
  }

  // ---- mailbox SRC / DST ----

  /** SRC from function `from`: queue 0 = PF, 0xFFFF = all VFs (PF only), n = VF n (PF only). */
  send(from: number, queue: number, lo: number, hi: number): number {
    if (from === 0) {
      if (queue === MB_PING_ALL_VFS) {
        for (const n of this.host.vfIndices()) this.store(this.toVf, n, lo, hi);
        this.counters.messages++;
        return MbStatus.OK;
      }
      if (queue >= 1 && queue < SLOTS && this.host.hasVf(queue)) {
        this.store(this.toVf, queue, lo, hi);
        this.counters.messages++;
        return MbStatus.OK;
      }
      return MbStatus.BAD_QUEUE;
    }
    if (queue !== 0) return MbStatus.BAD_QUEUE;
    this.store(this.toPf, from, lo, hi);
    this.counters.messages++;
    return MbStatus.OK;
  }

  /** DST at function `at` reading the message from function `queue`. */
  receive(at: number, queue: number): { status: number; lo: number; hi: number } {
    if (at === 0) {
      if (queue >= 1 && queue < SLOTS) {
        return { status: MbStatus.OK, lo: this.toPf[queue * 2]!, hi: this.toPf[queue * 2 + 1]! };
      }
      return { status: MbStatus.BAD_QUEUE, lo: 0, hi: 0 };
    }
    if (queue !== 0) return { status: MbStatus.BAD_QUEUE, lo: 0, hi: 0 };
    return { status: MbStatus.OK, lo: this.toVf[at * 2]!, hi: this.toVf[at * 2 + 1]! };
  }

  private store(arr: Uint32Array, n: number, lo: number, hi: number): void {
    arr[n * 2] = lo >>> 0;
    arr[n * 2 + 1] = hi >>> 0;
  }

  // ---- PF side registers ----

  /** QM_IFC_INT_SET_P: bit0 triggers an interrupt to the VFs selected by INT_CFG. */
  pfTrigger(value: number): void {
    if ((value & 1) === 0) return;
    const target = this.intCfg & QM_IFC_SEND_ALL_VFS;
    if (target === QM_IFC_SEND_ALL_VFS) {
      for (const n of this.host.vfIndices()) this.interruptVf(n);
    } else if (target >= 1 && this.host.hasVf(target)) {
      this.interruptVf(target);
    }
  }

  private interruptVf(n: number): void {
    this.pf2vfVfR[n * 2] = this.pf2vfPfW[0]!;
    this.pf2vfVfR[n * 2 + 1] = this.pf2vfPfW[1]!;
    setBit(this.pfToVf, n);
    this.counters.pfToVfInterrupts++;
    this.host.raise(n, Vector.IFC);
  }

  /** QM_IFC_INT_SOURCE_P write (W1C): acknowledges VF->PF interrupts. */
  pfAck(word: number, value: number): void {
    this.vfToPf[word] = (this.vfToPf[word]! & ~value) >>> 0;
  }

  pfSourceWord(word: number): number {
    return this.vfToPf[word]!;
  }

  readyStatusWord(word: number): number {
    return this.pfToVf[word]!;
  }

  pfPending(): boolean {
    return (this.vfToPf[0]! | this.vfToPf[1]!) !== 0;
  }

  pf2vfWrite(word: number, value: number, mask: number): void {
    this.pf2vfPfW[word] = ((this.pf2vfPfW[word]! & ~mask) | (value & mask)) >>> 0;
  }

  pf2vfRead(word: number): number {
    return this.pf2vfPfW[word]!;
  }

  /** QM_VF2PF_PF_R + 4*n: the low (command) word of VF n's data register. */
  vf2pfForPf(n: number): number {
    return n >= 1 && n < SLOTS ? this.vf2pfVfW[n * 2]! : 0;
  }

  // ---- VF side registers ----

  vfSource(n: number): number {
    return bit(this.pfToVf, n);
  }

  /** QM_IFC_INT_SOURCE_V write: bit0 acknowledges the PF's interrupt. */
  vfAck(n: number, value: number): void {
    if (value & 1) clearBit(this.pfToVf, n);
  }

  vfSetBit(n: number): number {
    return bit(this.vfToPf, n);
  }

  /** QM_IFC_INT_SET_V write: bit0 interrupts the PF; the bit stays until the PF acks. */
  vfTrigger(n: number, value: number): void {
    if ((value & 1) === 0 || bit(this.vfToPf, n) === 1) return;
    setBit(this.vfToPf, n);
    this.counters.vfToPfInterrupts++;
    this.host.raise(0, Vector.IFC);
  }

  vf2pfWrite(n: number, word: number, value: number, mask: number): void {
    const i = n * 2 + word;
    this.vf2pfVfW[i] = ((this.vf2pfVfW[i]! & ~mask) | (value & mask)) >>> 0;
  }

  vf2pfRead(n: number, word: number): number {
    return this.vf2pfVfW[n * 2 + word]!;
  }

  pf2vfForVf(n: number, word: number): number {
    return this.pf2vfVfR[n * 2 + word]!;
  }
}
