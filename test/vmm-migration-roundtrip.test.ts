/**
 * Live migration round trips through the orchestrator (vfio-uapi-and-migration.md section 6,
 * iommu-notifiers-and-dirty-ring.md section 2, hisi-acc-vfio-pci.md sections 3-6): every
 * engine on V3 and V4 hardware, both migration uAPIs, both dirty-tracking modes, with and
 * without pre-copy, several VFs; QM V2 hardware cannot migrate and the source keeps running.
 *
 * Independent checks: guest RAM compared page by page between the hosts right after the
 * switchover; device states read through the uAPI; the vendor driver's own arc log; every
 * job's output checked by the workload ledger against node:zlib / node:crypto.
 */
import { describe, expect, it } from 'vitest';
import { VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP } from '../src/uapi/vfio.js';
import { Errno } from '../src/uapi/errno.js';
import { getMigState } from '../src/vmm/migration/device-uapi.js';
import { assignExtraVfs, withDevices } from '../src/vmm/migration/extra-vfs.js';
import { migrateInProcess } from '../src/vmm/migration/in-process.js';
import { verifyMigration } from '../src/vmm/migration/verify.js';
import { jobVerdict } from '../src/vmm/migration/scenario.js';
import { MiB, driverArcs, expectSourceRecovered, pair, sameRam } from './vmm-migration-helpers.js';

const QM_MATCH_SIZE = 40; // hisi-acc-vfio-pci.md section 3
const ACC_VF_DATA_SIZE = 176;

describe('round trip per engine and hardware version (spec 6)', () => {
  for (const engine of ['zip', 'sec', 'hpre'] as const) {
    for (const hw of ['v3', 'v4'] as const) {
      it(`${engine}-${hw}: the guest continues on the destination, RAM and VF state identical, every job exactly once`, async () => {
        const p = pair({ engine, hw });
        const w = p.source.workload!;
        let inFlightAtStop = -1;
        const out = await migrateInProcess(p.source, p.dest, { onVcpusStopped: () => (inFlightAtStop = w.inFlight) });
        const s = out.source;
        expect(s.failure).toBeUndefined();
        expect(s.ok).toBe(true);
        expect(s.guestRunsOn).toBe('destination');
        expect(s.protocol).toBe('v2');
        expect(s.precopy).toBe(true);
        // jobs were queued on the VF when the guest stopped: they finish on the destination
        expect(inFlightAtStop).toBeGreaterThan(0);
        // RAM, compared without the orchestrator's hashes
        const cmp = sameRam(p.source.vm.ram, p.dest.vm.ram);
        expect(cmp).toEqual({ equal: true, firstDiff: -1 });
        expect(s.ramHash).toBe(out.destination.ramHash);
        // device states through the uAPI; the destination driver loaded exactly once
        expect(getMigState(p.source.device)).toBe(VFIO_DEVICE_STATE_STOP);
        expect(getMigState(p.dest.device)).toBe(VFIO_DEVICE_STATE_RUNNING);
        expect(driverArcs(p.dest).filter((a) => a.from === 4 && a.to === 1 && a.ok)).toHaveLength(1);
        // the device data is one whole acc_vf_data: match data in pre-copy, the rest at stop
        expect(s.devices).toEqual([{ name: p.source.bdf, protocol: 'v2', precopyBytes: QM_MATCH_SIZE, stopCopyBytes: ACC_VF_DATA_SIZE - QM_MATCH_SIZE }]);
        const check = out.destination.devices[0]!.check!;
        expect(check).toMatchObject({ ok: true, source: 'live-registers', mismatches: [] });
        expect(p.dest.vm.vcpusRunning).toBe(true);
        expect(p.source.vm.vcpusRunning).toBe(false);
        // the same workload object runs on at the destination and finishes everything there
        expect(w.vm).toBe(p.dest.vm);
        const before = w.submitted;
        const destSqes = () => p.dest.host.accelerators[0]!.qm.vf(1)!.debugSnapshot().queues.sqesProcessed;
        p.dest.vm.run(2_000_000);
        w.drain();
        expect(w.submitted).toBeGreaterThan(before);
        expect(destSqes()).toBeGreaterThan(0);
        const v = w.verify();
        expect(v).toMatchObject({ lost: 0, duplicated: 0, wrong: 0, inFlight: 0, failed: 0, ok: true });
        expect(v.completed).toBe(v.submitted);
        const ver = verifyMigration(s, jobVerdict(w));
        expect(ver.problems).toEqual([]);
        expect(ver.ok).toBe(true);
      });
    }
  }
});

describe('variants', () => {
  it('v1 region protocol (spec 4, hisi-acc section 7): SAVING|RUNNING, SAVING, RESUMING -> RUNNING', async () => {
    const p = pair({ protocol: 'v1' });
    const out = await migrateInProcess(p.source, p.dest);
    expect(out.source.failure).toBeUndefined();
    expect(out.source.protocol).toBe('v1');
    // SAVING|RUNNING gives the match data, SAVING the whole acc_vf_data again (hisi-acc section 7)
    expect(out.source.devices[0]).toMatchObject({ protocol: 'v1', precopyBytes: QM_MATCH_SIZE, stopCopyBytes: ACC_VF_DATA_SIZE });
    expect(sameRam(p.source.vm.ram, p.dest.vm.ram).equal).toBe(true);
    // v1 starts the device as it loads: only the driver's accepted data can be compared
    expect(out.destination.devices[0]!.check).toMatchObject({ ok: true, source: 'driver-migf' });
    const w = p.source.workload!;
    p.dest.vm.run(1_000_000);
    w.drain();
    expect(w.verify()).toMatchObject({ lost: 0, duplicated: 0, wrong: 0, ok: true });
  });

  it('type1 dirty tracking: every mapped page is reported dirty each pass, pre-copy cannot converge (type1 spec 4)', async () => {
    const p = pair({ dirty: 'type1' });
    const out = await migrateInProcess(p.source, p.dest, { dirty: 'type1', maxIterations: 3 });
    const s = out.source;
    expect(s.failure).toBeUndefined();
    expect(s.dirtyMode).toBe('type1');
    expect(s.dirtyNote).toMatch(/every DMA-mapped page/);
    expect(s.converged).toBe(false);
    expect(s.iterations).toHaveLength(3);
    const ramPages = (32 * MiB) / 4096;
    for (const it of s.iterations) expect(it.deviceDirtyAfter).toBe(ramPages);
    expect(s.final!.devicePages).toBe(ramPages);
    expect(sameRam(p.source.vm.ram, p.dest.vm.ram).equal).toBe(true);
    const w = p.source.workload!;
    p.dest.vm.run(1_000_000);
    w.drain();
    expect(w.verify()).toMatchObject({ lost: 0, duplicated: 0, wrong: 0, ok: true });
  });

  it('dma-logging reports only what the device wrote: far fewer device-dirty pages than RAM', async () => {
    const p = pair();
    const out = await migrateInProcess(p.source, p.dest);
    const s = out.source;
    expect(s.dirtyMode).toBe('dma-logging');
    expect(s.converged).toBe(true);
    const ramPages = (32 * MiB) / 4096;
    for (const it of s.iterations) expect(it.deviceDirtyAfter).toBeLessThan(ramPages / 100);
    // the pre-copy passes shrink while the guest keeps dirtying at a rate below the link's
    expect(s.iterations.length).toBeGreaterThanOrEqual(1);
    expect(s.final!.pages).toBeLessThan(s.iterations[0]!.pages);
  });

  it('without pre-copy: RUNNING -> STOP -> STOP_COPY in one step, all device data at the stop', async () => {
    const p = pair();
    const out = await migrateInProcess(p.source, p.dest, { precopy: false });
    expect(out.source.failure).toBeUndefined();
    expect(out.source.precopy).toBe(false);
    expect(out.source.devices[0]).toMatchObject({ precopyBytes: 0, stopCopyBytes: ACC_VF_DATA_SIZE });
    const w = p.source.workload!;
    p.dest.vm.run(1_000_000);
    w.drain();
    expect(w.verify()).toMatchObject({ lost: 0, duplicated: 0, wrong: 0, ok: true });
  });

  it('three VFs: the idle ones carry match data only (QM_NOT_READY) and are loaded and started too', async () => {
    const p = pair({ numVfs: 3 });
    const src = withDevices(p.source, assignExtraVfs(p.source.host, p.source, [2, 3]));
    const dst = withDevices(p.dest, assignExtraVfs(p.dest.host, p.dest, [2, 3]));
    const out = await migrateInProcess(src, dst);
    expect(out.source.failure).toBeUndefined();
    expect(out.source.devices.map((d) => d.precopyBytes + d.stopCopyBytes)).toEqual([ACC_VF_DATA_SIZE, QM_MATCH_SIZE, QM_MATCH_SIZE]);
    expect(out.destination.devices.map((d) => d.check?.ok)).toEqual([true, true, true]);
    for (const d of dst.devices) expect(getMigState(d.file)).toBe(VFIO_DEVICE_STATE_RUNNING);
    const w = p.source.workload!;
    p.dest.vm.run(1_000_000);
    w.drain();
    expect(w.verify()).toMatchObject({ lost: 0, duplicated: 0, wrong: 0, ok: true });
  });
});

describe('QM V2 hardware cannot migrate (hisi-acc-vfio-pci.md section 1)', () => {
  it('the orchestrator says so before touching anything; the guest keeps running on the source', async () => {
    const p = pair({ hw: 'v2' });
    const out = await migrateInProcess(p.source, p.dest);
    const s = out.source;
    expect(s.failure).toMatchObject({ step: 'probe', errno: Errno.ENOTTY, side: 'source' });
    expect(s.failure!.message).toMatch(/offers no migration/);
    expect(s.failure!.message).toMatch(/V3/);
    expect(s.iterations).toEqual([]);
    expect(out.destination.started).toBe(false);
    expect(p.dest.vm.vcpusRunning).toBe(false);
    // the pass-through binding has no migration state at all: the feature is ENOTTY
    expect(getMigState(p.source.device)).toBe(-Errno.ENOTTY);
    expectSourceRecovered(p, s, 'none');
  });
});
