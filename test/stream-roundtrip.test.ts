import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  DeviceMarker,
  STREAM_F_PRECOPY,
  StreamError,
  StreamWriter,
  forEachRamPage,
  readStream,
} from '../src/vmm/stream/index.js';
import type { SourceDescription, StreamEvent } from '../src/vmm/stream/index.js';
import { SOURCE, concat, parse, patternPage, writeAll, zcrc } from './stream-helpers.js';

type PageModel = { pfn: number; kind: 'zero' | 'pattern' | 'one-byte'; seed: number };
type SecModel =
  | { k: 'ram'; iterBump: number; pages: PageModel[] }
  | { k: 'dev'; name: string; instance: number; version: number; body: 'empty' | 'setup' | 'config' | 'data'; blobs: Uint8Array[]; initAt: number };

function pageBytes(p: PageModel, size: number): Uint8Array {
  if (p.kind === 'zero') return new Uint8Array(size);
  if (p.kind === 'pattern') return patternPage(p.seed, size);
  const b = new Uint8Array(size);
  b[p.seed % size] = 1 + (p.seed % 255); // zero except one byte: must not be taken for a zero page
  return b;
}

const pageArb = fc.record({
  pfn: fc.nat(63),
  kind: fc.constantFrom('zero' as const, 'pattern' as const, 'one-byte' as const),
  seed: fc.nat(100_000),
});
const secArb: fc.Arbitrary<SecModel> = fc.oneof(
  fc.record({ k: fc.constant('ram' as const), iterBump: fc.nat(2), pages: fc.array(pageArb, { maxLength: 5 }) }),
  fc.record({
    k: fc.constant('dev' as const),
    name: fc.constantFrom('0000:75:00.1', '0000:76:00.2', 'hisi-zip-vf'),
    instance: fc.nat(3),
    version: fc.constantFrom(1, 2, 0xffffffff),
    body: fc.constantFrom('empty' as const, 'setup' as const, 'config' as const, 'data' as const),
    blobs: fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 4 }),
    initAt: fc.integer({ min: -1, max: 4 }),
  }),
);

async function build(source: SourceDescription, secs: SecModel[]): Promise<Uint8Array> {
  return writeAll(async (w) => {
    await w.header(source, STREAM_F_PRECOPY);
    let iter = 0;
    for (const s of secs) {
      if (s.k === 'ram') {
        iter += s.iterBump;
        const contents = concat(s.pages.map((p) => pageBytes(p, source.pageSize)));
        await w.ram(iter, s.pages.map((p) => p.pfn), contents);
        continue;
      }
      await w.beginDevice(s.name, { instance: s.instance, version: s.version });
      if (s.body === 'setup') await w.deviceSetup();
      if (s.body === 'config') await w.deviceConfig(s.blobs[0] ?? new Uint8Array(0));
      if (s.body === 'data') {
        for (let i = 0; i < s.blobs.length; i++) {
          if (i === s.initAt) await w.deviceInitDataSent();
          await w.deviceData(s.blobs[i]!);
        }
        if (s.initAt >= s.blobs.length) await w.deviceInitDataSent();
      }
      await w.endDevice();
    }
    await w.end();
  });
}

/** The events a reader must report for the model, derived from the model alone. */
function expectedEvents(source: SourceDescription, secs: SecModel[]): unknown[] {
  const out: unknown[] = [{ type: 'header', header: { version: 1, flags: STREAM_F_PRECOPY, source } }];
  let seq = 0;
  let iter = 0;
  for (const s of secs) {
    seq++;
    if (s.k === 'ram') {
      iter += s.iterBump;
      out.push({
        type: 'ram',
        seq,
        iteration: iter,
        pages: s.pages.map((p) => {
          const b = pageBytes(p, source.pageSize);
          return { pfn: p.pfn, zero: b.every((x) => x === 0), bytes: Array.from(b.subarray(0, 16)), sum: b.reduce((a, x) => a + x, 0) };
        }),
      });
      continue;
    }
    out.push({ type: 'device-begin', seq, name: s.name, instance: s.instance, version: s.version });
    if (s.body === 'setup') out.push({ type: 'device-setup', seq, name: s.name });
    if (s.body === 'config') out.push({ type: 'device-config', seq, name: s.name, data: Array.from(s.blobs[0] ?? []) });
    if (s.body === 'data') {
      for (let i = 0; i < s.blobs.length; i++) {
        if (i === s.initAt) out.push({ type: 'device-init-data-sent', seq, name: s.name });
        out.push({ type: 'device-data', seq, name: s.name, data: Array.from(s.blobs[i]!) });
      }
      if (s.initAt >= s.blobs.length) out.push({ type: 'device-init-data-sent', seq, name: s.name });
    }
    out.push({ type: 'device-end', seq, name: s.name });
  }
  out.push({ type: 'end', seq: seq + 1, sections: seq });
  return out;
}

/** Events in a comparable shape (RAM pages expanded, byte arrays as plain arrays). */
function normalise(events: StreamEvent[]): unknown[] {
  return events.map((e) => {
    switch (e.type) {
      case 'ram': {
        const pages: unknown[] = [];
        forEachRamPage(e, (pfn, page) => {
          const b = page ?? new Uint8Array(e.pageSize);
          pages.push({ pfn, zero: page === null, bytes: Array.from(b.subarray(0, 16)), sum: b.reduce((a, x) => a + x, 0) });
        });
        return { type: 'ram', seq: e.seq, iteration: e.iteration, pages };
      }
      case 'device-config':
      case 'device-data':
        return { ...e, data: Array.from(e.data) };
      case 'end':
        return { type: 'end', seq: e.seq, sections: e.sections };
      default:
        return e;
    }
  });
}

describe('migration stream round trip', () => {
  it('random sections survive random chunk splits', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(secArb, { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.constantFrom(4096, 8192),
        async (secs, cutSeeds, pageSize) => {
          const source = { ...SOURCE, pageSize, ramBytes: 64 * pageSize, deviceIds: [0xa251, 0xa259] };
          const bytes = await build(source, secs);
          const cuts = [...new Set(cutSeeds.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const res = parse(bytes, cuts);
          expect(res.error).toBeUndefined();
          expect(normalise(res.events)).toEqual(expectedEvents(source, secs));
          expect(res.summary!.bytes).toBe(bytes.length);
          expect(res.summary!.sections).toBe(secs.length + 1);
        },
      ),
      { numRuns: 120 },
    );
  });

  it('a stream delivered one byte at a time parses identically', async () => {
    const secs: SecModel[] = [
      { k: 'ram', iterBump: 0, pages: [{ pfn: 1, kind: 'pattern', seed: 5 }, { pfn: 2, kind: 'zero', seed: 0 }] },
      { k: 'dev', name: 'vf0', instance: 0, version: 1, body: 'data', blobs: [new Uint8Array([9, 8, 7])], initAt: 1 },
    ];
    const bytes = await build(SOURCE, secs);
    const cuts = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
    const res = parse(bytes, cuts);
    expect(res.error).toBeUndefined();
    expect(normalise(res.events)).toEqual(expectedEvents(SOURCE, secs));
  });

  it('readStream awaits an async consumer in order and returns the summary', async () => {
    const contents = concat([new Uint8Array(4096), patternPage(1), patternPage(2)]);
    const bytes = await writeAll(async (w) => {
      await w.header(SOURCE);
      await w.ram(0, [10, 11, 12], contents);
      await w.beginDevice('vf');
      await w.deviceData(new Uint8Array(5000).fill(7));
      await w.endDevice();
      await w.end();
    });
    async function* source() {
      for (let i = 0; i < bytes.length; i += 777) yield bytes.subarray(i, i + 777);
    }
    const seen: string[] = [];
    const summary = await readStream(source(), async (ev) => {
      await Promise.resolve();
      seen.push(ev.type);
    });
    expect(seen).toEqual(['header', 'ram', 'device-begin', 'device-data', 'device-end', 'end']);
    expect(summary.ramPages).toBe(3);
    expect(summary.zeroPages).toBe(1);
    expect(summary.deviceDataBytes).toBe(5000);
    expect(summary.bytes).toBe(bytes.length);
  });

  it('zero pages are sent as flags only', async () => {
    const allZero = await writeAll(async (w) => {
      await w.header(SOURCE);
      await w.ram(0, [0, 1, 2, 3], new Uint8Array(4 * 4096));
      await w.end();
    });
    const oneData = await writeAll(async (w) => {
      await w.header(SOURCE);
      await w.ram(0, [0, 1, 2, 3], concat([new Uint8Array(3 * 4096), patternPage(4)]));
      await w.end();
    });
    expect(oneData.length - allZero.length).toBe(4096);
    expect(allZero.length).toBeLessThan(200);
  });
});

describe('RAM sections built in place (StreamWriter.ramFrom)', () => {
  /** A page source over `pages` (pfn, bytes); keepZero decides per pfn. */
  function pagesOf(pages: { pfn: number; bytes: Uint8Array }[], keep: (pfn: number) => boolean = () => true) {
    let i = 0;
    const asked: number[] = [];
    return {
      asked,
      next(dst: Uint8Array): number {
        const p = pages[i++];
        if (!p) return -1;
        dst.set(p.bytes);
        return p.pfn;
      },
      keepZero(pfn: number): boolean {
        asked.push(pfn);
        return keep(pfn);
      },
    };
  }

  it('writes the same bytes as ram() for the same pages, split into sections of at most maxPages', async () => {
    // header and END alone: what is not RAM sections
    const empty = await writeAll(async (w) => {
      await w.header(SOURCE, STREAM_F_PRECOPY);
      await w.end();
    });
    await fc.assert(
      fc.asyncProperty(fc.array(pageArb, { maxLength: 12 }), fc.integer({ min: 1, max: 5 }), async (model, max) => {
        const pages = model.map((p) => ({ pfn: p.pfn, bytes: pageBytes(p, 4096) }));
        const viaRam = await writeAll(async (w) => {
          await w.header(SOURCE, STREAM_F_PRECOPY);
          for (let at = 0; at < pages.length; at += max) {
            const part = pages.slice(at, at + max);
            await w.ram(1, part.map((p) => p.pfn), concat(part.map((p) => p.bytes)));
          }
          await w.end();
        });
        const results: number[][] = [];
        const inPlace = await writeAll(async (w) => {
          await w.header(SOURCE, STREAM_F_PRECOPY);
          const src = pagesOf(pages);
          for (;;) {
            const r = w.ramFrom(1, max, src);
            await r.sent;
            if (r.pages === 0) break;
            results.push([r.pages, r.zeroPages, r.bytes]);
          }
          await w.end();
        });
        expect(Buffer.from(inPlace).equals(Buffer.from(viaRam))).toBe(true);
        // what each call reports matches the pages it took
        expect(results.reduce((n, r) => n + r[0]!, 0)).toBe(pages.length);
        expect(results.reduce((n, r) => n + r[1]!, 0)).toBe(model.filter((p) => p.kind === 'zero').length);
        expect(results.reduce((n, r) => n + r[2]!, 0)).toBe(inPlace.length - empty.length);
      }),
      { numRuns: 60 },
    );
  });

  it('a zero page the reader does not need is left out; one it needs becomes a zero entry', async () => {
    const pages = [
      { pfn: 4, bytes: patternPage(4) },
      { pfn: 5, bytes: new Uint8Array(4096) },
      { pfn: 6, bytes: new Uint8Array(4096) },
      { pfn: 7, bytes: patternPage(7) },
    ];
    const src = pagesOf(pages, (pfn) => pfn === 6);
    let r: ReturnType<StreamWriter['ramFrom']> | null = null;
    const bytes = await writeAll(async (w) => {
      await w.header(SOURCE);
      r = w.ramFrom(0, 8, src);
      await r.sent;
      await w.end();
    });
    expect(src.asked).toEqual([5, 6]);
    expect([r!.pages, r!.zeroPages]).toEqual([3, 1]);
    const res = parse(bytes);
    expect(res.error).toBeUndefined();
    const ram = res.events.filter((e) => e.type === 'ram');
    expect(ram.length).toBe(1);
    const got: [number, number[] | null][] = [];
    forEachRamPage(ram[0] as Extract<StreamEvent, { type: 'ram' }>, (pfn, page) => got.push([pfn, page ? [page[0]!, page[4095]!] : null]));
    expect(got).toEqual([[4, [patternPage(4)[0]!, patternPage(4)[4095]!]], [6, null], [7, [patternPage(7)[0]!, patternPage(7)[4095]!]]]);
  });

  it('writes nothing when the source has no page, and refuses what ram() refuses', async () => {
    const bytes = await writeAll(async (w) => {
      await w.header(SOURCE);
      const r = w.ramFrom(0, 4, pagesOf([]));
      await r.sent;
      expect([r.pages, r.bytes]).toEqual([0, 0]);
      await w.end();
    });
    expect(parse(bytes).summary!.sections).toBe(1);
    const w = new StreamWriter(() => undefined);
    await expect(w.ramFrom(0, 1, pagesOf([])).sent).rejects.toThrow(/before the header/);
    await w.header(SOURCE);
    await expect(w.ramFrom(1, 1, pagesOf([])).sent).rejects.toThrow(/PRECOPY/);
    await expect(w.ramFrom(0, 1, pagesOf([{ pfn: 64, bytes: patternPage(1) }])).sent).rejects.toThrow(/outside guest RAM/);
  });
});

describe('stream byte layout (format.ts, spec vfio-uapi-and-migration.md §6 markers)', () => {
  it('header: magic, be32 version 1, be32 flags, description, CRC-32', async () => {
    const bytes = await writeAll(async (w) => {
      await w.header(SOURCE, STREAM_F_PRECOPY);
      await w.end();
    });
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe('HACCMIG\n');
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    expect(dv.getUint32(8)).toBe(1);
    expect(dv.getUint32(12)).toBe(STREAM_F_PRECOPY);
    const descLen = dv.getUint32(16);
    expect(descLen).toBe(1 + 3 + 4 + 2 + 2 + 2 + 8 + 4);
    expect(Array.from(bytes.subarray(20, 24))).toEqual([3, 0x7a, 0x69, 0x70]); // "zip"
    expect(dv.getUint32(24)).toBe(0x30);
    expect(dv.getUint16(28)).toBe(0x19e5);
    expect(dv.getUint16(30)).toBe(1);
    expect(dv.getUint16(32)).toBe(0xa251);
    expect(dv.getBigUint64(34)).toBe(BigInt(64 * 4096));
    expect(dv.getUint32(42)).toBe(4096);
    expect(dv.getUint32(46)).toBe(zcrc(bytes.subarray(0, 46)));
    // END section: kind 0x7f, seq 1, len 12, head CRC, payload (0 sections, 50 bytes), CRC
    const end = bytes.subarray(50);
    expect(end.length).toBe(13 + 12 + 4);
    const ev = new DataView(end.buffer, end.byteOffset);
    expect(end[0]).toBe(0x7f);
    expect(ev.getUint32(1)).toBe(1);
    expect(ev.getUint32(5)).toBe(12);
    expect(ev.getUint32(9)).toBe(zcrc(end.subarray(0, 9)));
    expect(ev.getUint32(13)).toBe(0);
    expect(ev.getBigUint64(17)).toBe(50n);
    expect(ev.getUint32(25)).toBe(zcrc(end.subarray(13, 25)));
  });

  it('device records use the QEMU be64 markers, DEV_DATA_STATE followed by be64 size', async () => {
    const head = await writeAll(async (w) => {
      await w.header(SOURCE);
    });
    const bytes = await writeAll(async (w) => {
      await w.header(SOURCE);
      await w.beginDevice('ab', { instance: 2, version: 7 });
      await w.deviceData(new Uint8Array([0xde, 0xad]));
      await w.deviceInitDataSent();
      await w.endDevice();
    });
    const sec = bytes.subarray(head.length);
    const dv = new DataView(sec.buffer, sec.byteOffset);
    expect(sec[0]).toBe(0x02);
    expect(dv.getUint32(5)).toBe(1 + 2 + 8);
    expect(Array.from(sec.subarray(13, 16))).toEqual([2, 0x61, 0x62]);
    expect(dv.getUint32(16)).toBe(2);
    expect(dv.getUint32(20)).toBe(7);
    const rec = sec.subarray(13 + 11 + 4);
    const rv = new DataView(rec.buffer, rec.byteOffset);
    expect(rv.getBigUint64(0)).toBe(DeviceMarker.DEV_DATA_STATE);
    expect(rv.getBigUint64(0)).toBe(0xffffffffef100004n);
    expect(rv.getBigUint64(8)).toBe(2n);
    expect(Array.from(rec.subarray(16, 18))).toEqual([0xde, 0xad]);
    expect(rv.getUint32(18)).toBe(zcrc(rec.subarray(0, 18)));
    expect(rv.getBigUint64(22)).toBe(0xffffffffef100005n);
    expect(rv.getUint32(30)).toBe(zcrc(rec.subarray(22, 30)));
    expect(rv.getBigUint64(34)).toBe(0xffffffffef100001n);
    expect(rv.getUint32(42)).toBe(zcrc(rec.subarray(34, 42)));
    expect(rec.length).toBe(46);
  });
});

describe('stream writer', () => {
  it('splits device data above the record limit; the reader reassembles it in order', async () => {
    const blob = patternPage(3, 2500);
    const bytes = await writeAll(async (w) => {
      await w.header(SOURCE);
      await w.beginDevice('vf');
      await w.deviceData(blob);
      await w.endDevice();
      await w.end();
    }, 1000);
    const res = parse(bytes, [], 1000);
    expect(res.error).toBeUndefined();
    const parts = res.events.filter((e) => e.type === 'device-data').map((e) => (e as { data: Uint8Array }).data);
    expect(parts.map((p) => p.length)).toEqual([1000, 1000, 500]);
    expect(concat(parts)).toEqual(blob);
  });

  it('rejects out-of-order use and bad arguments with USAGE errors', async () => {
    const w = new StreamWriter(() => undefined);
    const usage = async (p: Promise<void>, re: RegExp) => {
      const e = await p.then(() => null, (x: unknown) => x);
      expect(e).toBeInstanceOf(StreamError);
      expect((e as StreamError).code).toBe('USAGE');
      expect((e as StreamError).message).toMatch(re);
    };
    await usage(w.ram(0, [], new Uint8Array(0)), /before the header/);
    await usage(w.header({ ...SOURCE, pageSize: 3000 }), /page size/);
    await usage(w.header(SOURCE, 0x80), /unknown stream flags/);
    await w.header(SOURCE);
    await usage(w.header(SOURCE), /already/);
    await usage(w.ram(1, [0], new Uint8Array(4096)), /PRECOPY/);
    await usage(w.ram(0, [64], new Uint8Array(4096)), /outside guest RAM/);
    await usage(w.ram(0, [1], new Uint8Array(100)), /bytes of contents/);
    await usage(w.deviceData(new Uint8Array(1)), /outside a device section/);
    await w.beginDevice('vf');
    await usage(w.ram(0, [], new Uint8Array(0)), /inside the open device section/);
    await w.deviceData(new Uint8Array(1));
    await usage(w.deviceSetup(), /only record/);
    await usage(w.deviceConfig(new Uint8Array(1)), /only record/);
    await w.deviceInitDataSent();
    await usage(w.deviceInitDataSent(), /twice/);
    await w.endDevice();
    await w.end();
    await usage(w.end(), /after END/);
  });

  it('a failing sink fails that call and every later one', async () => {
    let calls = 0;
    const w = new StreamWriter(() => {
      calls++;
      if (calls === 2) throw new Error('disk full');
    });
    await w.header(SOURCE);
    await expect(w.ram(0, [1], patternPage(1))).rejects.toThrow('disk full');
    await expect(w.end()).rejects.toThrow('disk full');
    expect(calls).toBe(2);
  });

  it('keeps chunk order when calls are not awaited and the sink is slow', async () => {
    const got: Uint8Array[] = [];
    const w = new StreamWriter(async (c) => {
      await new Promise<void>((r) => setImmediate(r));
      got.push(c);
    });
    void w.header(SOURCE);
    void w.ram(0, [5], patternPage(5));
    void w.beginDevice('x');
    void w.deviceData(new Uint8Array([1]));
    void w.endDevice();
    await w.end();
    const res = parse(concat(got));
    expect(res.error).toBeUndefined();
    expect(res.events.map((e) => e.type)).toEqual(['header', 'ram', 'device-begin', 'device-data', 'device-end', 'end']);
  });
});
