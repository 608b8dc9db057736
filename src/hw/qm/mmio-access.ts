/**
 * Turns CPU accesses of any size and alignment into dword register operations. A register
 * block implements `readDw` (side-effect free) and `writeDw(off4, value, mask)`, where `mask`
 * has a 1 for every bit the CPU actually stored: write-1-to-clear and trigger registers act
 * only on written bits and never see a read-modify-write the bus made up.
 */
export interface DwordRegs {
  readDw(off4: number): number;
  writeDw(off4: number, value: number, mask: number): void;
}

const SIZE_MASK = [0, 0xff, 0xffff, 0xffffff, 0xffffffff];

/** True for an access the region can serve: integer offset, size 1/2/4/8, inside `limit`. */
export function accessOk(off: number, size: number, limit: number): boolean {
  return Number.isInteger(off) && off >= 0 && (size === 1 || size === 2 || size === 4 || size === 8)
    && off + size <= limit;
}

export function readSized(r: DwordRegs, off: number, size: 1 | 2 | 4): number {
  const sh = (off & 3) * 8;
  if ((off & 3) + size <= 4) {
    const v = r.readDw(off - (off & 3)) >>> sh;
    return size === 4 ? v >>> 0 : v & SIZE_MASK[size]!;
  }
  let out = 0;
  for (let i = 0; i < size; i++) {
    const o = off + i;
    out |= ((r.readDw(o - (o & 3)) >>> ((o & 3) * 8)) & 0xff) << (8 * i);
  }
  return out >>> 0;
}

export function writeSized(r: DwordRegs, off: number, size: 1 | 2 | 4, value: number): void {
  const sh = (off & 3) * 8;
  if ((off & 3) + size <= 4) {
    const m = size === 4 ? 0xffffffff : SIZE_MASK[size]!;
    r.writeDw(off - (off & 3), ((value & m) << sh) >>> 0, (m << sh) >>> 0);
    return;
  }
  for (let i = 0; i < size; i++) {
    const o = off + i;
    const bsh = (o & 3) * 8;
    r.writeDw(o - (o & 3), (((value >>> (8 * i)) & 0xff) << bsh) >>> 0, (0xff << bsh) >>> 0);
  }
}

/** An 8-byte access that is not a special 64-bit register: two dword halves, low first. */
export function read64Split(r: DwordRegs, off: number): [number, number] {
  if ((off & 3) === 0) return [r.readDw(off) >>> 0, r.readDw(off + 4) >>> 0];
  return [readSized(r, off, 4), readSized(r, off + 4, 4)];
}

export function write64Split(r: DwordRegs, off: number, lo: number, hi: number): void {
  if ((off & 3) === 0) {
    r.writeDw(off, lo >>> 0, 0xffffffff);
    r.writeDw(off + 4, hi >>> 0, 0xffffffff);
    return;
  }
  writeSized(r, off, 4, lo);
  writeSized(r, off + 4, 4, hi);
}

/** All-ones of the access width: what a read of a hidden or absent location returns. */
export function allOnes(size: number): number {
  return size === 4 ? 0xffffffff : size === 1 || size === 2 ? SIZE_MASK[size]! : 0;
}
