import { beforeAll, describe, expect, it } from 'vitest';
import { StreamError, StreamReader } from '../src/vmm/stream/index.js';
import { SOURCE, concat, parse, patternPage, smallStream, writeAll, zcrc } from './stream-helpers.js';

let small: Awaited<ReturnType<typeof smallStream>>;
beforeAll(async () => {
  small = await smallStream();
});

function codeOf(e: unknown): string {
  expect(e).toBeInstanceOf(StreamError);
  return (e as StreamError).code;
}

describe('corruption is always detected', () => {
  it('the small stream is valid as written', () => {
    const res = parse(small.bytes);
    expect(res.error).toBeUndefined();
    expect(res.events.map((e) => e.type)).toEqual([
      'header', 'ram',
      'device-begin', 'device-setup', 'device-end',
      'device-begin', 'device-data', 'device-init-data-sent', 'device-end',
      'device-begin', 'device-config', 'device-end',
      'end',
    ]);
    // the page-data range computed from the documented layout really holds page 9
    expect(small.bytes.subarray(small.pageDataStart, small.pageDataEnd)).toEqual(patternPage(9));
  });

  it('every single-bit flip is rejected; flips in page data as checksum mismatch', () => {
    // every bit outside the 4 KiB of page data; inside it, one bit of every 7th byte (the
    // page is covered by one CRC, which detects any single-bit error wherever it is)
    const b = small.bytes.slice();
    const codes = new Map<string, number>();
    const problems: string[] = [];
    for (let i = 0; i < b.length; i++) {
      const inPage = i >= small.pageDataStart && i < small.pageDataEnd;
      if (inPage && (i - small.pageDataStart) % 7 !== 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        if (inPage && bit !== i % 8) continue;
        b[i] ^= 1 << bit;
        const res = parse(b);
        b[i] ^= 1 << bit;
        const where = `byte ${i} bit ${bit}`;
        if (!(res.error instanceof StreamError)) {
          problems.push(`${where}: accepted`);
          continue;
        }
        const code = res.error.code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
        if (inPage && res.error.message !== 'checksum mismatch in RAM section 1') problems.push(`${where}: ${res.error.message}`);
        if (i < 8 && code !== 'BAD_MAGIC') problems.push(`${where}: ${code}`);
        if (i >= 8 && i < 12 && code !== 'BAD_VERSION') problems.push(`${where}: ${code}`);
      }
    }
    expect(problems).toEqual([]);
    expect(codes.get('BAD_MAGIC')).toBe(64);
    expect(codes.get('BAD_VERSION')).toBe(32);
    expect(codes.get('CHECKSUM')).toBeGreaterThan(2000);
  });

  it('truncation at every offset is rejected as truncated', () => {
    const problems: string[] = [];
    for (let n = 0; n < small.bytes.length; n++) {
      const r = new StreamReader(() => undefined);
      try {
        r.push(small.bytes.subarray(0, n)); // a valid prefix is accepted so far
        r.finish();
        problems.push(`${n}: accepted`);
      } catch (e) {
        if (!(e instanceof StreamError) || e.code !== 'TRUNCATED' || !e.message.startsWith('truncated stream: ')) {
          problems.push(`${n}: ${String(e)}`);
        }
      }
      if (r.complete) problems.push(`${n}: complete`);
    }
    expect(problems).toEqual([]);
  });

  it('a stream cut at a section boundary says it ended before END', () => {
    const endLen = 13 + 12 + 4;
    const res = parse(small.bytes.subarray(0, small.bytes.length - endLen));
    expect(codeOf(res.error)).toBe('TRUNCATED');
    expect((res.error as Error).message).toBe('truncated stream: stream ended before END section');
  });

  it('trailing data after END is rejected, in the same chunk or later', () => {
    const one = parse(concat([small.bytes, new Uint8Array([0])]));
    expect(codeOf(one.error)).toBe('TRAILING_DATA');
    const later = parse(concat([small.bytes, new Uint8Array(10)]), [small.bytes.length]);
    expect(codeOf(later.error)).toBe('TRAILING_DATA');
    const twice = parse(concat([small.bytes, small.bytes]), [small.bytes.length + 3]);
    expect(codeOf(twice.error)).toBe('TRAILING_DATA');
  });

  it('wrong magic and wrong version are named', () => {
    const m = small.bytes.slice();
    m[0] = 0x51; // 'Q' as in QEMU's own stream magic "QEVM"
    const bm = parse(m);
    expect(codeOf(bm.error)).toBe('BAD_MAGIC');
    expect((bm.error as Error).message).toMatch(/^bad magic/);
    const v = small.bytes.slice();
    v[11] = 3;
    // re-seal the header so only the version is wrong
    const descEnd = 20 + new DataView(v.buffer).getUint32(16);
    new DataView(v.buffer).setUint32(descEnd, zcrc(v.subarray(0, descEnd)));
    const bv = parse(v);
    expect(codeOf(bv.error)).toBe('BAD_VERSION');
    expect((bv.error as Error).message).toMatch(/^unsupported stream version 3/);
  });

  it('a removed or repeated section breaks the sequence', () => {
    const head = 50;
    const ramLen = 13 + 8 + 18 + 4096 + 4;
    const dropped = concat([small.bytes.subarray(0, head), small.bytes.subarray(head + ramLen)]);
    const d = parse(dropped);
    expect(codeOf(d.error)).toBe('MALFORMED');
    expect((d.error as Error).message).toMatch(/section sequence error: expected section 1, got 2/);
    const repeated = concat([small.bytes.subarray(0, head + ramLen), small.bytes.subarray(head)]);
    expect(codeOf(parse(repeated).error)).toBe('MALFORMED');
  });

  it('the first error poisons the reader', () => {
    const b = small.bytes.slice();
    b[b.length - 1] ^= 1;
    const r = new StreamReader(() => undefined);
    let first: unknown = null;
    try {
      r.push(b);
    } catch (e) {
      first = e;
    }
    expect(codeOf(first)).toBe('CHECKSUM');
    expect(() => r.push(new Uint8Array(1))).toThrow(first as Error);
    expect(() => r.finish()).toThrow(first as Error);
    expect(r.complete).toBe(false);
  });

  it('a declared size above the limit is refused before its bytes arrive', () => {
    const r = new StreamReader(() => undefined, { maxRecordBytes: 1000 });
    let err: unknown = null;
    try {
      r.push(small.bytes.subarray(0, 50 + 13)); // header + RAM section head declaring 4134 bytes
    } catch (e) {
      err = e;
    }
    expect(codeOf(err)).toBe('LIMIT');
  });
});

/** Hand-built device records (independent of the writer) for the marker rules. */
function rec(lo: number, data?: Uint8Array): Uint8Array {
  const body = new Uint8Array(data ? 16 + data.length : 8);
  const dv = new DataView(body.buffer);
  dv.setUint32(0, 0xffffffff);
  dv.setUint32(4, lo);
  if (data) {
    dv.setBigUint64(8, BigInt(data.length));
    body.set(data, 16);
  }
  const crc = new Uint8Array(4);
  new DataView(crc.buffer).setUint32(0, zcrc(body));
  return concat([body, crc]);
}

async function deviceOpen(): Promise<Uint8Array> {
  return writeAll(async (w) => {
    await w.header(SOURCE);
    await w.beginDevice('0000:75:00.1');
  });
}

describe('device framing errors (QEMU markers, spec vfio-uapi-and-migration.md §6)', () => {
  it('an unknown marker is an unexpected marker', async () => {
    const res = parse(concat([await deviceOpen(), rec(0xef100009)]));
    expect(codeOf(res.error)).toBe('UNEXPECTED_MARKER');
    expect((res.error as Error).message).toMatch(/^unexpected marker 0xffffffffef100009 in device section 1 \(0000:75:00.1\)/);
  });

  it('DEV_SETUP_STATE after DEV_DATA_STATE is an unexpected marker', async () => {
    const res = parse(concat([await deviceOpen(), rec(0xef100004, new Uint8Array([1])), rec(0xef100003)]));
    expect(codeOf(res.error)).toBe('UNEXPECTED_MARKER');
    expect((res.error as Error).message).toMatch(/unexpected marker DEV_SETUP_STATE/);
  });

  it('a second DEV_INIT_DATA_SENT in one section is an unexpected marker', async () => {
    const res = parse(concat([await deviceOpen(), rec(0xef100005), rec(0xef100005)]));
    expect(codeOf(res.error)).toBe('UNEXPECTED_MARKER');
  });

  it('a stream cut inside DEV_DATA_STATE says how much is missing', async () => {
    const full = rec(0xef100004, patternPage(1, 4092));
    const res = parse(concat([await deviceOpen(), full.subarray(0, 16)]));
    expect(codeOf(res.error)).toBe('TRUNCATED');
    expect((res.error as Error).message).toBe('truncated stream: expected 4096 more bytes of DEV_DATA_STATE');
  });

  it('a corrupted record is a checksum mismatch naming the record and device', async () => {
    const r = rec(0xef100002, new Uint8Array([1, 2, 3]));
    r[17] ^= 0x40;
    const res = parse(concat([await deviceOpen(), r]));
    expect(codeOf(res.error)).toBe('CHECKSUM');
    expect((res.error as Error).message).toBe('checksum mismatch in DEV_CONFIG_STATE record of device section 1 (0000:75:00.1)');
  });

  it('a device section left open at the end of input is truncated', async () => {
    const res = parse(concat([await deviceOpen(), rec(0xef100004, new Uint8Array([1]))]));
    expect(codeOf(res.error)).toBe('TRUNCATED');
    expect((res.error as Error).message).toMatch(/device marker in device section 1/);
  });
});
