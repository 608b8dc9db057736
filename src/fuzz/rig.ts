/**
 * The world every campaign fuzzes: one ZIP V3 accelerator on a simulated host with its PF
 * bound to the hisi_zip PF driver and three VFs. VF1 is the target (bound to vfio-pci; each
 * campaign decides how far it is set up). Three witnesses keep running real compression
 * jobs that are checked with node:zlib:
 * - the PF, through its own queues next to the PF driver (PfSharedIo);
 * - VF2, assigned to a second "VM" through VFIO: its own group, container, DMA mappings and
 *   device fd in the same VMM process (FdPciIo), so the fuzzed VFIO objects sit next to a
 *   working set of the same kind;
 * - VF3, driven bare-metal behind its own IOMMU domain.
 * A witness check also compares each witness's config space and VFIO state with what they
 * were after setup: nothing done to VF1 may reach them.
 */
import { inflateRawSync } from 'node:zlib';
import { Accel } from '../guest/accel.js';
import { directPciIo, type GuestPciIo } from '../guest/io.js';
import { QmVfDriver } from '../guest/qm-vf-driver.js';
import { GuestRamAllocator } from '../guest/ram.js';
import { Host } from '../host/host.js';
import type { HostPciDevice } from '../host/pci-device.js';
import type { AccDevice } from '../hw/acc-device.js';
import type { PciFunction } from '../hw/pci/function.js';
import { IOMMU_READ, IOMMU_WRITE, IommuDomain } from '../iommu/domain.js';
import { SparseMemory } from '../mem/sparse-memory.js';
import { PROT_READ } from '../mem/user-space.js';
import type { Scheduler } from '../sim/scheduler.js';
import { KernelError } from '../uapi/errno.js';
import { VfioContainer } from '../vfio/container.js';
import { VfioGroup } from '../vfio/group.js';
import { VfioDeviceFile } from '../vfio/pci-core/device-file.js';
import { vfioPciDriver } from '../vfio/pci-core/driver.js';
import type { VfioPciCoreDevice } from '../vfio/pci-core/core-device.js';
import { VFIO_TYPE1v2_IOMMU } from '../uapi/vfio.js';
import { FdPciIo } from './fd-io.js';
import { PfSharedIo } from './pf-io.js';
import type { Recorder } from './runner.js';
import { StormGuard, checkGuards, resetGuards } from './storm.js';

export const PF_BDF = '0000:75:00.0';
export const vfBdf = (n: number): string => `0000:75:00.${n}`;
export const sysDev = (bdf: string): string => `/sys/bus/pci/devices/${bdf}`;
export const VFIO_PCI = 'vfio-pci';

/** Guest RAM of each witness and of the target's "VM". */
export const GUEST_RAM = 16 * 2 ** 20;
/** Guest RAM sits at IOVA 0 (below the SMMU MSI window at 0x8000000). */
export const RAM_IOVA = 0;
const RAM_FLOOR = 2 ** 20;
/** Where the PF witness's buffers live in host RAM (identity-mapped DMA). */
const PF_RAM_BASE = 2 ** 30;
/** Small rings keep setup cheap; the witness only needs one job at a time. */
const DEPTHS = { sqDepth: 64, cqDepth: 64, eqDepth: 64, aeqDepth: 64 };

export interface Witness {
  readonly name: string;
  readonly fn: PciFunction;
  readonly accel: Accel;
  readonly driver: QmVfDriver;
  /** State that must not change while VF1 is fuzzed (config space, VFIO objects). */
  state(): string;
}

/** User memory of the VMM process the campaigns draw pointers from. */
export interface UserLayout {
  /** Read-write anonymous buffer (bitmaps, report buffers, range arrays). */
  rw: number;
  rwLen: number;
  /** Read-only anonymous buffer. */
  ro: number;
  roLen: number;
  /** Two adjacent read-write segments: a pointer near the end of `pairA` straddles both. */
  pairA: number;
  pairLen: number;
  /** Guest RAM of the target VM as mapped in the VMM (MAP_DMA vaddrs). */
  ram: number;
  ramMem: SparseMemory;
}

export interface FuzzRig {
  readonly host: Host;
  readonly sched: Scheduler;
  readonly acc: AccDevice;
  readonly pfDev: HostPciDevice;
  readonly target: HostPciDevice;
  readonly witnesses: Witness[];
  /** fds the witnesses own; campaigns never hand them to the code under test. */
  readonly witnessFds: ReadonlySet<number>;
  readonly user: UserLayout;
  /** Interrupt storm guards of the witnesses' drivers. */
  readonly guards: StormGuard[];
}

export function fnv(h: number, b: Uint8Array): number {
  const n = b.length;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h >>> 0;
}

/** Hash of a function's standard and extended config space through its hardware registers. */
export function configHash(fn: PciFunction, end = 0x200): number {
  const b = new Uint8Array(4);
  const dv = new DataView(b.buffer);
  let h = 0x811c9dc5;
  for (let off = 0; off < end; off += 4) {
    dv.setUint32(0, fn.configRead(off, 4), true);
    h = fnv(h, b);
  }
  return h;
}

/** The vfio-pci core device of a bound function, if any. */
export function coreOf(dev: HostPciDevice): VfioPciCoreDevice | undefined {
  return vfioPciDriver.coreOf(dev);
}

function must(r: number, what: string): number {
  if (r < 0) throw new KernelError(-r, `fuzz rig: ${what}`);
  return r;
}

function bindVfio(host: Host, bdf: string): void {
  must(host.sysfsWrite(`${sysDev(bdf)}/driver_override`, VFIO_PCI), `driver_override of ${bdf}`);
  must(host.sysfsWrite(`/sys/bus/pci/drivers/${VFIO_PCI}/bind`, bdf), `bind ${bdf}`);
}

export interface VfioVm {
  containerFd: number;
  groupFd: number;
  deviceFd: number;
  container: VfioContainer;
  group: VfioGroup;
  file: VfioDeviceFile;
  mem: SparseMemory;
  vaddr: number;
}

/**
 * A VM's VFIO setup for a VF bound to vfio-pci, as a VMM does it: container, group,
 * SET_CONTAINER, type1v2, guest RAM mapped at IOVA 0, device fd.
 */
export function openVfioVm(host: Host, dev: HostPciDevice, mem: SparseMemory, vaddr?: number): VfioVm {
  const fds = host.process.fds;
  const containerFd = must(host.openDev('/dev/vfio/vfio'), 'open container');
  const groupFd = must(host.openDev(`/dev/vfio/${dev.iommuGroup}`), 'open group');
  const container = fds.get(containerFd);
  const group = fds.get(groupFd);
  if (!(container instanceof VfioContainer) || !(group instanceof VfioGroup)) throw new KernelError('ENODEV', 'fuzz rig: not src/vfio objects');
  must(group.setContainer(containerFd), 'SET_CONTAINER');
  must(container.setIommu(VFIO_TYPE1v2_IOMMU), 'SET_IOMMU');
  const va = vaddr ?? host.process.user.mapMemory(mem, 0, mem.size);
  must(container.mapDma({ vaddr: va, iova: RAM_IOVA, size: mem.size }), 'MAP_DMA');
  const deviceFd = must(group.getDeviceFd(dev.bdf), 'GET_DEVICE_FD');
  const file = fds.get(deviceFd);
  if (!(file instanceof VfioDeviceFile)) throw new KernelError('ENODEV', 'fuzz rig: not a device fd');
  return { containerFd, groupFd, deviceFd, container, group, file, mem, vaddr: va };
}

function startDriver(io: GuestPciIo, ram: GuestRamAllocator, sched: Scheduler): { driver: QmVfDriver; accel: Accel } {
  const driver = QmVfDriver.probe({ ...DEPTHS, io, ram, sched });
  driver.start();
  return { driver, accel: new Accel(driver, { timeoutNs: 1_000_000_000 }) };
}

/** Builds the host, binds VF1 and VF2 to vfio-pci and starts the three witnesses. */
export function buildRig(): FuzzRig {
  const host = new Host({ devices: ['zip-v3'] });
  const sched = host.scheduler;
  const acc = host.accelerators[0]!;
  must(host.sysfsWrite(`${sysDev(PF_BDF)}/sriov_numvfs`, '3'), 'sriov_numvfs');
  must(host.registerDriver(vfioPciDriver), 'register vfio-pci');
  bindVfio(host, vfBdf(1));
  bindVfio(host, vfBdf(2));
  const pfDev = host.device(PF_BDF)!;
  const target = host.device(vfBdf(1))!;
  const vf2Dev = host.device(vfBdf(2))!;
  const vf3 = acc.vf(3)!;
  const fds = host.process.fds;
  const user = host.process.user;

  // The target VM's user memory comes first so its addresses do not depend on the witnesses.
  const rwLen = 64 * 1024;
  const rw = user.alloc(rwLen);
  const roLen = 16 * 1024;
  const ro = user.alloc(roLen, { prot: PROT_READ });
  const pairLen = 16 * 1024;
  const pairA = user.alloc(pairLen);
  user.alloc(pairLen, { vaddr: pairA + pairLen });
  const ramMem = new SparseMemory(GUEST_RAM);
  const ram = user.mapMemory(ramMem, 0, GUEST_RAM);

  const witnesses: Witness[] = [];
  const before = fds.size;

  const guards = [new StormGuard('PF'), new StormGuard('VF2'), new StormGuard('VF3')];
  // PF: its own queues, next to the PF driver.
  const pfIo = guards[0]!.wrap(new PfSharedIo(pfDev, vf2Dev.device));
  const pf = startDriver(pfIo, new GuestRamAllocator(host.memory, PF_RAM_BASE, GUEST_RAM), sched);
  pfIo.deliver([pf.driver.info.vectors.eq, pf.driver.info.vectors.aeq]);
  witnesses.push({ name: 'PF', fn: acc.pf, ...pf, state: () => `cfg ${configHash(acc.pf, 0x400)}` });

  // VF2: a second VM through VFIO.
  const vm2 = openVfioVm(host, vf2Dev, new SparseMemory(GUEST_RAM));
  const io2 = guards[1]!.wrap(new FdPciIo(vm2.file, fds));
  const w2 = startDriver(io2, new GuestRamAllocator(vm2.mem, RAM_FLOOR, GUEST_RAM - RAM_FLOOR), sched);
  const vf2 = acc.vf(2)!;
  const vf2State = (): string => {
    const core = coreOf(vf2Dev);
    const t1 = vm2.container.type1;
    return JSON.stringify({
      cfg: configHash(vf2),
      maps: t1?.mappings() ?? null,
      groups: vm2.container.groups.map((g) => g.id),
      groupContainer: vm2.group.container === vm2.container,
      open: core?.isOpen ?? false,
      vectors: core?.irqs.vectors ?? -1,
      triggers: core ? Array.from({ length: core.irqs.vectors }, (_, v) => core.irqs.trigger(v) === (io2.eventfds[v]?.file ?? null)) : [],
    });
  };
  witnesses.push({ name: 'VF2 (vfio)', fn: vf2, ...w2, state: vf2State });

  // VF3: bare metal behind its own IOMMU domain.
  const mem3 = new SparseMemory(GUEST_RAM);
  const dom3 = new IommuDomain();
  dom3.map(0, GUEST_RAM, mem3, 0, IOMMU_READ | IOMMU_WRITE);
  vf3.setUpstreamDma(dom3.port(vf3.bdf));
  const w3 = startDriver(guards[2]!.wrap(directPciIo(vf3)), new GuestRamAllocator(mem3, RAM_FLOOR, GUEST_RAM - RAM_FLOOR), sched);
  witnesses.push({ name: 'VF3', fn: vf3, ...w3, state: () => `cfg ${configHash(vf3)}` });

  const witnessFds = new Set<number>([vm2.containerFd, vm2.groupFd, vm2.deviceFd, ...io2.ownedFds]);
  if (fds.size !== before + witnessFds.size) throw new KernelError('EINVAL', 'fuzz rig: unexpected fds');
  sched.runUntilIdle();
  return {
    host, sched, acc, pfDev, target, witnesses, witnessFds, guards,
    user: { rw, rwLen, ro, roLen, pairA, pairLen, ram, ramMem },
  };
}

/** Deterministic, compressible job input that differs per checkpoint. */
export function jobInput(index: number): Uint8Array {
  const words = ['vfio', 'zip', 'queue', 'doorbell', 'mailbox', 'sqe', 'iommu', 'dirty', 'fuzz', 'qm'];
  const parts: string[] = [];
  let x = (index * 2654435761) >>> 0;
  for (let i = 0; i < 300; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    parts.push(words[(x >>> 16) % words.length]!);
  }
  return new TextEncoder().encode(`#${index} ${parts.join(' ')}`);
}

/**
 * Every witness compresses a fresh input, checked by inflating it with node:zlib, and its
 * protected state must match what it was after setup.
 */
export function checkWitnesses(rig: FuzzRig, rec: Recorder, index: number, initial: readonly string[]): void {
  const input = jobInput(index);
  resetGuards(rig.guards);
  rig.witnesses.forEach((w, i) => {
    rec.entry('witness job');
    let out: Uint8Array;
    try {
      out = w.accel.compress(input, 'deflate');
    } catch (e) {
      rec.violation('victim', `${w.name} job failed: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    let back: Buffer | null = null;
    try {
      back = inflateRawSync(out);
    } catch {
      back = null;
    }
    if (back === null || !back.equals(input)) rec.violation('victim', `${w.name} produced output node:zlib does not inflate to the input`);
    else rec.outcome(`witness ok: ${w.name}`);
    const s = w.state();
    if (s !== initial[i]) rec.violation('victim', `${w.name} state changed: now ${s}, was ${initial[i]}`);
  });
  checkGuards(rig.guards, rec);
}

export function witnessStates(rig: FuzzRig): string[] {
  return rig.witnesses.map((w) => w.state());
}
