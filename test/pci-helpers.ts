import type { AccessOrigin, DmaPort } from '../src/hw/dma.js';
import type { MmioRegion } from '../src/hw/mmio.js';

/** A sparse little-endian register file that records who touched it. */
export class SparseRegion implements MmioRegion {
  readonly bytes = new Map<number, number>();
  readonly accesses: { op: string; off: number; origin: AccessOrigin }[] = [];
  constructor(readonly size: number) {}

  private get8(off: number): number {
    return this.bytes.get(off) ?? 0;
  }
  private getN(off: number, n: number): number {
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + this.get8(off + i);
    return v;
  }
  private setN(off: number, n: number, v: number): void {
    for (let i = 0; i < n; i++) this.bytes.set(off + i, Math.floor(v / 2 ** (8 * i)) & 0xff);
  }
  read(off: number, size: 1 | 2 | 4, origin: AccessOrigin): number {
    this.accesses.push({ op: `r${size}`, off, origin });
    return this.getN(off, size);
  }
  write(off: number, size: 1 | 2 | 4, value: number, origin: AccessOrigin): void {
    this.accesses.push({ op: `w${size}`, off, origin });
    this.setN(off, size, value);
  }
  read64(off: number, origin: AccessOrigin): [number, number] {
    this.accesses.push({ op: 'r8', off, origin });
    return [this.getN(off, 4), this.getN(off + 4, 4)];
  }
  write64(off: number, lo: number, hi: number, origin: AccessOrigin): void {
    this.accesses.push({ op: 'w8', off, origin });
    this.setN(off, 4, lo);
    this.setN(off + 4, 4, hi);
  }
}

/** Upstream DMA port over a flat buffer that records every transaction. */
export class FlatDma implements DmaPort {
  readonly mem: Uint8Array;
  readonly log: string[] = [];
  constructor(size: number) {
    this.mem = new Uint8Array(size);
  }
  read(iova: number, dst: Uint8Array): boolean {
    this.log.push(`r ${iova} ${dst.length}`);
    if (iova < 0 || iova + dst.length > this.mem.length) return false;
    dst.set(this.mem.subarray(iova, iova + dst.length));
    return true;
  }
  write(iova: number, src: Uint8Array): boolean {
    this.log.push(`w ${iova} ${src.length}`);
    if (iova < 0 || iova + src.length > this.mem.length) return false;
    this.mem.set(src, iova);
    return true;
  }
}
