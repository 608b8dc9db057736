/**
 * Shared fixtures of the migration orchestrator tests: a small source/destination pair on one
 * simulated clock with a busy guest, and checks that do not trust the orchestrator's own
 * bookkeeping (RAM compared page by page, device state read through the uAPI, the vendor
 * driver's arc log, the workload's ledger).
 */
import { Buffer } from 'node:buffer';
import { expect } from 'vitest';
import { hisiAccStateOf } from '../src/drivers/hisi-acc/driver.js';
import type { SparseMemory } from '../src/mem/sparse-memory.js';
import { Scheduler } from '../src/sim/scheduler.js';
import {
  VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_V1_RUNNING,
  VFIO_REGION_SUBTYPE_MIGRATION, VFIO_REGION_TYPE_MIGRATION,
} from '../src/uapi/vfio.js';
import { findRegion, getMigState } from '../src/vmm/migration/device-uapi.js';
import type { DestinationReport, SourceReport } from '../src/vmm/migration/report-types.js';
import { createDestination, createSource, type TestbedEndpoint, type TestbedOptions } from '../src/vmm/testbed.js';

export const MiB = 2 ** 20;

/** A busy VF: 40 us per request keeps a backlog, so jobs are in flight when the guest stops. */
export const BUSY = { processNs: 40_000, irqNs: 1_000, mailboxNs: 2_000, wbNs: 5_000 };

export interface Pair {
  sched: Scheduler;
  source: TestbedEndpoint;
  dest: TestbedEndpoint;
}

export function pair(opts: TestbedOptions = {}, destOpts: TestbedOptions = {}): Pair {
  const sched = new Scheduler();
  const base: TestbedOptions = {
    ramBytes: 32 * MiB,
    latencies: BUSY,
    workload: { inFlight: 6, jobsPerMs: 30, dirtyPagesPerMs: 300, dirtyRegionPages: 1024, jobBytes: 2048 },
    warmupJobs: 4,
    ...opts,
  };
  const source = createSource(base, sched);
  const dest = createDestination({ ...base, ...destOpts }, sched, source.workload);
  source.vm.run(2_000_000);
  return { sched, source, dest };
}

/** Page-by-page comparison of two memories (independent of SparseMemory.hash). */
export function sameRam(a: SparseMemory, b: SparseMemory): { equal: boolean; firstDiff: number } {
  if (a.size !== b.size) return { equal: false, firstDiff: -1 };
  const pages = new Set<number>();
  a.forEachBackedPage((p) => pages.add(p));
  b.forEachBackedPage((p) => pages.add(p));
  const pa = Buffer.alloc(4096);
  const pb = Buffer.alloc(4096);
  for (const p of [...pages].sort((x, y) => x - y)) {
    a.copyPage(p, pa);
    b.copyPage(p, pb);
    if (!pa.equals(pb)) return { equal: false, firstDiff: p };
  }
  return { equal: true, firstDiff: -1 };
}

/** The arcs the destination's vendor driver ran (its own log, not the orchestrator's). */
export function driverArcs(ep: TestbedEndpoint): { from: number; to: number; ok: boolean }[] {
  return hisiAccStateOf(ep.device.core)?.dev.arcs.map((a) => ({ from: a.from, to: a.to, ok: a.ok })) ?? [];
}

/** The destination never loaded device state and never ran the guest. */
export function expectDestNotStarted(ep: TestbedEndpoint, r: DestinationReport): void {
  expect(r.ok).toBe(false);
  expect(r.started).toBe(false);
  expect(ep.vm.vcpusRunning).toBe(false);
  expect(ep.vm.driver).toBeNull();
  const loads = driverArcs(ep).filter((a) => a.from === VFIO_DEVICE_STATE_RESUMING && a.to === VFIO_DEVICE_STATE_STOP && a.ok);
  expect(loads).toEqual([]);
}

/**
 * The source kept (or got back) its guest: device RUNNING through the uAPI, vCPUs running,
 * and the workload goes on: more jobs are submitted and every job, old and new, completes
 * exactly once with the right output.
 */
export function expectSourceRecovered(p: Pair, r: SourceReport, uapi: 'v2' | 'v1' | 'none' = 'v2'): void {
  expect(r.ok).toBe(false);
  expect(r.guestRunsOn).toBe('source');
  expect(p.source.vm.vcpusRunning).toBe(true);
  if (uapi === 'v2') expect(getMigState(p.source.device)).toBe(VFIO_DEVICE_STATE_RUNNING);
  if (uapi === 'v1') expect(v1DeviceState(p.source)).toBe(VFIO_DEVICE_STATE_V1_RUNNING);
  const w = p.source.workload!;
  expect(w.vm).toBe(p.source.vm);
  const before = w.submitted;
  p.source.vm.run(1_000_000);
  expect(w.submitted).toBeGreaterThan(before);
  w.drain();
  const v = w.verify();
  expect(v).toMatchObject({ lost: 0, duplicated: 0, wrong: 0, inFlight: 0, failed: 0, ok: true });
  expect(v.completed).toBe(v.submitted);
  expect(v.interrupts.consistent).toBe(true);
}

/** device_state of the v1 migration region (vfio-uapi-and-migration.md section 4), read through the fd. */
export function v1DeviceState(ep: TestbedEndpoint): number {
  const r = findRegion(ep.device, VFIO_REGION_TYPE_MIGRATION, VFIO_REGION_SUBTYPE_MIGRATION);
  expect(r).not.toBeNull();
  const b = new Uint8Array(4);
  expect(ep.device.read(b, r!.offset)).toBe(4);
  return new DataView(b.buffer).getUint32(0, true);
}
