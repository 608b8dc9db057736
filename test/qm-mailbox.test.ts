import { describe, expect, it } from 'vitest';
import { GuestDriver, makeRig } from './qm-harness.js';

const BUSY = 1 << 13;
const status = (w0: number) => (w0 >>> 9) & 0xf;

function rig(opts: Parameters<typeof makeRig>[0] = {}) {
  const r = makeRig(opts);
  const g = new GuestDriver(r.fn(1), r.mem.get(1)!, r.sched);
  return { ...r, g };
}

/** A valid EQC image (28 bytes) pointing at the guest's EQE ring. */
function putEqc(g: GuestDriver, depth: number): void {
  const v = new DataView(new ArrayBuffer(28));
  v.setUint32(4, g.eqBase % 2 ** 32, true);
  v.setUint32(8, Math.floor(g.eqBase / 2 ** 32), true);
  v.setUint32(24, (depth - 1) | (1 << 16), true);
  g.m.put(g.mb, new Uint8Array(v.buffer));
}

describe('mailbox latching (qm-hardware.md 2, [inference] latch rule)', () => {
  it('4x32-bit stores latch on the 0x30C store, not on the first store to 0x300', () => {
    const { g } = rig();
    putEqc(g, 32);
    const [lo, hi] = [g.mb % 2 ** 32, Math.floor(g.mb / 2 ** 32)];
    g.w32(0x300, 0x2 | BUSY);
    g.w32(0x304, lo);
    g.w32(0x308, hi);
    // Nothing executed yet: the EQC in the migration window is still all zero.
    expect(g.fn.bar2.read(0x8018, 4, 'test')).toBe(0);
    g.w32(0x30c, 0);
    expect(g.fn.bar2.read(0x8018, 4, 'test')).toBe(31 | (1 << 16));
    expect(g.r32(0x300) & BUSY).toBe(0);
    expect(status(g.r32(0x300))).toBe(0);
  });

  it('2x64-bit stores latch on the store to 0x308 (all 16 bytes arrived)', () => {
    const { g } = rig();
    putEqc(g, 16);
    g.fn.bar2.write64(0x300, 0x2 | BUSY, g.mb % 2 ** 32, 'guest');
    expect(g.fn.bar2.read(0x8018, 4, 'test')).toBe(0);
    g.fn.bar2.write64(0x308, Math.floor(g.mb / 2 ** 32), 0, 'guest');
    expect(g.fn.bar2.read(0x8018, 4, 'test')).toBe(15 | (1 << 16));
  });

  it('byte-wise stores latch on the store of the last byte 0x30F', () => {
    const { g } = rig();
    putEqc(g, 8);
    const words = [0x2 | BUSY, g.mb % 2 ** 32, Math.floor(g.mb / 2 ** 32), 0];
    for (let i = 0; i < 15; i++) g.fn.bar2.write(0x300 + i, 1, (words[i >> 2]! >>> ((i & 3) * 8)) & 0xff, 'guest');
    expect(g.fn.bar2.read(0x8018, 4, 'test')).toBe(0);
    g.fn.bar2.write(0x30f, 1, 0, 'guest');
    expect(g.fn.bar2.read(0x8018, 4, 'test')).toBe(7 | (1 << 16));
  });

  it('busy is visible for mailboxNs; stores while busy are dropped', () => {
    const { g, sched } = rig({ latencies: { mailboxNs: 10_000 } });
    putEqc(g, 8);
    g.fn.bar2.write64(0x300, 0x2 | BUSY, g.mb % 2 ** 32, 'guest');
    g.fn.bar2.write64(0x308, Math.floor(g.mb / 2 ** 32), 0, 'guest');
    expect(g.r32(0x300) & BUSY).toBe(BUSY);
    // A second command while busy is ignored entirely (w0 keeps the EQC command).
    g.w32(0x300, 0x7 | BUSY);
    g.w32(0x30c, 0);
    expect(g.r32(0x300) & 0xff).toBe(0x2);
    sched.advance(9_999);
    expect(g.r32(0x300) & BUSY).toBe(BUSY);
    expect(g.fn.bar2.read(0x8018, 4, 'test')).toBe(0); // effects happen at completion
    sched.advance(1);
    expect(g.r32(0x300) & BUSY).toBe(0);
    expect(status(g.r32(0x300))).toBe(0);
    expect(g.fn.bar2.read(0x8018, 4, 'test')).toBe(7 | (1 << 16));
    expect(g.fn.debugSnapshot().mailbox.droppedWhileBusy).toBe(2);
  });

  it('one engine serves every function in arrival order', () => {
    const r = makeRig({ numVfs: 3, latencies: { mailboxNs: 1000 } });
    const done: number[] = [];
    for (const n of [2, 1, 3]) {
      const bar = r.fn(n).bar2;
      bar.write64(0x300, 0x6 | (1 << 14) | BUSY, 0, 'guest');
      bar.write64(0x308, 0, 0, 'guest');
    }
    for (let t = 0; t < 4; t++) {
      r.sched.advance(1000);
      for (const n of [1, 2, 3]) {
        if (!done.includes(n) && (r.fn(n).bar2.read(0x300, 4, 'guest') & BUSY) === 0) done.push(n);
      }
    }
    expect(done).toEqual([2, 1, 3]);
  });
});

describe('mailbox commands (qm-hardware.md 2)', () => {
  it('every undefined code completes with a non-zero status', () => {
    const { g } = rig();
    for (const cmd of [0x7, 0xa, 0xb, 0xf, 0x10, 0x42, 0xff]) {
      for (const op of [0, 1] as const) {
        const r = g.mailbox(cmd, op, 0, 0, 0);
        expect(r.status, `cmd ${cmd} op ${op}`).not.toBe(0);
        expect(g.r32(0x300) & BUSY).toBe(0);
      }
    }
  });

  it('SQC/CQC op0 load and op1 dump (live head/tail), SQC_BT/CQC_BT read back in 0x304/0x308', () => {
    const { g, sched } = rig();
    g.start();
    g.startQp(1);
    g.submit(1, 5);
    g.submit(1, 6);
    sched.runUntilIdle();
    const out = g.scratch;
    expect(g.mbAddr(0x0, 1, 1, out).status).toBe(0);
    expect(g.m.u16(out)).toBe(2); // head
    expect(g.m.u16(out + 2)).toBe(2); // tail
    expect(g.m.u32(out + 4) + g.m.u32(out + 8) * 2 ** 32).toBe(g.sqRing(1));
    expect(g.mbAddr(0x1, 1, 1, out + 32).status).toBe(0);
    expect(g.m.u16(out + 32 + 2)).toBe(2); // cq tail
    expect(g.m.u32(out + 32 + 24) & 1).toBe(1); // phase still 1
    const bt = g.mailbox(0x4, 1, 0, 0, 0);
    expect(bt.dataL + bt.dataH * 2 ** 32).toBe(g.sqcBase);
    const cbt = g.mailbox(0x5, 1, 0, 0, 0);
    expect(cbt.dataL + cbt.dataH * 2 ** 32).toBe(g.cqcBase);
  });

  it('EQC/AEQC op1 dump the live context (28 bytes)', () => {
    const { g, sched } = rig();
    g.start();
    g.startQp(0);
    g.submit(0, 1);
    sched.runUntilIdle();
    expect(g.mbAddr(0x2, 1, 0, g.scratch).status).toBe(0);
    expect(g.m.u16(g.scratch)).toBe(0); // head
    expect(g.m.u16(g.scratch + 2)).toBe(1); // tail after one EQE
    expect(g.m.u32(g.scratch + 24)).toBe(63 | (1 << 16));
    expect(g.mbAddr(0x3, 1, 0, g.scratch + 64).status).toBe(0);
    expect(g.m.u32(g.scratch + 64 + 24)).toBe(31 | (1 << 16));
  });

  it('SQC_VFT_V2 op1 returns the function VFT word; op0 is refused', () => {
    const { g } = rig({ numVfs: 2 });
    const r = g.mailbox(0x6, 1, 0, 0, 0);
    expect(r.status).toBe(0);
    // ZIP: 960 VF queues over 2 VFs; VF2 gets base 64, VF1 base 544, 480 each (spec 4).
    const vft = BigInt(r.dataL) | (BigInt(r.dataH) << 32n);
    expect(Number((vft >> 28n) & 0xffffn)).toBe(544);
    expect(Number((vft >> 45n) & 0x3ffn) + 1).toBe(480);
    expect(Number((vft >> 44n) & 1n)).toBe(1);
    expect(g.mailbox(0x6, 0, 0, 0, 0).status).not.toBe(0);
  });

  it('DMA faults and out-of-range queues give non-zero status and change nothing', () => {
    const { g } = rig();
    g.start();
    const bad = 0x10; // outside the function's memory
    for (const cmd of [0x0, 0x1]) {
      expect(g.mbAddr(cmd, 0, 0, bad).status).not.toBe(0);
      expect(g.mbAddr(cmd, 0, g.fn.qpNum, g.mb).status).not.toBe(0);
      expect(g.mbAddr(cmd, 0, 0xffff, g.mb).status).not.toBe(0);
    }
    const before = g.fn.bar2.read(0x8018, 4, 'test');
    expect(g.mbAddr(0x2, 0, 0, bad).status).not.toBe(0);
    expect(g.mbAddr(0x3, 0, 0, bad).status).not.toBe(0);
    expect(g.mbAddr(0x2, 1, 0, bad).status).not.toBe(0);
    expect(g.fn.bar2.read(0x8018, 4, 'test')).toBe(before);
    // A context never loaded and no array to fetch it from.
    const fresh = rig();
    expect(fresh.g.mbAddr(0x0, 1, 0, fresh.g.scratch).status).not.toBe(0);
  });

  it('STOP_QP, FLUSH_QM, SRC, DST and PAUSE_QM complete with status 0 on V3', () => {
    const { g } = rig();
    g.start();
    g.startQp(0);
    expect(g.mailbox(0x8, 0, 0, 0, 0).status).toBe(0);
    expect(g.mailbox(0x8, 0, g.fn.qpNum, 0, 0).status).not.toBe(0);
    expect(g.mailbox(0x9, 0, 0, 0, 0).status).toBe(0);
    expect(g.mailbox(0xc, 0, 0, 4, 0).status).toBe(0);
    expect(g.mailbox(0xc, 0, 2, 4, 0).status).not.toBe(0); // a VF may only message the PF
    expect(g.mailbox(0xd, 0, 0, 0, 0).status).toBe(0);
    expect(g.mailbox(0xe, 0, 0, 0, 0).status).toBe(0);
  });

  it('V2 has no STOP_QP, FLUSH_QM, IFC mailbox or PAUSE_QM', () => {
    const { g } = rig({ hw: 'v2' });
    for (const cmd of [0x8, 0x9, 0xc, 0xd, 0xe]) expect(g.mailbox(cmd, 0, 0, 0, 0).status).not.toBe(0);
    expect(g.mailbox(0x6, 1, 0, 0, 0).status).toBe(0);
  });

  it('a V3 part whose QM_FUNC_CAPS lacks STOP_QP refuses it; cap_ver 0 means the V3 defaults', () => {
    const noStop = rig({ patch: (p) => { p.caps.funcCaps = 0x6d01; } }); // bit9 clear
    noStop.g.start();
    noStop.g.startQp(0);
    expect(noStop.g.mailbox(0x8, 0, 0, 0, 0).status).not.toBe(0);
    expect(noStop.g.mailbox(0x9, 0, 0, 0, 0).status).toBe(0);
    const defaults = rig({ patch: (p) => { p.caps.funcCaps = 0; } });
    defaults.g.start();
    defaults.g.startQp(0);
    expect(defaults.g.mailbox(0x8, 0, 0, 0, 0).status).toBe(0);
  });

  it('64-bit mailbox submission works through the guest helper and the PF mailbox', () => {
    const { g, fn, mem, sched } = rig();
    g.mbMode = '64';
    expect(g.mailbox(0x6, 1, 0, 0, 0).status).toBe(0);
    const pf = new GuestDriver(fn(0), mem.get(0)!, sched);
    const r = pf.mailbox(0x6, 1, 0, 0, 0);
    expect(r.status).toBe(0);
    expect(Number((BigInt(r.dataH) >> 13n) & 0x3ffn) + 1).toBe(64); // PF keeps pf_q_num
  });

  it('status of every command code on a started V3 VF (model codes: registers.ts MbStatus)', () => {
    const { g, sched } = rig();
    g.start();
    g.startQp(0);
    g.submit(0, 1);
    sched.runUntilIdle();
    // Context images in the mailbox buffer for the op0 loads.
    const buf = g.scratch;
    g.m.put(buf, g.m.get(g.sqcBase, 32));
    const table: [cmd: number, op: 0 | 1, queue: number, expected: number][] = [
      [0x0, 0, 0, 0], [0x0, 1, 0, 0], [0x1, 0, 0, 0], [0x1, 1, 0, 0],
      [0x2, 1, 0, 0], [0x3, 1, 0, 0], [0x2, 0, 0, 0], [0x3, 0, 0, 0],
      [0x4, 1, 0, 0], [0x5, 1, 0, 0], [0x6, 1, 0, 0], [0x6, 0, 0, 4],
      [0x8, 0, 1, 0], [0x9, 0, 0, 0], [0xc, 0, 0, 0], [0xd, 0, 0, 0], [0xe, 0, 0, 0],
      [0x7, 0, 0, 1], [0xa, 0, 0, 1], [0xb, 0, 0, 1], [0xf, 0, 0, 1], [0x80, 1, 0, 1],
      [0x0, 0, 0xffff, 3], [0x8, 0, 0xffff, 3], [0xc, 0, 1, 3], [0xd, 0, 1, 3],
    ];
    for (const [cmd, op, queue, expected] of table) {
      expect(g.mbAddr(cmd, op, queue, buf).status, `cmd 0x${cmd.toString(16)} op ${op}`).toBe(expected);
    }
    expect(g.mbAddr(0x1, 0, 0, 0x1000).status).toBe(2); // DMA fault
  });
});
