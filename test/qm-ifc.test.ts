import { describe, expect, it } from 'vitest';
import { GuestDriver, makeRig } from './qm-harness.js';

/** PF<->VF communication, qm-hardware.md 5 (IFC, V3) and the V4 data registers. */
describe('IFC PF -> VF (mailbox SRC/DST, INT_CFG/INT_SET_P, vector 2)', () => {
  it('delivers a message to one VF; masked until the VF enables IFC; acked via 0x20', () => {
    const r = makeRig({ numVfs: 3 });
    const pf = new GuestDriver(r.fn(0), r.mem.get(0)!, r.sched);
    pf.origin = 'driver';
    const vf2 = new GuestDriver(r.fn(2), r.mem.get(2)!, r.sched);
    const pfBar = r.dev.pf.bar2;
    const msg = { cmd: 8, data: 0x1234 }; // PF_SET_QOS
    expect(pf.mailbox(0xc, 0, 2, msg.cmd, msg.data).status).toBe(0);
    pfBar.write(0x100134, 4, 2, 'pf');
    pfBar.write(0x100130, 4, 1, 'pf');
    expect(vf2.r32(0x20) & 1).toBe(1); // source
    expect(vf2.r32(0x28) & 1).toBe(0); // masked out of reset (0x24 = 1)
    expect(pfBar.read(0x100128, 4, 'pf')).toBe(1 << 2); // READY_STATUS: VF2 has not acked
    expect(r.msi.get(2)).toEqual([]);
    vf2.w32(0x24, 0); // probe: clear 0x24 bit0
    expect(r.msi.get(2)).toEqual([2]);
    expect(vf2.r32(0x28) & 1).toBe(1);
    const got = vf2.mailbox(0xd, 0, 0, 0, 0);
    expect(got.status).toBe(0);
    expect([got.dataL, got.dataH]).toEqual([msg.cmd, msg.data]);
    vf2.w32(0x20, vf2.r32(0x20) | 1);
    expect(vf2.r32(0x20) & 1).toBe(0);
    expect(vf2.r32(0x28) & 1).toBe(0);
    expect(pfBar.read(0x100128, 4, 'pf')).toBe(0);
    expect(r.fn(1).bar2.read(0x20, 4, 'guest')).toBe(0);
    expect(r.msi.get(1)).toEqual([]);
    expect(r.msi.get(3)).toEqual([]);
  });

  it('INT_CFG 0x7F and SRC queue 0xFFFF reach every VF', () => {
    const r = makeRig({ numVfs: 3 });
    const pf = new GuestDriver(r.fn(0), r.mem.get(0)!, r.sched);
    expect(pf.mailbox(0xc, 0, 0xffff, 1, 0).status).toBe(0); // PF_FLR_PREPARE
    for (const n of [1, 2, 3]) r.fn(n).bar2.write(0x24, 4, 0, 'guest');
    r.dev.pf.bar2.write(0x100134, 4, 0x7f, 'pf');
    r.dev.pf.bar2.write(0x100130, 4, 1, 'pf');
    expect(r.dev.pf.bar2.read(0x100128, 4, 'pf')).toBe(0b1110);
    for (const n of [1, 2, 3]) {
      expect(r.msi.get(n)).toEqual([2]);
      const g = new GuestDriver(r.fn(n), r.mem.get(n)!, r.sched);
      expect(g.mailbox(0xd, 0, 0, 0, 0).dataL).toBe(1);
      g.w32(0x20, 1);
    }
    expect(r.dev.pf.bar2.read(0x100128, 4, 'pf')).toBe(0);
  });

  it('a PF SRC to a VF that does not exist fails', () => {
    const r = makeRig({ numVfs: 1 });
    const pf = new GuestDriver(r.fn(0), r.mem.get(0)!, r.sched);
    expect(pf.mailbox(0xc, 0, 5, 1, 0).status).not.toBe(0);
    expect(pf.mailbox(0xc, 0, 0, 1, 0).status).not.toBe(0);
  });
});

describe('IFC VF -> PF', () => {
  it('VF sets 0x2C; it stays set until the PF acks through QM_IFC_INT_SOURCE_P', () => {
    const r = makeRig({ numVfs: 3 });
    const vf3 = new GuestDriver(r.fn(3), r.mem.get(3)!, r.sched);
    const pf = new GuestDriver(r.fn(0), r.mem.get(0)!, r.sched);
    pf.w32(0x24, 0); // PF enables its IFC interrupt
    expect(vf3.mailbox(0xc, 0, 0, 4, 0x77).status).toBe(0); // VF_PREPARE_DONE
    vf3.w32(0x2c, vf3.r32(0x2c) | 1);
    expect(vf3.r32(0x2c) & 1).toBe(1);
    expect(r.msi.get(0)).toEqual([2]);
    expect(r.dev.pf.bar2.read(0x100138, 4, 'pf')).toBe(1 << 3);
    expect(r.dev.pf.bar2.read64(0x100138, 'pf')).toEqual([1 << 3, 0]);
    expect(pf.r32(0x28) & 1).toBe(1);
    const m = pf.mailbox(0xd, 0, 3, 0, 0);
    expect([m.status, m.dataL, m.dataH]).toEqual([0, 4, 0x77]);
    vf3.w32(0x2c, 1); // setting again while pending: no second interrupt
    expect(r.msi.get(0)).toEqual([2]);
    r.dev.pf.bar2.write64(0x100138, 1 << 3, 0, 'pf');
    expect(vf3.r32(0x2c) & 1).toBe(0);
    expect(pf.r32(0x28) & 1).toBe(0);
  });
});

describe('IFC V4 data registers', () => {
  it('PF2VF through 0x104700 -> VF 0x380; VF2PF through 0x320 -> PF 0x104800 + 4*vf', () => {
    const r = makeRig({ hw: 'v4', numVfs: 2 });
    const pfBar = r.dev.pf.bar2;
    pfBar.write64(0x104700, 3, 0xabc, 'pf'); // PF_RESET_DONE, data
    pfBar.write(0x100134, 4, 1, 'pf');
    pfBar.write(0x100130, 4, 1, 'pf');
    expect(r.fn(1).bar2.read64(0x380, 'guest')).toEqual([3, 0xabc]);
    expect(r.fn(2).bar2.read64(0x380, 'guest')).toEqual([0, 0]);
    r.fn(2).bar2.write64(0x320, 6, 0x99, 'guest'); // VF_START_DONE
    expect(pfBar.read(0x104800 + 4 * 2, 4, 'pf')).toBe(6);
    expect(pfBar.read(0x104800 + 4 * 1, 4, 'pf')).toBe(0);
    // V3 has neither
    const v3 = makeRig({ numVfs: 1 });
    v3.fn(1).bar2.write64(0x320, 6, 0x99, 'guest');
    expect(v3.dev.pf.bar2.read(0x104800 + 4, 4, 'pf')).toBe(0);
    expect(v3.fn(1).bar2.read(0x320, 4, 'guest')).toBe(0);
  });
});

describe('IFC on V2', () => {
  it('IFC registers read 0 and do nothing', () => {
    const r = makeRig({ hw: 'v2', numVfs: 1 });
    const bar = r.fn(1).bar2;
    bar.write(0x2c, 4, 1, 'guest');
    expect(bar.read(0x2c, 4, 'guest')).toBe(0);
    expect(bar.read(0x24, 4, 'guest')).toBe(0);
    expect(r.dev.pf.bar2.read(0x100138, 4, 'pf')).toBe(0);
    expect(r.msi.get(0)).toEqual([]);
    r.dev.pf.bar2.write(0x100134, 4, 1, 'pf');
    r.dev.pf.bar2.write(0x100130, 4, 1, 'pf');
    expect(bar.read(0x20, 4, 'guest')).toBe(0);
  });
});
