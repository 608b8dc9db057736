/**
 * The workload ledger: every job submitted, in flight or finished, completes exactly once
 * with output equal to what node:zlib / node:crypto computed at submit time, across a
 * stop-and-copy migration with jobs in flight (the guest driver's and the ledger's JS state
 * travel as CPU state, the VF's as hisi-acc-vfio-pci migration data, hisi-acc-vfio-pci.md
 * sections 4-5), and the ledger catches lost and wrong jobs when something breaks.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createEngine } from '../src/hw/engines/engine.js';
import type { Engine } from '../src/hw/qm/engine-contract.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { VFIO_DEVICE_STATE_STOP } from '../src/uapi/vfio.js';
import { createDestination, createSource, createTestbed, type TestbedEndpoint } from '../src/vmm/testbed.js';
import { Workload } from '../src/vmm/workload.js';
import { errnoCode as code, getState, stopAndCopy } from './vmm-vm-helpers.js';

const live: TestbedEndpoint[] = [];
afterEach(() => {
  for (const e of live.splice(0)) if (!e.vm.isShutdown) e.vm.shutdown();
});

function keep<T extends { source: TestbedEndpoint; dest: TestbedEndpoint }>(t: T): T {
  live.push(t.source, t.dest);
  return t;
}

describe('workload API', () => {
  it('pump keeps at most inFlight jobs outstanding; drain completes them; the ledger counts each once', () => {
    const s = createSource({ engine: 'zip', ramBytes: 16 * 2 ** 20, workload: { inFlight: 3 }, warmupJobs: 0 });
    live.push(s);
    const w = s.workload!;
    expect(w.pump(100)).toBe(3);
    expect(w.inFlight).toBe(3);
    expect(w.pump(100)).toBe(0);
    w.drain();
    expect(w.inFlight).toBe(0);
    const v = w.verify();
    expect([v.submitted, v.completed, v.lost, v.duplicated, v.wrong]).toEqual([3, 3, 0, 0, 0]);
    const e = w.entries();
    expect(e.map((x) => [x.id, x.op, x.completions, x.state])).toEqual([
      [1, 'compress', 1, 'completed'], [2, 'decompress', 1, 'completed'], [3, 'compress', 1, 'completed'],
    ]);
    expect(e.every((x) => /^[0-9a-f]{32}$/.test(x.inputHash) && /^[0-9a-f]{32}$/.test(x.expectedHash))).toBe(true);
  });

  it('under vm.run it submits jobsPerMs per simulated ms', () => {
    const s = createSource({ engine: 'sec', ramBytes: 16 * 2 ** 20, workload: { inFlight: 64, jobsPerMs: 20 }, warmupJobs: 0 });
    live.push(s);
    const w = s.workload!;
    s.vm.run(1_000_000);
    expect(w.submitted).toBe(20);
    s.vm.run(500_000);
    expect(w.submitted).toBe(30);
    w.drain();
    expect(w.verify().ok).toBe(true);
  });

  it('counts interrupts: every completion came through an EQ interrupt (interrupt accounting)', () => {
    const s = createSource({ engine: 'hpre', ramBytes: 16 * 2 ** 20 });
    live.push(s);
    const w = s.workload!;
    s.vm.run(2_000_000);
    w.drain();
    const v = w.verify();
    expect(v.interrupts.completions).toBe(v.submitted);
    expect(v.interrupts.irqCqes).toBe(v.submitted);
    expect(v.interrupts.received).toBeGreaterThan(0);
    expect(v.interrupts.received).toBeLessThanOrEqual(v.submitted);
    expect(v.interrupts.consistent).toBe(true);
    expect(v.ok).toBe(true);
  });

  it('flags a job whose device output is corrupted as wrong', () => {
    const real = createEngine('sec');
    let calls = 0;
    // the 11th SQE (a workload job after the 8 warm-up jobs) gets its output bytes flipped
    const faulty: Engine = {
      kind: real.kind, sqeSize: real.sqeSize, tagOf: (sqe) => real.tagOf(sqe),
      process: (sqe, ctx) => {
        if (++calls !== 11) return real.process(sqe, ctx);
        const dma = { read: ctx.dma.read.bind(ctx.dma), write: (iova: number, src: Uint8Array) => {
          const c = src.slice();
          c[0]! ^= 0xff;
          return ctx.dma.write(iova, c);
        } };
        return real.process(sqe, { ...ctx, dma });
      },
    };
    const s = createSource({ engine: 'sec', ramBytes: 16 * 2 ** 20, engineModel: faulty });
    live.push(s);
    const w = s.workload!;
    w.pump(4);
    w.drain();
    const v = w.verify();
    expect(v.wrong).toBe(1);
    expect(v.completed).toBe(v.submitted - 1);
    expect(v.ok).toBe(false);
    expect(w.entries().filter((e) => e.wrong).map((e) => e.id)).toEqual([11]); // warm-up jobs are ledger entries 1-8
  });
});

describe('exactly once across a stop-and-copy migration with jobs in flight', () => {
  for (const engine of ['zip', 'sec', 'hpre'] as const) {
    it(`${engine}: the same Workload object continues on the destination VF`, () => {
      const tb = keep(createTestbed({ engine, hw: 'v3', ramBytes: 16 * 2 ** 20 }));
      const w = tb.source.workload!;
      tb.source.vm.run(300_000);
      w.pump(4);
      tb.source.vm.run(1_000); // the first SQE is still being processed (2 us each)
      const inflight = w.inFlight;
      expect(inflight).toBeGreaterThanOrEqual(3);
      const switchAt = tb.source.scheduler.now;
      const before = w.submitted;
      const r = stopAndCopy(tb.source, tb.dest);
      expect(r.deviceBytes).toBe(176);
      expect(w.vm).toBe(tb.dest.vm);
      expect(getState(tb.source.device)).toBe(VFIO_DEVICE_STATE_STOP);
      tb.dest.vm.run(1_000_000);
      w.drain();
      const v = w.verify();
      expect(v.ok).toBe(true);
      expect([v.lost, v.duplicated, v.wrong]).toEqual([0, 0, 0]);
      expect(v.completed).toBe(v.submitted);
      expect(v.submitted).toBeGreaterThan(before);
      // jobs in flight at the switchover finished on the destination
      const crossed = w.entries().filter((e) => e.submittedNs <= switchAt && e.completedNs! > switchAt);
      expect(crossed.length).toBe(inflight);
      expect(tb.dest.vm.driver!.stats.irqCqes).toBeGreaterThanOrEqual(inflight);
      // the source guest stays stopped and its Accel delivers nothing more
      expect(tb.source.vm.vcpusRunning).toBe(false);
      expect(w.stats.staleCompletions).toBe(0);
    });
  }

  it('separate clocks, no shared objects: the destination builds its own Workload from the CPU state', () => {
    const src = createSource({ engine: 'zip', hw: 'v4', ramBytes: 16 * 2 ** 20 }, new Scheduler());
    const dst = createDestination({ engine: 'zip', hw: 'v4', ramBytes: 16 * 2 ** 20 }, new Scheduler());
    live.push(src, dst);
    const w = src.workload!;
    w.pump(4);
    src.vm.run(1_000);
    const ledgerBefore = w.entries();
    const outstanding = ledgerBefore.filter((e) => e.state === 'submitted');
    const verdictBefore = w.verify();
    expect(outstanding.length).toBeGreaterThan(0);
    stopAndCopy(src, dst);
    const w2 = dst.vm.workload!;
    expect(w2).toBeInstanceOf(Workload);
    expect(w2).not.toBe(w);
    // the outstanding jobs arrive as entries, the settled ones as the summary
    expect(w2.entries().map((e) => [e.id, e.inputHash, e.expectedHash])).toEqual(
      outstanding.map((e) => [e.id, e.inputHash, e.expectedHash]));
    expect(w2.settledSummary()).toEqual(w.settledSummary());
    const carried = w2.verify();
    expect([carried.submitted, carried.completed, carried.inFlight]).toEqual(
      [verdictBefore.submitted, verdictBefore.completed, verdictBefore.inFlight]);
    dst.vm.run(500_000);
    w2.drain();
    const v = w2.verify();
    expect(v.ok).toBe(true);
    expect(v.submitted).toBeGreaterThan(ledgerBefore.length);
    // the source's object never saw the completions that happened on the destination
    expect(w.inFlight).toBeGreaterThan(0);
  });

  it('a settled job that completes again after a migration is still a duplicate, judged as its entry would be', () => {
    const src = createSource({ engine: 'zip', hw: 'v3', ramBytes: 16 * 2 ** 20 }, new Scheduler());
    const dst = createDestination({ engine: 'zip', hw: 'v3', ramBytes: 16 * 2 ** 20 }, new Scheduler());
    live.push(src, dst);
    const w = src.workload!;
    const settledTicket = w.entries().find((e) => e.state === 'completed' && !e.wrong)!.ticket;
    w.pump(2);
    src.vm.run(1_000);
    stopAndCopy(src, dst);
    const w2 = dst.vm.workload!;
    dst.vm.run(500_000);
    w2.drain();
    const clean = w2.verify();
    expect(clean.ok).toBe(true);
    // the destination's Accel delivers a completion for a job that settled on the source
    const deliver = (ticket: number) => {
      const cbs = (dst.vm.accel as unknown as { callbacks: ((t: number, r: { ok: true; output: Uint8Array }) => void)[] }).callbacks;
      for (const cb of cbs) cb(ticket, { ok: true, output: new Uint8Array(0) });
    };
    deliver(settledTicket);
    const v = w2.verify();
    expect([v.duplicated, v.completed, v.submitted, v.ok]).toEqual([1, clean.completed - 1, clean.submitted, false]);
    expect(v.interrupts.completions).toBe(clean.interrupts.completions + 1);
    // a third completion of the same job: still one duplicated job
    deliver(settledTicket);
    expect(w2.verify().duplicated).toBe(1);
    // a ticket this workload was never given
    deliver(w2.settledSummary().ticketHi + 1000);
    expect(w2.stats.unknownCompletions).toBe(1);
  });

  it('a completion of another Accel user\'s job whose ticket falls between ours is not ours, before and after a migration', () => {
    const src = createSource({ engine: 'zip', hw: 'v3', ramBytes: 16 * 2 ** 20 }, new Scheduler());
    const dst = createDestination({ engine: 'zip', hw: 'v3', ramBytes: 16 * 2 ** 20 }, new Scheduler());
    live.push(src, dst);
    const w = src.workload!;
    w.pump(2);
    // another user of the same Accel takes the next ticket, then the workload goes on
    const other = src.vm.accel!.submitJob({ op: 'compress', format: 'deflate', data: new Uint8Array(64).fill(1) });
    w.pump(2);
    const st = w.settledSummary();
    expect(other).toBeGreaterThan(st.ticketLo);
    expect(other).toBeLessThan(st.ticketHi);
    expect(st.foreign).toEqual([[other, other]]);
    src.vm.run(500_000);
    w.drain();
    const v = w.verify();
    // the foreign job completed on the device: counted as foreign, never as a duplicate
    expect([v.ok, v.duplicated]).toEqual([true, 0]);
    expect(w.stats.foreignCompletions).toBe(1);
    w.pump(1);
    stopAndCopy(src, dst);
    const w2 = dst.vm.workload!;
    expect(w2.settledSummary().foreign).toEqual([[other, other]]);
    // on the destination: another foreign job between the workload's, run for real
    const other2 = dst.vm.accel!.submitJob({ op: 'compress', format: 'deflate', data: new Uint8Array(64).fill(2) });
    w2.pump(1);
    dst.vm.run(500_000);
    w2.drain();
    expect(w2.settledSummary().foreign.at(-1)).toEqual([other2, other2]);
    const v2 = w2.verify();
    expect([v2.ok, v2.duplicated, v2.interrupts.consistent]).toEqual([true, 0, true]);
    expect(w2.stats.foreignCompletions).toBe(2); // the counters travel in the CPU state
    // the source-side foreign ticket completing here is not one of ours either
    const cbs = (dst.vm.accel as unknown as { callbacks: ((t: number, r: { ok: true; output: Uint8Array }) => void)[] }).callbacks;
    for (const cb of cbs) cb(other, { ok: true, output: new Uint8Array(0) });
    expect(w2.verify().duplicated).toBe(0);
    expect(w2.stats.foreignCompletions).toBe(3);
  });

  it('detects loss: a destination device left in STOP never completes the in-flight jobs', () => {
    const tb = keep(createTestbed({ engine: 'sec', hw: 'v3', ramBytes: 16 * 2 ** 20 }));
    const w = tb.source.workload!;
    w.pump(4);
    tb.source.vm.run(1_000);
    const inflight = w.inFlight;
    expect(inflight).toBeGreaterThan(0);
    stopAndCopy(tb.source, tb.dest, { startDevice: false });
    expect(code(() => w.drain(5_000_000))).toBe('ETIMEDOUT');
    const v = w.verify();
    expect(v.lost).toBe(inflight);
    expect(v.ok).toBe(false);
  });

  it('the v1 region protocol testbed also boots and runs the workload', () => {
    const tb = keep(createTestbed({ engine: 'zip', hw: 'v3', protocol: 'v1', ramBytes: 16 * 2 ** 20 }));
    const w = tb.source.workload!;
    tb.source.vm.run(500_000);
    w.drain();
    expect(w.verify().ok).toBe(true);
    expect(tb.options.protocol).toBe('v1');
  });
});
