import type { MsiSink } from '../dma.js';
import type { ConfigSpace } from './config-space.js';
import * as Regs from './regs.js';

// Bound once: under tsx every use of an imported binding is a getter call, and MSI delivery
// runs on every completion.
const {
  PCI_CAP_ID_MSI,
  PCI_MSI_64_PVM_SIZEOF,
  PCI_MSI_ADDRESS_HI,
  PCI_MSI_ADDRESS_LO,
  PCI_MSI_DATA_64,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_64BIT,
  PCI_MSI_FLAGS_ENABLE,
  PCI_MSI_FLAGS_MASKBIT,
  PCI_MSI_FLAGS_QMASK,
  PCI_MSI_FLAGS_QSIZE,
  PCI_MSI_MASK_64,
  PCI_MSI_PENDING_64,
} = Regs;

export interface MsiStats {
  /** Messages sent to the sink. */
  delivered: number;
  /** Signals that found their vector masked and set (or kept) the pending bit. */
  pended: number;
  /** Signals while MSI Enable was clear: the message is lost. */
  droppedDisabled: number;
  /** Signals for a vector outside the enabled count (or not a vector at all). */
  droppedVector: number;
  /** Signals while Bus Master Enable was clear: an MSI is a memory write, so it is blocked. */
  droppedBusMaster: number;
  /** Messages sent while no sink was attached (nobody decodes the address). */
  lostNoSink: number;
}

/** Multiple Message Capable encoding: log2 of the vector count rounded up to a power of 2. */
export function msiLog2(vectors: number): number {
  let l = 0;
  while (1 << l < vectors) l++;
  return l;
}

/**
 * MSI capability with 64-bit address and per-vector masking (the QM uses MSI, not MSI-X;
 * qm-hardware.md 5). A signal on a masked vector sets its pending bit; unmasking delivers
 * every pending, unmasked vector in ascending order and clears its pending bit.
 */
export class MsiCapability {
  readonly offset: number;
  /** Vectors the function uses (profile msi.pfVectors / vfVectors). */
  readonly vectors: number;
  /** Multiple Message Capable field value. */
  readonly mmc: number;
  readonly stats: MsiStats = {
    delivered: 0,
    pended: 0,
    droppedDisabled: 0,
    droppedVector: 0,
    droppedBusMaster: 0,
    lostNoSink: 0,
  };
  private sink: MsiSink | undefined;

  constructor(
    private readonly cfg: ConfigSpace,
    vectors: number,
    private readonly busMaster: () => boolean,
  ) {
    if (!Number.isInteger(vectors) || vectors < 1 || vectors > 32) {
      throw new RangeError(`MSI vectors must be 1..32 (got ${vectors})`);
    }
    this.vectors = vectors;
    this.mmc = msiLog2(vectors);
    const off = cfg.addCapability(PCI_CAP_ID_MSI, PCI_MSI_64_PVM_SIZEOF);
    this.offset = off;
    const capable = 1 << this.mmc;
    const maskBits = capable === 32 ? 0xffffffff : (1 << capable) - 1;
    cfg.define(
      off + PCI_MSI_FLAGS,
      2,
      (this.mmc << 1) | PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT,
      PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE,
    );
    cfg.define(off + PCI_MSI_ADDRESS_LO, 4, 0, 0xfffffffc);
    cfg.define(off + PCI_MSI_ADDRESS_HI, 4, 0, 0xffffffff);
    cfg.define(off + PCI_MSI_DATA_64, 2, 0, 0xffff);
    cfg.define(off + PCI_MSI_DATA_64 + 2, 2, 0);
    cfg.define(off + PCI_MSI_MASK_64, 4, 0, maskBits);
    cfg.define(off + PCI_MSI_PENDING_64, 4, 0);

    cfg.onWrite(off + PCI_MSI_FLAGS, 2, (old) => {
      // Multiple Message Enable above what the function is capable of is not a valid
      // programming; the field keeps its previous value.
      const now = cfg.get(off + PCI_MSI_FLAGS, 2);
      if (((now & PCI_MSI_FLAGS_QSIZE) >> 4) > this.mmc) {
        cfg.set(off + PCI_MSI_FLAGS, 2, (now & ~PCI_MSI_FLAGS_QSIZE) | (old & PCI_MSI_FLAGS_QSIZE));
      }
      this.flushPending();
    });
    cfg.onWrite(off + PCI_MSI_MASK_64, 4, () => this.flushPending());
  }

  setSink(sink: MsiSink | undefined): void {
    this.sink = sink;
  }

  get enabled(): boolean {
    return (this.cfg.get(this.offset + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_ENABLE) !== 0;
  }

  /** Vectors allocated by software (Multiple Message Enable), 0 while MSI is disabled. */
  get enabledVectors(): number {
    const ctrl = this.cfg.get(this.offset + PCI_MSI_FLAGS, 2);
    if ((ctrl & PCI_MSI_FLAGS_ENABLE) === 0) return 0;
    return 1 << ((ctrl & PCI_MSI_FLAGS_QSIZE) >> 4);
  }

  /** Read-only view of the capability fields (Multiple Message Capable from the QMASK bits). */
  get capableVectors(): number {
    return 1 << ((this.cfg.get(this.offset + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_QMASK) >> 1);
  }

  get messageAddress(): number {
    return this.cfg.get(this.offset + PCI_MSI_ADDRESS_HI, 4) * 2 ** 32 + this.cfg.get(this.offset + PCI_MSI_ADDRESS_LO, 4);
  }

  get messageData(): number {
    return this.cfg.get(this.offset + PCI_MSI_DATA_64, 2);
  }

  isMasked(vector: number): boolean {
    return ((this.cfg.get(this.offset + PCI_MSI_MASK_64, 4) >>> vector) & 1) === 1;
  }

  isPending(vector: number): boolean {
    return ((this.cfg.get(this.offset + PCI_MSI_PENDING_64, 4) >>> vector) & 1) === 1;
  }

  /** The device raises interrupt `vector`. Never throws. */
  signal(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 31) {
      this.stats.droppedVector++;
      return;
    }
    const ctrl = this.cfg.get(this.offset + PCI_MSI_FLAGS, 2);
    if ((ctrl & PCI_MSI_FLAGS_ENABLE) === 0) {
      this.stats.droppedDisabled++;
      return;
    }
    if (vector >= 1 << ((ctrl & PCI_MSI_FLAGS_QSIZE) >> 4)) {
      this.stats.droppedVector++;
      return;
    }
    const bit = (1 << vector) >>> 0;
    if ((this.cfg.get(this.offset + PCI_MSI_MASK_64, 4) & bit) !== 0) {
      const p = this.offset + PCI_MSI_PENDING_64;
      this.cfg.set(p, 4, this.cfg.get(p, 4) | bit);
      this.stats.pended++;
      return;
    }
    if (!this.busMaster()) {
      this.stats.droppedBusMaster++;
      return;
    }
    this.deliver(vector);
  }

  /**
   * Sends every pending vector that is now unmasked, lowest first. Runs after writes to the
   * control and mask registers and when bus mastering is turned on; a vector that is still
   * masked, or beyond the enabled count, stays pending.
   */
  flushPending(): void {
    const n = this.enabledVectors;
    if (n === 0 || !this.busMaster()) return;
    const p = this.offset + PCI_MSI_PENDING_64;
    const enabledBits = n === 32 ? 0xffffffff : (1 << n) - 1;
    let ready = (this.cfg.get(p, 4) & ~this.cfg.get(this.offset + PCI_MSI_MASK_64, 4) & enabledBits) >>> 0;
    if (ready === 0) return;
    // Clear first so a sink that re-signals from inside the callback sees a consistent state.
    this.cfg.set(p, 4, (this.cfg.get(p, 4) & ~ready) >>> 0);
    while (ready !== 0) {
      const v = 31 - Math.clz32(ready & -ready);
      ready = (ready & (ready - 1)) >>> 0;
      this.deliver(v);
    }
  }

  private deliver(vector: number): void {
    this.stats.delivered++;
    if (this.sink) this.sink(vector);
    else this.stats.lostNoSink++;
  }
}
