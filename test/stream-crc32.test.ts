import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as zlib from 'node:zlib';
import { crc32, crc32Table } from '../src/vmm/stream/crc32.js';

const ascii = (s: string) => new TextEncoder().encode(s);

/** CRC-32 from a gzip member's trailer (RFC 1952: CRC32 then ISIZE, little endian). */
function gzipCrc(b: Uint8Array): number {
  const gz = zlib.gzipSync(b);
  return new DataView(gz.buffer, gz.byteOffset, gz.length).getUint32(gz.length - 8, true);
}

describe('CRC-32 table fallback', () => {
  it('matches the published check values', () => {
    expect(crc32Table(ascii('123456789'))).toBe(0xcbf43926); // the CRC catalogue "check" value
    expect(crc32Table(new Uint8Array(0))).toBe(0);
    expect(crc32Table(ascii('a'))).toBe(0xe8b7be43);
    expect(crc32Table(ascii('The quick brown fox jumps over the lazy dog'))).toBe(0x414fa339);
    expect(crc32Table(new Uint8Array(32))).toBe(0x190a55ad); // 32 zero bytes
  });

  it('agrees with gzip trailers and is incremental, for random data', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat(), (data, cutSeed) => {
        const want = gzipCrc(data);
        expect(crc32Table(data)).toBe(want);
        expect(crc32(data)).toBe(want);
        const cut = data.length ? cutSeed % (data.length + 1) : 0;
        expect(crc32Table(data.subarray(cut), crc32Table(data.subarray(0, cut)))).toBe(want);
        expect(crc32(data.subarray(cut), crc32(data.subarray(0, cut)))).toBe(want);
      }),
      { numRuns: 200 },
    );
  });
});
