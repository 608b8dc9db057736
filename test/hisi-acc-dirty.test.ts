/**
 * DMA logging of an ACC VF (hisi-acc-vfio-pci.md section 8, uAPI section 5) on the IOMMU
 * domain's HTTU-like tracker: the final report after STOP holds exactly the pages the device
 * wrote (recorded independently at the function's upstream port, before the IOMMU), and at
 * least every page whose bytes changed while only the device could write; reports at larger
 * page sizes aggregate; and the type1 container's own rule (every mapped page dirty for a
 * non-pinning IOMMU-backed device).
 */
import { describe, expect, it } from 'vitest';
import type { DmaPort } from '../src/hw/dma.js';
import type { AccHost, AccVm } from '../src/drivers/hisi-acc/testbed.js';
import {
  FEATURE_GET, FEATURE_PROBE, FEATURE_SET, F_DMA_LOGGING_REPORT, F_DMA_LOGGING_START, F_DMA_LOGGING_STOP, S,
  errno, feature, rig, setState, tracker,
} from './hisi-acc-helpers.js';

const RAM = 64 * 2 ** 20;

/** Records every page the VF writes, at its upstream port (independent of the IOMMU tracker). */
function recordDeviceWrites(host: AccHost): Set<number> {
  const fn = host.vf(1).fn;
  const core = host.driver.coreOf(host.vf(1))!;
  const port: DmaPort = core.iommuDomain!.port(core.name);
  const pages = new Set<number>();
  fn.setUpstreamDma({
    read: (iova, dst) => port.read(iova, dst),
    write: (iova, src) => {
      for (let p = Math.floor(iova / 4096); p <= Math.floor((iova + src.length - 1) / 4096); p++) pages.add(p);
      return port.write(iova, src);
    },
  });
  return pages;
}

function startLogging(host: AccHost, vm: AccVm, pageSize: number, ranges: [number, number][]): { ret: number; pageSize: bigint } {
  const arr = host.user.alloc(4096);
  ranges.forEach(([iova, len], i) => {
    host.user.writeU64(arr + 16 * i, BigInt(iova));
    host.user.writeU64(arr + 16 * i + 8, BigInt(len));
  });
  const p = new Uint8Array(24);
  const dv = new DataView(p.buffer);
  dv.setBigUint64(0, BigInt(pageSize), true);
  dv.setUint32(8, ranges.length, true);
  dv.setBigUint64(16, BigInt(arr), true);
  const r = feature(vm.device, FEATURE_SET | F_DMA_LOGGING_START, p);
  return { ret: r.ret, pageSize: new DataView(r.payload.buffer, r.payload.byteOffset).getBigUint64(0, true) };
}

/** REPORT over [iova, iova+length) at `pageSize`: the set bits as page numbers of that size. */
function report(host: AccHost, vm: AccVm, iova: number, length: number, pageSize: number): { ret: number; bits: Set<number> } {
  const nbits = Math.ceil(length / pageSize);
  const bytes = Math.ceil(nbits / 64) * 8;
  const buf = host.user.alloc(Math.max(bytes, 4096));
  const p = new Uint8Array(32);
  const dv = new DataView(p.buffer);
  dv.setBigUint64(0, BigInt(iova), true);
  dv.setBigUint64(8, BigInt(length), true);
  dv.setBigUint64(16, BigInt(pageSize), true);
  dv.setBigUint64(24, BigInt(buf), true);
  const ret = feature(vm.device, FEATURE_GET | F_DMA_LOGGING_REPORT, p).ret;
  const out = host.user.copyFromUser(buf, bytes);
  const bits = new Set<number>();
  for (let i = 0; i < nbits; i++) if ((out[i >> 3]! >> (i & 7)) & 1) bits.add(i);
  host.user.unmap(buf);
  return { ret, bits };
}

function sorted(s: Iterable<number>): number[] {
  return [...s].sort((a, b) => a - b);
}

describe('device DMA logging (spec 8)', () => {
  it('is probed, started once (EBUSY twice), and stopping ends it (REPORT EINVAL)', () => {
    const { host, vm } = rig();
    expect(feature(vm!.device, FEATURE_PROBE | FEATURE_SET | F_DMA_LOGGING_START).ret).toBe(0);
    const s = startLogging(host, vm!, 4096, [[0, RAM]]);
    expect(s).toEqual({ ret: 0, pageSize: 4096n });
    const domain = host.driver.coreOf(host.vf(1))!.iommuDomain!;
    expect(domain.dirtyTracking).toBe(true);
    expect(startLogging(host, vm!, 4096, [[0, RAM]]).ret).toBe(errno('EBUSY'));
    expect(feature(vm!.device, FEATURE_SET | F_DMA_LOGGING_STOP).ret).toBe(0);
    expect(domain.dirtyTracking).toBe(false);
    expect(report(host, vm!, 0, RAM, 4096).ret).toBe(errno('EINVAL'));
  });

  it('the final report after STOP holds exactly the pages the device wrote, including the context write-back', () => {
    const { host, vm } = rig({ latencies: { processNs: 30_000 }, vm: { driver: { sqDepth: 64, cqDepth: 64 } } });
    const pages = recordDeviceWrites(host);
    expect(startLogging(host, vm!, 4096, [[0, RAM]]).ret).toBe(0);
    const t = tracker(vm!, 'zip');
    t.submit(20);
    host.sched.advance(8 * 30_000);
    // A report mid-way clears what it returns...
    const mid = report(host, vm!, 0, RAM, 4096);
    expect(mid.ret).toBe(0);
    expect(sorted(mid.bits)).toEqual(sorted(pages));
    pages.clear();
    t.submit(20);
    host.sched.advance(5 * 30_000);
    // ...then the vCPUs stop and only the device can still write guest RAM.
    vm!.io.pause();
    host.sched.advance(0);
    const mem = vm!.mem;
    const snapshot = mem.readBytes(0, RAM);
    host.sched.advance(4 * 30_000);
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    const final = report(host, vm!, 0, RAM, 4096);
    expect(final.ret).toBe(0);
    expect(pages.size).toBeGreaterThan(10);
    expect(sorted(final.bits)).toEqual(sorted(pages));
    // Every page whose bytes changed after the vCPUs stopped is in the report.
    const after = mem.readBytes(0, RAM);
    const changed: number[] = [];
    for (let p = 0; p < RAM / 4096; p++) {
      const o = p * 4096;
      if (!Buffer.from(after.buffer, after.byteOffset + o, 4096).equals(Buffer.from(snapshot.buffer, snapshot.byteOffset + o, 4096))) changed.push(p);
    }
    expect(changed.length).toBeGreaterThan(0);
    for (const p of changed) expect(final.bits.has(p)).toBe(true);
    // The SQC/CQC arrays written back at the stop are among them.
    const sqcPage = Math.floor(host.acc.qm.vf(1)!.debugSnapshot().sqcBt! / 4096);
    expect(final.bits.has(sqcPage)).toBe(true);
    // Read-and-clear: nothing is left.
    expect(report(host, vm!, 0, RAM, 4096).bits.size).toBe(0);
  });

  it('reports at 64 KiB and 2 MiB pages aggregate the 4 KiB pages the device wrote', () => {
    const { host, vm } = rig();
    const pages = recordDeviceWrites(host);
    expect(startLogging(host, vm!, 65536, [[0, RAM]]).pageSize).toBe(65536n);
    const t = tracker(vm!, 'zip');
    t.submit(6);
    vm!.accel!.drain();
    const big = report(host, vm!, 0, RAM, 65536);
    expect(sorted(big.bits)).toEqual(sorted(new Set([...pages].map((p) => Math.floor(p / 16)))));
    pages.clear();
    t.submit(6);
    vm!.accel!.drain();
    const huge = report(host, vm!, 0, RAM, 2 * 2 ** 20);
    expect(sorted(huge.bits)).toEqual(sorted(new Set([...pages].map((p) => Math.floor(p / 512)))));
    expect(t.verify().ok).toBe(12);
  });

  it('reports a sub-range with bit 0 at its start, and only what falls inside it', () => {
    const { host, vm } = rig();
    const pages = recordDeviceWrites(host);
    expect(startLogging(host, vm!, 4096, [[0, RAM]]).ret).toBe(0);
    const t = tracker(vm!, 'zip');
    t.submit(4);
    vm!.accel!.drain();
    const lo = 1 << 20;
    const len = 4 << 20;
    const r = report(host, vm!, lo, len, 4096);
    const want = [...pages].filter((p) => p >= lo / 4096 && p < (lo + len) / 4096).map((p) => p - lo / 4096);
    expect(want.length).toBeGreaterThan(0);
    expect(sorted(r.bits)).toEqual(sorted(want));
  });

  it('type1 (the container\'s job): every mapped page is dirty for this non-pinning IOMMU-backed VF', () => {
    const { host, vm } = rig({ vm: { start: false } });
    const c = vm!.link.container;
    expect(c.startDirtyTracking()).toBe(0);
    const bytes = RAM / 4096 / 8;
    const buf = host.user.alloc(bytes);
    expect(c.getDirtyBitmap(0, RAM, { pgsize: 4096, size: bytes, data: buf })).toBe(0);
    const bm = host.user.copyFromUser(buf, bytes);
    expect(bm.every((b) => b === 0xff)).toBe(true);
    expect(c.stopDirtyTracking()).toBe(0);
  });
});
