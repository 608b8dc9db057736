/**
 * The observable kernel-side state of the fuzzed VFIO objects, for the rule "a rejected call
 * changes nothing": the fuzzer's containers (type1 mappings, dirty tracking, IOVA ranges, dma
 * slots, groups), VF1's VFIO group, VF1's vfio-pci device (open count, interrupts and their
 * eventfds, ioeventfds, virtual and physical config space, resets, DMA logging), the host's
 * binding of VF1 and the process's fd table. User memory is not part of it: a failing ioctl
 * may legitimately have written its own arguments back (e.g. MIG_DEVICE_STATE's data_fd -1).
 *
 * Two Linux behaviours change state on failure and are allowed by `equalModulo`, each only in
 * the shape Linux gives it:
 * - UNMAP_DMA with GET_DIRTY_BITMAP failing with EFAULT keeps the mappings it had already
 *   removed (vfio-type1-dirty.md section 2, step 7): only mappings inside the range may go.
 * - SET_IRQS on MSI with eventfds unwinds a failed block by detaching every vector of it
 *   (vfio_msi_set_block), and a failed first enable leaves Multiple Message Enable and
 *   msi_qmax from the allocation and the vectors unmasked (pci_msi_shutdown): only those
 *   may change. The MSI address and data are not exempt: Linux erases the message when the
 *   vectors are freed, so they end as they were.
 */
import type { HostPciDevice } from '../host/pci-device.js';
import type { Host } from '../host/host.js';
import { ConfigSpace } from '../hw/pci/config-space.js';
import {
  PCI_MSI_ADDRESS_HI, PCI_MSI_ADDRESS_LO, PCI_MSI_DATA_64, PCI_MSI_FLAGS, PCI_MSI_FLAGS_QSIZE, PCI_MSI_MASK_64,
  PCI_MSI_PENDING_64,
} from '../hw/pci/regs.js';
import type { EventFd, FdTable } from '../vfio/fd.js';
import { VfioContainer } from '../vfio/container.js';
import { VfioGroup } from '../vfio/group.js';
import type { DmaInfo } from '../vfio/type1/iommu.js';
import { coreOf, fnv } from './rig.js';

export interface ContainerSnap {
  fd: number;
  closed: boolean;
  groups: number[];
  type1: null | {
    v2: boolean;
    avail: number;
    tracking: boolean;
    fullScope: boolean;
    pgsizes: string;
    ranges: string;
    domain: boolean;
    mappings: DmaInfo[];
  };
}

export interface DeviceSnap {
  open: boolean;
  irqType: number;
  msiQmax: number;
  vectors: (number | null)[];
  err: number | null;
  req: number | null;
  ioeventfds: number;
  numRegions: number;
  canReset: boolean;
  logging: string | null;
  domain: boolean;
  vconfig: number;
  /** Physical config space hash without the MSI Multiple Message Enable, address and data. */
  config: number;
  /** MSI Multiple Message Enable field of the physical config space. */
  mme: number;
  /** MSI address (low, high) and data of the physical config space. */
  msiMsg: string;
  /** MSI mask and pending bits of the physical config space. */
  msiMask: string;
  flrs: number;
}

export interface GroupSnap {
  /** fd of the fuzzer's container it is in, -1 none, -2 a container the fuzzer does not own. */
  container: number;
  closed: boolean;
  devices: number;
  members: number;
  kernelDma: boolean;
  domain: boolean;
}

export interface WorldSnap {
  fdCount: number;
  /** [fd, open ? 1 : 0] pairs of the fuzzer's fds. */
  fds: number[];
  binding: string;
  group: GroupSnap | null;
  containers: ContainerSnap[];
  device: DeviceSnap | null;
}

/** Private interrupt state of VfioPciIrqs (ERR and REQ eventfds), read for observation only. */
interface IrqInternals {
  errTrigger: EventFd | null;
  reqTrigger: EventFd | null;
}

export interface SnapshotSources {
  host: Host;
  target: HostPciDevice;
  /** The fuzzer's fds and their kinds, ordered. */
  owned: ReadonlyMap<number, string>;
}

/**
 * What to capture. Calls on one kind of fd cannot reach everything; leaving out what an entry
 * point has no path to keeps a snapshot per input affordable. Opens, closes and sysfs writes
 * take everything.
 */
export interface SnapshotScope {
  containers: boolean;
  /** 'full' includes the config spaces (virtual and physical). */
  device: 'full' | 'light' | false;
}

export const FULL_SCOPE: SnapshotScope = { containers: true, device: 'full' };

function eventfdLabels(fds: FdTable, owned: ReadonlyMap<number, string>): Map<EventFd, number> {
  const m = new Map<EventFd, number>();
  for (const [fd, kind] of owned) {
    if (kind !== 'eventfd') continue;
    const f = fds.get(fd);
    if (f) m.set(f as EventFd, fd);
  }
  return m;
}

const cfgWord = new Uint8Array(4);
const cfgView = new DataView(cfgWord.buffer);

interface PhysConfig {
  hash: number;
  mme: number;
  msiMsg: string;
  msiMask: string;
}

/** ConfigSpace.epoch moves on any config change anywhere: an unchanged epoch reuses the hash. */
const physCache = new WeakMap<object, { epoch: number; value: PhysConfig }>();

function physConfigHash(dev: HostPciDevice): PhysConfig {
  const hit = physCache.get(dev.fn);
  if (hit && hit.epoch === ConfigSpace.epoch) return hit.value;
  const value = physConfigHashUncached(dev);
  physCache.set(dev.fn, { epoch: ConfigSpace.epoch, value });
  return value;
}

/** FNV-1a over a byte buffer a word at a time (config spaces are 4-byte aligned). */
function hashWords(b: Uint8Array): number {
  if (b.byteOffset % 4 !== 0 || b.length % 4 !== 0) return fnv(0x811c9dc5, b);
  const w = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
  let h = 0x811c9dc5;
  for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w[i]!, 0x01000193);
  return h >>> 0;
}

function physConfigHashUncached(dev: HostPciDevice): PhysConfig {
  const fn = dev.fn;
  const msi = fn.msi.offset;
  const flagsAt = msi + PCI_MSI_FLAGS;
  let h = 0x811c9dc5;
  let mme = 0;
  const msg: string[] = [];
  const mask: string[] = [];
  for (let off = 0; off < 0x200; off += 4) {
    let v = fn.configRead(off, 4);
    if (flagsAt >= off && flagsAt < off + 4) {
      const shift = 8 * (flagsAt - off);
      mme = (v >>> shift) & PCI_MSI_FLAGS_QSIZE;
      v = (v & ~(PCI_MSI_FLAGS_QSIZE << shift)) >>> 0;
    } else if (off === msi + PCI_MSI_ADDRESS_LO || off === msi + PCI_MSI_ADDRESS_HI || off === msi + PCI_MSI_DATA_64) {
      msg.push(v.toString(16));
      continue;
    } else if (off === msi + PCI_MSI_MASK_64 || off === msi + PCI_MSI_PENDING_64) {
      mask.push(v.toString(16));
      continue;
    }
    cfgView.setUint32(0, v, true);
    h = fnv(h, cfgWord);
  }
  return { hash: h, mme, msiMsg: msg.join(':'), msiMask: mask.join(':') };
}

const hexCache = new Map<bigint, string>();

function hexOf(v: bigint): string {
  let s = hexCache.get(v);
  if (s === undefined) {
    s = v.toString(16);
    if (hexCache.size < 64) hexCache.set(v, s);
  }
  return s;
}

/** Type1 replaces its IOVA list array when the list changes: the array identifies it. */
const rangesCache = new WeakMap<object, string>();

function rangesKey(ranges: readonly { start: bigint; end: bigint }[]): string {
  let s = rangesCache.get(ranges);
  if (s === undefined) {
    s = ranges.map((r) => `${r.start.toString(16)}-${r.end.toString(16)}`).join(',');
    rangesCache.set(ranges, s);
  }
  return s;
}

export function snapshotWorld(s: SnapshotSources, scope: SnapshotScope = FULL_SCOPE): WorldSnap {
  const { host, target, owned } = s;
  const fds = host.process.fds;
  let labels: Map<EventFd, number> | null = null;
  const label = (e: EventFd | null): number | null => {
    if (e === null) return null;
    labels ??= eventfdLabels(fds, owned);
    return labels.get(e) ?? -1;
  };
  const containerFd = new Map<VfioContainer, number>();
  const containers: ContainerSnap[] = [];
  const fdList: number[] = [];
  for (const [fd, kind] of owned) {
    const f = fds.get(fd);
    fdList.push(fd, f ? 1 : 0);
    if (kind !== 'container') continue;
    const c = f instanceof VfioContainer ? f : null;
    if (c) containerFd.set(c, fd);
    if (!scope.containers) continue;
    const t1 = c?.type1 ?? null;
    containers.push({
      fd,
      closed: c === null,
      groups: c ? c.groups.map((g) => g.id) : [],
      type1: t1 && {
        v2: t1.v2,
        avail: t1.dmaAvail,
        tracking: t1.dirtyTracking,
        fullScope: t1.fullScope,
        pgsizes: hexOf(t1.pgsizeBitmap),
        ranges: rangesKey(t1.iovaRanges),
        domain: t1.domain !== null,
        mappings: t1.mappings(),
      },
    });
  }
  const g = host.vfio.group(target.iommuGroup);
  let group: GroupSnap | null = null;
  if (g instanceof VfioGroup) {
    const c = g.container;
    group = {
      container: c === null ? -1 : (containerFd.get(c) ?? -2),
      closed: g.closed,
      devices: g.openDeviceCount,
      members: g.memberCount,
      kernelDma: g.kernelDmaOwner,
      domain: g.domain !== null,
    };
  }
  const core = coreOf(target);
  let device: DeviceSnap | null = null;
  if (core && scope.device) {
    const irqs = core.irqs;
    const internals = irqs as unknown as IrqInternals;
    const full = scope.device === 'full';
    const vconfig = full ? core.vconfig : null;
    const phys = full ? physConfigHash(target) : { hash: 0, mme: 0, msiMsg: '', msiMask: '' };
    device = {
      open: core.isOpen,
      irqType: irqs.irqType,
      msiQmax: irqs.msiQmax,
      vectors: Array.from({ length: irqs.vectors }, (_, v) => label(irqs.trigger(v))),
      err: label(internals.errTrigger),
      req: label(internals.reqTrigger),
      ioeventfds: core.ioeventfds.size,
      numRegions: core.numRegions,
      canReset: core.canReset,
      logging: core.dmaLogging ? JSON.stringify(core.dmaLogging) : null,
      domain: core.iommuDomain !== null,
      vconfig: vconfig ? hashWords(vconfig) : 0,
      config: phys.hash,
      mme: phys.mme,
      msiMsg: phys.msiMsg,
      msiMask: phys.msiMask,
      flrs: target.fn.stats.flrs,
    };
  }
  return {
    fdCount: fds.size,
    fds: fdList,
    binding: `${target.driver?.name ?? '-'} ${target.driverOverride ?? '-'} ${host.vfio.groupIds().join(',')}`,
    group,
    containers,
    device,
  };
}

export interface FailureContext {
  /** UNMAP_DMA with GET_DIRTY_BITMAP that failed with EFAULT: container fd and [iova, end). */
  unmapFault?: { fd: number; iova: bigint; end: bigint };
  /** SET_IRQS on MSI with eventfds that failed: vectors [start, start+count). */
  msiBlock?: { start: number; count: number };
}

function sameMapping(a: DmaInfo, b: DmaInfo): boolean {
  return a.iova === b.iova && a.size === b.size && a.vaddr === b.vaddr && a.prot === b.prot;
}

/**
 * Compares two snapshots around a failed call; returns null when they match (modulo the
 * Linux behaviours described at the top), else a short description of the first difference.
 */
export function equalModulo(before: WorldSnap, after: WorldSnap, ctx: FailureContext): string | null {
  const b: WorldSnap = { ...before, containers: before.containers.map((c) => ({ ...c })), device: before.device && { ...before.device } };
  const uf = ctx.unmapFault;
  if (uf) {
    const i = b.containers.findIndex((c) => c.fd === uf.fd);
    const bc = b.containers[i];
    const ac = after.containers.find((c) => c.fd === uf.fd);
    if (bc?.type1 && ac?.type1) {
      const kept = bc.type1.mappings.filter((m) => {
        const inside = BigInt(m.iova) >= uf.iova && BigInt(m.iova + m.size) <= uf.end;
        return !inside || ac.type1!.mappings.some((x) => sameMapping(x, m));
      });
      const removed = bc.type1.mappings.length - kept.length;
      b.containers[i] = { ...bc, type1: { ...bc.type1, mappings: kept, avail: bc.type1.avail + removed } };
    }
  }
  const mb = ctx.msiBlock;
  if (mb && b.device && after.device) {
    const bv = b.device.vectors.slice();
    for (let v = mb.start; v < mb.start + mb.count && v < bv.length; v++) {
      if (after.device.vectors[v] === null) bv[v] = null;
    }
    b.device.vectors = bv;
    b.device.mme = after.device.mme;
    b.device.msiQmax = after.device.msiQmax;
    b.device.msiMask = after.device.msiMask;
  }
  const keys: (keyof WorldSnap)[] = ['fdCount', 'fds', 'binding', 'group', 'containers', 'device'];
  for (const k of keys) {
    if (deepEqual(b[k], after[k])) continue;
    const x = JSON.stringify(b[k]);
    const y = JSON.stringify(after[k]);
    const bx = b[k];
    const ay = after[k];
    if (bx !== null && ay !== null && typeof bx === 'object' && typeof ay === 'object' && !Array.isArray(bx)) {
      const fields = Object.keys(bx).filter((f) => JSON.stringify((bx as unknown as Record<string, unknown>)[f]) !== JSON.stringify((ay as unknown as Record<string, unknown>)[f]));
      const show = (o: object): string => clip(JSON.stringify(Object.fromEntries(fields.map((f) => [f, (o as Record<string, unknown>)[f]]))));
      return `${k}{${fields.join(',')}}: ${show(bx)} -> ${show(ay)}`;
    }
    return `${k}: ${clip(x)} -> ${clip(y)}`;
  }
  return null;
}

/** Structural equality of plain data (objects, arrays, primitives), without serialising. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

function clip(s: string | undefined): string {
  if (s === undefined) return 'undefined';
  return s.length > 300 ? `${s.slice(0, 300)}...` : s;
}
