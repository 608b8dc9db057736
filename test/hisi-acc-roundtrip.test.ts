/**
 * Two-instance live migration (hisi-acc-vfio-pci.md sections 4-6, uAPI section 6): a VF with
 * jobs in flight is saved on one host's PF model and resumed on another host's, guest RAM
 * copied between them; every job completes exactly once with the output node:zlib,
 * node:crypto or BigInt arithmetic expects. Then back again (the match flag is reset for
 * every resume), with a V1-magic stream, and in V4 PF-control mode.
 */
import { describe, expect, it } from 'vitest';
import { AccHost, AccVm, migrateVm } from '../src/drivers/hisi-acc/testbed.js';
import { Scheduler } from '../src/sim/scheduler.js';
import type { HisiAccDriverOptions } from '../src/drivers/hisi-acc/device.js';
import { ACC_DEV_MAGIC_V1, type EngineName, tracker } from './hisi-acc-helpers.js';

const LAT = { processNs: 40_000 };

function twoHosts(profile: string, driver: HisiAccDriverOptions = {}) {
  const sched = new Scheduler();
  const a = new AccHost({ profile, scheduler: sched, numVfs: 2, latencies: LAT, driver });
  const b = new AccHost({ profile, scheduler: sched, numVfs: 2, latencies: LAT, driver });
  expect(a.bind(1)).toBe(0);
  expect(b.bind(1)).toBe(0);
  return { sched, a, b };
}

function sqes(h: AccHost): number {
  return h.acc.qm.vf(1)!.debugSnapshot().queues.sqesProcessed;
}

describe('two-instance round trip with jobs in flight', () => {
  for (const [profile, engine] of [['zip-v3', 'zip'], ['sec-v3', 'sec'], ['hpre-v3', 'hpre']] as const) {
    it(`${profile}: every job completes exactly once, checked independently`, () => {
      const { sched, a, b } = twoHosts(profile);
      const vm = new AccVm(a, 1, { driver: { sqDepth: 64, cqDepth: 64 } });
      const t = tracker(vm, engine as EngineName);
      t.submit(24);
      sched.advance(10 * LAT.processNs + 5_000);
      const beforeA = sqes(a);
      expect(beforeA).toBeGreaterThan(0);
      expect(beforeA).toBeLessThan(24);
      const r = migrateVm(vm, b, 1);
      expect(r.stream.length).toBe(176);
      expect(r.precopyBytes).toBe(40);
      // The destination picks up where the source stopped.
      vm.accel!.drain();
      const v = t.verify();
      expect(t.failures).toEqual([]);
      expect(v).toEqual({ ok: 24, bad: 0, duplicates: 0, missing: 0 });
      // Each SQE was processed once, on one host or the other.
      expect(sqes(a) + sqes(b)).toBe(24);
      expect(sqes(b)).toBe(24 - sqes(a));
      expect(sqes(b)).toBeGreaterThan(0);
      // The source is released: its VF is no longer open.
      expect(a.driver.coreOf(a.vf(1))!.isOpen).toBe(false);
      // The guest keeps using the VF on the destination.
      t.submit(3);
      vm.accel!.drain();
      expect(t.verify()).toEqual({ ok: 27, bad: 0, duplicates: 0, missing: 0 });
    });
  }

  it('migrates there and back again: the second resume checks its match data again', () => {
    const { sched, a, b } = twoHosts('zip-v3');
    const vm = new AccVm(a, 1, { driver: { sqDepth: 32, cqDepth: 32 } });
    const t = tracker(vm, 'zip', 11);
    t.submit(12);
    sched.advance(3 * LAT.processNs);
    migrateVm(vm, b, 1);
    t.submit(12);
    sched.advance(5 * LAT.processNs);
    migrateVm(vm, a, 1, { precopy: false, chunk: 7 });
    vm.accel!.drain();
    expect(t.failures).toEqual([]);
    expect(t.verify()).toEqual({ ok: 24, bad: 0, duplicates: 0, missing: 0 });
    expect(sqes(a) + sqes(b)).toBe(24);
  });

  it('loads a V1-magic stream: DMA addresses recomputed from the EQC/AEQC dwords', () => {
    const { sched, a, b } = twoHosts('zip-v3');
    const vm = new AccVm(a, 1, { driver: { sqDepth: 32, cqDepth: 32 } });
    const t = tracker(vm, 'zip', 3);
    t.submit(10);
    sched.advance(4 * LAT.processNs);
    // The stream as an old (V1) source would have sent it: V1 magic, rsv_state[3] where the
    // versions are, and eqe/aeqe_dma wrong (the dword-index bug).
    let rewritten = 0;
    migrateVm(vm, b, 1, {
      precopy: false,
      rewrite: (stream) => {
        const s = stream.slice();
        const dv = new DataView(s.buffer);
        dv.setBigUint64(0, ACC_DEV_MAGIC_V1, true);
        dv.setUint32(28, 0x1234, true);
        const eqLo = dv.getUint32(64 + 4, true);
        const eqHi = dv.getUint32(64 + 8, true);
        dv.setBigUint64(144, (BigInt(eqLo) << 32n) | BigInt(eqHi), true);
        dv.setBigUint64(152, 0xdeadn, true);
        rewritten++;
        return s;
      },
    });
    expect(rewritten).toBe(1);
    const snap = b.acc.qm.vf(1)!.debugSnapshot();
    const d = b.migDevice(1).lastMigf!.data;
    expect(d.kind).toBe('v1');
    expect(d.eqe_dma).toBe(BigInt(snap.eq.base));
    expect(d.aeqe_dma).toBe(BigInt(snap.aeq.base));
    vm.accel!.drain();
    expect(t.failures).toEqual([]);
    expect(t.verify()).toEqual({ ok: 10, bad: 0, duplicates: 0, missing: 0 });
  });

  it('V4 PF-control mode: round trip through the PF migration windows', () => {
    const { sched, a, b } = twoHosts('zip-v4', { pfControl: true });
    const vm = new AccVm(a, 1, { driver: { sqDepth: 32, cqDepth: 32 } });
    const t = tracker(vm, 'zip', 5);
    t.submit(16);
    sched.advance(5 * LAT.processNs);
    const auditA = a.acc.qm.vf(1)!.audit;
    const auditB = b.acc.qm.vf(1)!.audit;
    migrateVm(vm, b, 1);
    vm.accel!.drain();
    expect(t.failures).toEqual([]);
    expect(t.verify()).toEqual({ ok: 16, bad: 0, duplicates: 0, missing: 0 });
    expect(auditA.count('driver', 'high') + auditB.count('driver', 'high')).toBe(0);
    expect(auditA.count('guest', 'high') + auditB.count('guest', 'high')).toBe(0);
  });
});
