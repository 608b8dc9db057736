/**
 * Who touched a function's BAR2, and where. The vendor driver must never reach into a VF's
 * BAR2 while the guest runs, and the guest must never see the migration half: this log is
 * how tests prove both. Guest accesses to the functional half are the hot path, so they only
 * bump a counter; everything else (non-guest origins, any upper-half access) also lands in a
 * bounded ring of detailed entries kept in preallocated typed arrays.
 */
import type { AccessOrigin } from '../dma.js';

export type BarHalf = 'low' | 'high';

export interface AuditEntry {
  time: number;
  origin: AccessOrigin;
  bar: number;
  off: number;
  size: 1 | 2 | 4 | 8;
  write: boolean;
  /** The low 32 bits of the value read or written. */
  value: number;
  /** The high 32 bits for 8-byte accesses, 0 otherwise. */
  valueHi: number;
}

const ORIGINS: readonly AccessOrigin[] = ['guest', 'driver', 'pf', 'vmm', 'test'];

function originIndex(o: AccessOrigin): number {
  switch (o) {
    case 'guest': return 0;
    case 'driver': return 1;
    case 'pf': return 2;
    case 'vmm': return 3;
    default: return 4;
  }
}

export const AUDIT_RING_DEFAULT = 1024;

/** Words per detailed entry in `rec`: offset, value, high value, packed kind. */
const REC_WORDS = 4;

/**
 * Packed kind word of an entry: origin [2:0], bar [5:3], size [9:6], write [10]. One record is
 * four adjacent u32 plus a time slot, so logging an access touches two cache lines at most
 * (it runs on every driver access to a VF).
 */
function packKind(origin: number, bar: number, size: number, write: boolean): number {
  return origin | ((bar & 7) << 3) | ((size & 0xf) << 6) | (write ? 1 << 10 : 0);
}

export class AuditLog {
  /** counts[origin*2 + half] */
  private readonly counts = new Float64Array(ORIGINS.length * 2);
  private readonly cap: number;
  private readonly tTime: Float64Array;
  private readonly rec: Uint32Array;
  private next = 0;
  private stored = 0;
  /** Detailed entries ever recorded (including ones the ring has since overwritten). */
  recorded = 0;

  constructor(capacity = AUDIT_RING_DEFAULT) {
    this.cap = Math.max(1, capacity | 0);
    this.tTime = new Float64Array(this.cap);
    this.rec = new Uint32Array(this.cap * REC_WORDS);
  }

  /**
   * Accounts one access. Guest accesses to the low half stop after the counter; the rest are
   * also recorded in detail.
   */
  access(time: number, origin: AccessOrigin, bar: number, off: number, size: 1 | 2 | 4 | 8,
    write: boolean, value: number, valueHi: number, high: boolean): void {
    const oi = originIndex(origin);
    this.counts[oi * 2 + (high ? 1 : 0)]! += 1;
    if (oi === 0 && !high) return;
    const i = this.next;
    this.tTime[i] = time;
    const r = i * REC_WORDS;
    const rec = this.rec;
    rec[r] = off;
    rec[r + 1] = value;
    rec[r + 2] = valueHi;
    rec[r + 3] = packKind(oi, bar, size, write);
    this.next = i + 1 === this.cap ? 0 : i + 1;
    if (this.stored < this.cap) this.stored++;
    this.recorded++;
  }

  count(origin: AccessOrigin, half: BarHalf): number {
    return this.counts[originIndex(origin) * 2 + (half === 'high' ? 1 : 0)]!;
  }

  /** All counters as a plain object, e.g. `{ guest: { low: 10, high: 0 }, ... }`. */
  counters(): Record<AccessOrigin, { low: number; high: number }> {
    const out = {} as Record<AccessOrigin, { low: number; high: number }>;
    ORIGINS.forEach((o, i) => { out[o] = { low: this.counts[i * 2]!, high: this.counts[i * 2 + 1]! }; });
    return out;
  }

  /** Detailed entries, oldest first (at most the ring capacity). */
  entries(): AuditEntry[] {
    const out: AuditEntry[] = [];
    const start = (this.next - this.stored + this.cap) % this.cap;
    for (let k = 0; k < this.stored; k++) {
      const i = (start + k) % this.cap;
      const r = i * REC_WORDS;
      const kind = this.rec[r + 3]!;
      out.push({
        time: this.tTime[i]!,
        origin: ORIGINS[kind & 7]!,
        bar: (kind >>> 3) & 7,
        off: this.rec[r]!,
        size: ((kind >>> 6) & 0xf) as 1 | 2 | 4 | 8,
        write: ((kind >>> 10) & 1) === 1,
        value: this.rec[r + 1]!,
        valueHi: this.rec[r + 2]!,
      });
    }
    return out;
  }

  clear(): void {
    this.counts.fill(0);
    this.next = 0;
    this.stored = 0;
    this.recorded = 0;
  }
}
