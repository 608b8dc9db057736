/**
 * A test fixture: one accelerator on a bare host, its PF set up the way a PF driver would
 * (VFT programmed through the PF's VFT_CFG registers, qm-hardware.md 4; SR-IOV enabled
 * through the PF's config space), and guests driving VFs: each guest has its own RAM, an
 * IOMMU domain identity-mapping that RAM for its VF, and a started QmVfDriver.
 *
 * Used by tests, the `job` CLI and the benchmarks.
 */
import { KernelError, fail } from '../uapi/errno.js';
import { AccDevice } from '../hw/acc-device.js';
import type { DeviceProfile } from '../hw/profile.js';
import type { PciPf } from '../hw/pci/pf.js';
import type { PciVf } from '../hw/pci/vf.js';
import {
  PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_EXT_CAP_ID_SRIOV, PCI_SRIOV_CTRL, PCI_SRIOV_CTRL_MSE,
  PCI_SRIOV_CTRL_VFE, PCI_SRIOV_NUM_VF,
} from '../hw/pci/regs.js';
import type { QmLatencies } from '../hw/qm/index.js';
import type { DmaPort } from '../hw/dma.js';
import { IOMMU_READ, IOMMU_WRITE, IommuDomain } from '../iommu/domain.js';
import { PAGE_SIZE, SparseMemory } from '../mem/sparse-memory.js';
import { Scheduler } from '../sim/scheduler.js';
import { Accel } from './accel.js';
import { type GuestPciIo, directPciIo } from './io.js';
import { findExtCapability } from './pci-setup.js';
import { QmVfDriver, type QmVfDriverOptions } from './qm-vf-driver.js';
import { GuestRamAllocator } from './ram.js';
import { pollUntil } from './wait.js';

// PF-only VFT configuration block (PF BAR2, qm-hardware.md 1 and 4).
const VFT_CFG_OP_ENABLE = 0x100054;
const VFT_CFG_OP_WR = 0x100058;
const VFT_CFG_TYPE = 0x10005c;
const VFT_CFG = 0x100060;
const VFT_CFG_DATA_L = 0x100064;
const VFT_CFG_DATA_H = 0x100068;
const VFT_CFG_RDY = 0x10006c;
const TOTAL_QP = 0x100158;
const VFT_SQC = 0;
const VFT_CQC = 1;

export interface QueueAssignment {
  fn: number;
  base: number;
  num: number;
}

/**
 * The PF driver's split (section 4): the PF keeps [0, pfQNum); the rest goes evenly to the
 * VFs, handed out from VF n down to VF 1 starting at pfQNum, each capped at `maxPerFn`. The
 * remainder goes to VF n when that stays under the cap, else one extra each to the next VFs.
 */
export function planQueues(total: number, pfQNum: number, maxPerFn: number, numVfs: number): QueueAssignment[] {
  const plan: QueueAssignment[] = [{ fn: 0, base: 0, num: pfQNum }];
  const pool = total - pfQNum;
  if (numVfs <= 0) return plan;
  if (pool < numVfs) fail('ENOSPC', `${pool} queues cannot serve ${numVfs} VFs`);
  const even = Math.floor(pool / numVfs);
  let extra = pool - even * numVfs;
  let base = pfQNum;
  for (let vf = numVfs; vf >= 1; vf--) {
    let n = even;
    if (vf === numVfs && even + extra <= maxPerFn) {
      n += extra;
      extra = 0;
    } else if (extra > 0) {
      n++;
      extra--;
    }
    n = Math.min(n, maxPerFn);
    plan.push({ fn: vf, base, num: n });
    base += n;
  }
  return plan;
}

/** One VFT write through the PF registers: RDY handshake, OP_WR 0, type, function, data. */
function writeVftWord(pf: PciPf, sched: Scheduler, type: number, fn: number, lo: number, hi: number): void {
  const rd = (off: number) => pf.mmioRead(2, off, 4, 'pf');
  const wr = (off: number, v: number) => pf.mmioWrite(2, off, 4, v, 'pf');
  const ready = () => (rd(VFT_CFG_RDY) & 1) === 1;
  if (!pollUntil(sched, ready, 1_000, 1_000_000)) fail('EBUSY', 'VFT configuration block not ready');
  wr(VFT_CFG_OP_WR, 0);
  wr(VFT_CFG_TYPE, type);
  wr(VFT_CFG, fn);
  wr(VFT_CFG_DATA_L, lo >>> 0);
  wr(VFT_CFG_DATA_H, hi >>> 0);
  wr(VFT_CFG_RDY, 0);
  wr(VFT_CFG_OP_ENABLE, 1);
  if (!pollUntil(sched, ready, 1_000, 1_000_000)) fail('ETIMEDOUT', `VFT write for function ${fn} did not complete`);
}

/** Programs one function's queues: SQC `base<<28 | 1<<44 | (num-1)<<45`, CQC `1<<28`; num 0 clears. */
export function programVft(pf: PciPf, sched: Scheduler, fn: number, base: number, num: number): void {
  if (num <= 0) {
    writeVftWord(pf, sched, VFT_SQC, fn, 0, 0);
    writeVftWord(pf, sched, VFT_CQC, fn, 0, 0);
    return;
  }
  // bits 28..43 base, 44 valid, 45..54 num-1: the high word holds base[15:4], valid, num-1.
  const sqLo = ((base & 0xf) << 28) >>> 0;
  const sqHi = (((base >>> 4) & 0xfff) | (1 << 12) | (((num - 1) & 0x3ff) << 13)) >>> 0;
  writeVftWord(pf, sched, VFT_SQC, fn, sqLo, sqHi);
  writeVftWord(pf, sched, VFT_CQC, fn, (1 << 28) >>> 0, 0);
}

export interface BareVmOptions {
  /** Profile object or firmware name, e.g. 'zip-v3'. */
  profile: string | DeviceProfile;
  /** VFs to enable (default 1). */
  numVfs?: number;
  /** RAM of each guest (default 256 MiB; sparse, so only touched pages cost memory). */
  ramBytes?: number;
  latencies?: Partial<QmLatencies>;
  doorbellIsolation?: boolean;
  /** VFs that get a guest right away (default [1]). */
  guests?: number[];
  /** Driver options of every guest (completion mode, depths, mailbox timing). */
  driver?: Omit<Partial<QmVfDriverOptions>, 'io' | 'ram' | 'sched'>;
  /** Start the guests' drivers (default true). */
  start?: boolean;
  /** VF DMA through an IOMMU domain (default) or straight into guest RAM. */
  iommu?: boolean;
  scheduler?: Scheduler;
  /** PF queue count (the PF driver's pf_q_num; default from the profile). */
  pfQNum?: number;
}

export interface Guest {
  vfIndex: number;
  vf: PciVf;
  mem: SparseMemory;
  ram: GuestRamAllocator;
  domain: IommuDomain | null;
  io: GuestPciIo;
  driver: QmVfDriver;
  accel: Accel;
}

export interface GuestOptions {
  ramBytes?: number;
  /** Interposes on the guest's device access (tracing, fault injection). */
  wrapIo?: (io: GuestPciIo) => GuestPciIo;
  driver?: Omit<Partial<QmVfDriverOptions>, 'io' | 'ram' | 'sched'>;
  start?: boolean;
  iommu?: boolean;
}

/** Guest RAM below this GPA is left unallocated, so a zero address always faults. */
const RAM_FLOOR = 1 << 20;

export class BareVm {
  readonly sched: Scheduler;
  readonly device: AccDevice;
  readonly vft: QueueAssignment[];
  private readonly guestMap = new Map<number, Guest>();
  /**
   * The first guest attached (guests are never detached, so it stays first): the shorthands
   * below run per job in benchmarks, and a Map iterator per call is measurable there.
   */
  private firstAttached: Guest | undefined;
  private readonly defaults: GuestOptions;

  constructor(opts: BareVmOptions) {
    this.sched = opts.scheduler ?? new Scheduler();
    this.device = new AccDevice({
      profile: opts.profile, scheduler: this.sched, latencies: opts.latencies,
      doorbellIsolation: opts.doorbellIsolation,
    });
    this.defaults = { ramBytes: opts.ramBytes, driver: opts.driver, start: opts.start, iommu: opts.iommu };
    const numVfs = opts.numVfs ?? 1;
    const pf = this.device.pf;
    pf.configWrite(PCI_COMMAND, 2, pf.configRead(PCI_COMMAND, 2) | PCI_COMMAND_MEMORY);
    const tq = pf.mmioRead(2, TOTAL_QP, 4, 'pf');
    const q = this.device.profile.qm;
    const total = (tq & 0x7ff) || q.totalQps;
    const maxPerFn = ((tq >>> 11) & 0x7ff) || q.maxQpsPerFunction;
    this.vft = planQueues(total, opts.pfQNum ?? q.pfQNum, maxPerFn, numVfs);
    for (const a of this.vft) programVft(pf, this.sched, a.fn, a.base, a.num);
    if (numVfs > 0) enableSriov(pf, numVfs);
    for (const i of opts.guests ?? (numVfs > 0 ? [1] : [])) this.attachGuest(i);
  }

  get pf(): PciPf {
    return this.device.pf;
  }

  /** The guest driving VF `vfIndex`, created by the constructor or attachGuest. */
  guest(vfIndex = 1): Guest {
    return this.guestMap.get(vfIndex) ?? fail('ENODEV', `no guest on VF ${vfIndex}`);
  }

  get guests(): Guest[] {
    return [...this.guestMap.values()];
  }

  /** Shorthands for the first guest. */
  get driver(): QmVfDriver { return this.firstGuest().driver; }
  get accel(): Accel { return this.firstGuest().accel; }
  get vf(): PciVf { return this.firstGuest().vf; }
  get ram(): GuestRamAllocator { return this.firstGuest().ram; }

  /** Gives VF `vfIndex` a guest: RAM, IOMMU identity mapping, probed (and started) driver. */
  attachGuest(vfIndex: number, opts: GuestOptions = {}): Guest {
    if (this.guestMap.has(vfIndex)) fail('EEXIST', `VF ${vfIndex} already has a guest`);
    const vf = this.device.vf(vfIndex) ?? fail('ENODEV', `VF ${vfIndex} is not enabled`);
    const o = { ...this.defaults, ...opts, driver: { ...this.defaults.driver, ...opts.driver } };
    const ramBytes = Math.ceil((o.ramBytes ?? 256 * 2 ** 20) / PAGE_SIZE) * PAGE_SIZE;
    if (ramBytes <= RAM_FLOOR) fail('EINVAL', `guest RAM of ${ramBytes} bytes is too small`);
    const mem = new SparseMemory(ramBytes);
    let domain: IommuDomain | null = null;
    let port: DmaPort;
    if (o.iommu ?? true) {
      domain = new IommuDomain();
      domain.map(0, ramBytes, mem, 0, IOMMU_READ | IOMMU_WRITE);
      port = domain.port(vf.bdf);
    } else {
      port = directPort(mem);
    }
    vf.setUpstreamDma(port);
    const ram = new GuestRamAllocator(mem, RAM_FLOOR, ramBytes - RAM_FLOOR);
    const io = opts.wrapIo ? opts.wrapIo(directPciIo(vf)) : directPciIo(vf);
    const driver = QmVfDriver.probe({ ...o.driver, io, ram, sched: this.sched });
    if (o.start ?? true) driver.start();
    const g: Guest = { vfIndex, vf, mem, ram, domain, io, driver, accel: new Accel(driver) };
    this.guestMap.set(vfIndex, g);
    this.firstAttached ??= g;
    return g;
  }

  private firstGuest(): Guest {
    return this.firstAttached ?? fail('ENODEV', 'this VM has no guest');
  }
}

function enableSriov(pf: PciPf, numVfs: number): void {
  const cap = findExtCapability({ cfgRead: (o, s) => pf.configRead(o, s) }, PCI_EXT_CAP_ID_SRIOV);
  if (cap === 0) fail('ENODEV', 'PF has no SR-IOV capability');
  pf.configWrite(cap + PCI_SRIOV_NUM_VF, 2, numVfs);
  const ctrl = pf.configRead(cap + PCI_SRIOV_CTRL, 2);
  pf.configWrite(cap + PCI_SRIOV_CTRL, 2, ctrl | PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
  if ((pf.configRead(cap + PCI_SRIOV_CTRL, 2) & PCI_SRIOV_CTRL_VFE) === 0) {
    throw new KernelError('EINVAL', `PF refused to enable ${numVfs} VFs`);
  }
}

/** DMA straight into guest RAM (no IOMMU); out-of-range accesses fail like an abort. */
function directPort(mem: SparseMemory): DmaPort {
  return {
    read(iova, dst) {
      if (!Number.isSafeInteger(iova) || iova < 0 || iova + dst.length > mem.size) return false;
      mem.read(iova, dst);
      return true;
    },
    write(iova, src) {
      if (!Number.isSafeInteger(iova) || iova < 0 || iova + src.length > mem.size) return false;
      mem.write(iova, src);
      return true;
    },
    readView(iova, len) {
      if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(len) || iova < 0 || len < 0 || iova + len > mem.size) return null;
      return mem.view(iova, len);
    },
  };
}

/** Builds a BareVm (see BareVmOptions). */
export function createBareVm(opts: BareVmOptions): BareVm {
  return new BareVm(opts);
}
