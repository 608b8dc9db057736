/**
 * The v1 region protocol (hisi-acc-vfio-pci.md section 7, uAPI section 4): the device-specific
 * region, the vfio_device_migration_info header rules, states, the data window, a full v1
 * migration between two hosts, and the two RFC bugs that must not come back.
 */
import { describe, expect, it } from 'vitest';
import { AccHost, AccVm, assignVf, copyRam, releaseVf } from '../src/drivers/hisi-acc/testbed.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { Scheduler } from '../src/sim/scheduler.js';
import type { VfioFile } from '../src/vfio/fd.js';
import {
  FEATURE_GET, F_MIGRATION, REGION_OFFSET, VFIO_DEVICE_RESET, errno, feature, pread, pwrite, regionInfo, rig,
  tracker, u32, u64,
} from './hisi-acc-helpers.js';

const MIG = REGION_OFFSET(9);
const V1 = { STOP: 0, RUNNING: 1, SAVING: 2, RESUMING: 4 } as const;

function rdState(dev: VfioFile): number {
  const [n, b] = pread(dev, MIG + 0, 4);
  expect(n).toBe(4);
  return u32(b, 0);
}

function wrState(dev: VfioFile, s: number): number {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, s, true);
  return pwrite(dev, MIG + 0, b);
}

function rd64(dev: VfioFile, off: number): bigint {
  const [n, b] = pread(dev, MIG + off, 8);
  expect(n).toBe(8);
  return u64(b, 0);
}

function wr64(dev: VfioFile, off: number, v: bigint): number {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return pwrite(dev, MIG + off, b);
}

/** One v1 save iteration: pending, data_offset, data_size, data, pending again. */
function iterate(dev: VfioFile): Uint8Array {
  const pending = rd64(dev, 8);
  expect(pending).toBeGreaterThan(0n);
  const off = rd64(dev, 16);
  expect(off).toBe(32n);
  const size = Number(rd64(dev, 24));
  expect(size).toBe(Number(pending));
  const [n, data] = pread(dev, MIG + Number(off), size);
  expect(n).toBe(size);
  expect(rd64(dev, 8)).toBe(0n);
  return data;
}

const LAT = { processNs: 40_000 };

describe('v1 migration region (spec 7)', () => {
  it('is region 9 of type MIGRATION/SUBTYPE_MIGRATION, 32 + 176 bytes, read/write, no mmap; no v2 feature', () => {
    const { vm } = rig({ driver: { protocol: 'v1' }, vm: { start: false } });
    const dev = vm!.device;
    const r = regionInfo(dev, 9);
    expect(r.ret).toBe(0);
    expect(r.size).toBe(208n);
    expect(r.flags & 7).toBe(1 | 2);
    expect(r.flags & 8).toBe(8);
    // CAP_TYPE (id 2, version 1) with type 3, subtype 1.
    const cap = r.capOffset;
    expect(cap).toBeGreaterThan(0);
    expect([new DataView(r.buf.buffer).getUint16(cap, true), u32(r.buf, cap + 8), u32(r.buf, cap + 12)]).toEqual([2, 3, 1]);
    expect(dev.mmap(MIG, 4096)).toBe(errno('EINVAL'));
    expect(feature(dev, FEATURE_GET | F_MIGRATION, new Uint8Array(8)).ret).toBe(errno('ENOTTY'));
    // BAR2 is still guarded.
    expect(regionInfo(dev, 2).size).toBe(0x8000n);
  });

  it('header access rules', () => {
    const { host, vm } = rig({ driver: { protocol: 'v1' }, vm: { start: false } });
    const dev = vm!.device;
    expect(rdState(dev)).toBe(V1.RUNNING);
    expect(pread(dev, MIG, 2)[0]).toBe(errno('EFAULT'));
    expect(pwrite(dev, MIG, new Uint8Array(8))).toBe(errno('EFAULT'));
    // Writing the current state: nothing happens (no driver access at all).
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    expect(wrState(dev, V1.RUNNING)).toBe(4);
    expect(audit.count('driver', 'low')).toBe(0);
    // Invalid states: rejected, state unchanged.
    for (const s of [V1.SAVING | V1.RESUMING, V1.RESUMING | V1.RUNNING, 8, 0x10 | V1.RUNNING]) {
      expect(wrState(dev, s)).toBe(errno('EINVAL'));
      expect(rdState(dev)).toBe(V1.RUNNING);
    }
    // pending_bytes: read-only, 8 bytes.
    expect(rd64(dev, 8)).toBe(0n);
    expect(wr64(dev, 8, 5n)).toBe(errno('EFAULT'));
    expect(pread(dev, MIG + 8, 4)[0]).toBe(errno('EINVAL'));
    // reserved reads 0.
    const [n, b] = pread(dev, MIG + 4, 4);
    expect([n, u32(b, 0)]).toEqual([4, 0]);
    // data_offset: read-only (the RFC let it be written).
    expect(rd64(dev, 16)).toBe(32n);
    expect(wr64(dev, 16, 4096n)).toBe(errno('EFAULT'));
    expect(rd64(dev, 16)).toBe(32n);
    expect(pread(dev, MIG + 16, 4)[0]).toBe(errno('EINVAL'));
    // data_size is written only while resuming.
    expect(wr64(dev, 24, 40n)).toBe(errno('EINVAL'));
    // Data: count 0, offsets inside the header that are no field, wrong state.
    expect(pread(dev, MIG + 32, 0)[0]).toBe(errno('EINVAL'));
    expect(pwrite(dev, MIG + 32, new Uint8Array(0))).toBe(errno('EINVAL'));
    expect(pread(dev, MIG + 12, 4)[0]).toBe(errno('EINVAL'));
    expect(pread(dev, MIG + 32, 4)[0]).toBe(errno('EINVAL'));
    expect(pread(dev, MIG + 208, 4)[0]).toBe(errno('EINVAL'));
  });

  it('saving: SAVING|RUNNING gives the match data from the PF, SAVING the full state; data clipped at the region end', () => {
    const { host, vm } = rig({ driver: { protocol: 'v1' } });
    const dev = vm!.device;
    vm!.accel!.compress(new Uint8Array(1000).fill(3), 'deflate');
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    expect(wrState(dev, V1.SAVING | V1.RUNNING)).toBe(4);
    expect(audit.count('driver', 'low') + audit.count('driver', 'high')).toBe(0);
    const match = iterate(dev);
    expect(match.length).toBe(40);
    expect(u32(match, 8)).toBe(host.acc.qm.vft.qpNum(1));
    expect(u32(match, 20)).toBe(host.acc.qm.vft.qpBase(1));
    expect(wrState(dev, V1.SAVING)).toBe(4);
    expect(host.acc.qm.vf(1)!.paused).toBe(true);
    const full = iterate(dev);
    expect(full.length).toBe(176);
    expect(Buffer.from(full.subarray(0, 40)).equals(Buffer.from(match))).toBe(true);
    expect(u64(full, 144)).toBe(BigInt(host.acc.qm.vf(1)!.debugSnapshot().eq.base));
    // Clipped at the region end: 8 bytes from offset 200.
    expect(pread(dev, MIG + 200, 64)[0]).toBe(8);
    // SAVING -> STOP restarts the queues (the RFC's behaviour).
    expect(wrState(dev, V1.STOP)).toBe(4);
    expect(host.acc.qm.vf(1)!.paused).toBe(false);
  });

  it('STOP -> RUNNING starts the device, and SAVING -> RUNNING restarts the VF (RFC bugs fixed)', () => {
    const { host, vm } = rig({ driver: { protocol: 'v1' }, latencies: LAT, vm: { driver: { sqDepth: 32, cqDepth: 32 } } });
    const dev = vm!.device;
    const t = tracker(vm!, 'zip');
    t.submit(6);
    host.sched.advance(LAT.processNs + 1000);
    expect(wrState(dev, V1.STOP)).toBe(4);
    expect(host.acc.qm.vf(1)!.paused).toBe(true);
    expect(wrState(dev, V1.RUNNING)).toBe(4);
    expect(host.acc.qm.vf(1)!.paused).toBe(false);
    t.submit(6);
    host.sched.advance(LAT.processNs + 1000);
    expect(wrState(dev, V1.SAVING)).toBe(4);
    expect(host.acc.qm.vf(1)!.paused).toBe(true);
    expect(wrState(dev, V1.RUNNING)).toBe(4);
    expect(host.acc.qm.vf(1)!.paused).toBe(false);
    vm!.accel!.drain();
    expect(t.verify()).toEqual({ ok: 12, bad: 0, duplicates: 0, missing: 0 });
  });

  it('a reset puts the region back in RUNNING with nothing pending', () => {
    const { vm } = rig({ driver: { protocol: 'v1' } });
    const dev = vm!.device;
    expect(wrState(dev, V1.SAVING)).toBe(4);
    expect(rd64(dev, 8)).toBe(176n);
    expect(dev.ioctl(VFIO_DEVICE_RESET)).toBe(0);
    expect(rdState(dev)).toBe(V1.RUNNING);
    expect(rd64(dev, 8)).toBe(0n);
  });

  it('resuming: data_size commits the window, a mismatch is EINVAL, oversized data_size EINVAL', () => {
    const { host, vm } = rig({ driver: { protocol: 'v1' } });
    const dev = vm!.device;
    expect(wrState(dev, V1.SAVING)).toBe(4);
    const full = iterate(dev);
    expect(wrState(dev, V1.STOP)).toBe(4);
    expect(wrState(dev, V1.RESUMING)).toBe(4);
    const bad = full.slice();
    new DataView(bad.buffer).setUint32(12, 0xa259, true);
    expect(pwrite(dev, MIG + 32, bad)).toBe(176);
    expect(wr64(dev, 24, 40n)).toBe(errno('EINVAL'));
    expect(host.migDevice(1).matchDone).toBe(false);
    expect(wr64(dev, 24, 177n)).toBe(errno('EINVAL'));
    expect(wr64(dev, 24, 0n)).toBe(errno('EINVAL'));
    expect(pwrite(dev, MIG + 32, full)).toBe(176);
    expect(wr64(dev, 24, 176n)).toBe(8);
    expect(host.migDevice(1).matchDone).toBe(true);
    expect(wrState(dev, V1.RUNNING)).toBe(4);
    expect(host.migDevice(1).lastMigf?.side).toBe('resume');
  });

  it('a full v1 migration between two hosts with jobs in flight: each job completes once', () => {
    const sched = new Scheduler();
    const a = new AccHost({ scheduler: sched, numVfs: 1, latencies: LAT, driver: { protocol: 'v1' } });
    const b = new AccHost({ scheduler: sched, numVfs: 1, latencies: LAT, driver: { protocol: 'v1' } });
    expect(a.bind(1)).toBe(0);
    expect(b.bind(1)).toBe(0);
    const vm = new AccVm(a, 1, { driver: { sqDepth: 32, cqDepth: 32 } });
    const t = tracker(vm, 'zip', 9);
    t.submit(16);
    sched.advance(4 * LAT.processNs);
    const src = vm.device;
    // Source: pre-copy, stop vCPUs, stop-and-copy.
    expect(wrState(src, V1.SAVING | V1.RUNNING)).toBe(4);
    const match = iterate(src);
    vm.io.pause();
    sched.advance(0);
    expect(wrState(src, V1.SAVING)).toBe(4);
    const full = iterate(src);
    const mem = new SparseMemory(vm.mem.size);
    copyRam(vm.mem, mem);
    // Destination: resume chunk by chunk, as QEMU's v1 load does.
    const link = assignVf(b, 1, mem);
    const dst = link.device;
    expect(wrState(dst, V1.RESUMING)).toBe(4);
    for (const chunk of [match, full]) {
      expect(rd64(dst, 16)).toBe(32n);
      expect(pwrite(dst, MIG + 32, chunk)).toBe(chunk.length);
      expect(wr64(dst, 24, BigInt(chunk.length))).toBe(8);
    }
    vm.io.attach(dst, b.fds);
    expect(wrState(dst, V1.RUNNING)).toBe(4);
    vm.ram.moveTo(mem);
    const srcLink = vm.link;
    vm.link = link;
    vm.io.resume();
    expect(wrState(src, V1.STOP)).toBe(4);
    releaseVf(srcLink);
    vm.accel!.drain();
    expect(t.failures).toEqual([]);
    expect(t.verify()).toEqual({ ok: 16, bad: 0, duplicates: 0, missing: 0 });
    expect(b.acc.qm.vf(1)!.debugSnapshot().queues.sqesProcessed).toBeGreaterThan(0);
  });
});
