/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, init and final xor 0xFFFFFFFF), the
 * checksum zlib, gzip and PNG use. Node gained `zlib.crc32` in 20.15/22.2; on older runtimes
 * the table-driven implementation below takes over. Both accept a previous value so a long
 * record can be checksummed piece by piece: crc32(b, crc32(a)) === crc32(a ++ b).
 */
import * as zlib from 'node:zlib';

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Table-driven CRC-32; the fallback when the runtime has no zlib.crc32. */
export function crc32Table(data: Uint8Array, prev = 0): number {
  let c = ~prev >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

type NativeCrc = (data: Uint8Array, value?: number) => number;
const native: NativeCrc | undefined =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? (zlib as unknown as { crc32: NativeCrc }).crc32 : undefined;

/** Whether the native zlib implementation is in use. */
export const crc32IsNative = native !== undefined;

/** CRC-32 of `data`, continuing from `prev` (0 to start). */
export const crc32: (data: Uint8Array, prev?: number) => number = native
  ? (data, prev = 0) => native(data, prev) >>> 0
  : crc32Table;
