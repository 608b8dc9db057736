/**
 * The switchover rules (source.ts, destination.ts, transport/base.ts), checked with the fault
 * matrix's worlds and taps (src/fuzz/fault-*.ts) and judged by the matrix's own checks (RAM
 * page by page at the destination's start, device states through the uAPI, the workload's
 * exactly-once ledger after the guest ran on):
 *
 * - the end of the stream counts as delivered only once the destination's reader has taken it
 *   (an end the destination's transport holds but never processed is not a delivery);
 * - before that, any failure gives the guest back to the source (vfio-uapi-and-migration.md
 *   section 6: the source VM keeps running after a failed migration);
 * - after that, only the destination's explicit failure result does; a lost result leaves the
 *   source stopped with the handover 'unconfirmed' (the destination owns the guest), so the
 *   guest never runs on both hosts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { recordSteps, runCell, type Step } from '../src/fuzz/fault-matrix.js';
import type { SendFault, StepTap } from '../src/fuzz/fault-taps.js';
import { buildWorld, judge, migrateTapped, type CellOutcome, type RunResult, type World, type WorldOptions } from '../src/fuzz/fault-world.js';
import { VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP } from '../src/uapi/vfio.js';
import { runDestination } from '../src/vmm/migration/destination.js';
import { getMigState } from '../src/vmm/migration/device-uapi.js';
import { sourceLines } from '../src/vmm/migration/print.js';
import { runSource } from '../src/vmm/migration/source.js';
import { timelineSvg } from '../src/vmm/migration/timeline.js';
import { verifyMigration } from '../src/vmm/migration/verify.js';
import { createPipePair } from '../src/vmm/transport/in-process.js';
import { withFaults } from '../src/vmm/transport/fault.js';
import { connect, listen } from '../src/vmm/transport/socket.js';
import { TransportError, type Transport } from '../src/vmm/transport/types.js';

const WORLD: WorldOptions = { ramMiB: 8 };
let steps: Step[] = [];

beforeAll(async () => {
  steps = (await recordSteps(WORLD)).steps;
}, 60_000);

interface Run {
  w: World;
  r: RunResult;
  /** Who ran the guest right after the migration (before the judge lets it run on). */
  sourceRunning: boolean;
  destRunning: boolean;
  sourceDeviceState: number;
  o: CellOutcome;
}

async function migrate(steps: StepTap): Promise<Run> {
  const w = buildWorld(WORLD);
  const r = await migrateTapped(w, { steps, device: () => undefined });
  const sourceRunning = w.source.vm.vcpusRunning;
  const destRunning = w.dest.vm.vcpusRunning;
  const sourceDeviceState = getMigState(w.source.device);
  return { w, r, sourceRunning, destRunning, sourceDeviceState, o: judge(w, r) };
}

/** A fault on the destination's first return-path write (its result). */
function onResult(f: SendFault): StepTap {
  return { send: (ev) => (ev.side === 'dest' && ev.label === 'dest write #0' ? f : undefined) };
}

/**
 * A source/destination link pair where the destination starts reading only once the source
 * has sent everything and called end() (so the end is already in the destination's transport),
 * and then fails with a connection reset on the last data chunk, before it took the end.
 */
function readLateAndFailLast(src: Transport, dst: Transport): { source: Transport; dest: Transport; readonly chunks: number; readonly failedAt: number } {
  let chunks = 0;
  let failedAt = 0;
  let endCalled!: () => void;
  const ended = new Promise<void>((r) => { endCalled = r; });
  const source: Transport = {
    get label() { return src.label; },
    get bytesSent() { return src.bytesSent; },
    get bytesReceived() { return src.bytesReceived; },
    get closed() { return src.closed; },
    send: (c, o) => {
      if (c.length > 0) chunks++;
      return src.send(c, o);
    },
    end: () => {
      endCalled();
      return src.end();
    },
    abort: (r) => src.abort(r),
    close: () => src.close(),
    [Symbol.asyncIterator]: () => src[Symbol.asyncIterator](),
  };
  const dest: Transport = {
    get label() { return dst.label; },
    get bytesSent() { return dst.bytesSent; },
    get bytesReceived() { return dst.bytesReceived; },
    get closed() { return dst.closed; },
    send: (c, o) => dst.send(c, o),
    end: () => dst.end(),
    abort: (r) => dst.abort(r),
    close: () => dst.close(),
    [Symbol.asyncIterator]: () => {
      const inner = dst[Symbol.asyncIterator]();
      let n = 0;
      return {
        next: async () => {
          await ended;
          const r = await inner.next();
          if (r.done) return r;
          if (++n === chunks) {
            failedAt = n;
            dst.abort('reset while reading the last chunk');
            throw new TransportError('ECONNRESET', 'connection reset while reading the last chunk');
          }
          return r;
        },
      };
    },
  };
  return { source, dest, get chunks() { return chunks; }, get failedAt() { return failedAt; } };
}

/** The destination started, the source stayed stopped and says so: handover unconfirmed. */
function expectUnconfirmed(run: Run, why: RegExp): void {
  const s = run.r.source;
  expect(run.o.violations).toEqual([]);
  expect(s.ok).toBe(true);
  expect(s.handover).toBe('unconfirmed');
  expect(s.handoverNote).toMatch(/took the whole stream but its result never arrived/);
  expect(s.handoverNote).toMatch(why);
  expect(s.destination).toBeNull();
  expect(s.guestRunsOn).toBe('destination');
  expect(s.recovery).toEqual([]);
  expect([run.sourceRunning, run.destRunning]).toEqual([false, true]);
  // the source completed its side as after a confirmed switchover: STOP_COPY -> STOP (spec 6)
  expect(run.sourceDeviceState).toBe(VFIO_DEVICE_STATE_STOP);
  expect(run.r.destination.started).toBe(true);
  expect(run.r.ramEqualAtStart).toBe(true);
  expect(run.o).toMatchObject({ migrated: true, runsOn: 'destination', destStarted: true, lost: 0, duplicated: 0, wrong: 0 });
  expect(run.o.jobsAfter).toBeGreaterThan(0);
}

describe('the result is lost after the destination took the whole stream: exactly one host runs the guest', { timeout: 60_000 }, () => {
  it('a clean run confirms the handover with the destination\'s report', async () => {
    const run = await migrate({});
    expect(run.o.violations).toEqual([]);
    expect(run.r.source.handover).toBe('confirmed');
    expect(run.r.source.handoverNote).toBeUndefined();
    expect(run.r.source.destination).toMatchObject({ ok: true, started: true });
    expect(run.r.source.downtime!.destinationNs).toBe(run.r.destination.switchoverNs);
    expect([run.sourceRunning, run.destRunning]).toEqual([false, true]);
  });

  it('the result write is dropped (connection lost): the source stays stopped, handover unconfirmed', async () => {
    expectUnconfirmed(await migrate(onResult({ kind: 'drop' })), /reset/);
  });

  it('the result write vanishes and the return path then ends cleanly: unconfirmed, not a failure', async () => {
    expectUnconfirmed(await migrate(onResult({ kind: 'truncate' })), /ended without a result/);
  });

  it('the result arrives corrupted (not JSON): unconfirmed', async () => {
    expectUnconfirmed(await migrate(onResult({ kind: 'flip', byte: 0, xor: 0x01 })), /not JSON/);
  });

  it('the source\'s read of the result fails with a reset: unconfirmed', async () => {
    expectUnconfirmed(await migrate({ recv: (ev) => (ev.side === 'source' ? { kind: 'reset' } : undefined) }), /connection reset/);
  });

  it('the three matrix cells that used to split the brain pass the matrix\'s requirement', async () => {
    for (const id of ['dest:send:0:drop', 'dest:send:0:truncate', 'source:recv:0:reset'] as const) {
      const [side, kind, ordinal, fault] = id.split(':') as ['dest' | 'source', 'send' | 'recv', string, 'drop' | 'truncate' | 'reset'];
      const step = steps.find((s) => s.side === side && s.kind === kind && s.ordinal === Number(ordinal))!;
      expect(step, id).toBeDefined();
      const c = await runCell({ side, kind, ordinal: Number(ordinal), fault }, step.label, WORLD);
      expect(c.fired, id).toBe(true);
      expect(c.violations, id).toEqual([]);
      expect(c.outcome, id).toMatchObject({ migrated: true, runsOn: 'destination', destStarted: true, lost: 0, duplicated: 0 });
    }
  });
});

describe('before the destination took the whole stream, or on its explicit failure: the source takes the guest back', { timeout: 60_000 }, () => {
  it('the destination\'s reader fails on the last chunk while its transport already holds the end: the source resumes', async () => {
    const w = buildWorld(WORLD);
    const [a, b] = createPipePair(['migration source', 'migration destination']);
    const late = readLateAndFailLast(a, b);
    const [source, destination] = await Promise.all([runSource(w.source, late.source), runDestination(w.dest, late.dest)]);
    expect(late.failedAt).toBeGreaterThan(1);
    expect(late.failedAt).toBe(late.chunks);
    const sourceRunning = w.source.vm.vcpusRunning;
    const destRunning = w.dest.vm.vcpusRunning;
    const o = judge(w, { source, destination, ramEqualAtStart: null });
    expect(o.violations).toEqual([]);
    expect(source).toMatchObject({ ok: false, handover: null, guestRunsOn: 'source' });
    expect(source.failure!.message).toMatch(/the stream did not reach the destination/);
    expect(destination.started).toBe(false);
    expect([sourceRunning, destRunning]).toEqual([true, false]);
    expect(getMigState(w.source.device)).toBe(VFIO_DEVICE_STATE_RUNNING);
    expect(o.jobsAfter).toBeGreaterThan(0);
  });

  it('the destination\'s load fails after it took the whole stream: its failure result gives the guest back (spec 6)', async () => {
    let loads = 0;
    const run = await migrate({
      call: (ev) => (ev.side === 'dest' && /SET MIG_DEVICE_STATE -> STOP$/.test(ev.label) && loads++ === 0 ? 5 /* EIO */ : undefined),
    });
    expect(loads).toBeGreaterThan(0);
    expect(run.o.violations).toEqual([]);
    expect(run.r.destination).toMatchObject({ ok: false, started: false });
    expect(run.r.destination.failure!.step).toBe('load');
    expect(run.r.source).toMatchObject({ ok: false, handover: null, guestRunsOn: 'source' });
    expect(run.r.source.failure!.side).toBe('destination');
    expect(run.r.source.recovery).toContain('vCPUs resumed on the source');
    expect([run.sourceRunning, run.destRunning]).toEqual([true, false]);
    expect(run.o).toMatchObject({ lost: 0, duplicated: 0, wrong: 0 });
  });
});

describe('the same rules over a TCP connection (the cross-process link; FIN_ACK is sent by the destination\'s reader)', { timeout: 60_000 }, () => {
  async function tcpPair(): Promise<{ src: Transport; dst: Transport; closing: Promise<void> }> {
    const l = await listen({ port: 0 });
    const addr = l.address as { host: string; port: number };
    const [src, dst] = await Promise.all([connect({ host: addr.host, port: addr.port }), l.accept()]);
    return { src, dst, closing: l.close() };
  }

  it('the result is dropped after the destination started: unconfirmed, the source stays stopped', async () => {
    const w = buildWorld(WORLD);
    const { src, dst, closing } = await tcpPair();
    const [source, destination] = await Promise.all([runSource(w.source, src), runDestination(w.dest, withFaults(dst, { dropAfterBytes: 0 }))]);
    const sourceRunning = w.source.vm.vcpusRunning;
    const destRunning = w.dest.vm.vcpusRunning;
    const o = judge(w, { source, destination, ramEqualAtStart: true });
    await closing;
    expect(destination.started).toBe(true);
    expect(source).toMatchObject({ ok: true, handover: 'unconfirmed', guestRunsOn: 'destination', destination: null });
    expect([sourceRunning, destRunning]).toEqual([false, true]);
    expect(o.violations).toEqual([]);
    expect(o).toMatchObject({ lost: 0, duplicated: 0, wrong: 0 });
  });

  it('the destination\'s reader fails before it took the end: the source resumes, the destination never started', async () => {
    const w = buildWorld(WORLD);
    const { src, dst, closing } = await tcpPair();
    const late = readLateAndFailLast(src, dst);
    const [source, destination] = await Promise.all([runSource(w.source, late.source), runDestination(w.dest, late.dest)]);
    const sourceRunning = w.source.vm.vcpusRunning;
    const destRunning = w.dest.vm.vcpusRunning;
    const o = judge(w, { source, destination, ramEqualAtStart: null });
    await closing;
    expect(late.failedAt).toBe(late.chunks);
    expect(source).toMatchObject({ ok: false, handover: null, guestRunsOn: 'source' });
    expect(destination.started).toBe(false);
    expect([sourceRunning, destRunning]).toEqual([true, false]);
    expect(o.violations).toEqual([]);
    expect(o.jobsAfter).toBeGreaterThan(0);
  });
});

describe('the unconfirmed handover is visible in the printed report, the SVG and the verification', { timeout: 60_000 }, () => {
  it('text, SVG summary and verification name it; the downtime is a lower bound', async () => {
    const run = await migrate(onResult({ kind: 'drop' }));
    const s = run.r.source;
    const lines = sourceLines(s);
    expect(lines.some((l) => /^ {2}handover {3}UNCONFIRMED: the destination took the whole stream/.test(l))).toBe(true);
    expect(lines.some((l) => /^ {2}downtime {3}at least .*destination unknown/.test(l))).toBe(true);
    expect(timelineSvg(s)).toContain('handover UNCONFIRMED');
    const v = verifyMigration(s, null);
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatch(/^handover unconfirmed: /);
    // no destination part in the downtime: it is what the source measured plus the link
    expect(s.downtime!.destinationNs).toBe(0);
    expect(s.downtime!.totalNs).toBe(s.downtime!.sourceNs + s.downtime!.transferNs);
  });
});

describe('end() counts as delivered once the peer\'s reader has taken the end (transport/base.ts)', () => {
  it('in process: end() waits for the attached reader; a drop before it took the end is an error on both sides', async () => {
    const [a, b] = createPipePair();
    const it = b[Symbol.asyncIterator]();
    await a.send(new Uint8Array([1, 2, 3]));
    let acked = false;
    const ending = a.end().then(() => { acked = true; }, (e: unknown) => e);
    expect((await it.next()).value).toEqual(new Uint8Array([1, 2, 3]));
    await Promise.resolve();
    expect(acked).toBe(false);
    // the connection breaks after the end arrived but before the reader took it
    a.abort('source gone');
    await expect(it.next()).rejects.toBeInstanceOf(TransportError);
    expect(await ending).toBeInstanceOf(TransportError);
    expect(acked).toBe(false);
  });

  it('in process: taking the end resolves end(); a later failure changes nothing for that direction', async () => {
    const [a, b] = createPipePair();
    const it = b[Symbol.asyncIterator]();
    await a.send(new Uint8Array([9]));
    const ending = a.end();
    expect((await it.next()).done).toBe(false);
    expect((await it.next()).done).toBe(true);
    await ending;
    b.abort('later');
    expect((await it.next()).done).toBe(true);
  });

  it('in process: with no reader attached the end is acknowledged on arrival (as before)', async () => {
    const [a, b] = createPipePair();
    await a.send(new Uint8Array([4]));
    await a.end();
    const got: number[] = [];
    for await (const c of b) got.push(...c);
    expect(got).toEqual([4]);
  });

  it('a reader that leaves with unread data after the end arrived breaks the connection instead of acknowledging', async () => {
    const [a, b] = createPipePair();
    const it = b[Symbol.asyncIterator]();
    await a.send(new Uint8Array([1]));
    await a.send(new Uint8Array([2]));
    const ending = a.end().then(() => null, (e: unknown) => e);
    expect((await it.next()).value).toEqual(new Uint8Array([1]));
    await it.return!();
    expect(await ending).toBeInstanceOf(TransportError);
  });

  it('TCP: the FIN_ACK frame goes out only when the server\'s reader takes the end', async () => {
    const l = await listen({ port: 0 });
    const addr = l.address as { host: string; port: number };
    const [client, server] = await Promise.all([connect({ host: addr.host, port: addr.port }), l.accept()]);
    // the listener's close completes only once its connections are over
    const closing = l.close();
    const it = server[Symbol.asyncIterator]();
    let acked = false;
    await client.send(new Uint8Array(1000).fill(7));
    const ending = client.end().then(() => { acked = true; });
    let n = 0;
    while (n < 1000) n += (await it.next()).value!.length;
    // give the FIN frame time to cross loopback; it must not be acknowledged yet
    await new Promise((r) => setTimeout(r, 100));
    expect(acked).toBe(false);
    expect((await it.next()).done).toBe(true);
    await ending;
    expect(acked).toBe(true);
    await Promise.all([client.close(), server.close()]);
    expect(await client.closed).toBeNull();
    expect(await server.closed).toBeNull();
    await closing;
  }, 20_000);
});
