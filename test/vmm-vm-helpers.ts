/**
 * Test helpers for the VMM side: small source VMs cleaned up after each test, the errno of a
 * throwing call, and a minimal stop-and-copy migration done the way a VMM drives
 * hisi-acc-vfio-pci (vfio-uapi-and-migration.md section 6), used to check that the VM's CPU
 * state, device config blob and RAM are enough for the guest to continue. The real
 * orchestrator lives in src/vmm/migration; this is deliberately the smallest correct flow.
 */
import { afterEach } from 'vitest';
import { readS32 } from '../src/uapi/codec.js';
import { KernelError } from '../src/uapi/errno.js';
import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY,
} from '../src/uapi/vfio.js';
import type { FdTable, VfioFile } from '../src/vfio/fd.js';
import { createSource, type TestbedEndpoint, type TestbedOptions } from '../src/vmm/testbed.js';

/**
 * A factory of source VMs with the defaults the VM tests share (zip on v3, no workload,
 * 16 MiB of RAM); each VM it made and that is still up is shut down after every test.
 * Call it once at the top of a test file.
 */
export function smallSources(): (opts?: TestbedOptions) => TestbedEndpoint {
  const live: TestbedEndpoint[] = [];
  afterEach(() => {
    for (const e of live.splice(0)) if (!e.vm.isShutdown) e.vm.shutdown();
  });
  return (opts = {}) => {
    const s = createSource({ engine: 'zip', hw: 'v3', workload: false, ramBytes: 16 * 2 ** 20, ...opts });
    live.push(s);
    return s;
  };
}

/** The errno name a call throws as KernelError, or 'no error'. */
export function errnoCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return 'no error';
}

/** MIG_DEVICE_STATE SET: the data fd (-1 when none). Throws on -errno. */
export function setState(dev: VfioFile, state: number): number {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 16, true);
  dv.setUint32(4, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, true);
  dv.setUint32(8, state, true);
  dv.setInt32(12, -1, true);
  const r = dev.ioctl(VFIO_DEVICE_FEATURE, b);
  if (r < 0) throw new KernelError(-r, `MIG_DEVICE_STATE -> ${state}`);
  return readS32(b, 12);
}

export function getState(dev: VfioFile): number {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 16, true);
  dv.setUint32(4, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, true);
  const r = dev.ioctl(VFIO_DEVICE_FEATURE, b);
  if (r < 0) throw new KernelError(-r, 'MIG_DEVICE_STATE get');
  return dv.getUint32(8, true);
}

function readAll(fds: FdTable, fd: number): Uint8Array {
  const f = fds.get(fd)!;
  const parts: Uint8Array[] = [];
  for (;;) {
    const b = new Uint8Array(4096);
    const r = f.read(b);
    if (r < 0) throw new KernelError(-r, 'data fd read');
    if (r === 0) break;
    parts.push(b.slice(0, r));
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export interface StopCopyResult {
  deviceBytes: number;
  cpuStateBytes: number;
  ramPagesCopied: number;
}

/**
 * Stop-and-copy from `src` to `dst`: vCPUs stop, device STOP_COPY drained, config and CPU
 * state saved, every backed RAM page copied, destination RESUMING/STOP/RUNNING, config and CPU
 * state loaded, vCPUs resumed; the source goes STOP. `startDevice: false` leaves the
 * destination device in STOP (a broken migration whose in-flight jobs can never complete).
 */
export function stopAndCopy(src: TestbedEndpoint, dst: TestbedEndpoint, opts: { startDevice?: boolean } = {}): StopCopyResult {
  src.vm.pauseVcpus();
  const fd = setState(src.device, VFIO_DEVICE_STATE_STOP_COPY);
  const devData = readAll(src.host.process.fds, fd);
  const cfg = src.io.saveDeviceConfig();
  const cpu = src.vm.saveCpuState();
  let pages = 0;
  const page = new Uint8Array(4096);
  src.vm.ram.forEachBackedPage((pfn) => {
    src.vm.ram.copyPage(pfn, page);
    dst.vm.ram.write(pfn * 4096, page);
    pages++;
  });
  const rfd = setState(dst.device, VFIO_DEVICE_STATE_RESUMING);
  const w = dst.host.process.fds.get(rfd)!.write(devData);
  if (w !== devData.length) throw new KernelError(w < 0 ? -w : 5, 'resume write');
  setState(dst.device, VFIO_DEVICE_STATE_STOP);
  dst.host.process.fds.close(rfd);
  dst.io.loadDeviceConfig(cfg);
  dst.vm.loadCpuState(cpu);
  if (opts.startDevice ?? true) setState(dst.device, VFIO_DEVICE_STATE_RUNNING);
  dst.vm.resumeVcpus();
  setState(src.device, VFIO_DEVICE_STATE_STOP);
  src.host.process.fds.close(fd);
  return { deviceBytes: devData.length, cpuStateBytes: cpu.length, ramPagesCopied: pages };
}
