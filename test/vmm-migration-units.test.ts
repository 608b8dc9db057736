/**
 * The orchestrator's parts one by one: the RAM sender against the stream reader (property
 * test), the device uAPI helpers on a real hisi-acc-vfio-pci VF, the recovery ladder
 * (RUNNING, else VFIO_DEVICE_RESET + RUNNING) on a device that refuses, DMA-logging dirty
 * pages against an independent RAM diff, the return path, the timeline, option parsing.
 */
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseSize, scenarioFrom, UsageError } from '../src/cli/demo.js';
import { parseTarget } from '../src/cli/migrate.js';
import { Bitmap } from '../src/mem/bitmap.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { readU32 } from '../src/uapi/codec.js';
import { Errno, KernelError } from '../src/uapi/errno.js';
import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_RESET,
  VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP_COPY, VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
} from '../src/uapi/vfio.js';
import { FdTable, VfioFile } from '../src/vfio/fd.js';
import { StreamReader } from '../src/vmm/stream/reader.js';
import { StreamWriter } from '../src/vmm/stream/writer.js';
import { forEachRamPage, STREAM_F_PRECOPY } from '../src/vmm/stream/format.js';
import { createPipePair } from '../src/vmm/transport/in-process.js';
import { openSaver, probeProtocol } from '../src/vmm/migration/device-channel.js';
import { findRegion, getMigState, migDataSize, migrationFlags, probeFeature, setMigState } from '../src/vmm/migration/device-uapi.js';
import { DirtyTracker } from '../src/vmm/migration/dirty-tracker.js';
import { resolveMigrationOptions, transferNs } from '../src/vmm/migration/options.js';
import { RamSender } from '../src/vmm/migration/ram-sender.js';
import type { SourceReport } from '../src/vmm/migration/report-types.js';
import { encodeMessage, ReturnPathReader } from '../src/vmm/migration/return-path.js';
import { buildTimeline, timelineSvg } from '../src/vmm/migration/timeline.js';
import { pair } from './vmm-migration-helpers.js';

const PAGE = 4096;

describe('RamSender against an independent stream reader', () => {
  /** Applies a stream to `dst` the way a destination does. */
  async function transfer(pages: number, rounds: { writes: [number, number][]; zeroes: number[] }[]) {
    const src = new SparseMemory(pages * PAGE);
    const dst = new SparseMemory(pages * PAGE);
    const chunks: Uint8Array[] = [];
    const writer = new StreamWriter((c) => void chunks.push(c));
    await writer.header({ engine: 'zip', hwVersion: 0x30, vendorId: 0x19e5, deviceIds: [], ramBytes: pages * PAGE, pageSize: PAGE }, STREAM_F_PRECOPY);
    const sender = new RamSender(src, pages, writer, 3);
    const pending = new Bitmap(pages);
    const sentPerRound: number[][] = [];
    for (let r = 0; r < rounds.length; r++) {
      for (const [pg, byte] of rounds[r]!.writes) {
        src.fill(pg * PAGE + (byte % 97), 1 + (byte % 50), byte);
        pending.set(pg);
      }
      for (const pg of rounds[r]!.zeroes) {
        src.fill(pg * PAGE, PAGE, 0);
        pending.set(pg);
      }
      const before = chunks.length;
      await sender.send(pending, r);
      const sent: number[] = [];
      sentPerRound.push(sent);
      for (const c of chunks.slice(before)) {
        // RAM sections (format.ts): 13-byte head, be32 iteration, be32 count, 9-byte entries
        const dv = new DataView(c.buffer, c.byteOffset, c.length);
        const count = dv.getUint32(13 + 4);
        for (let i = 0; i < count; i++) sent.push(dv.getUint32(13 + 8 + i * 9 + 4));
      }
      expect(pending.popcount()).toBe(0);
    }
    await writer.end();
    const reader = new StreamReader((ev) => {
      if (ev.type !== 'ram') return;
      forEachRamPage(ev, (pfn, page) => {
        if (page) dst.write(pfn * PAGE, page);
        else dst.fill(pfn * PAGE, PAGE, 0);
      });
    });
    for (const c of chunks) reader.push(c);
    reader.finish();
    return { src, dst, sentPerRound };
  }

  it('property: after any sequence of writes and zeroings, the destination equals the source', async () => {
    const pages = 40;
    const round = fc.record({
      writes: fc.array(fc.tuple(fc.integer({ min: 0, max: pages - 1 }), fc.integer({ min: 1, max: 255 })), { maxLength: 20 }),
      zeroes: fc.array(fc.integer({ min: 0, max: pages - 1 }), { maxLength: 6 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(round, { minLength: 1, maxLength: 6 }), async (rounds) => {
        const { src, dst } = await transfer(pages, rounds);
        const a = Buffer.alloc(PAGE);
        const b = Buffer.alloc(PAGE);
        for (let p = 0; p < pages; p++) {
          src.copyPage(p, a);
          dst.copyPage(p, b);
          expect(b.equals(a)).toBe(true);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('zero pages the destination already has are not sent; a page zeroed after being sent is', async () => {
    const { sentPerRound } = await transfer(16, [
      { writes: [[2, 7]], zeroes: [5] }, // page 5 was never non-zero: nothing to send for it
      { writes: [], zeroes: [2] }, // page 2 went back to zero: the destination must hear it
      { writes: [], zeroes: [2] }, // and once it has, not again
    ]);
    expect(sentPerRound).toEqual([[2], [2], []]);
  });
});

describe('device uAPI on a hisi-acc-vfio-pci VF (vfio-uapi-and-migration.md sections 2-5)', () => {
  it('v2: MIGRATION flags STOP_COPY|PRE_COPY, MIG_DATA_SIZE 176, DMA logging offered (hisi-acc section 6, 8)', () => {
    const p = pair({ workload: false });
    const dev = p.source.device;
    expect(migrationFlags(dev)).toBe(1 | 4);
    expect(migDataSize(dev)).toBe(176);
    expect(probeFeature(dev, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET)).toBe(0);
    expect(getMigState(dev)).toBe(VFIO_DEVICE_STATE_RUNNING);
    expect(probeProtocol(p.source.devices[0]!).protocol).toBe('v2');
  });

  it('v1: the migration region is type 3 / subtype 1, 32 + 176 bytes, read/write, no mmap (hisi-acc section 7)', () => {
    const p = pair({ protocol: 'v1', workload: false });
    const r = findRegion(p.source.device, 3, 1)!;
    expect(r.size).toBe(32 + 176);
    expect(r.flags & (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP)).toBe(3);
    expect(migrationFlags(p.source.device)).toBe(-Errno.ENOTTY);
    expect(probeProtocol(p.source.devices[0]!).protocol).toBe('v1');
  });

  it('setMigState returns the data fd of PRE_COPY; the data starts with the V2 magic', () => {
    const p = pair({ workload: false });
    const r = setMigState(p.source.device, VFIO_DEVICE_STATE_PRE_COPY);
    expect(r.ret).toBe(0);
    const f = p.source.process.fds.get(r.dataFd)!;
    const b = new Uint8Array(64);
    expect(f.read(b)).toBe(40);
    expect(Buffer.from(b.subarray(0, 8)).readBigUInt64LE()).toBe(0xaaccfeeddecadeden); // hisi-acc section 3
    expect(setMigState(p.source.device, VFIO_DEVICE_STATE_RUNNING).ret).toBe(0);
  });
});

/** A v2 device that refuses RUNNING once (going to ERROR, spec 3), and recovers with a reset. */
class RefusingDevice extends VfioFile {
  state = VFIO_DEVICE_STATE_RUNNING;
  refuse = 1;
  resets = 0;
  protected override doIoctl(request: number, arg?: Uint8Array | number): number | void {
    if (request === VFIO_DEVICE_RESET) {
      this.resets++;
      this.state = VFIO_DEVICE_STATE_RUNNING;
      return 0;
    }
    if (request !== VFIO_DEVICE_FEATURE || !(arg instanceof Uint8Array)) throw new KernelError('ENOTTY');
    const flags = readU32(arg, 4);
    const dv = new DataView(arg.buffer, arg.byteOffset);
    switch (flags & VFIO_DEVICE_FEATURE_MASK) {
      case VFIO_DEVICE_FEATURE_MIGRATION:
        dv.setUint32(8, 1, true); // STOP_COPY only
        return 0;
      case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
        if (flags & VFIO_DEVICE_FEATURE_GET) {
          dv.setUint32(8, this.state, true);
          return 0;
        }
        if (dv.getUint32(8, true) === VFIO_DEVICE_STATE_RUNNING && this.refuse > 0) {
          this.refuse--;
          this.state = 0; // ERROR
          throw new KernelError('EIO');
        }
        this.state = dv.getUint32(8, true);
        dv.setInt32(12, -1, true);
        return 0;
      default:
        throw new KernelError('ENOTTY');
    }
  }
}

describe('recovery ladder (spec 3 and 6: RUNNING, else VFIO_DEVICE_RESET then RUNNING)', () => {
  it('a device that refuses RUNNING is reset and ends RUNNING', () => {
    const file = new RefusingDevice();
    const saver = openSaver({ dev: { name: 'stub', fd: 3, file }, fds: new FdTable(), scheduler: new Scheduler() }, true);
    saver.stopCopy();
    expect(file.state).toBe(VFIO_DEVICE_STATE_STOP_COPY);
    const note = saver.recover();
    expect(note).toMatch(/failed \(EIO\); VFIO_DEVICE_RESET and RUNNING/);
    expect(file.resets).toBe(1);
    expect(file.state).toBe(VFIO_DEVICE_STATE_RUNNING);
  });

  it('a device that goes back to RUNNING is not reset', () => {
    const file = new RefusingDevice();
    file.refuse = 0;
    const saver = openSaver({ dev: { name: 'stub', fd: 3, file }, fds: new FdTable(), scheduler: new Scheduler() }, true);
    saver.stopCopy();
    expect(saver.recover()).toBe('stub: STOP_COPY -> RUNNING');
    expect(file.resets).toBe(0);
  });
});

describe('DMA logging dirty pages (hisi-acc section 8) against an independent RAM diff', () => {
  it('every page the device changed while the vCPUs were stopped is reported', () => {
    const p = pair();
    const ep = p.source;
    const t = new DirtyTracker(ep, 'dma-logging');
    expect(t.mode).toBe('dma-logging');
    t.start();
    // jobs queued, guest stopped: from here on only the device writes RAM
    ep.workload!.pump(6);
    ep.vm.pauseVcpus();
    // the guest's own stores so far (SQEs, inputs) are CPU writes: collect and forget them
    t.sync();
    t.pending.clearAll();
    const snap = new Map<number, Buffer>();
    ep.vm.ram.forEachBackedPage((pg) => {
      const b = Buffer.alloc(PAGE);
      ep.vm.ram.copyPage(pg, b);
      snap.set(pg, b);
    });
    p.sched.advance(2_000_000);
    const changed: number[] = [];
    const cur = Buffer.alloc(PAGE);
    ep.vm.ram.forEachBackedPage((pg) => {
      ep.vm.ram.copyPage(pg, cur);
      const old = snap.get(pg) ?? Buffer.alloc(PAGE);
      if (!cur.equals(old)) changed.push(pg);
    });
    expect(changed.length).toBeGreaterThan(0);
    const s = t.sync();
    expect(s.ringEntries).toBe(0);
    const reported: number[] = [];
    t.pending.forEachSet((i) => reported.push(i));
    for (const pg of changed) expect(reported).toContain(pg);
    // the report is of device writes only, a small set, not all of RAM
    expect(reported.length).toBeLessThan(t.pages / 100);
    t.stop();
    ep.vm.resumeVcpus();
  });
});

describe('return path', () => {
  it('a result split across chunks is read; the connection then ends cleanly', async () => {
    const [a, b] = createPipePair();
    const r = new ReturnPathReader(a);
    const msg = encodeMessage({ t: 'result', report: { ok: true, started: true } as never });
    await b.send(msg.subarray(0, 5));
    await b.send(msg.subarray(5));
    await b.end();
    const got = await r.result;
    expect(got).toMatchObject({ ok: true, started: true });
    expect(r.error).toBeNull();
  });

  it('a connection that breaks without a result gives null and keeps the error', async () => {
    const [a, b] = createPipePair();
    const r = new ReturnPathReader(a);
    b.abort('gone');
    expect(await r.result).toBeNull();
    expect(String(r.error)).toMatch(/reset/);
  });
});

describe('timeline', () => {
  const report = {
    ok: true,
    phases: [
      { name: 'setup', side: 'source', startNs: 1000, endNs: 1000, wallUs: 1 },
      { name: 'precopy', side: 'source', startNs: 1000, endNs: 4000, wallUs: 1 },
      { name: 'stop', side: 'source', startNs: 4000, endNs: 4100, wallUs: 1 },
      { name: 'stop-copy', side: 'source', startNs: 4100, endNs: 4300, wallUs: 1 },
      { name: 'transfer', side: 'source', startNs: 4300, endNs: 4800, wallUs: 0 },
    ],
    iterations: [
      { index: 0, pages: 100, zeroPages: 0, bytes: 409600, deviceBytes: 0, dirtyAfter: 50, deviceDirtyAfter: 1, startNs: 1000, endNs: 3000, wallUs: 1 },
      { index: 1, pages: 50, zeroPages: 0, bytes: 204800, deviceBytes: 0, dirtyAfter: 10, deviceDirtyAfter: 1, startNs: 3000, endNs: 4000, wallUs: 1 },
    ],
    downtime: { sourceNs: 300, transferNs: 500, destinationNs: 250, totalNs: 1050, sourceWallUs: 1, destinationWallUs: 1 },
    destination: { phases: [
      { name: 'receive', side: 'destination', startNs: 0, endNs: 9000, wallUs: 1 },
      { name: 'load', side: 'destination', startNs: 9000, endNs: 9200, wallUs: 1 },
      { name: 'switchover', side: 'destination', startNs: 9300, endNs: 9350, wallUs: 1 },
    ] },
    final: { pages: 10 },
    totalNs: 3850,
    downtimeLimitNs: 500_000,
    dirtyMode: 'dma-logging',
  } as unknown as SourceReport;

  it('lays the destination after the link transfer: downtime = stop .. destination RUNNING', () => {
    const tl = buildTimeline(report);
    // relative to the first phase (1000 ns): stop at 3000, stop-copy ends 3300, link 500, load 200, switchover 50
    expect(tl.downtime).toEqual({ startNs: 3000, endNs: 3300 + 500 + 200 + 50 });
    expect(tl.downtime!.endNs - tl.downtime!.startNs).toBe(report.downtime!.totalNs);
    expect(tl.spans.find((s) => s.name === 'transfer')).toEqual({ name: 'transfer', lane: 'link', startNs: 3300, endNs: 3800 });
    expect(tl.bars.map((b) => [b.startNs, b.endNs, b.pages])).toEqual([[0, 2000, 100], [2000, 3000, 50]]);
  });

  it('the SVG has one bar per pass, the tallest for the most pages', () => {
    const svg = timelineSvg(report, 'test <&>');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('test &lt;&amp;&gt;');
    const bars = [...svg.matchAll(/<rect [^>]*fill="#4c8bf5"><title>pass (\d+): (\d+) pages/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(bars).toEqual([[0, 100], [1, 50]]);
    const heights = [...svg.matchAll(/height="([\d.]+)" fill="#4c8bf5"><title>pass/g)].map((m) => Number(m[1]));
    expect(heights[0]).toBeCloseTo(2 * heights[1]!, 5);
  });
});

describe('options', () => {
  it('sizes, targets and limits', () => {
    expect(parseSize('64M')).toBe(64 * 2 ** 20);
    expect(parseSize('1G')).toBe(2 ** 30);
    expect(parseSize('4GiB')).toBe(4 * 2 ** 30);
    expect(() => parseSize('1M')).toThrow(UsageError);
    expect(() => parseSize('12345')).toThrow(/4 KiB pages/);
    expect(() => parseSize('lots')).toThrow(/bad size/);
    expect(parseTarget('127.0.0.1:4444')).toEqual({ host: '127.0.0.1', port: 4444 });
    expect(parseTarget('4444')).toEqual({ host: '127.0.0.1', port: 4444 });
    expect(parseTarget('unix:/tmp/x.sock')).toEqual({ path: '/tmp/x.sock' });
    expect(() => parseTarget('host:99999')).toThrow(/out of range/);
    expect(() => scenarioFrom({ engine: 'gpu' })).toThrow(/--engine must be one of/);
    expect(() => scenarioFrom({ vfs: '64' })).toThrow(/--vfs/);
    expect(scenarioFrom({ bandwidth: '10', downtimeLimit: '300' })).toMatchObject({ bandwidthBytesPerSec: 1.25e9, downtimeLimitNs: 300_000 });
    expect(() => resolveMigrationOptions({ maxIterations: 0 })).toThrow(RangeError);
    expect(() => resolveMigrationOptions({ dirty: 'iommufd' as never })).toThrow(/dma-logging or type1/);
    // 1 MiB at 25 Gbit/s: 2^20 * 8 / 25e9 s = 335.5 us
    expect(transferNs(2 ** 20, 25e9 / 8)).toBe(335545);
  });
});
