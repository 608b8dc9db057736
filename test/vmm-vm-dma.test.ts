/**
 * DMA mappings from the VMM side: vm.unmapDma goes through the type1 container and raises
 * IOMMU UNMAP notifier events in naturally aligned chunks (iommu-notifiers-and-dirty-ring.md
 * section 1), type1v2 never splits a mapping (vfio-type1-dirty.md section 2), and the VF's
 * ATS-like device IOTLB never serves a translation after the unmap returned.
 */
import { inflateRawSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { IOMMUNotifierFlag, type IOMMUTLBEvent } from '../src/iommu/notifier.js';
import { Errno } from '../src/uapi/errno.js';
import { createSource, type TestbedEndpoint } from '../src/vmm/testbed.js';

const MiB = 2 ** 20;
const live: TestbedEndpoint[] = [];
afterEach(() => {
  for (const e of live.splice(0)) e.vm.shutdown();
});

function source(opts: Parameters<typeof createSource>[0] = {}): TestbedEndpoint {
  const s = createSource({ engine: 'zip', hw: 'v3', workload: false, ramBytes: 16 * MiB, dmaChunkBytes: MiB, ...opts });
  live.push(s);
  return s;
}

function listen(s: TestbedEndpoint, flags: number): IOMMUTLBEvent[] {
  const events: IOMMUTLBEvent[] = [];
  s.vm.iommuDomain!.registerNotifier({ notify: (e) => events.push(e), flags, start: 0n, end: (1n << 64n) - 1n });
  return events;
}

const DATA = Buffer.from('dma mapping test '.repeat(150));

describe('vm.unmapDma through the container (spec 1: aligned chunks, never rounded up)', () => {
  it('RAM is mapped in 1 MiB mappings at IOVA = GPA', () => {
    const s = source();
    const maps = s.vm.container.type1!.mappings();
    expect(maps.length).toBe(16);
    expect(maps[0]!.iova).toBe(0x4000_0000);
    expect(maps[15]!.iova).toBe(0x4000_0000 + 15 * MiB);
    expect(maps.every((m) => m.size === MiB)).toBe(true);
  });

  it('unmapping [base+13 MiB, +3 MiB) notifies (0x40d00000, 1 MiB) then (0x40e00000, 2 MiB), perm NONE', () => {
    const s = source();
    const events = listen(s, IOMMUNotifierFlag.UNMAP);
    expect(s.vm.unmapDma(0x4000_0000 + 13 * MiB, 3 * MiB)).toBe(3 * MiB);
    expect(events.map((e) => [e.type, e.entry.iova, e.entry.addrMask, e.entry.perm])).toEqual([
      [IOMMUNotifierFlag.UNMAP, 0x40d0_0000n, 0xf_ffffn, 0],
      [IOMMUNotifierFlag.UNMAP, 0x40e0_0000n, 0x1f_ffffn, 0],
    ]);
    expect(s.vm.container.type1!.mappings().length).toBe(13);
    // the guest keeps working in the RAM that is still mapped
    expect(Buffer.from(inflateRawSync(s.vm.accel!.compress(DATA, 'deflate'))).equals(DATA)).toBe(true);
  });

  it('type1v2 refuses to split a mapping: EINVAL, nothing unmapped, no event', () => {
    const s = source();
    const events = listen(s, IOMMUNotifierFlag.UNMAP);
    expect(s.vm.unmapDma(0x4000_0000 + 13 * MiB + 0x80000, MiB)).toBe(-Errno.EINVAL);
    expect(events).toEqual([]);
    expect(s.vm.container.type1!.mappings().length).toBe(16);
  });

  it('mapDma puts a range back and MAP listeners hear it', () => {
    const s = source();
    expect(s.vm.unmapDma(0x4000_0000 + 15 * MiB, MiB)).toBe(MiB);
    const events = listen(s, IOMMUNotifierFlag.MAP);
    expect(s.vm.mapDma(0x4000_0000 + 15 * MiB, MiB)).toBe(0);
    expect(events.map((e) => [e.type, e.entry.iova, e.entry.addrMask])).toEqual([[IOMMUNotifierFlag.MAP, 0x40f0_0000n, 0xf_ffffn]]);
    expect(s.vm.mapDma(0x4000_0000 + 15 * MiB, MiB)).toBe(-Errno.EEXIST);
    expect(s.vm.mapDma(0x4000_0000 + 16 * MiB, MiB)).toBe(-Errno.EINVAL);
  });
});

describe('device IOTLB in the VF DMA path never serves a stale translation', () => {
  it('the VF reaches RAM through the IOTLB: jobs fill it', () => {
    const s = source({ deviceIotlb: true });
    const tlb = s.vm.iotlb!;
    expect(Buffer.from(inflateRawSync(s.vm.accel!.compress(DATA, 'deflate'))).equals(DATA)).toBe(true);
    expect(tlb.stats.misses).toBeGreaterThan(0);
    expect(tlb.stats.hits).toBeGreaterThan(0);
    expect(tlb.cached).toBeGreaterThan(0);
  });

  it('after unmapDma returns, a cached page faults instead of reaching the old memory', () => {
    const s = source({ deviceIotlb: true });
    const vm = s.vm;
    const tlb = vm.iotlb!;
    const gpa = 0x4000_0000 + 15 * MiB + 0x3000;
    vm.ramWrite(gpa, Uint8Array.of(0x11, 0x22), 1);
    const buf = new Uint8Array(2);
    expect(tlb.read(gpa, buf)).toBe(true);
    expect(buf).toEqual(Uint8Array.of(0x11, 0x22));
    const hits = tlb.stats.hits;
    expect(tlb.read(gpa, buf)).toBe(true);
    expect(tlb.stats.hits).toBe(hits + 1); // served from the cache
    const inval = tlb.stats.invalidated;
    expect(vm.unmapDma(0x4000_0000 + 15 * MiB, MiB)).toBe(MiB);
    expect(tlb.stats.invalidated).toBeGreaterThan(inval);
    const faults = vm.iommuDomain!.faultCount;
    expect(tlb.read(gpa, buf)).toBe(false);
    expect(tlb.write(gpa, Uint8Array.of(0xff, 0xff))).toBe(false);
    expect(vm.iommuDomain!.faultCount).toBe(faults + 2);
    expect(vm.iommuDomain!.faults.slice(-2).map((f) => [f.iova, f.write, f.reason])).toEqual([
      [gpa, false, 'unmapped'], [gpa, true, 'unmapped'],
    ]);
    expect(vm.ramRead(gpa, 2)).toEqual(Uint8Array.of(0x11, 0x22));
    // the guest's own DMA (in RAM that is still mapped) keeps working through the same IOTLB
    expect(Buffer.from(inflateRawSync(vm.accel!.compress(DATA, 'deflate'))).equals(DATA)).toBe(true);
    expect(vm.mapDma(0x4000_0000 + 15 * MiB, MiB)).toBe(0);
    expect(tlb.read(gpa, buf)).toBe(true);
  });
});
