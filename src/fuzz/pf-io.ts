/**
 * Access to the PF's own queues for a witness job, next to the host's PF driver that owns
 * the PF (VFT, SR-IOV, the VF->PF IFC channel and its interrupt).
 *
 * The guest QM driver runs unchanged on the PF's queue registers, which the PF has at the
 * same offsets as a VF; this adapter keeps it from stepping on the PF driver:
 * - the Device ID reads as the engine's VF id (the driver only binds to VF ids);
 * - config writes to the MSI capability are dropped: the PF driver already enabled MSI for
 *   every vector the PF has, and the interrupt routing stays the host's;
 * - writes to the VF-side IFC registers (0x20..0x2f) are dropped, the PF driver owns IFC;
 * - interrupts are shared: the host's handler keeps getting every vector, the witness
 *   driver only its EQ and AEQ vectors.
 */
import type { CfgSize, GuestPciIo } from '../guest/io.js';
import type { HostPciDevice } from '../host/pci-device.js';
import type { AccessOrigin } from '../hw/dma.js';
import { PCI_CAPABILITY_LIST, PCI_CAP_ID_MSI } from '../hw/pci/regs.js';

/** Span of a 64-bit MSI capability with per-vector masking. */
const MSI_CAP_BYTES = 24;
const IFC_REGS_START = 0x20;
const IFC_REGS_END = 0x30;
const ORIGIN: AccessOrigin = 'driver';

export class PfSharedIo implements GuestPciIo {
  private readonly msiCap: number;
  private allowed = new Set<number>();
  private handler: ((vector: number) => void) | undefined;

  constructor(private readonly dev: HostPciDevice, private readonly vfDeviceId: number) {
    const fn = dev.fn;
    let at = fn.configRead(PCI_CAPABILITY_LIST, 1) & 0xfc;
    let cap = 0;
    for (let hops = 0; at !== 0 && hops < 48; hops++) {
      if (fn.configRead(at, 1) === PCI_CAP_ID_MSI) {
        cap = at;
        break;
      }
      at = fn.configRead(at + 1, 1) & 0xfc;
    }
    this.msiCap = cap;
    const prev = dev.irqHandler;
    dev.irqHandler = (v) => {
      prev?.(v);
      if (this.allowed.has(v)) this.handler?.(v);
    };
  }

  /** The vectors the witness driver handles (its EQ and AEQ), known once it probed. */
  deliver(vectors: readonly number[]): void {
    this.allowed = new Set(vectors);
  }

  cfgRead(off: number, size: CfgSize): number {
    const v = this.dev.fn.configRead(off, size);
    if (off === 0 && size === 4) return (((this.vfDeviceId << 16) | (v & 0xffff)) >>> 0);
    if (off === 2 && size === 2) return this.vfDeviceId;
    return v;
  }

  cfgWrite(off: number, size: CfgSize, v: number): void {
    if (this.msiCap > 0 && off < this.msiCap + MSI_CAP_BYTES && off + size > this.msiCap) return;
    this.dev.fn.configWrite(off, size, v);
  }

  read32(bar: number, off: number): number {
    return this.dev.fn.mmioRead(bar, off, 4, ORIGIN);
  }

  write32(bar: number, off: number, v: number): void {
    if (off >= IFC_REGS_START && off < IFC_REGS_END) return;
    this.dev.fn.mmioWrite(bar, off, 4, v, ORIGIN);
  }

  read64(bar: number, off: number): [number, number] {
    return this.dev.fn.mmioRead64(bar, off, ORIGIN);
  }

  write64(bar: number, off: number, lo: number, hi: number): void {
    this.dev.fn.mmioWrite64(bar, off, lo, hi, ORIGIN);
  }

  onInterrupt(cb: (vector: number) => void): void {
    this.handler = cb;
  }
}
