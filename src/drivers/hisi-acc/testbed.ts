/**
 * A bench for the vendor driver: hosts with an accelerator, the PF driver, SR-IOV VFs and
 * hisi-acc-vfio-pci loaded; a minimal VMM that assigns a VF to a VM through the real VFIO
 * path (container with type1v2, group, device fd, guest RAM DMA-mapped at IOVA = GPA 0);
 * and a guest running the real QM VF driver over that device fd. Several hosts can share one
 * scheduler (one simulated clock), so a VM can be migrated from one host to another.
 *
 * Used by the save CLI, the vendor-driver tests and the migration benchmark.
 */
import { Host } from '../../host/host.js';
import type { HostPciDevice } from '../../host/pci-device.js';
import type { AccDevice } from '../../hw/acc-device.js';
import type { QmLatencies } from '../../hw/qm/qm-function.js';
import { Accel } from '../../guest/accel.js';
import type { GuestRam } from '../../guest/io.js';
import { QmVfDriver, type QmVfDriverOptions } from '../../guest/qm-vf-driver.js';
import { GuestRamAllocator } from '../../guest/ram.js';
import { SparseMemory } from '../../mem/sparse-memory.js';
import { UserAddressSpace } from '../../mem/user-space.js';
import { Scheduler } from '../../sim/scheduler.js';
import { readS32, writeU32 } from '../../uapi/codec.js';
import { Errno, KernelError, fail } from '../../uapi/errno.js';
import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING,
  VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY,
  VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_SET_CONTAINER, VFIO_TYPE1v2_IOMMU,
} from '../../uapi/vfio.js';
import { VfioContainer } from '../../vfio/container.js';
import { FdTable, type VfioFile } from '../../vfio/fd.js';
import { encodeCString } from '../../vfio/group.js';
import type { VfioDeviceFile } from '../../vfio/pci-core/device-file.js';
import type { HisiAccVfDevice } from './device.js';
import { createHisiAccVfioPciDriver, HISI_ACC_VFIO_PCI, type HisiAccVfioPciDriver } from './driver.js';
import type { HisiAccDriverOptions } from './device.js';
import { VfioPciIo } from './vfio-pci-io.js';

export interface AccHostOptions {
  /** Firmware profile of the accelerator (default 'zip-v3'). */
  profile?: string;
  /** VFs to enable through sriov_numvfs (default 1). */
  numVfs?: number;
  scheduler?: Scheduler;
  latencies?: Partial<QmLatencies>;
  doorbellIsolation?: boolean;
  /** Options of hisi-acc-vfio-pci. */
  driver?: HisiAccDriverOptions;
  /** Boot without the PF driver (its QM state then does not exist). */
  noPfDriver?: boolean;
}

const SYS_DEV = '/sys/bus/pci/devices';

/** One host: an accelerator with VFs and hisi-acc-vfio-pci loaded. */
export class AccHost {
  readonly sched: Scheduler;
  readonly host: Host;
  readonly acc: AccDevice;
  readonly pf: HostPciDevice;
  readonly driver: HisiAccVfioPciDriver;
  readonly fds: FdTable;
  readonly user: UserAddressSpace;

  constructor(opts: AccHostOptions = {}) {
    this.sched = opts.scheduler ?? new Scheduler();
    this.fds = new FdTable();
    this.user = new UserAddressSpace();
    // /dev/vfio is backed by the real src/vfio group and type1 container (the host's default).
    this.host = new Host({ scheduler: this.sched, user: this.user, fds: this.fds, pfDriver: opts.noPfDriver ? false : {} });
    this.acc = this.host.addAccelerator({
      profile: opts.profile ?? 'zip-v3',
      latencies: opts.latencies,
      doorbellIsolation: opts.doorbellIsolation,
    });
    this.pf = this.host.device(this.acc.pf.bdf) ?? fail('ENODEV', 'PF did not enumerate');
    this.driver = createHisiAccVfioPciDriver(opts.driver);
    const r = this.host.registerDriver(this.driver);
    if (r < 0) fail('EIO', `registering ${HISI_ACC_VFIO_PCI}: ${r}`);
    const n = opts.numVfs ?? 1;
    if (n > 0) {
      if (opts.noPfDriver) {
        this.host.bus.enableSriov(this.pf, n);
      } else {
        const w = this.host.sysfsWrite(`${SYS_DEV}/${this.pf.bdf}/sriov_numvfs`, `${n}\n`);
        if (w < 0) fail('EIO', `sriov_numvfs=${n}: ${w}`);
      }
    }
  }

  /** VF n (1-based) as the host sees it. */
  vf(n: number): HostPciDevice {
    return this.host.bus.vfsOf(this.pf).find((d) => d.vfIndex === n - 1) ?? fail('ENODEV', `no VF ${n}`);
  }

  /** driver_override + drivers_probe: binds VF n to hisi-acc-vfio-pci. Returns 0 or -errno. */
  bind(n: number): number {
    const d = this.vf(n);
    const w = this.host.sysfsWrite(`${SYS_DEV}/${d.bdf}/driver_override`, `${HISI_ACC_VFIO_PCI}\n`);
    if (w < 0) return w;
    return this.host.sysfsWrite('/sys/bus/pci/drivers_probe', `${d.bdf}\n`);
  }

  /** The driver's migration state of bound VF n. */
  migDevice(n: number): HisiAccVfDevice {
    return this.driver.deviceOf(this.vf(n)) ?? fail('ENODEV', `VF ${n} has no hisi-acc migration state`);
  }
}

/** What a VMM holds for one assigned VF on one host. */
export interface VmmLink {
  host: AccHost;
  vfIndex: number;
  containerFd: number;
  container: VfioContainer;
  groupFd: number;
  deviceFd: number;
  device: VfioDeviceFile;
  vaddr: number;
  mem: SparseMemory;
}

/**
 * The VMM side of assigning VF `vfIndex` of `host` with `mem` as guest RAM: container,
 * type1v2, group, RAM mapped at IOVA 0, device fd. Throws KernelError with the failing errno.
 */
export function assignVf(host: AccHost, vfIndex: number, mem: SparseMemory): VmmLink {
  const h = host.host;
  const vf = host.vf(vfIndex);
  const opened: number[] = [];
  let vaddr = -1;
  const check = (r: number, what: string): number => {
    if (r < 0) throw new KernelError(-r, `${what} failed`);
    return r;
  };
  try {
    const containerFd = check(h.openDev('/dev/vfio/vfio'), 'open container');
    opened.push(containerFd);
    const container = host.fds.get(containerFd) as VfioContainer;
    const groupFd = check(h.openDev(`/dev/vfio/${vf.iommuGroup}`), 'open group');
    opened.push(groupFd);
    const group = host.fds.get(groupFd) as VfioFile;
    check(group.ioctl(VFIO_GROUP_SET_CONTAINER, containerFd), 'SET_CONTAINER');
    check(container.setIommu(VFIO_TYPE1v2_IOMMU), 'SET_IOMMU');
    vaddr = host.user.mapMemory(mem, 0, mem.size);
    check(container.mapDma({ vaddr, iova: 0, size: mem.size }), 'MAP_DMA');
    const deviceFd = check(group.ioctl(VFIO_GROUP_GET_DEVICE_FD, encodeCString(vf.bdf)), 'GET_DEVICE_FD');
    const device = host.fds.get(deviceFd) as VfioDeviceFile;
    return { host, vfIndex, containerFd, container, groupFd, deviceFd, device, vaddr, mem };
  } catch (e) {
    for (const fd of opened.reverse()) host.fds.close(fd);
    if (vaddr >= 0) host.user.unmap(vaddr);
    throw e;
  }
}

/** Closes what assignVf opened (device, group, container) and unmaps the RAM. */
export function releaseVf(link: VmmLink): void {
  const fds = link.host.fds;
  fds.close(link.deviceFd);
  fds.close(link.groupFd);
  fds.close(link.containerFd);
  link.host.user.unmap(link.vaddr);
}

/** Guest RAM whose backing memory moves with the VM (allocation bookkeeping stays). */
export class MigratableRam implements GuestRam {
  private current: SparseMemory;
  private readonly alloc0: GuestRamAllocator;

  constructor(mem: SparseMemory, floor: number) {
    this.current = mem;
    this.alloc0 = new GuestRamAllocator(mem, floor, mem.size - floor);
  }

  get mem(): SparseMemory {
    return this.current;
  }

  alloc(size: number, align?: number): number {
    return this.alloc0.alloc(size, align);
  }

  free(addr: number): void {
    this.alloc0.free(addr);
  }

  /** The VM now runs on `mem` (a copy of the old RAM). */
  moveTo(mem: SparseMemory): void {
    if (mem.size !== this.current.size) fail('EINVAL', 'guest RAM size changed');
    this.current = mem;
  }
}

/** Copies every non-zero 64 KiB chunk of `src` into `dst` (guest RAM migration). */
export function copyRam(src: SparseMemory, dst: SparseMemory): number {
  const CHUNK = 0x10000;
  let copied = 0;
  for (let a = 0; a < src.size; a += CHUNK) {
    const n = Math.min(CHUNK, src.size - a);
    if (src.isZero(a, n)) {
      if (!dst.isZero(a, n)) dst.fill(a, n, 0);
      continue;
    }
    dst.write(a, src.readBytes(a, n));
    copied += n;
  }
  return copied;
}

export interface VmOptions {
  /** Guest RAM (default 64 MiB, below the SMMU MSI window at 128 MiB). */
  ramBytes?: number;
  driver?: Omit<Partial<QmVfDriverOptions>, 'io' | 'ram' | 'sched'>;
  /** Probe and start the guest driver (default true). */
  start?: boolean;
}

/** RAM below this GPA stays unallocated, so a zero DMA address always misses guest data. */
const RAM_FLOOR = 1 << 20;

/** A VM with one assigned ACC VF and the guest's QM driver. */
export class AccVm {
  readonly io = new VfioPciIo();
  readonly ram: MigratableRam;
  link: VmmLink;
  driver: QmVfDriver | null = null;
  accel: Accel | null = null;

  constructor(host: AccHost, vfIndex: number, opts: VmOptions = {}) {
    const mem = new SparseMemory(opts.ramBytes ?? 64 * 2 ** 20);
    this.ram = new MigratableRam(mem, RAM_FLOOR);
    this.link = assignVf(host, vfIndex, mem);
    this.io.attach(this.link.device, host.fds);
    if (opts.start ?? true) {
      this.driver = QmVfDriver.probe({ ...opts.driver, io: this.io, ram: this.ram, sched: host.sched });
      this.driver.start();
      this.accel = new Accel(this.driver);
    }
  }

  get host(): AccHost {
    return this.link.host;
  }

  get device(): VfioDeviceFile {
    return this.link.device;
  }

  get mem(): SparseMemory {
    return this.ram.mem;
  }
}

// ---- uAPI helpers for MIG_DEVICE_STATE and the data fd --------------------------------------

/** VFIO_DEVICE_FEATURE SET MIG_DEVICE_STATE: the ioctl result and the data fd (-1 if none). */
/** One ioctl argument for every call: the call is synchronous and its answer read at once. */
const migStateArg = new Uint8Array(16);

export function setMigState(device: VfioFile, state: number): { ret: number; dataFd: number } {
  const buf = migStateArg;
  writeU32(buf, 0, 16);
  writeU32(buf, 4, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
  writeU32(buf, 8, state);
  writeU32(buf, 12, -1);
  const ret = device.ioctl(VFIO_DEVICE_FEATURE, buf);
  return { ret, dataFd: readS32(buf, 12) };
}

/** Reads a data fd until read() returns 0 (or an error): the bytes and the final result. */
export function readToEnd(fds: FdTable, fd: number, chunk = 64): { bytes: Uint8Array; last: number } {
  const f = fds.get(fd) ?? fail('EBADF', `fd ${fd}`);
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const b = new Uint8Array(chunk);
    const r = f.read(b);
    if (r <= 0) {
      const out = new Uint8Array(total);
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += p.length;
      }
      return { bytes: out, last: r };
    }
    parts.push(b.subarray(0, r));
    total += r;
  }
}

/** Writes all of `bytes` to a data fd in `chunk`-byte pieces; the first error or the count. */
export function writeAll(fds: FdTable, fd: number, bytes: Uint8Array, chunk = bytes.length || 1): number {
  const f = fds.get(fd) ?? fail('EBADF', `fd ${fd}`);
  let done = 0;
  while (done < bytes.length) {
    const r = f.write(bytes.subarray(done, Math.min(bytes.length, done + chunk)));
    if (r < 0) return r;
    done += r;
  }
  return done;
}

/** Reads a PRE_COPY data fd until its temporary end (ENOMSG). */
export function readPrecopy(fds: FdTable, fd: number, chunk = 64): Uint8Array {
  const f = fds.get(fd) ?? fail('EBADF', `fd ${fd}`);
  const parts: number[] = [];
  for (;;) {
    const b = new Uint8Array(chunk);
    const r = f.read(b);
    if (r === -Errno.ENOMSG || r === 0) return Uint8Array.from(parts);
    if (r < 0) throw new KernelError(-r, 'pre-copy read failed');
    for (let i = 0; i < r; i++) parts.push(b[i]!);
  }
}

export interface MigrateOptions {
  /** Go through PRE_COPY first (default true). */
  precopy?: boolean;
  /** Bytes per write to the resuming fd (default: all at once). */
  chunk?: number;
  /** What the wire does to the stream (an older source, corruption); identity by default. */
  rewrite?: (stream: Uint8Array) => Uint8Array;
}

export interface MigrateResult {
  stream: Uint8Array;
  precopyBytes: number;
  ramBytesCopied: number;
}

function mustState(device: VfioFile, state: number, what: string): number {
  const r = setMigState(device, state);
  if (r.ret < 0) throw new KernelError(-r.ret, `${what} failed`);
  return r.dataFd;
}

/**
 * Live-migrates `vm` to VF `dstVf` of `dst`, in QEMU's order (vfio-uapi-and-migration.md
 * section 6): PRE_COPY and its data, vCPUs stopped, STOP_COPY drained to EOF, RAM copied,
 * destination RESUMING with the stream written, config state restored, STOP (load),
 * RUNNING, vCPUs resumed; the source goes STOP_COPY -> STOP after the switchover and is
 * released. Throws KernelError on the first failing step (the VM then stays on the source).
 */
export function migrateVm(vm: AccVm, dst: AccHost, dstVf: number, opts: MigrateOptions = {}): MigrateResult {
  const src = vm.link;
  const sfds = src.host.fds;
  let dataFd = -1;
  let pre: Uint8Array = new Uint8Array(0);
  if (opts.precopy ?? true) {
    dataFd = mustState(src.device, VFIO_DEVICE_STATE_PRE_COPY, 'RUNNING -> PRE_COPY');
    pre = readPrecopy(sfds, dataFd);
  }
  vm.io.pause();
  src.host.sched.advance(0);
  const fd2 = mustState(src.device, VFIO_DEVICE_STATE_STOP_COPY, '-> STOP_COPY');
  if (fd2 >= 0) dataFd = fd2;
  const rest = readToEnd(sfds, dataFd);
  if (rest.last < 0) throw new KernelError(-rest.last, 'reading the STOP_COPY data failed');
  const stream = new Uint8Array(pre.length + rest.bytes.length);
  stream.set(pre);
  stream.set(rest.bytes, pre.length);
  const dstMem = new SparseMemory(vm.mem.size);
  const ramBytesCopied = copyRam(vm.mem, dstMem);
  const link = assignVf(dst, dstVf, dstMem);
  const rfd = mustState(link.device, VFIO_DEVICE_STATE_RESUMING, 'STOP -> RESUMING');
  const sent = opts.rewrite ? opts.rewrite(stream) : stream;
  const w = writeAll(dst.fds, rfd, sent, opts.chunk ?? (sent.length || 1));
  if (w < 0) throw new KernelError(-w, 'writing the migration data failed');
  vm.io.attach(link.device, dst.fds);
  mustState(link.device, VFIO_DEVICE_STATE_STOP, 'RESUMING -> STOP');
  dst.fds.close(rfd);
  vm.ram.moveTo(dstMem);
  vm.link = link;
  mustState(link.device, VFIO_DEVICE_STATE_RUNNING, 'STOP -> RUNNING');
  vm.io.resume();
  mustState(src.device, VFIO_DEVICE_STATE_STOP, 'source STOP_COPY -> STOP');
  sfds.close(dataFd);
  releaseVf(src);
  return { stream, precopyBytes: pre.length, ramBytesCopied };
}
