/**
 * A VM on a simulated Host with one ACC VF passed through, set up the way a VMM does it:
 *
 * - KVM side: guest RAM is one memory slot (`ramSlot` 0) at GPA `ramBase` (0x40000000, as
 *   QEMU's arm64 virt machine places it, above the SMMU's MSI window), with a dirty ring per
 *   vCPU plus the WITH_BITMAP backup (iommu-notifiers-and-dirty-ring.md section 2). Dirty
 *   logging is on from creation: the first store to a page after a ring reset pushes one
 *   entry.
 * - VMM process: guest RAM is mapped into the process (UserAddressSpace.mapMemory); VFIO is
 *   opened in QEMU's order: /dev/vfio/vfio, API version, TYPE1v2 extension, the VF's group
 *   (viable), SET_CONTAINER, SET_IOMMU(TYPE1v2), MAP_DMA of all RAM at IOVA = GPA, then
 *   GET_DEVICE_FD. The guest reaches the VF through a VfioGuestIo over that fd.
 * - Guest: the QM VF driver probes and starts through the VfioGuestIo, with a RAM view whose
 *   every store is a logged write of vCPU 0 (SQEs, ring clears, input buffers), and a clock
 *   whose guest tasks only run while the vCPUs run. The driver's JavaScript state, the
 *   allocator and the Accel are the guest's "CPU state" (saveCpuState / loadCpuState).
 *
 * A vCPU whose ring reaches the soft limit exits (DIRTY_RING_FULL); the run loop then reaps:
 * it harvests every ring into `reaped` (the VMM's own dirty bitmap, QEMU's migration
 * bitmap), resets the rings and lets the vCPU continue. A migration therefore collects dirty
 * pages with `collectDirty` (rings + reaped pages), and at the end `finalCollect` (rings,
 * reaped, then the WITH_BITMAP backup last). Stores made without a vCPU (`ramWrite` with no
 * vCPU: device-emulation side effects) go to the backup bitmap.
 *
 * Device DMA is not a CPU write: it reaches RAM through the container's IOMMU domain and is
 * tracked by device DMA logging or type1 dirty tracking. `unmapDma`/`mapDma` go through the
 * container (UNMAP raises IOMMU notifier events); with `deviceIotlb`, the VF's DMA goes
 * through an ATS-like device IOTLB that those events invalidate.
 */
import { Accel } from '../guest/accel.js';
import type { GuestMemory } from '../guest/io.js';
import { QmVfDriver, type QmVfDriverConfig } from '../guest/qm-vf-driver.js';
import { GuestRamAllocator, type SizedGuestMemory } from '../guest/ram.js';
import type { Host } from '../host/host.js';
import { DevIotlb } from '../iommu/dev-iotlb.js';
import type { IommuDomain } from '../iommu/domain.js';
import { Bitmap } from '../mem/bitmap.js';
import {
  DirtyRingSet, KVM_DIRTY_GFN_SIZE, KVM_DIRTY_RING_MAX_ENTRIES, type DirtyPageVisitor, type FinalCollection,
} from '../mem/dirty-ring.js';
import { PAGE_SIZE, SparseMemory } from '../mem/sparse-memory.js';
import type { Scheduler, Task } from '../sim/scheduler.js';
import { vfio_group_status } from '../uapi/structs.js';
import { Errno, KernelError, fail } from '../uapi/errno.js';
import {
  VFIO_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU,
} from '../uapi/vfio.js';
import type { VfioContainer } from '../vfio/container.js';
import type { VfioFile } from '../vfio/fd.js';
import { encodeCString } from '../vfio/group.js';
import type { VfioDeviceFile } from '../vfio/pci-core/device-file.js';
import type { MigratableVm } from './migration/types.js';
import { GuestClock } from './guest-clock.js';
import { Vcpu, type VcpuHost } from './vcpu.js';
import { VfioGuestIo } from './vfio-guest-io.js';
import { Workload, type WorkloadState } from './workload.js';

/** QEMU arm64 virt: RAM starts at 1 GiB. */
export const VIRT_RAM_BASE = 0x4000_0000;
/** RAM the guest allocator leaves alone at the bottom (firmware area). */
export const GUEST_RAM_RESERVED = 0x10_0000;
export const CPU_STATE_FORMAT = 'hisi-acc-sim/cpu-state';
export const CPU_STATE_VERSION = 2;

export interface VmOptions {
  /** The VF to assign (its BDF); it must be bound to a vfio driver. */
  bdf: string;
  /** Guest RAM (default 64 MiB; sparse, only touched pages cost memory). */
  ramBytes?: number;
  /** GPA = IOVA of RAM byte 0 (default 0x40000000). */
  ramBase?: number;
  /** vCPUs (default 2: vCPU 0 runs the guest driver, vCPU 1 the busy application). */
  vcpus?: number;
  /** Dirty ring entries per vCPU (power of two, default 65536, KVM's maximum). */
  dirtyRingEntries?: number;
  /** Entries above the soft limit (>= 64, default 64). */
  dirtyRingReserved?: number;
  /** Probe and start the guest driver now (default true). A migration destination passes false. */
  boot?: boolean;
  /** Guest driver options. */
  driver?: QmVfDriverConfig;
  /** Granularity of `run` (default 10 us of simulated time). */
  quantumNs?: number;
  /** Put an ATS-like device IOTLB in the VF's DMA path (platform property; default off). */
  deviceIotlb?: boolean | { entries?: number };
  /** Reach every BAR through pread/pwrite instead of mmap. */
  noMmap?: boolean;
  /**
   * MAP_DMA RAM in mappings of this many bytes (default: one mapping of all RAM). QEMU maps
   * each RAM section separately; type1v2 unmaps only whole mappings, so a guest range can
   * be unmapped on its own only at these boundaries.
   */
  dmaChunkBytes?: number;
}

export interface VmStats {
  /** DIRTY_RING_FULL exits handled by the run loop. */
  ringFullExits: number;
  /** Reaps (harvest + reset of every ring) the run loop did. */
  reaps: number;
  /** Stores made without a vCPU (logged in the backup bitmap). */
  noVcpuWrites: number;
  /** Guest tasks that came due while paused and ran on resume. */
  deferredTasks: number;
  /** Errors raised by guest code (driver bottom half, workload) and kept inside the guest. */
  guestErrors: number;
}

/** Saved CPU state (JSON). */
interface CpuState {
  format: string;
  version: number;
  ramBase: number;
  ramBytes: number;
  vcpus: number;
  guest: null | {
    allocator: ReturnType<GuestRamAllocator['saveState']>;
    driver: ReturnType<QmVfDriver['saveState']>;
    accel: ReturnType<Accel['saveState']> | null;
  };
  workload: WorkloadState | null;
}

/** Something the guest runs between device events while its vCPUs run (see Vm.run). */
export interface GuestProgram {
  tick(nowNs: number): void;
}

/** Guest-physical view of RAM for the guest driver: loads read RAM, stores are vCPU writes. */
class GuestPhysMemory implements SizedGuestMemory {
  readonly size: number;
  constructor(private readonly vm: Vm, private readonly vcpu: Vcpu) {
    this.size = vm.ramBase + vm.ramBytes;
  }
  read(addr: number, dst: Uint8Array): void {
    this.vm.ram.read(this.off(addr, dst.length), dst);
  }
  write(addr: number, src: Uint8Array): void {
    this.vcpu.write(addr, src);
  }
  fill(addr: number, len: number, byte: number): void {
    this.vcpu.fill(addr, len, byte);
  }
  getU16(addr: number): number {
    return this.vm.ram.getU16(this.off(addr, 2));
  }
  getU32(addr: number): number {
    return this.vm.ram.getU32(this.off(addr, 4));
  }
  private off(addr: number, len: number): number {
    const o = addr - this.vm.ramBase;
    if (!(o >= 0 && o + len <= this.vm.ramBytes)) fail('EFAULT', `guest load at 0x${addr.toString(16)} outside RAM`);
    return o;
  }
}

function check(r: number, what: string): number {
  if (r < 0) throw new KernelError(-r, `${what} failed`);
  return r;
}

export class Vm implements MigratableVm, VcpuHost {
  readonly host: Host;
  readonly scheduler: Scheduler;
  readonly bdf: string;
  readonly ram: SparseMemory;
  readonly ramBase: number;
  readonly ramBytes: number;
  readonly ramSlot = 0;
  readonly dirtyRings: DirtyRingSet;
  readonly vcpus: readonly Vcpu[];
  /** Where guest RAM sits in the VMM process. */
  readonly ramVaddr: number;
  readonly containerFd: number;
  readonly container: VfioContainer;
  readonly groupFd: number;
  readonly group: VfioFile;
  readonly deviceFd: number;
  readonly device: VfioDeviceFile;
  readonly io: VfioGuestIo;
  /** The guest's clock (guest tasks wait while paused). */
  readonly clock: GuestClock;
  /** The guest's RAM allocator over its GPA view. */
  readonly guestRam: GuestRamAllocator<GuestPhysMemory>;
  /** Pages harvested by the run loop's own reaps (DIRTY_RING_FULL), bit = RAM page. */
  readonly reaped: Bitmap;
  readonly iotlb: DevIotlb | null = null;
  readonly stats: VmStats = { ringFullExits: 0, reaps: 0, noVcpuWrites: 0, deferredTasks: 0, guestErrors: 0 };
  /** The first error guest code raised (see stats.guestErrors). */
  firstGuestError: KernelError | null = null;
  driver: QmVfDriver | null = null;
  accel: Accel | null = null;
  /** The application running in the guest, if any (its state is part of the CPU state). */
  workload: Workload | null = null;
  /** Extra guest programs ticked by `run` (tests). */
  readonly programs: GuestProgram[] = [];
  readonly quantumNs: number;

  private running: boolean;
  private epoch = 0;
  private deferred: Task[] = [];
  private readonly driverConfig: QmVfDriverConfig;
  private readonly npages: number;
  private closed = false;
  private readonly reapVisit: DirtyPageVisitor = (slot, offset) => {
    if (slot === this.ramSlot && offset < this.npages) this.reaped.words[offset >>> 5]! |= 1 << (offset & 31);
  };

  constructor(host: Host, opts: VmOptions) {
    this.host = host;
    this.scheduler = host.scheduler;
    this.bdf = opts.bdf;
    this.ramBase = opts.ramBase ?? VIRT_RAM_BASE;
    this.ramBytes = opts.ramBytes ?? 64 * 2 ** 20;
    this.quantumNs = opts.quantumNs ?? 10_000;
    this.driverConfig = { ...opts.driver };
    if (!Number.isSafeInteger(this.ramBase) || this.ramBase % PAGE_SIZE !== 0 || this.ramBase < 0) fail('EINVAL', `RAM base ${this.ramBase}`);
    if (!Number.isSafeInteger(this.ramBytes) || this.ramBytes % PAGE_SIZE !== 0 || this.ramBytes <= GUEST_RAM_RESERVED) {
      fail('EINVAL', `RAM size ${this.ramBytes}`);
    }
    if (!Number.isFinite(this.quantumNs) || this.quantumNs <= 0) fail('EINVAL', `quantum ${this.quantumNs}`);
    this.npages = this.ramBytes / PAGE_SIZE;
    this.ram = new SparseMemory(this.ramBytes);
    this.reaped = new Bitmap(this.npages);

    // KVM: ring before vCPUs, WITH_BITMAP before the slot, then the slot and the vCPUs.
    const entries = opts.dirtyRingEntries ?? KVM_DIRTY_RING_MAX_ENTRIES;
    this.dirtyRings = new DirtyRingSet({ reserved: opts.dirtyRingReserved });
    check(this.dirtyRings.enableRing(entries * KVM_DIRTY_GFN_SIZE), 'KVM_CAP_DIRTY_LOG_RING');
    check(this.dirtyRings.enableWithBitmap(), 'KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP');
    check(this.dirtyRings.addSlot(this.ramSlot, this.ramBase / PAGE_SIZE, this.npages), 'KVM_SET_USER_MEMORY_REGION');
    const n = opts.vcpus ?? 2;
    if (!Number.isInteger(n) || n < 1 || n > 64) fail('EINVAL', `${n} vCPUs`);
    const vcpus: Vcpu[] = [];
    for (let i = 0; i < n; i++) vcpus.push(new Vcpu(this, i, this.dirtyRings.createVcpu()));
    this.vcpus = vcpus;

    // VFIO, in QEMU's order. Anything opened is closed again if a later step fails.
    const proc = host.process;
    const opened: number[] = [];
    let vaddr = -1;
    try {
      vaddr = proc.user.mapMemory(this.ram, 0, this.ramBytes);
      const containerFd = check(host.openDev('/dev/vfio/vfio'), 'open /dev/vfio/vfio');
      opened.push(containerFd);
      const container = proc.fds.get(containerFd) as VfioContainer;
      if (container.ioctl(VFIO_GET_API_VERSION) !== VFIO_API_VERSION) fail('EINVAL', 'unsupported VFIO API version');
      if (container.ioctl(VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) !== 1) fail('EINVAL', 'VFIO lacks the TYPE1v2 IOMMU');
      const groupId = this.groupOf(opts.bdf);
      const groupFd = check(host.openDev(`/dev/vfio/${groupId}`), `open /dev/vfio/${groupId}`);
      opened.push(groupFd);
      const group = proc.fds.get(groupFd)!;
      const st = vfio_group_status.encode({ argsz: vfio_group_status.size });
      check(group.ioctl(VFIO_GROUP_GET_STATUS, st), 'VFIO_GROUP_GET_STATUS');
      if ((vfio_group_status.read(st, 'flags') & VFIO_GROUP_FLAGS_VIABLE) === 0) {
        fail('EPERM', `group ${groupId} is not viable: bind every device in it to a vfio driver`);
      }
      check(group.ioctl(VFIO_GROUP_SET_CONTAINER, containerFd), 'VFIO_GROUP_SET_CONTAINER');
      check(container.ioctl(VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), 'VFIO_SET_IOMMU');
      const chunk = opts.dmaChunkBytes ?? this.ramBytes;
      if (!Number.isSafeInteger(chunk) || chunk <= 0 || chunk % PAGE_SIZE !== 0) fail('EINVAL', `DMA chunk ${chunk}`);
      for (let off = 0; off < this.ramBytes; off += chunk) {
        const size = Math.min(chunk, this.ramBytes - off);
        check(container.mapDma({ vaddr: vaddr + off, iova: this.ramBase + off, size }), 'VFIO_IOMMU_MAP_DMA');
      }
      const deviceFd = check(group.ioctl(VFIO_GROUP_GET_DEVICE_FD, encodeCString(opts.bdf)), 'VFIO_GROUP_GET_DEVICE_FD');
      opened.push(deviceFd);
      const device = proc.fds.get(deviceFd) as VfioDeviceFile;
      this.io = new VfioGuestIo(device, proc.fds, { noMmap: opts.noMmap });
      this.ramVaddr = vaddr;
      this.containerFd = containerFd;
      this.container = container;
      this.groupFd = groupFd;
      this.group = group;
      this.deviceFd = deviceFd;
      this.device = device;
      if (opts.deviceIotlb) this.iotlb = this.installIotlb(opts.deviceIotlb === true ? {} : opts.deviceIotlb);
    } catch (e) {
      for (const fd of opened.reverse()) proc.fds.close(fd);
      if (vaddr >= 0) proc.user.unmap(vaddr);
      throw e;
    }

    this.clock = new GuestClock(this.scheduler, this);
    this.guestRam = new GuestRamAllocator(new GuestPhysMemory(this, this.vcpus[0]!), this.ramBase + GUEST_RAM_RESERVED,
      this.ramBytes - GUEST_RAM_RESERVED);
    this.running = opts.boot ?? true;
    if (opts.boot ?? true) {
      try {
        this.driver = QmVfDriver.probe({ ...this.driverConfig, io: this.io, ram: this.guestRam, sched: this.clock });
        this.driver.start();
        this.accel = new Accel(this.driver);
      } catch (e) {
        this.shutdown();
        throw e;
      }
    }
  }

  /** The VF's IOMMU group, from its sysfs iommu_group link. */
  private groupOf(bdf: string): number {
    const link = this.host.sysfsReadlink(`/sys/bus/pci/devices/${bdf}/iommu_group`);
    if (typeof link === 'number') throw new KernelError(-link, `${bdf} has no IOMMU group`);
    const id = Number(link.slice(link.lastIndexOf('/') + 1));
    if (!Number.isInteger(id) || id < 0) fail('ENODEV', `bad iommu_group link ${link}`);
    return id;
  }

  private installIotlb(o: { entries?: number }): DevIotlb {
    const domain = this.iommuDomain ?? fail('ENODEV', 'the container has no IOMMU domain');
    const dev = this.host.device(this.bdf) ?? fail('ENODEV', `${this.bdf} is gone`);
    const tlb = new DevIotlb(domain, this.bdf, { entries: o.entries });
    dev.fn.setUpstreamDma(tlb);
    return tlb;
  }

  /** The container's IOMMU domain (type1's), where the VF's DMA is translated. */
  get iommuDomain(): IommuDomain | null {
    return this.container.type1?.domain ?? null;
  }

  // ---- vCPUs -----------------------------------------------------------------------------

  get vcpusRunning(): boolean {
    return this.running;
  }

  get maxStepPages(): number {
    return this.dirtyRings.reserved;
  }

  /** vCPUs stop: no guest code runs, MSIs are held, guest tasks wait. */
  pauseVcpus(): void {
    this.running = false;
    this.io.pause();
  }

  /** vCPUs run again: held MSIs are delivered and waiting guest tasks run. */
  resumeVcpus(): void {
    if (this.closed) fail('EBADF', 'VM is shut down');
    this.running = true;
    // the workload returns to the VM that runs its guest (e.g. the source after a failed migration)
    if (this.workload !== null && this.workload.vm !== this && this.accel !== null) this.workload.bind(this);
    this.io.resume();
    const tasks = this.deferred;
    this.deferred = [];
    for (const t of tasks) this.scheduler.schedule(0, () => (this.running ? t() : this.deferGuestTask(t)));
  }

  /** @internal GuestClock: bumped when a guest is discarded, so its queued tasks never run. */
  get guestEpoch(): number {
    return this.epoch;
  }

  /**
   * @internal Runs guest code. A KernelError it raises is the guest's own failure (a guest
   * kernel oops): counted and kept, the host goes on. Anything else is a simulator bug and
   * propagates.
   */
  runGuest(task: Task): void {
    try {
      task();
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
      this.stats.guestErrors++;
      this.firstGuestError ??= e;
    }
  }

  /** @internal GuestClock: a guest task came due while paused. */
  deferGuestTask(task: Task): void {
    this.stats.deferredTasks++;
    this.deferred.push(task);
  }

  /**
   * Advances the VM by `ns` of simulated time in steps of `quantumNs`: while the vCPUs run,
   * the guest's programs (the workload) act at each step; the device and interrupts run in
   * between. Paused, only the device side moves.
   */
  run(ns: number): void {
    if (!Number.isFinite(ns) || ns < 0) fail('EINVAL', `run for ${ns} ns`);
    const s = this.scheduler;
    const end = s.now + ns;
    for (;;) {
      this.tickPrograms();
      s.advance(Math.min(this.quantumNs, end - s.now));
      if (s.now >= end) break;
    }
    // the guest also acts at the end of the span, so a span's work is accounted in full
    if (ns > 0) this.tickPrograms();
  }

  private tickPrograms(): void {
    if (!this.running) return;
    const now = this.scheduler.now;
    const w = this.workload;
    if (w !== null && w.vm === this) this.runGuest(() => w.tick(now));
    for (const p of this.programs) this.runGuest(() => p.tick(now));
  }

  /** The vCPU `i`. */
  vcpu(i: number): Vcpu {
    return this.vcpus[i] ?? fail('EINVAL', `no vCPU ${i}`);
  }

  // ---- guest RAM ---------------------------------------------------------------------------

  /**
   * A store to guest RAM: by vCPU `vcpu` (logged in its dirty ring; EBUSY while paused), or
   * without one (logged in the WITH_BITMAP backup: a device-emulation side effect).
   * EFAULT outside RAM.
   */
  ramWrite(gpa: number, bytes: Uint8Array, vcpu?: number | Vcpu): void {
    if (vcpu !== undefined) {
      (typeof vcpu === 'number' ? this.vcpu(vcpu) : vcpu).write(gpa, bytes);
      return;
    }
    const off = gpa - this.ramBase;
    if (!Number.isSafeInteger(gpa) || off < 0 || off + bytes.length > this.ramBytes) fail('EFAULT', `store at 0x${gpa.toString(16)} outside RAM`);
    if (bytes.length === 0) return;
    const last = Math.floor((off + bytes.length - 1) / PAGE_SIZE);
    for (let p = Math.floor(off / PAGE_SIZE); p <= last; p++) {
      const r = this.dirtyRings.markDirtyNoVcpu(this.ramSlot, p);
      if (r < 0) throw new KernelError(-r, `logging a store to RAM page ${p}`);
    }
    this.stats.noVcpuWrites++;
    this.ram.write(off, bytes);
  }

  /** A load from guest RAM. EFAULT outside RAM. */
  ramRead(gpa: number, len: number): Uint8Array {
    const off = gpa - this.ramBase;
    if (!Number.isSafeInteger(gpa) || off < 0 || off + len > this.ramBytes) fail('EFAULT', `load at 0x${gpa.toString(16)} outside RAM`);
    return this.ram.readBytes(off, len);
  }

  /** The guest driver's view of RAM (GPA-addressed; stores are vCPU 0 writes). */
  get guestMemory(): GuestMemory {
    return this.guestRam.mem;
  }

  // ---- dirty logging from the VMM side ----------------------------------------------------

  /** @internal VcpuHost: KVM_EXIT_DIRTY_RING_FULL. Reap, then the vCPU may enter again. */
  onDirtyRingFull(vcpu: Vcpu): void {
    this.stats.ringFullExits++;
    this.reap();
    if (vcpu.ring.run() !== 0) fail('EIO', `vCPU ${vcpu.id} still has a full dirty ring after reaping`);
  }

  /** The run loop's reaper: every ring harvested into `reaped`, then KVM_RESET_DIRTY_RINGS. */
  reap(): number {
    const n = this.dirtyRings.harvestAll(this.reapVisit);
    this.dirtyRings.resetAll();
    this.stats.reaps++;
    return n;
  }

  /**
   * One dirty-page collection for migration: harvests every ring (visit(slot, offset) per
   * entry), hands over the pages the run loop reaped since the last call, then resets the
   * rings, so the caller reads page contents only after the pages are write-protected again.
   * Returns the number of pages visited (a page may be visited twice).
   */
  collectDirty(visit: DirtyPageVisitor): number {
    let n = this.dirtyRings.harvestAll(visit);
    n += this.drainReaped(visit);
    this.dirtyRings.resetAll();
    return n;
  }

  /** Visits and clears the pages the run loop reaped (slot = ramSlot). */
  drainReaped(visit: DirtyPageVisitor): number {
    let n = 0;
    this.reaped.forEachSet((p) => {
      visit(this.ramSlot, p);
      n++;
    });
    this.reaped.clearAll();
    return n;
  }

  /**
   * The final collection before sending final state (vCPUs paused): rings harvested and
   * reset, reaped pages, then the WITH_BITMAP backup read and cleared last; a trap then
   * counts any later store (dirtyRings.lateWrites) until dirtyRings.disarm().
   */
  finalCollect(visit: DirtyPageVisitor): FinalCollection {
    this.drainReaped(visit);
    return this.dirtyRings.finalCollect(visit);
  }

  // ---- DMA mappings -------------------------------------------------------------------------

  /** VFIO_IOMMU_UNMAP_DMA of [gpa, gpa+size): bytes unmapped or -errno. Notifiers see UNMAP. */
  unmapDma(gpa: number, size: number): number {
    const r = this.container.unmapDma({ iova: gpa, size });
    return r.ret < 0 ? r.ret : Number(r.size);
  }

  /** VFIO_IOMMU_MAP_DMA of guest RAM [gpa, gpa+size) at IOVA = GPA: 0 or -errno. */
  mapDma(gpa: number, size: number): number {
    const off = gpa - this.ramBase;
    if (!Number.isSafeInteger(gpa) || off < 0 || size <= 0 || off + size > this.ramBytes) return -Errno.EINVAL;
    return this.container.mapDma({ vaddr: this.ramVaddr + off, iova: gpa, size });
  }

  // ---- CPU state ----------------------------------------------------------------------------

  /**
   * The guest state that lives neither in RAM nor in the device: the driver's, the Accel's
   * and the allocator's JavaScript state and the workload's ledger, as UTF-8 JSON. Only while
   * the vCPUs are paused (EBUSY otherwise), as a VMM saves vCPU registers of a stopped VM.
   */
  saveCpuState(): Uint8Array {
    if (this.running) fail('EBUSY', 'saving CPU state needs the vCPUs paused');
    const st: CpuState = {
      format: CPU_STATE_FORMAT,
      version: CPU_STATE_VERSION,
      ramBase: this.ramBase,
      ramBytes: this.ramBytes,
      vcpus: this.vcpus.length,
      guest: this.driver === null ? null : {
        allocator: this.guestRam.saveState(),
        driver: this.driver.saveState(),
        accel: this.accel?.saveState() ?? null,
      },
      workload: this.workload !== null && this.workload.vm === this ? this.workload.saveState() : null,
    };
    return new TextEncoder().encode(JSON.stringify(st));
  }

  /**
   * Continues a guest saved by saveCpuState (possibly in another process) on this VM: the
   * driver is rebuilt over this VM's VfioGuestIo, RAM view and clock, the Accel with its
   * in-flight jobs, and the workload (into `workload` if one is attached, else a new one).
   * The VM must be paused and run no guest yet (EBUSY); EINVAL for a state of another shape
   * (RAM layout, vCPU count) or a corrupt one. Load the device config (io.loadDeviceConfig)
   * before or after; resume the vCPUs after the device is RUNNING.
   */
  loadCpuState(data: Uint8Array): void {
    if (this.running || this.driver !== null) fail('EBUSY', 'CPU state loads into a paused VM without a guest');
    let st: CpuState;
    try {
      st = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data)) as CpuState;
    } catch {
      return fail('EINVAL', 'CPU state is not UTF-8 JSON');
    }
    if (st === null || typeof st !== 'object' || st.format !== CPU_STATE_FORMAT || st.version !== CPU_STATE_VERSION) {
      fail('EINVAL', 'not a CPU state of this format and version');
    }
    if (st.ramBase !== this.ramBase || st.ramBytes !== this.ramBytes || st.vcpus !== this.vcpus.length) {
      fail('EINVAL', 'CPU state is for a VM of another shape');
    }
    try {
      if (st.guest !== null) {
        this.guestRam.restoreState(st.guest.allocator);
        const driver = QmVfDriver.restore(st.guest.driver, { io: this.io, ram: this.guestRam, sched: this.clock });
        this.driver = driver;
        this.accel = st.guest.accel === null ? null : Accel.restore(driver, st.guest.accel);
      }
      if (st.workload !== null) {
        if (this.workload !== null) this.workload.restoreState(st.workload, this);
        else this.workload = Workload.restore(this, st.workload);
      }
    } catch (e) {
      this.driver = null;
      this.accel = null;
      this.epoch++;
      this.deferred = [];
      this.io.onInterrupt(() => {});
      // whatever part of the state was refused (unknown algorithm, bad table...), the state is invalid
      throw new KernelError('EINVAL', `CPU state does not load: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  // ---- teardown -----------------------------------------------------------------------------

  /** Releases VFIO (eventfds, mappings, device, group, container) and the RAM mapping. */
  shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.running = false;
    this.epoch++;
    this.deferred = [];
    this.io.close();
    this.iotlb?.dispose();
    const fds = this.host.process.fds;
    fds.close(this.deviceFd);
    fds.close(this.groupFd);
    fds.close(this.containerFd);
    try {
      this.host.process.user.unmap(this.ramVaddr);
    } catch {
      // already unmapped
    }
  }

  get isShutdown(): boolean {
    return this.closed;
  }
}
