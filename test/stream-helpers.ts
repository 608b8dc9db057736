/** Shared fixtures for the stream tests: a small valid stream built through the writer. */
import * as zlib from 'node:zlib';
import { StreamReader, StreamWriter } from '../src/vmm/stream/index.js';
import type { SourceDescription, StreamEvent, StreamSummary } from '../src/vmm/stream/index.js';

export const SOURCE: SourceDescription = {
  engine: 'zip',
  hwVersion: 0x30,
  vendorId: 0x19e5,
  deviceIds: [0xa251],
  ramBytes: 64 * 4096,
  pageSize: 4096,
};

/** Independent CRC-32 (node:zlib), for hand-built bytes. */
export function zcrc(b: Uint8Array): number {
  return zlib.crc32(b) >>> 0;
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const out = new Uint8Array(n);
  let p = 0;
  for (const c of chunks) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}

export async function writeAll(build: (w: StreamWriter) => Promise<void>, maxRecordBytes?: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const w = new StreamWriter((c) => void chunks.push(c), maxRecordBytes ? { maxRecordBytes } : {});
  await build(w);
  await w.flush();
  return concat(chunks);
}

/** Parses `bytes` split at `cuts` (sorted offsets); returns events and summary or the error. */
export function parse(
  bytes: Uint8Array,
  cuts: number[] = [],
  maxRecordBytes?: number,
): { events: StreamEvent[]; summary?: StreamSummary; error?: unknown } {
  const events: StreamEvent[] = [];
  const r = new StreamReader((e) => events.push(e), maxRecordBytes ? { maxRecordBytes } : {});
  try {
    let at = 0;
    for (const c of [...cuts, bytes.length]) {
      r.push(bytes.subarray(at, c));
      at = c;
    }
    return { events, summary: r.finish() };
  } catch (error) {
    return { events, error };
  }
}

/** Page i of the small stream: page 3 is zero, page 9 holds a byte pattern. */
export function patternPage(seed: number, size = 4096): Uint8Array {
  const p = new Uint8Array(size);
  for (let i = 0; i < size; i++) p[i] = (i * 31 + seed * 7 + 1) & 0xff;
  return p;
}

/**
 * The small stream used by the corruption tests: header, one RAM section (page 3 zero,
 * page 9 data), a setup section, a data section with INIT_DATA_SENT, a config section, END.
 */
export async function smallStream(): Promise<{ bytes: Uint8Array; pageDataStart: number; pageDataEnd: number }> {
  const contents = new Uint8Array(2 * 4096);
  contents.set(patternPage(9), 4096);
  const bytes = await writeAll(async (w) => {
    await w.header(SOURCE);
    await w.ram(0, [3, 9], contents);
    await w.beginDevice('0000:75:00.1');
    await w.deviceSetup();
    await w.endDevice();
    await w.beginDevice('0000:75:00.1');
    await w.deviceData(new Uint8Array([1, 2, 3, 4, 5]));
    await w.deviceInitDataSent();
    await w.endDevice();
    await w.beginDevice('0000:75:00.1');
    await w.deviceConfig(new Uint8Array([0xaa, 0xbb]));
    await w.endDevice();
    await w.end();
  });
  // by the documented layout: header = 20 + desc + 4; desc = 1+3 + 4 + 2 + 2 + 2*1 + 8 + 4 = 26
  const headerLen = 20 + 26 + 4;
  const ramPayload = headerLen + 13;
  const pageDataStart = ramPayload + 8 + 2 * 9;
  return { bytes, pageDataStart, pageDataEnd: pageDataStart + 4096 };
}
