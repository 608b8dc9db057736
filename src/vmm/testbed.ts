/**
 * The migration testbed: a source host whose VM runs the workload on a VF bound to
 * hisi-acc-vfio-pci, and an idle destination host with the same accelerator, a VF bound to
 * the same driver and a VM shell (VFIO set up, RAM mapped, no guest booted) waiting for the
 * incoming guest. Both sides are MigrationEndpoints for the orchestrator (migration/types.ts).
 *
 * Host setup is the administrator's flow on each side: the accelerator boots with the hisi
 * PF driver, `sriov_numvfs` creates the VFs, the vendor driver module is loaded, and the VF
 * is bound with driver_override + drivers_probe.
 *
 * One process: both hosts share one scheduler (one simulated clock) unless `sharedClock` is
 * false, and the destination VM is handed the source's Workload object, so after
 * `dest.vm.loadCpuState()` the very same object continues on the destination VF. Another
 * process: build only what that process owns with createSource / createDestination; the
 * destination then builds a new Workload from the CPU state.
 *
 * The orchestrator's steps on these endpoints (QEMU's order): source.vm.pauseVcpus(), devices
 * to STOP_COPY, `source.devices[i].io.saveDeviceConfig()` (DEV_CONFIG_STATE) and
 * `source.vm.saveCpuState()`; dirty pages with `vm.collectDirty` during pre-copy and
 * `vm.finalCollect` at the end; on the destination `devices[i].io.loadDeviceConfig(blob)`,
 * `vm.loadCpuState(bytes)`, device RUNNING, `vm.resumeVcpus()`.
 */
import type { Host as HostType } from '../host/host.js';
import { Host } from '../host/host.js';
import type { HostPciDevice } from '../host/pci-device.js';
import { createHisiAccVfioPciDriver, HISI_ACC_VFIO_PCI } from '../drivers/hisi-acc/driver.js';
import type { EngineKind } from '../hw/profile.js';
import type { QmLatencies } from '../hw/qm/qm-function.js';
import type { Engine } from '../hw/qm/engine-contract.js';
import { Scheduler } from '../sim/scheduler.js';
import { KernelError, fail } from '../uapi/errno.js';
import type { VfioFile } from '../vfio/fd.js';
import type { VfioDeviceFile } from '../vfio/pci-core/device-file.js';
import type { MigrationEndpoint, PassthroughDevice } from './migration/types.js';
import type { VfioGuestIo } from './vfio-guest-io.js';
import { Vm, type VmOptions } from './vm.js';
import { Workload, type WorkloadOptions } from './workload.js';

export type DirtyTracking = 'dma-logging' | 'type1';

export interface TestbedOptions {
  engine?: EngineKind;
  hw?: 'v2' | 'v3' | 'v4';
  /** Guest RAM (default 64 MiB). */
  ramBytes?: number;
  /** VFs enabled on each host (default 2). */
  numVfs?: number;
  /** The VF (1-based) the VM gets on the source (default 1). */
  vfIndex?: number;
  /** The VF the destination offers (default: vfIndex). */
  destVfIndex?: number;
  /** hisi-acc-vfio-pci migration uAPI (default 'v2'). */
  protocol?: 'v2' | 'v1';
  /** Device dirty tracking the orchestrator should use (default 'dma-logging'); carried in `options`. */
  dirty?: DirtyTracking;
  /** V4 "PF control" mode of the vendor driver. */
  pfControl?: boolean;
  /** Host page size: 65536 makes the vendor driver refuse the BAR2 mmap (accesses go through the fd). */
  hostPageSize?: 4096 | 65536;
  /** Device latencies (default: 2 us per SQE, 1 us interrupt latency, so jobs are in flight at a stop). */
  latencies?: Partial<QmLatencies>;
  /** The workload (false: none). */
  workload?: WorkloadOptions | false;
  /** Jobs the workload runs before the testbed is returned (default 8). */
  warmupJobs?: number;
  vcpus?: number;
  dirtyRingEntries?: number;
  deviceIotlb?: boolean;
  /** MAP_DMA guest RAM in mappings of this size (see VmOptions.dmaChunkBytes). */
  dmaChunkBytes?: number;
  /** Replaces the accelerator's engine on both hosts (fault-injection tests). */
  engineModel?: Engine;
  /** One scheduler for both hosts (default true). */
  sharedClock?: boolean;
  scheduler?: Scheduler;
}

export interface ResolvedTestbedOptions {
  engine: EngineKind;
  hw: 'v2' | 'v3' | 'v4';
  ramBytes: number;
  numVfs: number;
  vfIndex: number;
  destVfIndex: number;
  protocol: 'v2' | 'v1';
  dirty: DirtyTracking;
  pfControl: boolean;
  hostPageSize: 4096 | 65536;
}

/** A passed-through VF with the VMM's guest-facing side of it. */
export interface GuestDevice extends PassthroughDevice {
  readonly file: VfioDeviceFile;
  /** saveDeviceConfig() / loadDeviceConfig() for DEV_CONFIG_STATE. */
  readonly io: VfioGuestIo;
  readonly bdf: string;
}

export interface TestbedEndpoint extends MigrationEndpoint {
  readonly host: HostType;
  readonly vm: Vm;
  readonly devices: readonly GuestDevice[];
  readonly deviceFd: number;
  readonly device: VfioDeviceFile;
  readonly io: VfioGuestIo;
  readonly bdf: string;
  /** The workload (source: running; destination: the object that continues there, if known). */
  readonly workload: Workload | null;
  readonly options: ResolvedTestbedOptions;
}

export interface Testbed {
  source: TestbedEndpoint;
  dest: TestbedEndpoint;
  options: ResolvedTestbedOptions;
}

const DEFAULT_LATENCIES: Partial<QmLatencies> = { processNs: 2_000, irqNs: 1_000 };

export function resolveTestbedOptions(o: TestbedOptions = {}): ResolvedTestbedOptions {
  const r: ResolvedTestbedOptions = {
    engine: o.engine ?? 'zip',
    hw: o.hw ?? 'v3',
    ramBytes: o.ramBytes ?? 64 * 2 ** 20,
    numVfs: o.numVfs ?? 2,
    vfIndex: o.vfIndex ?? 1,
    destVfIndex: o.destVfIndex ?? o.vfIndex ?? 1,
    protocol: o.protocol ?? 'v2',
    dirty: o.dirty ?? 'dma-logging',
    pfControl: o.pfControl ?? false,
    hostPageSize: o.hostPageSize ?? 4096,
  };
  if (!['zip', 'sec', 'hpre'].includes(r.engine)) fail('EINVAL', `engine ${String(r.engine)}`);
  if (!['v2', 'v3', 'v4'].includes(r.hw)) fail('EINVAL', `hardware ${String(r.hw)}`);
  if (r.protocol !== 'v2' && r.protocol !== 'v1') fail('EINVAL', `protocol ${String(r.protocol)}`);
  if (r.dirty !== 'dma-logging' && r.dirty !== 'type1') fail('EINVAL', `dirty tracking ${String(r.dirty)}`);
  for (const [k, v] of [['numVfs', r.numVfs], ['vfIndex', r.vfIndex], ['destVfIndex', r.destVfIndex]] as const) {
    if (!Number.isInteger(v) || v < 1) fail('EINVAL', `${k} ${v}`);
  }
  if (r.vfIndex > r.numVfs || r.destVfIndex > r.numVfs) fail('EINVAL', 'VF index beyond numVfs');
  return r;
}

function must(r: number | string, what: string): void {
  if (typeof r === 'number' && r < 0) throw new KernelError(-r, what);
}

/** A host with the accelerator, its VFs, hisi-acc-vfio-pci loaded and VF `vfIndex` bound to it. */
export function createAccHost(o: ResolvedTestbedOptions, vfIndex: number, scheduler: Scheduler,
  latencies: Partial<QmLatencies> = DEFAULT_LATENCIES, engine?: Engine): { host: HostType; vf: HostPciDevice } {
  const host = new Host({ scheduler, devices: [{ profile: `${o.engine}-${o.hw}`, latencies, engine }] });
  const pf = host.accelerators[0]!.pf.bdf;
  must(host.sysfsWrite(`/sys/bus/pci/devices/${pf}/sriov_numvfs`, `${o.numVfs}\n`), `sriov_numvfs=${o.numVfs}`);
  must(host.registerDriver(createHisiAccVfioPciDriver({ protocol: o.protocol, pfControl: o.pfControl, hostPageSize: o.hostPageSize })), `loading ${HISI_ACC_VFIO_PCI}`);
  const pfDev = host.device(pf) ?? fail('ENODEV', 'PF did not enumerate');
  const vf = host.bus.vfsOf(pfDev).find((d) => d.vfIndex === vfIndex - 1) ?? fail('ENODEV', `no VF ${vfIndex}`);
  must(host.sysfsWrite(`/sys/bus/pci/devices/${vf.bdf}/driver_override`, `${HISI_ACC_VFIO_PCI}\n`), 'driver_override');
  must(host.sysfsWrite('/sys/bus/pci/drivers_probe', `${vf.bdf}\n`), 'drivers_probe');
  if (vf.driver?.name !== HISI_ACC_VFIO_PCI) fail('ENODEV', `${vf.bdf} did not bind to ${HISI_ACC_VFIO_PCI}`);
  return { host, vf };
}

function endpoint(host: HostType, vm: Vm, workload: Workload | null, options: ResolvedTestbedOptions): TestbedEndpoint {
  const dev: GuestDevice = { name: vm.bdf, bdf: vm.bdf, fd: vm.deviceFd, file: vm.device, io: vm.io };
  return {
    scheduler: host.scheduler,
    vm,
    devices: [dev],
    containerFd: vm.containerFd,
    container: vm.container as VfioFile,
    process: host.process,
    host,
    deviceFd: vm.deviceFd,
    device: vm.device,
    io: vm.io,
    bdf: vm.bdf,
    workload,
    options,
  };
}

function vmOptions(o: TestbedOptions, r: ResolvedTestbedOptions, bdf: string, boot: boolean): VmOptions {
  return {
    bdf, ramBytes: r.ramBytes, boot, vcpus: o.vcpus, dirtyRingEntries: o.dirtyRingEntries, deviceIotlb: o.deviceIotlb,
    dmaChunkBytes: o.dmaChunkBytes,
  };
}

/** The source side: host, VM booted with the guest driver, workload started and warmed up. */
export function createSource(opts: TestbedOptions = {}, scheduler = opts.scheduler ?? new Scheduler()): TestbedEndpoint {
  const r = resolveTestbedOptions(opts);
  const { host, vf } = createAccHost(r, r.vfIndex, scheduler, opts.latencies ?? DEFAULT_LATENCIES, opts.engineModel);
  const vm = new Vm(host, vmOptions(opts, r, vf.bdf, true));
  let workload: Workload | null = null;
  if (opts.workload !== false) {
    workload = new Workload(vm, opts.workload || {});
    workload.start();
    const warm = opts.warmupJobs ?? 8;
    let done = 0;
    while (done < warm) {
      done += workload.pump(warm - done);
      workload.drain();
    }
  }
  return endpoint(host, vm, workload, r);
}

/**
 * The destination side: host, VF bound to hisi-acc-vfio-pci, VM with VFIO set up and RAM
 * mapped but nothing booted (vCPUs paused). `workload`: the object to continue (one process).
 */
export function createDestination(opts: TestbedOptions = {}, scheduler = opts.scheduler ?? new Scheduler(),
  workload: Workload | null = null): TestbedEndpoint {
  const r = resolveTestbedOptions(opts);
  const { host, vf } = createAccHost(r, r.destVfIndex, scheduler, opts.latencies ?? DEFAULT_LATENCIES, opts.engineModel);
  const vm = new Vm(host, vmOptions(opts, r, vf.bdf, false));
  vm.workload = workload;
  return endpoint(host, vm, workload, r);
}

/** Source and destination in one process (see the file comment). */
export function createTestbed(opts: TestbedOptions = {}): Testbed {
  const sched = opts.scheduler ?? new Scheduler();
  const source = createSource(opts, sched);
  const dest = createDestination(opts, opts.sharedClock === false ? new Scheduler() : sched, source.workload);
  return { source, dest, options: source.options };
}
