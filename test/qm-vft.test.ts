import { describe, expect, it } from 'vitest';
import { Scheduler } from '../src/sim/scheduler.js';
import { QmDevice } from '../src/hw/qm/qm-device.js';
import { decodeSqcVft, encodeSqcVft, planVftAssignment } from '../src/hw/qm/vft.js';
import { FakeEngine, GuestDriver, makeProfile, makeRig } from './qm-harness.js';

/** Independent BigInt model of the V2/V3 SQC VFT encoding (spec 4). */
function sqcVftBig(base: number, num: number): bigint {
  return (BigInt(base) << 28n) | (1n << 44n) | (BigInt(num - 1) << 45n);
}

describe('VFT encodings (qm-hardware.md 4)', () => {
  it('SQC word matches base<<28 | 1<<44 | (num-1)<<45 and decodes back', () => {
    for (const [base, num] of [[0, 64], [64, 320], [704, 320], [65535, 1024], [1023, 1]]) {
      const [lo, hi] = encodeSqcVft(base!, num!);
      expect(BigInt(lo) | (BigInt(hi) << 32n)).toBe(sqcVftBig(base!, num!));
      expect(decodeSqcVft(lo, hi)).toEqual({ valid: true, base, num });
    }
    expect(encodeSqcVft(100, 0)).toEqual([0, 0]);
  });

  it('assignment: VF n down to VF 1 from base pf_q_num (hand-computed)', () => {
    // ZIP 3 VFs: 960 queues / 3 = 320 each, VF3 gets the lowest base.
    expect(planVftAssignment(1024, 64, 1024, 3)).toEqual([
      { fn: 0, base: 0, num: 64 }, { fn: 3, base: 64, num: 320 }, { fn: 2, base: 384, num: 320 },
      { fn: 1, base: 704, num: 320 },
    ]);
    // 7 VFs: 960 = 7*137 + 1; the remainder goes to VF7.
    const seven = planVftAssignment(1024, 64, 1024, 7);
    expect(seven[1]).toEqual({ fn: 7, base: 64, num: 138 });
    expect(seven[2]).toEqual({ fn: 6, base: 202, num: 137 });
    expect(seven[7]).toEqual({ fn: 1, base: 64 + 138 + 5 * 137, num: 137 });
    // SEC keeps 256: 768 over 1 VF, capped at the per-function maximum of 512.
    expect(planVftAssignment(1024, 256, 512, 1)).toEqual([{ fn: 0, base: 0, num: 256 }, { fn: 1, base: 256, num: 512 }]);
  });
});

describe('VFT through the PF registers and the VF mailbox', () => {
  it('RDY/OP protocol: write then read back through DATA_L/H', () => {
    const dev = new QmDevice({ profile: makeProfile(), scheduler: new Scheduler(), engine: new FakeEngine() });
    const bar = dev.pf.bar2;
    expect(bar.read(0x10006c, 4, 'pf') & 1).toBe(1);
    const [lo, hi] = encodeSqcVft(200, 17);
    bar.write(0x100058, 4, 0, 'pf');
    bar.write(0x10005c, 4, 0, 'pf');
    bar.write(0x100060, 4, 9, 'pf');
    bar.write(0x100064, 4, lo, 'pf');
    bar.write(0x100068, 4, hi, 'pf');
    bar.write(0x10006c, 4, 0, 'pf');
    expect(bar.read(0x10006c, 4, 'pf') & 1).toBe(0);
    bar.write(0x100054, 4, 1, 'pf');
    expect(bar.read(0x10006c, 4, 'pf') & 1).toBe(1);
    // read it back
    bar.write(0x100064, 4, 0, 'pf');
    bar.write(0x100068, 4, 0, 'pf');
    bar.write(0x100058, 4, 1, 'pf');
    bar.write(0x10006c, 4, 0, 'pf');
    bar.write(0x100054, 4, 1, 'pf');
    expect([bar.read(0x100064, 4, 'pf'), bar.read(0x100068, 4, 'pf')]).toEqual([lo, hi]);
    expect(dev.readVft(9)).toEqual({ valid: true, base: 200, num: 17 });
    // the VF created later sees its queues
    const vf = dev.addVf(9);
    expect(vf.qpBase).toBe(200);
    expect(vf.qpNum).toBe(17);
  });

  it('a VF decodes its own SQC_VFT_V2 word into the base/num the PF programmed', () => {
    const r = makeRig({ numVfs: 3 });
    const want = { 1: [704, 320], 2: [384, 320], 3: [64, 320] } as Record<number, [number, number]>;
    for (const n of [1, 2, 3]) {
      const g = new GuestDriver(r.fn(n), r.mem.get(n)!, r.sched);
      const res = g.mailbox(0x6, 1, 0, 0, 0);
      const vft = BigInt(res.dataL) | (BigInt(res.dataH) << 32n);
      expect([Number((vft >> 28n) & 0xffffn), Number((vft >> 45n) & 0x3ffn) + 1]).toEqual(want[n]);
      expect(r.dev.readVft(n)).toEqual({ valid: true, base: want[n]![0], num: want[n]![1] });
    }
  });

  it('shrinking a VF\'s VFT drops qps beyond the new qp_num; their doorbells are ignored', () => {
    const r = makeRig({ numVfs: 1 });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    g.start();
    g.startQp(3);
    r.dev.programVft(1, 64, 2);
    expect(r.fn(1).qpNum).toBe(2);
    g.submit(3, 1);
    r.sched.runUntilIdle();
    expect(r.engine.order).toEqual([]);
    expect(r.fn(1).debugSnapshot().doorbells.outOfRange).toBe(1);
    r.dev.programVft(1, 64, 0);
    expect(r.fn(1).qpNum).toBe(0);
    expect(g.mailbox(0x6, 1, 0, 0, 0).dataH).toBe(0);
  });

  it('an out-of-range function number in QM_VFT_CFG is ignored; RDY still returns', () => {
    const r = makeRig({ numVfs: 1 });
    const bar = r.dev.pf.bar2;
    bar.write(0x100058, 4, 0, 'pf');
    bar.write(0x10005c, 4, 0, 'pf');
    bar.write(0x100060, 4, 200, 'pf');
    bar.write(0x100064, 4, 0xffffffff, 'pf');
    bar.write(0x100068, 4, 0xffffffff, 'pf');
    bar.write(0x10006c, 4, 0, 'pf');
    bar.write(0x100054, 4, 1, 'pf');
    expect(bar.read(0x10006c, 4, 'pf') & 1).toBe(1);
    expect(r.fn(1).qpNum).toBe(960);
    expect(r.dev.pf.qpNum).toBe(64);
  });
});
