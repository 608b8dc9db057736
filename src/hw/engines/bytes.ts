/**
 * Little-endian field access on SQE bytes. SQEs arrive as plain byte arrays (often views into
 * a larger ring buffer), so these helpers avoid building a DataView per request.
 */

export function rd16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}

export function rd32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

/** A u64 as a number; values at or above 2**53 lose precision (see DmaPort). */
export function rd64(b: Uint8Array, o: number): number {
  return rd32(b, o + 4) * 0x1_0000_0000 + rd32(b, o);
}

export function wr16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

export function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/** Writes a u64 given as a non-negative integer number (< 2**53). */
export function wr64(b: Uint8Array, o: number, v: number): void {
  wr32(b, o, v >>> 0);
  wr32(b, o + 4, Math.floor(v / 0x1_0000_0000) >>> 0);
}
