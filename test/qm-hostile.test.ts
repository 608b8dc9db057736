import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GuestDriver, IOVA_BASE, makeRig, type Rig } from './qm-harness.js';

/**
 * Robustness (issue 3 item 3): a hostile guest on VF1 issues random MMIO of any size and
 * offset, random mailbox commands with random (sometimes valid) addresses, random doorbells,
 * scribbles garbage over its own contexts, rings and SQEs, and resets itself. Nothing may
 * throw, and neither VF2 nor the PF may observe any change, except the one channel a VF is
 * entitled to use towards the PF (its IFC interrupt bit and message slot).
 */

const VF2_REGS = [
  ...Array.from({ length: 16 }, (_, i) => i * 4), 0x60, 0x204, 0x208, 0x210, 0x300, 0x304, 0x308,
  0x30c, 0x320, 0x324, 0x380, 0x384, 0x3100, 0x3104, 0x3108,
  ...Array.from({ length: 16 }, (_, i) => 0x8000 + i * 4),
];
const PF_REGS = [
  0x0, 0x4, 0x8, 0xc, 0x24, 0x2c, 0x30, 0x34, 0x60, 0x208, 0x300, 0x304, 0x308, 0x30c,
  0x100000, 0x100004, 0x100008, 0x100074, 0x100054, 0x100058, 0x10005c, 0x100060, 0x100064,
  0x100068, 0x10006c, 0x100134, 0x100158, 0x100198, 0x301154, 0x3010ac,
];

function observe(r: Rig) {
  const vf2 = r.fn(2);
  const pfBar = r.dev.pf.bar2;
  // VF1's own IFC bit (bit 1) is its legitimate channel to the PF: masked out.
  const ready = pfBar.read(0x100128, 4, 'test') & ~2;
  const source = pfBar.read(0x100138, 4, 'test') & ~2;
  const vf2Snap = vf2.debugSnapshot();
  const pfSnap = r.dev.pf.debugSnapshot();
  return JSON.stringify({
    vf2: VF2_REGS.map((o) => vf2.bar2.read(o, 4, 'test')),
    vf2Snap,
    vf2Mem: hash(r.mem.get(2)!.bytes),
    vf2Msi: r.msi.get(2),
    pf: PF_REGS.map((o) => pfBar.read(o, 4, 'test')),
    ready,
    source,
    pfQueues: pfSnap.queues,
    pfDoorbells: pfSnap.doorbells,
    pfQps: pfSnap.qps,
    pfMsi: r.msi.get(0)!.filter((v) => v !== 2),
    pfMem: hash(r.mem.get(0)!.bytes),
    vft: r.dev.debugSnapshot().vft,
  });
}

function hash(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i += 4) {
    h = Math.imul(h ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)), 0x01000193);
  }
  return h >>> 0;
}

const offArb = fc.oneof(
  fc.integer({ min: 0, max: 0x10010 }),
  fc.constantFrom(0x0, 0x4, 0xc, 0x20, 0x24, 0x2c, 0x30, 0x34, 0x60, 0x204, 0x300, 0x304, 0x308,
    0x30c, 0x320, 0x380, 0x1000, 0x2000, 0x8000, 0x8018, 0x8020, 0x8038),
);
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const addrArb = fc.oneof(
  u32.map((x) => x),
  fc.integer({ min: 0, max: 0x20000 }).map((o) => IOVA_BASE + o),
  fc.constant(2 ** 53 - 8),
);

type Op =
  | { k: 'rd'; off: number; size: 1 | 2 | 4 | 8 }
  | { k: 'wr'; off: number; size: 1 | 2 | 4 | 8; lo: number; hi: number }
  | { k: 'mb'; cmd: number; op: 0 | 1; queue: number; addr: number }
  | { k: 'db'; reg: number; qn: number; cmd: number; index: number; prio: number }
  | { k: 'bar4'; off: number; lo: number; hi: number }
  | { k: 'mem'; off: number; bytes: Uint8Array }
  | { k: 'run'; n: number }
  | { k: 'flr' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('rd' as const), off: offArb, size: fc.constantFrom(1, 2, 4, 8) as fc.Arbitrary<1 | 2 | 4 | 8> }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('wr' as const), off: offArb, size: fc.constantFrom(1, 2, 4, 8) as fc.Arbitrary<1 | 2 | 4 | 8>, lo: u32, hi: u32 }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('mb' as const), cmd: fc.integer({ min: 0, max: 0x10 }), op: fc.constantFrom(0, 1) as fc.Arbitrary<0 | 1>, queue: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.constantFrom(0xffff, 2, 0)), addr: addrArb }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('db' as const), reg: fc.constantFrom(0x1000, 0x2000), qn: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 0xfff })), cmd: fc.integer({ min: 0, max: 15 }), index: fc.integer({ min: 0, max: 0xffff }), prio: fc.integer({ min: 0, max: 1 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('bar4' as const), off: fc.integer({ min: 0, max: 0x40000 }), lo: u32, hi: u32 }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('mem' as const), off: fc.integer({ min: 0, max: 0x20000 - 64 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('run' as const), n: fc.integer({ min: 1, max: 50 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'flr' as const }) },
);

function apply(r: Rig, op: Op): void {
  const vf = r.fn(1);
  const bar = vf.bar2;
  switch (op.k) {
    case 'rd':
      if (op.size === 8) bar.read64(op.off, 'guest');
      else bar.read(op.off, op.size, 'guest');
      return;
    case 'wr':
      if (op.size === 8) bar.write64(op.off, op.lo, op.hi, 'guest');
      else bar.write(op.off, op.size, op.lo, 'guest');
      return;
    case 'mb': {
      const lo = op.addr % 2 ** 32;
      const hi = Math.floor(op.addr / 2 ** 32);
      bar.write64(0x300, (op.cmd | (op.op << 14) | (1 << 13) | (op.queue << 16)) >>> 0, lo >>> 0, 'guest');
      bar.write64(0x308, hi >>> 0, 0, 'guest');
      return;
    }
    case 'db':
      bar.write64(op.reg, ((op.qn & 0xfff) | (op.cmd << 12)) >>> 0, (op.index | (op.prio << 16)) >>> 0, 'guest');
      return;
    case 'bar4':
      vf.bar4.write64(op.off & ~7, op.lo, op.hi, 'guest');
      return;
    case 'mem':
      r.mem.get(1)!.put(IOVA_BASE + op.off, op.bytes);
      return;
    case 'run':
      for (let i = 0; i < op.n && r.sched.step(); i++);
      return;
    case 'flr':
      vf.reset();
      return;
  }
}

describe('hostile guest on VF1 (issue 3 item 3)', () => {
  for (const latencies of [{}, { processNs: 50, mailboxNs: 30, irqNs: 10, wbNs: 20 }]) {
    it(`never throws and never changes VF2 or the PF (latencies ${JSON.stringify(latencies)})`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), fc.boolean(), (ops, iso) => {
          const r = makeRig({ numVfs: 2, latencies, isolation: iso });
          // A well-behaved VF2 with some history, and a started VF1 for the attacker to abuse.
          const g2 = new GuestDriver(r.fn(2), r.mem.get(2)!, r.sched);
          g2.start();
          g2.startQp(0);
          if (!iso) {
            g2.submit(0, 1);
            r.sched.runUntilIdle();
            g2.consumeCq(0);
            g2.consumeEq();
          }
          const g1 = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
          g1.start();
          g1.startQp(0);
          g1.startQp(1);
          r.sched.runUntilIdle();
          const before = observe(r);
          for (const op of ops) apply(r, op);
          r.sched.runUntilIdle();
          expect(observe(r)).toBe(before);
          // VF2 still works.
          if (!iso) {
            g2.submit(0, 77);
            r.sched.runUntilIdle();
            expect(g2.consumeCq(0).map((c) => [c.tag, c.status])).toEqual([[77, 1]]);
          }
        }),
        { numRuns: 60, seed: 0x5eed },
      );
    });
  }

  it('garbage contexts with maximal depths are bounded per doorbell', () => {
    const r = makeRig({ numVfs: 1 });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    g.start();
    // SQC: depth 4096 (dw3 0xFFF), 128 B SQEs over valid memory, head 0, tail 4095.
    const sqc = new DataView(new ArrayBuffer(32));
    sqc.setUint16(2, 4095, true);
    sqc.setUint32(4, (IOVA_BASE % 2 ** 32) >>> 0, true);
    sqc.setUint32(8, Math.floor(IOVA_BASE / 2 ** 32), true);
    sqc.setUint32(12, 0xfff | (7 << 12), true);
    g.m.put(g.mb, new Uint8Array(sqc.buffer));
    expect(g.mbAddr(0, 0, 0, g.mb).status).toBe(0);
    // CQC: depth 4096 at a valid place, phase 1
    const cqc = new DataView(new ArrayBuffer(32));
    cqc.setUint32(4, ((IOVA_BASE + 0x80000) % 2 ** 32) >>> 0, true);
    cqc.setUint32(8, Math.floor(IOVA_BASE / 2 ** 32), true);
    cqc.setUint32(12, 0xfff | (4 << 12), true);
    cqc.setUint32(24, 1, true);
    g.m.put(g.mb, new Uint8Array(cqc.buffer));
    expect(g.mbAddr(1, 0, 0, g.mb).status).toBe(0);
    g.db(0x1000, 0, 0, 4095, 0);
    const tasks = r.sched.runUntilIdle();
    // 4095 SQEs (minus those whose CQE fell outside the 1 MiB window) in a handful of tasks.
    expect(tasks).toBeLessThan(10);
    expect(r.engine.order.length).toBeLessThanOrEqual(4095);
    expect(r.engine.order.length).toBeGreaterThan(0);
  });
});
