/**
 * The vendor driver's fast paths keep the behaviour of the plain ones:
 * - polls (readl_relaxed_poll_timeout, hisi-acc-vfio-pci.md section 4) whose condition
 *   already holds cost one register read and no simulated time or scheduler work, and a
 *   poll that has to wait follows the 10 us period exactly;
 * - the match check reads its fields straight from the stream with the same verdicts as a
 *   full decode (section 3 / 5);
 * - the DMA-address split between bigint fields and register halves.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeAccVfData, readMatchFields } from '../src/drivers/hisi-acc/acc-vf-data.js';
import { pollMasked } from '../src/drivers/hisi-qm/poll.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { KernelError } from '../src/uapi/errno.js';
import { allocBytes } from '../src/vfio/pci-core/byte-slab.js';
import { ACC_DEV_MAGIC_V1, ACC_DEV_MAGIC_V2, S, drain, rig, setState } from './hisi-acc-helpers.js';

const MB_SEND = 0x300; // QM_MB_CMD_SEND_BASE
const WB_DONE = 0x208; // QM_CACHE_WB_DONE
const VF_STATE = 0x60; // QM_VF_STATE

/** Driver reads of each VF BAR2 offset recorded in the audit log since `from`. */
function driverReads(entries: { origin: string; write: boolean; off: number }[], from: number): Map<number, number> {
  const m = new Map<number, number>();
  for (const e of entries.slice(from)) if (e.origin === 'driver' && !e.write) m.set(e.off, (m.get(e.off) ?? 0) + 1);
  return m;
}

describe('polls that are already satisfied (spec 4)', () => {
  it('RUNNING -> STOP with zero latencies: one read per poll, no time, no scheduler task', () => {
    const { host, vm } = rig();
    const qf = host.acc.qm.vf(1)!;
    qf.audit.clear();
    const now = host.sched.now;
    const executed = host.sched.executed;
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    expect(host.sched.now).toBe(now);
    expect(host.sched.executed).toBe(executed);
    const reads = driverReads(qf.audit.entries(), 0);
    // PAUSE_QM: the busy poll before the command and the one after it, one read each.
    expect(reads.get(MB_SEND)).toBe(2);
    // The write-back poll and the QM_VF_STATE look after the stop: one read each.
    expect(reads.get(WB_DONE)).toBe(1);
    expect(reads.get(VF_STATE)).toBe(1);
  });

  it('a whole save and resume runs no scheduler task and moves no simulated time', () => {
    const { host, vm } = rig();
    const dev = vm!.device;
    const now = host.sched.now;
    const executed = host.sched.executed;
    const save = setState(dev, S.STOP_COPY);
    expect(save.ret).toBe(0);
    const stream = drain(host.fds.get(save.fd)!).bytes;
    expect(stream.length).toBe(176);
    expect(host.fds.close(save.fd)).toBe(0);
    expect(setState(dev, S.STOP).ret).toBe(0);
    const res = setState(dev, S.RESUMING);
    expect(host.fds.get(res.fd)!.write(stream)).toBe(176);
    expect(setState(dev, S.STOP).ret).toBe(0);
    expect(setState(dev, S.RUNNING).ret).toBe(0);
    expect(host.sched.now).toBe(now);
    expect(host.sched.executed).toBe(executed);
  });

  it('a mailbox that takes 25 us: the completion poll reads at 0, 10, 20 and 30 us', () => {
    const { host, vm } = rig({ latencies: { mailboxNs: 25_000 } });
    const qf = host.acc.qm.vf(1)!;
    const mig = host.migDevice(1);
    qf.audit.clear();
    mig.arcs.length = 0;
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    // Idle poll before the store: 1 read; completion poll: 4 reads, the 4th after 30 us.
    expect(driverReads(qf.audit.entries(), 0).get(MB_SEND)).toBe(5);
    const arc = mig.arcs[0]!;
    expect([arc.from, arc.to, arc.ok]).toEqual([S.RUNNING, S.STOP, true]);
    expect(arc.end - arc.start).toBe(30_000);
  });
});

describe('pollMasked (readl_relaxed_poll_timeout)', () => {
  /** A register whose value is `value(now)`; counts reads and records when they happen. */
  function reg(sched: Scheduler, value: (now: number) => number) {
    const at: number[] = [];
    return { at, readReg32: (off: number) => { expect(off).toBe(0x40); at.push(sched.now); return value(sched.now); } };
  }

  it('satisfied at once: one read, nothing scheduled, no time passes', () => {
    const s = new Scheduler();
    let ran = 0;
    s.schedule(5, () => { ran++; });
    const r = reg(s, () => 0x2001);
    expect(pollMasked(s, r, 0x40, 1, 1, 10, 100)).toBe(0x2001);
    expect(r.at).toEqual([0]);
    expect([s.now, ran]).toEqual([0, 0]);
  });

  it('becomes true later: reads one period apart, due work runs in between', () => {
    const s = new Scheduler();
    let bit = 0;
    s.schedule(25, () => { bit = 1; });
    const r = reg(s, () => bit << 13);
    expect(pollMasked(s, r, 0x40, 1 << 13, 1 << 13, 10, 1000)).toBe(1 << 13);
    expect(r.at).toEqual([0, 10, 20, 30]);
  });

  it('never true: reads until the time passed exceeds the timeout, then once more, null', () => {
    const s = new Scheduler();
    const r = reg(s, () => 1);
    expect(pollMasked(s, r, 0x40, 1, 0, 10, 100)).toBeNull();
    // Reads at 0..110 every 10 ns; at 110 the deadline (100) is passed: one last read.
    expect(r.at).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 110]);
    expect(s.now).toBe(110);
  });

  it('the last read after the deadline still counts when it succeeds', () => {
    const s = new Scheduler();
    let n = 0;
    const r = { readReg32: () => (++n === 4 ? 0 : 1) };
    expect(pollMasked(s, r, 0, 1, 0, 10, 15)).toBe(0);
    expect([n, s.now]).toEqual([4, 20]);
  });
});

describe('readMatchFields agrees with decodeAccVfData on the match data (spec 3, 5)', () => {
  function outcome(f: () => { qp_num: number; dev_id: number; que_iso_cfg: number }): unknown {
    try {
      const d = f();
      return { qp_num: d.qp_num, dev_id: d.dev_id, que_iso_cfg: d.que_iso_cfg };
    } catch (e) {
      expect(e).toBeInstanceOf(KernelError);
      return { errno: (e as KernelError).errno, message: (e as Error).message };
    }
  }

  it('for any 40-byte head with a V2, V1 or foreign magic and any major version', () => {
    const magic = fc.oneof(fc.constant(ACC_DEV_MAGIC_V2), fc.constant(ACC_DEV_MAGIC_V1), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));
    fc.assert(fc.property(magic, fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 0xffff })), fc.uint8Array({ minLength: 40, maxLength: 40 }), (m, major, raw) => {
      const b = raw.slice();
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, m, true);
      dv.setUint16(28, major, true);
      const want = outcome(() => decodeAccVfData(b).data);
      expect(outcome(() => readMatchFields(b))).toEqual(want);
      // A longer buffer (the first written chunk) is read the same way.
      const long = new Uint8Array(176);
      long.set(b);
      long.fill(0xa5, 40);
      expect(outcome(() => readMatchFields(long))).toEqual(want);
    }), { numRuns: 300 });
  });

  it('fewer than 40 bytes is EINVAL', () => {
    expect(() => readMatchFields(new Uint8Array(39))).toThrow(KernelError);
  });
});

describe('DMA addresses through save and load', () => {
  it('SQC/CQC bases above 2^32 survive save -> load -> save unchanged', () => {
    const { host, vm } = rig();
    const dev = vm!.device;
    const qf = host.acc.qm.vf(1)!;
    // Base addresses with both halves non-zero, set through the VF mailbox as a driver would.
    const fn = host.vf(1).fn;
    const mb = (cmd: number, lo: number, hi: number) => {
      fn.mmioWrite64(2, 0x300, cmd | (1 << 13), lo, 'test');
      fn.mmioWrite64(2, 0x308, hi, 0, 'test');
    };
    expect(setState(dev, S.STOP).ret).toBe(0);
    mb(0x4, 0x9abc_d000, 0x0000_1234);
    mb(0x5, 0xfedc_b000, 0x0000_0042);
    const save = setState(dev, S.STOP_COPY);
    const stream = drain(host.fds.get(save.fd)!).bytes;
    const v = new DataView(stream.buffer, stream.byteOffset);
    expect(v.getBigUint64(160, true)).toBe(0x0000_1234_9abc_d000n);
    expect(v.getBigUint64(168, true)).toBe(0x0000_0042_fedc_b000n);
    expect(setState(dev, S.STOP).ret).toBe(0);
    mb(0x4, 0, 0);
    const res = setState(dev, S.RESUMING);
    expect(host.fds.get(res.fd)!.write(stream)).toBe(176);
    expect(setState(dev, S.STOP).ret).toBe(0);
    expect(qf.debugSnapshot().sqcBt).toBe(0x0000_1234_9abc_d000);
    expect(qf.debugSnapshot().cqcBt).toBe(0x0000_0042_fedc_b000);
  });
});

describe('allocBytes', () => {
  it('zeroed, exactly sized, 8-byte aligned and independent buffers', () => {
    const bufs = [176, 40, 1, 0, 2000, 176, 3000, 176].map((n) => allocBytes(n));
    bufs.forEach((b, i) => {
      expect(b.length).toBe([176, 40, 1, 0, 2000, 176, 3000, 176][i]);
      expect(b.byteOffset % 8).toBe(0);
      expect(b.every((x) => x === 0)).toBe(true);
    });
    bufs.forEach((b, i) => b.fill(i + 1));
    bufs.forEach((b, i) => expect(b.every((x) => x === i + 1)).toBe(true));
  });

  it('keeps handing out zeroed buffers across many slabs', () => {
    for (let i = 0; i < 400; i++) {
      const b = allocBytes(176);
      expect(b.every((x) => x === 0)).toBe(true);
      b.fill(0xff);
    }
  });
});
