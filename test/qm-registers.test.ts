import { describe, expect, it } from 'vitest';
import { Scheduler } from '../src/sim/scheduler.js';
import { QmDevice } from '../src/hw/qm/qm-device.js';
import { FakeEngine, GuestDriver, makeProfile, makeRig } from './qm-harness.js';

describe('VF BAR2 registers: reset values and semantics (qm-hardware.md 1)', () => {
  it('reset values: masks 1, QM_VF_STATE 1, everything else 0 [inference list]', () => {
    const r = makeRig({ numVfs: 1 });
    const bar = r.fn(1).bar2;
    const expected: [number, number][] = [
      [0x0, 0], [0x4, 1], [0x8, 0], [0xc, 1], [0x20, 0], [0x24, 1], [0x28, 0], [0x2c, 0],
      [0x30, 0], [0x34, 0], [0x60, 1], [0x204, 0], [0x208, 0], [0x210, 0], [0x300, 0],
      [0x304, 0], [0x308, 0], [0x30c, 0], [0x340, 0], [0x1000, 0], [0x2000, 0],
    ];
    for (const [off, v] of expected) expect(bar.read(off, 4, 'test'), `0x${off.toString(16)}`).toBe(v);
  });

  it('capability registers hold the V3 values of the spec', () => {
    const r = makeRig({ numVfs: 1 });
    const bar = r.fn(1).bar2;
    expect(bar.read(0x3100, 4, 'guest')).toBe(0x6f01);
    expect(bar.read(0x3104, 4, 'guest')).toBe(0x04000800);
    expect(bar.read(0x3108, 4, 'guest')).toBe(0x04000400);
    expect([0x310c, 0x3110, 0x3114, 0x3118].map((o) => bar.read(o, 4, 'guest')))
      .toEqual([0x10000, 0x10001, 0x10003, 0x10002]);
    expect(bar.read(0x311c, 4, 'guest')).toBe(0x40003);
    expect(bar.read(0x3120, 4, 'guest')).toBe(0x14);
    expect(bar.read(0x3124, 4, 'guest')).toBe(0x7c77);
    expect(bar.read(0x317c, 4, 'guest')).toBe(0xabcd);
    expect(bar.read(0x3128, 4, 'guest')).toBe(0);
    // sub-dword reads see the right bytes (little-endian)
    expect(bar.read(0x3101, 1, 'guest')).toBe(0x6f);
    expect(bar.read(0x3106, 2, 'guest')).toBe(0x0400);
    // unaligned dword read crossing 0x3100|0x3104: bytes 00 00 | 00 08
    expect(bar.read(0x3102, 4, 'guest')).toBe(0x08000000);
  });

  it('QM_SUB_VERSION_ID reads 0x50 on V4 and 0 on V3', () => {
    expect(makeRig({ hw: 'v4', numVfs: 1 }).fn(1).bar2.read(0x210, 4, 'guest')).toBe(0x50);
    expect(makeRig({ hw: 'v3', numVfs: 1 }).fn(1).bar2.read(0x210, 4, 'guest')).toBe(0);
  });

  it('RW registers: QM_PAGE_SIZE keeps [1:0], QM_VF_STATE keeps bit0, masks keep bit0', () => {
    const r = makeRig({ numVfs: 1 });
    const bar = r.fn(1).bar2;
    bar.write(0x34, 4, 0xfffffffe, 'guest');
    expect(bar.read(0x34, 4, 'guest')).toBe(2);
    bar.write(0x60, 4, 0, 'guest');
    expect(bar.read(0x60, 4, 'guest')).toBe(0);
    bar.write(0x60, 4, 3, 'guest');
    expect(bar.read(0x60, 4, 'guest')).toBe(1);
    bar.write(0xc, 4, 0, 'guest');
    expect(bar.read(0xc, 4, 'guest')).toBe(0);
    // a byte store that does not cover bit0 leaves the mask alone
    bar.write(0xd, 1, 0xff, 'guest');
    expect(bar.read(0xc, 4, 'guest')).toBe(0);
    // QM_QUE_ISO_CFG_V mirrors the PF register and ignores VF writes
    bar.write(0x30, 4, 1, 'guest');
    expect(bar.read(0x30, 4, 'guest')).toBe(0);
    r.dev.pf.bar2.write(0x301154, 4, 1, 'pf');
    expect(bar.read(0x30, 4, 'guest')).toBe(1);
  });

  it('accesses outside the BAR read all-ones and are dropped, never throw', () => {
    const r = makeRig({ numVfs: 1 });
    const bar = r.fn(1).bar2;
    expect(bar.read(0x10000, 4, 'guest')).toBe(0xffffffff);
    expect(bar.read(0xfffe, 4, 'guest')).toBe(0xffffffff);
    expect(bar.read(-4, 2, 'guest')).toBe(0xffff);
    expect(bar.read(1.5, 1, 'guest')).toBe(0xff);
    expect(bar.read64(0xfffc, 'guest')).toEqual([0xffffffff, 0xffffffff]);
    bar.write(0x10000, 4, 0, 'guest');
    bar.write64(0xfffc, 0, 0, 'guest');
    expect(bar.read(0x60, 4, 'guest')).toBe(1);
  });

  it('FLR (reset) restores reset values and drops queue state', () => {
    const r = makeRig({ numVfs: 1 });
    const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    g.start();
    g.startQp(0);
    g.w32(0x34, 1);
    expect(g.r32(0x60)).toBe(0);
    r.fn(1).reset();
    expect([0x4, 0xc, 0x24, 0x60, 0x34].map((o) => g.r32(o))).toEqual([1, 1, 1, 1, 0]);
    expect(r.fn(1).bar2.read(0x8018, 4, 'test')).toBe(0);
    const snap = r.fn(1).debugSnapshot();
    expect(snap.qps).toEqual([]);
    expect(snap.sqcBt).toBeNull();
    // a doorbell after FLR finds no context
    g.db(0x1000, 0, 0, 1, 0);
    r.sched.runUntilIdle();
    expect(r.engine.order).toEqual([]);
    expect(r.fn(1).debugSnapshot().doorbells.noContext).toBe(1);
  });
});

describe('PF-only registers (qm-hardware.md 1)', () => {
  it('QM_TOTAL_QP = total | max<<11', () => {
    const r = makeRig({ numVfs: 0 });
    expect(r.dev.pf.bar2.read(0x100158, 4, 'pf')).toBe(1024 | (1024 << 11));
  });

  it('QM_ABNORMAL_INT_*: SET injects, STATUS = SOURCE & ~MASK, vector 3, SOURCE is W1C', () => {
    const r = makeRig({ numVfs: 0 });
    const bar = r.dev.pf.bar2;
    expect(bar.read(0x100004, 4, 'pf')).toBe(0x7fff);
    bar.write(0x10000c, 4, 0x24, 'pf');
    expect(bar.read(0x100000, 4, 'pf')).toBe(0x24);
    expect(bar.read(0x100008, 4, 'pf')).toBe(0); // all masked
    expect(r.msi.get(0)).toEqual([]);
    bar.write(0x100004, 4, 0x7fff & ~0x4, 'pf');
    expect(bar.read(0x100008, 4, 'pf')).toBe(0x4);
    expect(r.msi.get(0)).toEqual([3]);
    bar.write(0x100000, 4, 0x4, 'pf');
    expect(bar.read(0x100008, 4, 'pf')).toBe(0);
    expect(bar.read(0x100000, 4, 'pf')).toBe(0x20);
  });

  it('QM_DB_TIMEOUT_CFG is RW; QM_MIG_REGION_SEL only exists on V4', () => {
    const v3 = makeRig({ numVfs: 0 });
    v3.dev.pf.bar2.write(0x100074, 4, 0x1234, 'pf');
    expect(v3.dev.pf.bar2.read(0x100074, 4, 'pf')).toBe(0x1234);
    v3.dev.pf.bar2.write(0x100198, 4, 1, 'pf');
    expect(v3.dev.pf.bar2.read(0x100198, 4, 'pf')).toBe(0);
    const v4 = makeRig({ hw: 'v4', numVfs: 0 });
    v4.dev.pf.bar2.write(0x100198, 4, 0xff, 'pf');
    expect(v4.dev.pf.bar2.read(0x100198, 4, 'pf')).toBe(1);
  });

  it('engine INT_STATUS lives at the engine-specific offset and reads 0 when healthy', () => {
    for (const [engine, off] of [['sec', 0x301008], ['hpre', 0x301800], ['zip', 0x3010ac]] as const) {
      const r = makeRig({ engine, numVfs: 0 });
      r.dev.faults.setEngineStatus(0x10);
      for (const o of [0x301008, 0x301800, 0x3010ac]) {
        expect(r.dev.pf.bar2.read(o, 4, 'pf'), `${engine} 0x${o.toString(16)}`).toBe(o === off ? 0x10 : 0);
      }
      r.dev.faults.setEngineStatus(0);
      expect(r.dev.pf.bar2.read(off, 4, 'pf')).toBe(0);
    }
  });

  it('PF reset clears the VFT and the PF-only registers', () => {
    const r = makeRig({ numVfs: 2 });
    r.dev.pf.bar2.write(0x100074, 4, 5, 'pf');
    r.dev.pf.bar2.write(0x301154, 4, 1, 'pf');
    expect(r.fn(1).qpNum).toBe(480);
    r.dev.pf.reset();
    expect(r.fn(1).qpNum).toBe(0);
    expect(r.dev.pf.qpNum).toBe(0);
    expect(r.dev.pf.bar2.read(0x100074, 4, 'pf')).toBe(0);
    expect(r.dev.pf.bar2.read(0x301154, 4, 'pf')).toBe(0);
  });

  it('addVf/removeVf validate the index', () => {
    const dev = new QmDevice({ profile: makeProfile(), scheduler: new Scheduler(), engine: new FakeEngine() });
    expect(() => dev.addVf(0)).toThrow(/EINVAL/);
    expect(() => dev.addVf(64)).toThrow(/EINVAL/);
    dev.addVf(5);
    expect(() => dev.addVf(5)).toThrow(/EEXIST/);
    expect(dev.vf(5)?.index).toBe(5);
    dev.removeVf(5);
    expect(dev.vf(5)).toBeUndefined();
    expect(() => dev.removeVf(5)).toThrow(/ENODEV/);
  });
});

describe('VF removal', () => {
  it('work scheduled for a removed VF never runs and nothing throws', () => {
    const r = makeRig({ numVfs: 2, latencies: { processNs: 100, mailboxNs: 100 } });
    const g = new GuestDriver(r.fn(2), r.mem.get(2)!, r.sched);
    g.start();
    g.startQp(0);
    g.submit(0, 1);
    r.fn(2).bar2.write64(0x300, 0x6 | (1 << 14) | (1 << 13), 0, 'guest');
    r.fn(2).bar2.write64(0x308, 0, 0, 'guest');
    const vf2 = r.fn(2);
    r.dev.removeVf(2);
    r.sched.runUntilIdle();
    expect(r.engine.order).toEqual([]);
    expect(vf2.bar2.read(0x300, 4, 'guest') & (1 << 13)).toBe(1 << 13); // never completed
    // VF1 is unaffected and the engine serves it
    const g1 = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
    expect(g1.mailbox(0x6, 1, 0, 0, 0).status).toBe(0);
  });
});
