/**
 * The guest's CPU state (Vm.saveCpuState / loadCpuState, MigratableVm in
 * src/vmm/migration/types.ts): the guest driver's, Accel's, allocator's and workload's
 * JavaScript state as JSON bytes. A destination rebuilds exactly the saved state; bad input
 * is refused with EINVAL/EBUSY and leaves the destination without a guest.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY,
} from '../src/uapi/vfio.js';
import { createDestination, createTestbed, type TestbedEndpoint } from '../src/vmm/testbed.js';
import { CPU_STATE_FORMAT, CPU_STATE_VERSION } from '../src/vmm/vm.js';
import { errnoCode as code, setState } from './vmm-vm-helpers.js';

const MiB = 2 ** 20;
const live: TestbedEndpoint[] = [];
afterEach(() => {
  for (const e of live.splice(0)) if (!e.vm.isShutdown) e.vm.shutdown();
});

function testbed(engine: 'zip' | 'sec' | 'hpre' = 'zip') {
  const t = createTestbed({ engine, hw: 'v3', ramBytes: 16 * MiB });
  live.push(t.source, t.dest);
  return t;
}

const json = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b));
const bytes = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

describe('saveCpuState', () => {
  it('needs the vCPUs paused (EBUSY while running)', () => {
    const { source } = testbed();
    expect(code(() => source.vm.saveCpuState())).toBe('EBUSY');
    source.vm.pauseVcpus();
    expect(code(() => source.vm.saveCpuState())).toBe('no error');
  });

  it('carries the in-flight table, ring cursors, allocator blocks and the ledger', () => {
    const { source } = testbed('sec');
    const w = source.workload!;
    w.pump(4);
    source.vm.run(1_000);
    source.vm.pauseVcpus();
    const st = json(source.vm.saveCpuState());
    expect(st.format).toBe(CPU_STATE_FORMAT);
    expect(st.ramBase).toBe(0x4000_0000);
    const qps = st.guest.driver.qps as { qn: number; sqBase: number; inflight: [number, { ticket: number }][]; sqTail: number }[];
    const inflight = qps.flatMap((q) => q.inflight);
    expect(inflight.length).toBe(w.inFlight);
    const tickets = inflight.map(([, j]) => j.ticket).sort((a, b) => a - b);
    const ledgerTickets = w.entries().filter((e) => e.state === 'submitted').map((e) => e.ticket).sort((a, b) => a - b);
    expect(tickets).toEqual(ledgerTickets);
    const live = new Map<number, number>(st.guest.allocator.live);
    for (const q of qps) expect(live.has(q.sqBase)).toBe(true);
    // only the outstanding jobs travel as entries; the settled ones as a summary
    expect(st.workload.ledger.map((r: unknown[]) => r[2]).sort((a: number, b: number) => a - b)).toEqual(ledgerTickets);
    expect(st.workload.settled.jobs + st.workload.ledger.length).toBe(w.submitted);
    expect(st.workload.settled.completedOnce).toBe(w.verify().completed);
    expect(w.verify().completed).toBeGreaterThan(0);
  });

  it('does not grow with the jobs that finished: the CPU state size depends on outstanding jobs only', () => {
    const { source } = testbed('zip');
    const w = source.workload!;
    const sizeAfter = (jobs: number) => {
      source.vm.resumeVcpus();
      for (let done = 0; done < jobs; ) {
        done += w.pump(jobs - done);
        w.drain();
      }
      w.pump(4);
      source.vm.pauseVcpus();
      const st = json(source.vm.saveCpuState());
      expect(st.workload.ledger.length).toBe(4);
      return { bytes: source.vm.saveCpuState().length, settled: st.workload.settled.jobs };
    };
    const a = sizeAfter(20);
    const b = sizeAfter(200);
    expect(b.settled - a.settled).toBe(204);
    // a few digits more in counters and tickets, never a per-job entry (one is ~200 bytes)
    expect(Math.abs(b.bytes - a.bytes)).toBeLessThan(200);
  });
});

describe('loadCpuState', () => {
  it('rebuilds exactly the saved state: the destination saves the same bytes', () => {
    const { source, dest } = testbed('hpre');
    const w = source.workload!;
    w.pump(4);
    source.vm.run(1_000);
    source.vm.pauseVcpus();
    const saved = source.vm.saveCpuState();
    dest.vm.loadCpuState(saved);
    expect(Buffer.from(dest.vm.saveCpuState()).equals(Buffer.from(saved))).toBe(true);
    expect(dest.vm.driver!.info).toEqual(source.vm.driver!.info);
    expect(dest.vm.accel!.pending).toBe(w.inFlight);
  });

  it('is refused while running or when a guest already runs (EBUSY)', () => {
    const { source, dest } = testbed();
    source.vm.pauseVcpus();
    const saved = source.vm.saveCpuState();
    expect(code(() => source.vm.loadCpuState(saved))).toBe('EBUSY');
    dest.vm.resumeVcpus();
    expect(code(() => dest.vm.loadCpuState(saved))).toBe('EBUSY');
    dest.vm.pauseVcpus();
    expect(code(() => dest.vm.loadCpuState(saved))).toBe('no error');
  });

  it('rejects garbage, other formats, another RAM layout and inconsistent tables with EINVAL, leaving no guest', () => {
    const { source, dest } = testbed('zip');
    source.workload!.pump(4);
    source.vm.run(1_000);
    source.vm.pauseVcpus();
    const saved = source.vm.saveCpuState();
    const good = json(saved);
    const edit = (f: (o: any) => void) => {
      const o = structuredClone(good);
      f(o);
      return bytes(o);
    };
    const cases: Uint8Array[] = [
      Uint8Array.of(0xff, 0xfe, 0x00),
      saved.subarray(0, saved.length - 5),
      edit((o) => (o.version = CPU_STATE_VERSION + 1)),
      // version 1 carried every ledger entry; its shape is not this one
      edit((o) => (o.version = 1)),
      edit((o) => (o.ramBytes = 32 * MiB)),
      edit((o) => (o.vcpus = 3)),
      // an in-flight tag also on the free stack
      edit((o) => {
        const q = o.guest.driver.qps.find((x: any) => x.inflight.length > 0);
        q.freeTags[0] = q.inflight[0][0];
      }),
      edit((o) => (o.guest.allocator.live = [])),
      edit((o) => (o.guest.driver.qps[0].cqHead = 1 << 20)),
      edit((o) => (o.guest.accel.engine = 'sec')),
      edit((o) => (o.workload.ledger[0] = [1, 2])),
      // settled and outstanding jobs must add up to the jobs submitted
      edit((o) => (o.workload.settled.jobs += 1)),
      edit((o) => (o.workload.nextId += 1)),
      // a wrong job the summary counts but cannot name
      edit((o) => (o.workload.settled.wrong += 1)),
      edit((o) => (o.workload.settled.digest = 'not hex')),
      // a settled job carried as an outstanding entry (its completion would be counted twice)
      edit((o) => {
        o.workload.ledger[0][7] = 'completed';
      }),
      edit((o) => (o.workload.ledger[1][2] = o.workload.ledger[0][2])),
      edit((o) => (o.workload.settled.ticketHi = o.workload.ledger[0][2] - 1)),
    ];
    for (const c of cases) {
      expect(code(() => dest.vm.loadCpuState(c))).toBe('EINVAL');
      expect(dest.vm.driver).toBeNull();
      expect(dest.vm.accel).toBeNull();
    }
    // the good state still loads afterwards
    dest.vm.loadCpuState(saved);
    expect(dest.vm.driver).not.toBeNull();
  });

  it('a failed load leaves no guest work behind: the half-restored driver\'s queued bottom half never runs', () => {
    const { source, dest } = testbed('zip');
    source.vm.pauseVcpus();
    const st = json(source.vm.saveCpuState());
    st.guest.driver.pendingVectors = 1; // an interrupt received, bottom half not yet run
    st.workload.ledger[0] = ['broken'];
    expect(code(() => dest.vm.loadCpuState(bytes(st)))).toBe('EINVAL');
    let stores = 0;
    const io = dest.io;
    const w64 = io.write64.bind(io);
    io.write64 = (bar, off, lo, hi) => {
      stores++;
      w64(bar, off, lo, hi);
    };
    dest.vm.resumeVcpus();
    dest.vm.run(100_000);
    expect(stores).toBe(0);
  });

  it('a VM of another RAM size refuses the state', () => {
    const { source } = testbed();
    const other = createDestination({ engine: 'zip', hw: 'v3', ramBytes: 32 * MiB, vfIndex: 2 });
    live.push(other);
    source.vm.pauseVcpus();
    expect(code(() => other.vm.loadCpuState(source.vm.saveCpuState()))).toBe('EINVAL');
  });
});

describe('a migration that fails after the destination loaded: the source resumes', () => {
  it('the workload goes back to the source VM and nothing is lost', () => {
    const { source, dest } = testbed('zip');
    const w = source.workload!;
    w.pump(4);
    source.vm.run(1_000);
    source.vm.pauseVcpus();
    const fd = setState(source.device, VFIO_DEVICE_STATE_STOP_COPY);
    dest.vm.loadCpuState(source.vm.saveCpuState());
    expect(w.vm).toBe(dest.vm);
    // switchover fails: the source device returns to RUNNING and its vCPUs resume
    setState(source.device, VFIO_DEVICE_STATE_STOP);
    source.host.process.fds.close(fd);
    setState(source.device, VFIO_DEVICE_STATE_RUNNING);
    source.vm.resumeVcpus();
    expect(w.vm).toBe(source.vm);
    source.vm.run(500_000);
    w.drain();
    const v = w.verify();
    expect(v.ok).toBe(true);
    expect(v.completed).toBe(v.submitted);
    expect(dest.vm.vcpusRunning).toBe(false);
  });
});
