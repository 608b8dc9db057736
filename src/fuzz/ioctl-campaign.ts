/**
 * Campaign "ioctl" (issue 6 item 1a): random ioctls, reads and writes on the VMM process's
 * container, group, device and eventfd fds, in random sequences with opens, closes, VF1
 * unbind/rebind through sysfs and scheduler steps; a guided share of plain valid calls keeps
 * the world in the deep states (container with an IOMMU and mappings, device open).
 *
 * Invariants, after every input:
 * - nothing escapes: a thrown exception (even a KernelError) from an entry point is a bug;
 * - every return is an integer, and every negative return a Linux errno of src/uapi/errno.ts;
 * - a request the fd does not implement is ENOTTY (a container without an IOMMU driver
 *   answers EINVAL, as vfio_fops_unl_ioctl does), a closed fd is EBADF;
 * - a rejected call changes no kernel-side state (snapshot.ts, with the two Linux exceptions);
 * - successes do what they say: GET_API_VERSION 0, CHECK_EXTENSION 0/1, GET_DEVICE_FD a
 *   device fd, MAP_DMA adds exactly its mapping, UNMAP_DMA removes exactly the mappings in
 *   range and reports their bytes, a bitmap report in full dirty scope marks every page of
 *   every reported mapping (vfio-type1-dirty.md section 4);
 * - an eventfd counter never exceeds 2^64-2 (eventfd(2));
 * and at every checkpoint the PF, VF2 (through its own VFIO container) and VF3 complete a
 * compression job checked with node:zlib, with their config space and VFIO state intact.
 */
import { Errno, errnoName } from '../uapi/errno.js';
import {
  VFIO_CHECK_EXTENSION, VFIO_DEVICE_FEATURE, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_IOEVENTFD, VFIO_DEVICE_PCI_HOT_RESET,
  VFIO_DEVICE_RESET, VFIO_DEVICE_SET_IRQS, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_GET_API_VERSION, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DISABLE, VFIO_IOMMU_ENABLE, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
  VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_MIG_GET_PRECOPY_INFO, VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_SET_IOMMU, VFIO_TYPE, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, _IO,
} from '../uapi/vfio.js';
import type { Rng } from '../sim/scheduler.js';
import { EventFd, type VfioFile } from '../vfio/fd.js';
import { VfioContainer } from '../vfio/container.js';
import { VfioGroup } from '../vfio/group.js';
import { VfioDeviceFile } from '../vfio/pci-core/device-file.js';
import type { DmaInfo } from '../vfio/type1/iommu.js';
import { Weights, chance, pick, u64, weighted } from './gen.js';
import {
  type ArgEnv, type FdKind, type FdRef, type IoctlArg, deviceInfoArg, deviceNameArg, dirtyArg, featureArg, fdRef,
  getInfoArg, hotResetArg, intArg, ioeventfdArg, irqInfoArg, junkArg, mapArg, regionInfoArg, setContainerArg,
  setIrqsArg, statusArg, unmapArg, validMapArg,
} from './ioctl-args.js';
import { knownBugsOf } from './known-bugs.js';
import { type FuzzRig, PF_BDF, VFIO_PCI, buildRig, checkWitnesses, coreOf, sysDev, vfBdf, witnessStates } from './rig.js';
import type { Campaign, Recorder } from './runner.js';
import { FULL_SCOPE, type FailureContext, type SnapshotScope, type WorldSnap, equalModulo, snapshotWorld } from './snapshot.js';

type Op =
  | { op: 'ioctl'; fd: FdRef; via: FdKind; req: number; name: string; arg: IoctlArg }
  | { op: 'open'; path: string }
  | { op: 'close'; fd: FdRef }
  | { op: 'eventfd' }
  | { op: 'read'; fd: FdRef; len: number }
  | { op: 'write'; fd: FdRef; bytes: Uint8Array }
  | { op: 'sysfs'; path: string; text: string }
  | { op: 'run'; n: number };

interface Ctx {
  rig: FuzzRig;
  owned: Map<number, FdKind>;
  initial: string[];
  env: ArgEnv;
}

const EVENTFD_MAX = 0xfffffffffffffffen;
/** An fd number no process in this simulator ever has. */
const NO_FD = 999_999;

const REQ_NAMES = new Map<number, string>([
  [VFIO_GET_API_VERSION, 'GET_API_VERSION'], [VFIO_CHECK_EXTENSION, 'CHECK_EXTENSION'], [VFIO_SET_IOMMU, 'SET_IOMMU'],
  [VFIO_GROUP_GET_STATUS, 'GROUP_GET_STATUS'], [VFIO_GROUP_SET_CONTAINER, 'GROUP_SET_CONTAINER'],
  [VFIO_GROUP_UNSET_CONTAINER, 'GROUP_UNSET_CONTAINER'], [VFIO_GROUP_GET_DEVICE_FD, 'GROUP_GET_DEVICE_FD'],
  [VFIO_DEVICE_GET_INFO, 'DEVICE_GET_INFO'], [VFIO_DEVICE_GET_REGION_INFO, 'DEVICE_GET_REGION_INFO'],
  [VFIO_DEVICE_GET_IRQ_INFO, 'DEVICE_GET_IRQ_INFO'], [VFIO_DEVICE_SET_IRQS, 'DEVICE_SET_IRQS'],
  [VFIO_DEVICE_RESET, 'DEVICE_RESET'], [VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, 'GET_PCI_HOT_RESET_INFO|IOMMU_GET_INFO'],
  [VFIO_DEVICE_PCI_HOT_RESET, 'PCI_HOT_RESET|IOMMU_MAP_DMA'], [VFIO_IOMMU_UNMAP_DMA, 'IOMMU_UNMAP_DMA'],
  [VFIO_IOMMU_ENABLE, 'IOMMU_ENABLE'], [VFIO_DEVICE_IOEVENTFD, 'DEVICE_IOEVENTFD|IOMMU_DISABLE'],
  [VFIO_DEVICE_FEATURE, 'DEVICE_FEATURE|IOMMU_DIRTY_PAGES'], [VFIO_MIG_GET_PRECOPY_INFO, 'MIG_GET_PRECOPY_INFO'],
]);

const CONTAINER_BASE = new Set([VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU]);
const TYPE1_REQS = new Set([VFIO_CHECK_EXTENSION, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, VFIO_IOMMU_DIRTY_PAGES]);
const GROUP_REQS = new Set([VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_GROUP_GET_DEVICE_FD]);
const DEVICE_REQS = new Set([
  VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS, VFIO_DEVICE_RESET,
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_PCI_HOT_RESET, VFIO_DEVICE_IOEVENTFD, VFIO_DEVICE_FEATURE,
]);

function reqName(req: number): string {
  return REQ_NAMES.get(req) ?? `0x${(req >>> 0).toString(16)}`;
}

/** The expected answer to a request the file does not implement, or null if it implements it. */
function unknownRequestErrno(file: VfioFile, req: number): number | null {
  if (file instanceof VfioContainer) {
    if (CONTAINER_BASE.has(req)) return null;
    if (file.type1 === null) return -Errno.EINVAL;
    return TYPE1_REQS.has(req) ? null : -Errno.ENOTTY;
  }
  if (file instanceof VfioGroup) return GROUP_REQS.has(req) ? null : -Errno.ENOTTY;
  if (file instanceof VfioDeviceFile) return DEVICE_REQS.has(req) ? null : -Errno.ENOTTY;
  if (file instanceof EventFd) return -Errno.ENOTTY;
  return null;
}

function hex(b: Uint8Array, max = 64): string {
  let s = '';
  for (let i = 0; i < Math.min(b.length, max); i++) s += b[i]!.toString(16).padStart(2, '0');
  return b.length > max ? `${s}..(${b.length})` : s;
}

function refStr(r: FdRef): string {
  return 'raw' in r ? `fd ${r.raw}` : `${r.kind}#${r.i}`;
}

function argStr(a: IoctlArg): string {
  switch (a.t) {
    case 'buf':
      return `buf[${a.bytes.length}]=${hex(a.bytes)}${a.patches.map((p) => ` @${p.at}=${refStr(p.ref)}`).join('')}`;
    case 'int':
      return `int ${a.v}`;
    case 'fd':
      return `int ${refStr(a.ref)}`;
    case 'none':
      return 'NULL';
  }
}

function describe(op: Op): string {
  switch (op.op) {
    case 'ioctl':
      return `ioctl(${refStr(op.fd)}, ${op.name}, ${argStr(op.arg)})`;
    case 'open':
      return `open(${JSON.stringify(op.path)})`;
    case 'close':
      return `close(${refStr(op.fd)})`;
    case 'eventfd':
      return 'eventfd()';
    case 'read':
      return `read(${refStr(op.fd)}, ${op.len})`;
    case 'write':
      return `write(${refStr(op.fd)}, ${hex(op.bytes)})`;
    case 'sysfs':
      return `sysfs_write(${JSON.stringify(op.path)}, ${JSON.stringify(op.text)})`;
    case 'run':
      return `run(${op.n})`;
  }
}

/**
 * The fd an FdRef names. Among the open fds of the kind, the ones wired to VF1's current
 * group come first (its container, its group file), so index 0 reaches the deep states.
 */
function resolve(ctx: Ctx, ref: FdRef): number {
  const wit = ctx.rig.witnessFds;
  if ('raw' in ref) return wit.has(ref.raw) ? NO_FD : ref.raw;
  const fds = ctx.rig.host.process.fds;
  const g = targetGroup(ctx);
  const preferred = ref.kind === 'container' ? g?.container : ref.kind === 'group' ? g : undefined;
  const open: number[] = [];
  const all: number[] = [];
  for (const [fd, kind] of ctx.owned) {
    if (kind !== ref.kind) continue;
    all.push(fd);
    const f = fds.get(fd);
    if (!f) continue;
    if (preferred && f === preferred) open.unshift(fd);
    else open.push(fd);
  }
  const list = open.length > 0 ? open : all;
  return list.length > 0 ? list[ref.i % list.length]! : NO_FD;
}

function argValue(ctx: Ctx, a: IoctlArg): Uint8Array | number | undefined {
  switch (a.t) {
    case 'buf': {
      if (a.patches.length === 0) return a.bytes.slice();
      const b = a.bytes.slice();
      const dv = new DataView(b.buffer);
      for (const p of a.patches) dv.setInt32(p.at, resolve(ctx, p.ref), true);
      return b;
    }
    case 'int':
      return a.v;
    case 'fd':
      return resolve(ctx, a.ref);
    case 'none':
      return undefined;
  }
}

// ---- state queries used by the generator -----------------------------------------------------

function openOf(ctx: Ctx, kind: FdKind): VfioFile[] {
  const fds = ctx.rig.host.process.fds;
  const out: VfioFile[] = [];
  for (const [fd, k] of ctx.owned) {
    if (k !== kind) continue;
    const f = fds.get(fd);
    if (f) out.push(f);
  }
  return out;
}

function targetGroup(ctx: Ctx): VfioGroup | null {
  const g = ctx.rig.host.vfio.group(ctx.rig.target.iommuGroup);
  return g instanceof VfioGroup ? g : null;
}

function containerMappings(ctx: Ctx): DmaInfo[] {
  const c = openOf(ctx, 'container')[0];
  return c instanceof VfioContainer ? (c.type1?.mappings() ?? []) : [];
}

// ---- generation ------------------------------------------------------------------------------

function ioctlOp(rng: Rng, via: FdKind, req: number, arg: IoctlArg): Op {
  return { op: 'ioctl', fd: fdRef(rng, via), via, req, name: reqName(req), arg };
}

function randomReq(rng: Rng): number {
  return weighted(rng, [
    [4, _IO(VFIO_TYPE, 100 + rng.int(32))],
    [2, rng.u32()],
    [1, (_IO(VFIO_TYPE, 100 + rng.int(24)) | ((8 + rng.int(64)) << 16) | (3 << 30)) >>> 0],
    [1, pick(rng, [0, 0x5401, 0x541b, VFIO_MIG_GET_PRECOPY_INFO])],
  ]);
}

/** The next valid step towards "container with IOMMU, mapped RAM, device open", if any is missing. */
function bringUp(ctx: Ctx, rng: Rng): Op | null {
  const { rig } = ctx;
  const t = rig.target;
  if (!t.driver) {
    if (t.driverOverride !== VFIO_PCI) return { op: 'sysfs', path: `${sysDev(t.bdf)}/driver_override`, text: VFIO_PCI };
    return { op: 'sysfs', path: `/sys/bus/pci/drivers/${VFIO_PCI}/bind`, text: t.bdf };
  }
  const containers = openOf(ctx, 'container');
  if (containers.length === 0) return { op: 'open', path: '/dev/vfio/vfio' };
  const g = targetGroup(ctx);
  if (g === null) return null;
  if (!openOf(ctx, 'group').includes(g)) {
    // a group closed under open device fds stays busy until they are closed
    if (g.closed && g.openDeviceCount > 0) return { op: 'close', fd: { kind: 'device', i: 0 } };
    return { op: 'open', path: `/dev/vfio/${t.iommuGroup}` };
  }
  const c = g.container;
  if (c === null) return ioctlOp(rng, 'group', VFIO_GROUP_SET_CONTAINER, { t: 'fd', ref: { kind: 'container', i: 0 } });
  if (c.type1 === null) {
    const i = containers.indexOf(c);
    return { op: 'ioctl', fd: { kind: 'container', i: Math.max(0, i) }, via: 'container', req: VFIO_SET_IOMMU, name: 'SET_IOMMU', arg: { t: 'int', v: VFIO_TYPE1v2_IOMMU } };
  }
  if (openOf(ctx, 'device').length === 0) return ioctlOp(rng, 'group', VFIO_GROUP_GET_DEVICE_FD, deviceNameArg(rng, ctx.env));
  if (c.type1.mappings().length < 2) return ioctlOp(rng, 'container', VFIO_IOMMU_MAP_DMA, validMapArg(rng, ctx.env));
  if (openOf(ctx, 'eventfd').length < 3) return { op: 'eventfd' };
  return null;
}

const CONTAINER_W = new Weights([1, 2, 2, 3, 10, 3, 8, 8, 1, 2, 2]);
const FOREIGN_TO_CONTAINER = [...DEVICE_REQS, ...GROUP_REQS];

function containerOp(ctx: Ctx, rng: Rng): Op {
  const env = ctx.env;
  const c = 'container';
  switch (CONTAINER_W.pick(rng)) {
    case 0: return ioctlOp(rng, c, VFIO_GET_API_VERSION, junkArg(rng));
    case 1: return ioctlOp(rng, c, VFIO_CHECK_EXTENSION, intArg(rng, [1, 3, 4, 6, 8, 9, 10]));
    case 2: return ioctlOp(rng, c, VFIO_SET_IOMMU, intArg(rng, [VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_IOMMU, 2, 7, 8, 9]));
    case 3: return ioctlOp(rng, c, VFIO_IOMMU_GET_INFO, getInfoArg(rng));
    case 4: return ioctlOp(rng, c, VFIO_IOMMU_MAP_DMA, mapArg(rng, env));
    case 5: return ioctlOp(rng, c, VFIO_IOMMU_MAP_DMA, validMapArg(rng, env));
    case 6: return ioctlOp(rng, c, VFIO_IOMMU_UNMAP_DMA, unmapArg(rng, env));
    case 7: return ioctlOp(rng, c, VFIO_IOMMU_DIRTY_PAGES, dirtyArg(rng, env));
    case 8: return ioctlOp(rng, c, pick(rng, [VFIO_IOMMU_ENABLE, VFIO_IOMMU_DISABLE]), junkArg(rng));
    case 9: return ioctlOp(rng, c, pick(rng, FOREIGN_TO_CONTAINER), junkArg(rng));
    default: return ioctlOp(rng, c, randomReq(rng), junkArg(rng));
  }
}

const GROUP_W = new Weights([4, 5, 2, 5, 1, 2]);
const FOREIGN_TO_GROUP = [...DEVICE_REQS, VFIO_IOMMU_MAP_DMA, VFIO_SET_IOMMU];

function groupOp(ctx: Ctx, rng: Rng): Op {
  const g = 'group';
  switch (GROUP_W.pick(rng)) {
    case 0: return ioctlOp(rng, g, VFIO_GROUP_GET_STATUS, statusArg(rng));
    case 1: return ioctlOp(rng, g, VFIO_GROUP_SET_CONTAINER, setContainerArg(rng));
    case 2: return ioctlOp(rng, g, VFIO_GROUP_UNSET_CONTAINER, junkArg(rng));
    case 3: return ioctlOp(rng, g, VFIO_GROUP_GET_DEVICE_FD, deviceNameArg(rng, ctx.env));
    case 4: return ioctlOp(rng, g, pick(rng, FOREIGN_TO_GROUP), junkArg(rng));
    default: return ioctlOp(rng, g, randomReq(rng), junkArg(rng));
  }
}

const DEVICE_W = new Weights([2, 4, 3, 10, 2, 1, 1, 6, 5, 1, 2]);
const FOREIGN_TO_DEVICE = [...GROUP_REQS, VFIO_IOMMU_UNMAP_DMA, VFIO_SET_IOMMU];

function deviceOp(ctx: Ctx, rng: Rng): Op {
  const env = ctx.env;
  const d = 'device';
  switch (DEVICE_W.pick(rng)) {
    case 0: return ioctlOp(rng, d, VFIO_DEVICE_GET_INFO, deviceInfoArg(rng));
    case 1: return ioctlOp(rng, d, VFIO_DEVICE_GET_REGION_INFO, regionInfoArg(rng));
    case 2: return ioctlOp(rng, d, VFIO_DEVICE_GET_IRQ_INFO, irqInfoArg(rng));
    case 3: return ioctlOp(rng, d, VFIO_DEVICE_SET_IRQS, setIrqsArg(rng, env));
    case 4: return ioctlOp(rng, d, VFIO_DEVICE_RESET, junkArg(rng));
    case 5: return ioctlOp(rng, d, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, hotResetArg(rng));
    case 6: return ioctlOp(rng, d, VFIO_DEVICE_PCI_HOT_RESET, hotResetArg(rng));
    case 7: return ioctlOp(rng, d, VFIO_DEVICE_IOEVENTFD, ioeventfdArg(rng, env));
    case 8: return ioctlOp(rng, d, VFIO_DEVICE_FEATURE, featureArg(rng, env));
    case 9: return ioctlOp(rng, d, pick(rng, FOREIGN_TO_DEVICE), junkArg(rng));
    default: return ioctlOp(rng, d, randomReq(rng), junkArg(rng));
  }
}

function eventfdOp(rng: Rng): Op {
  const value = (): bigint => weighted(rng, [[6, BigInt(1 + rng.int(4))], [1, 0n], [1, EVENTFD_MAX], [1, EVENTFD_MAX + 1n], [1, EVENTFD_MAX - 1n], [1, u64(rng)]]);
  return weighted<() => Op>(rng, [
    [5, () => ({ op: 'read', fd: fdRef(rng, 'eventfd'), len: weighted(rng, [[8, 8], [1, rng.int(8)], [1, 8 + rng.int(9)]]) })],
    [5, () => {
      const len = weighted(rng, [[8, 8], [1, rng.int(8)], [1, 8 + rng.int(9)]]);
      const bytes = new Uint8Array(len);
      if (len >= 8) new DataView(bytes.buffer).setBigUint64(0, value(), true);
      return { op: 'write', fd: fdRef(rng, 'eventfd'), bytes };
    }],
    [2, () => ioctlOp(rng, 'eventfd', chance(rng, 0.5) ? randomReq(rng) : pick(rng, [...DEVICE_REQS]), junkArg(rng))],
    [2, () => ({ op: 'eventfd' })],
    [1, () => {
      const fd = fdRef(rng, pick(rng, ['container', 'group', 'device'] as const));
      return chance(rng, 0.5) ? { op: 'read', fd, len: 8 } : { op: 'write', fd, bytes: new Uint8Array(8) };
    }],
  ])();
}

function lifecycleOp(ctx: Ctx, rng: Rng): Op {
  const t = ctx.rig.target;
  const g = t.iommuGroup;
  return weighted<() => Op>(rng, [
    [3, () => ({ op: 'open', path: pick(rng, ['/dev/vfio/vfio', `/dev/vfio/${g}`, `/dev/vfio/${g}`, `/dev/vfio/${ctx.rig.host.device(vfBdf(2))!.iommuGroup}`, '/dev/vfio/77', '/dev/vfio/', `/dev/vfio/0${g}`, '/dev/vfio/vfio/x']) })],
    [4, () => ({ op: 'close', fd: fdRef(rng, weighted(rng, [[4, 'eventfd'], [2, 'device'], [1, 'group'], [1, 'container']] as const)) })],
    [1, () => ({ op: 'sysfs', path: `/sys/bus/pci/drivers/${VFIO_PCI}/unbind`, text: weighted(rng, [[2, t.bdf], [1, 'garbage'], [1, `${t.bdf}\n`], [1, '']]) })],
    [1, () => ({ op: 'sysfs', path: `/sys/bus/pci/drivers/${VFIO_PCI}/bind`, text: weighted(rng, [[6, t.bdf], [1, ''], [1, PF_BDF]]) })],
    [1, () => ({ op: 'sysfs', path: `${sysDev(t.bdf)}/driver_override`, text: weighted(rng, [[4, VFIO_PCI], [1, ''], [1, 'x'.repeat(rng.int(5000))]]) })],
    [3, () => ({ op: 'run', n: 1 + rng.int(64) })],
  ])();
}

function refreshEnv(ctx: Ctx): void {
  ctx.env.mappings = containerMappings(ctx);
}

function next(ctx: Ctx, rng: Rng): Op {
  refreshEnv(ctx);
  if (ctx.owned.size > 48 && chance(rng, 0.3)) return { op: 'close', fd: fdRef(rng, pick(rng, ['eventfd', 'container', 'device', 'group'] as const)) };
  // spare containers (no group) only dilute the container ioctls: keep at most two
  if (openOf(ctx, 'container').length > 2 && chance(rng, 0.3)) return { op: 'close', fd: { kind: 'container', i: 1 + rng.int(2) } };
  if (chance(rng, 0.35)) {
    const up = bringUp(ctx, rng);
    if (up) return up;
  }
  if (ctx.env.mappings.length > 24 && chance(rng, 0.2)) {
    return ioctlOp(rng, 'container', VFIO_IOMMU_UNMAP_DMA, unmapArg(rng, ctx.env));
  }
  switch (TOP_W.pick(rng)) {
    case 0: return containerOp(ctx, rng);
    case 1: return deviceOp(ctx, rng);
    case 2: return groupOp(ctx, rng);
    case 3: return eventfdOp(rng);
    default: return lifecycleOp(ctx, rng);
  }
}

/** container, device, group, eventfd, lifecycle. */
const TOP_W = new Weights([17, 30, 19, 30, 4]);

// ---- application -----------------------------------------------------------------------------

function entryName(op: Op): string {
  switch (op.op) {
    case 'ioctl':
      return op.via === 'eventfd' ? 'eventfd' : `${op.via} fd ioctl`;
    case 'read':
    case 'write':
      return 'raw' in op.fd || op.fd.kind === 'eventfd' ? 'eventfd' : `${op.fd.kind} fd read/write`;
    case 'eventfd':
      return 'eventfd';
    case 'open':
    case 'close':
      return 'open/close';
    case 'sysfs':
      return 'sysfs';
    case 'run':
      return 'scheduler';
  }
}


function u32At(b: Uint8Array, at: number): number {
  return at + 4 <= b.length ? new DataView(b.buffer, b.byteOffset).getUint32(at, true) : 0;
}

function u64At(b: Uint8Array, at: number): bigint {
  return at + 8 <= b.length ? new DataView(b.buffer, b.byteOffset).getBigUint64(at, true) : 0n;
}

/** What a failed call may legitimately have changed (see snapshot.ts). */
function failureContext(file: VfioFile | undefined, fd: number, req: number, arg: unknown, ret: number): FailureContext {
  const fc: FailureContext = {};
  if (!(arg instanceof Uint8Array)) return fc;
  if (file instanceof VfioContainer && req === VFIO_IOMMU_UNMAP_DMA && ret === -Errno.EFAULT) {
    if (u32At(arg, 4) & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) {
      const iova = u64At(arg, 8);
      fc.unmapFault = { fd, iova, end: iova + u64At(arg, 16) };
    }
  }
  if (file instanceof VfioDeviceFile && req === VFIO_DEVICE_SET_IRQS && u32At(arg, 8) === VFIO_PCI_MSI_IRQ_INDEX) {
    const flags = u32At(arg, 4);
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD && flags & VFIO_IRQ_SET_ACTION_TRIGGER) {
      fc.msiBlock = { start: u32At(arg, 12), count: u32At(arg, 16) };
    }
  }
  return fc;
}

function bitsSet(bytes: Uint8Array, first: number, count: number): boolean {
  for (let i = first; i < first + count; i++) if ((bytes[i >> 3]! & (1 << (i & 7))) === 0) return false;
  return true;
}

/** Success semantics of the type1 ioctls, checked against the snapshot taken before the call. */
function checkType1Success(ctx: Ctx, rec: Recorder, c: VfioContainer, fd: number, req: number, arg: Uint8Array, orig: Uint8Array, before: WorldSnap): void {
  const t1 = c.type1;
  const prev = before.containers.find((x) => x.fd === fd)?.type1;
  if (!t1 || !prev) return;
  const after = t1.mappings();
  const user = ctx.rig.host.process.user;
  if (req === VFIO_IOMMU_MAP_DMA) {
    const flags = u32At(arg, 4);
    const iova = Number(u64At(arg, 16));
    const size = Number(u64At(arg, 24));
    if (flags & 4) return; // VADDR update: same set of mappings
    const added = after.filter((m) => !prev.mappings.some((p) => p.iova === m.iova && p.size === m.size));
    if (after.length !== prev.mappings.length + 1 || added.length !== 1 || added[0]!.iova !== iova || added[0]!.size !== size) {
      rec.violation('semantics', `MAP_DMA [${iova.toString(16)}, +${size.toString(16)}) succeeded but mappings went from ${prev.mappings.length} to ${after.length}`);
    }
    return;
  }
  if (req === VFIO_IOMMU_UNMAP_DMA) {
    const flags = u32At(arg, 4);
    if (flags & VFIO_DMA_UNMAP_FLAG_VADDR) return;
    // `size` is written back with the bytes unmapped: the range comes from the input
    const lo = flags & VFIO_DMA_UNMAP_FLAG_ALL ? 0n : u64At(orig, 8);
    const hi = flags & VFIO_DMA_UNMAP_FLAG_ALL ? 1n << 64n : lo + u64At(orig, 16);
    const start = (m: DmaInfo): bigint => BigInt(m.iova);
    const end = (m: DmaInfo): bigint => BigInt(m.iova + m.size);
    // v2 never splits a mapping: exactly the mappings inside the range go. v1 removes every
    // mapping whose first byte is in range, unless one straddles the range start (then the
    // kernel's rb-tree walk order decides, and only "in range, whole" is checked).
    const inside = (m: DmaInfo): boolean => (prev.v2 ? start(m) >= lo && end(m) <= hi : start(m) >= lo && start(m) < hi);
    const removed = prev.mappings.filter((m) => !after.some((x) => x.iova === m.iova && x.size === m.size));
    const bytes = removed.reduce((s, m) => s + m.size, 0);
    const reported = Number(u64At(arg, 16));
    const straddled = !prev.v2 && prev.mappings.some((m) => start(m) < lo && end(m) > lo);
    const wrong = removed.some((m) => !inside(m)) || reported !== bytes || after.length !== prev.mappings.length - removed.length;
    if (wrong || (!straddled && after.some(inside))) {
      rec.violation('semantics', `UNMAP_DMA (${prev.v2 ? 'v2' : 'v1'}) succeeded: removed ${removed.length} mappings (${bytes} bytes), reported ${reported}, ${after.filter(inside).length} left in range`);
      return;
    }
    if (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP && prev.tracking && prev.fullScope && removed.length > 0) {
      const data = Number(u64At(arg, 40));
      const need = Math.ceil(removed.reduce((m, d) => Math.max(m, (d.iova + d.size - Number(lo)) / 4096), 0) / 8);
      const bits = user.copyFromUser(data, need);
      for (const m of removed) {
        if (m.iommuMapped && !bitsSet(bits, (m.iova - Number(lo)) / 4096, m.size / 4096)) {
          rec.violation('semantics', `UNMAP_DMA bitmap misses pages of [${m.iova.toString(16)}, +${m.size.toString(16)}) in full dirty scope`);
          return;
        }
      }
      rec.outcome('full-scope unmap bitmap verified');
    }
    return;
  }
  if (req === VFIO_IOMMU_DIRTY_PAGES && u32At(arg, 4) === VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP && prev.fullScope) {
    const lo = Number(u64At(arg, 8));
    const hi = lo + Number(u64At(arg, 16));
    const data = Number(u64At(arg, 40));
    const inRange = prev.mappings.filter((m) => m.iova >= lo && m.iova + m.size <= hi && m.iommuMapped);
    if (inRange.length === 0) return;
    const need = Math.ceil(inRange.reduce((m, d) => Math.max(m, (d.iova + d.size - lo) / 4096), 0) / 8);
    const bits = user.copyFromUser(data, need);
    for (const m of inRange) {
      if (!bitsSet(bits, (m.iova - lo) / 4096, m.size / 4096)) {
        rec.violation('semantics', `GET_BITMAP misses pages of [${m.iova.toString(16)}, +${m.size.toString(16)}) in full dirty scope`);
        return;
      }
    }
    rec.outcome('full-scope GET_BITMAP verified');
  }
}

function applyIoctl(ctx: Ctx, op: Extract<Op, { op: 'ioctl' }>, rec: Recorder, before: WorldSnap, scope: SnapshotScope): void {
  const fds = ctx.rig.host.process.fds;
  const fd = resolve(ctx, op.fd);
  const file = fds.get(fd);
  const arg = argValue(ctx, op.arg);
  let ret: number;
  try {
    ret = file ? file.ioctl(op.req, arg) : -Errno.EBADF;
  } catch (e) {
    rec.threw(`${op.name} on ${kindOf(file)}`, e);
    return;
  }
  if (!checkRet(rec, ret, op.name)) return;
  if (file) {
    const expect = unknownRequestErrno(file, op.req);
    if (expect !== null && ret !== expect) {
      const where = file instanceof VfioContainer && file.type1 === null ? 'container without an IOMMU driver' : kindOf(file);
      rec.violation('errno', `request the ${where} does not implement: expected ${errnoName(expect)}, got ${ret < 0 ? errnoName(ret) : ret}`);
    }
  }
  rec.outcomeKey(outcomeKey(kindCode(file), op.req, ret), () => `${kindOf(file)} ${op.name} -> ${ret < 0 ? errnoName(ret) : 'ok'}`);
  if (ret < 0) {
    compareAfterFailure(ctx, rec, before, failureContext(file, fd, op.req, arg, ret), `${op.name} -> ${errnoName(ret)}`, scope);
    return;
  }
  if (file instanceof VfioContainer) {
    if (op.req === VFIO_GET_API_VERSION && ret !== 0) rec.violation('semantics', `GET_API_VERSION returned ${ret}`);
    if (op.req === VFIO_CHECK_EXTENSION && ret !== 0 && ret !== 1) rec.violation('semantics', `CHECK_EXTENSION returned ${ret}`);
    if (arg instanceof Uint8Array && op.arg.t === 'buf') checkType1Success(ctx, rec, file, fd, op.req, arg, op.arg.bytes, before);
  }
  if (file instanceof VfioGroup && op.req === VFIO_GROUP_GET_DEVICE_FD) {
    const dev = fds.get(ret);
    if (!(dev instanceof VfioDeviceFile)) rec.violation('semantics', `GET_DEVICE_FD returned ${ret}, not a device fd`);
    else ctx.owned.set(ret, 'device');
  }
}

function kindCode(file: VfioFile | undefined): number {
  if (file === undefined) return 0;
  if (file instanceof VfioContainer) return 1;
  if (file instanceof VfioGroup) return 2;
  if (file instanceof VfioDeviceFile) return 3;
  if (file instanceof EventFd) return 4;
  return 5;
}

/** (fd kind, request, errno or success) as one number: the request is a u32, errno < 256. */
function outcomeKey(kind: number, req: number, ret: number): number {
  return ((kind * 512 + (ret < 0 ? Math.min(-ret, 255) : 256)) * 0x1_0000_0000) + (req >>> 0);
}

function kindOf(file: VfioFile | undefined): string {
  if (file === undefined) return 'bad fd';
  if (file instanceof VfioContainer) return 'container';
  if (file instanceof VfioGroup) return 'group';
  if (file instanceof VfioDeviceFile) return 'device';
  if (file instanceof EventFd) return 'eventfd';
  return 'file';
}

function checkRet(rec: Recorder, ret: unknown, what: string): ret is number {
  if (typeof ret !== 'number' || !Number.isInteger(ret)) {
    rec.violation('errno', `${what} returned ${String(ret)}, not an integer`);
    return false;
  }
  rec.ret(ret);
  if (ret < 0 && errnoName(ret).startsWith('E#')) rec.violation('errno', `${what} returned ${ret}, not a Linux errno`);
  return true;
}

/** What each kind of input can reach (see SnapshotScope). */
function scopeOf(op: Op): SnapshotScope {
  if (op.op === 'ioctl') {
    if (op.via === 'container') return { containers: true, device: 'light' };
    if (op.via === 'device') return { containers: false, device: 'full' };
    if (op.via === 'eventfd') return { containers: false, device: false };
    return FULL_SCOPE;
  }
  if (op.op === 'read' || op.op === 'write' || op.op === 'eventfd' || op.op === 'run') return { containers: false, device: false };
  return FULL_SCOPE;
}

function compareAfterFailure(ctx: Ctx, rec: Recorder, before: WorldSnap, fc: FailureContext, what: string, scope: SnapshotScope): void {
  const after = snapshotWorld({ host: ctx.rig.host, target: ctx.rig.target, owned: ctx.owned }, scope);
  const diff = equalModulo(before, after, fc);
  if (diff !== null) rec.violation('state-changed', `${what} changed ${diff}`);
}

function apply(ctx: Ctx, op: Op, rec: Recorder): void {
  rec.entry(entryName(op));
  const { host } = ctx.rig;
  const fds = host.process.fds;
  const scope = scopeOf(op);
  const before = snapshotWorld({ host, target: ctx.rig.target, owned: ctx.owned }, scope);
  const failed = (ret: number, what: string): void => {
    if (ret < 0) compareAfterFailure(ctx, rec, before, {}, `${what} -> ${errnoName(ret)}`, scope);
  };
  try {
    switch (op.op) {
      case 'ioctl':
        applyIoctl(ctx, op, rec, before, scope);
        break;
      case 'open': {
        const ret = host.openDev(op.path);
        if (!checkRet(rec, ret, 'open')) break;
        rec.outcome(`open -> ${ret < 0 ? errnoName(ret) : 'ok'}`);
        if (ret >= 0) {
          const f = fds.get(ret);
          const kind: FdKind | null = f instanceof VfioContainer ? 'container' : f instanceof VfioGroup ? 'group' : null;
          if (kind === null) rec.violation('semantics', `open(${op.path}) returned fd ${ret} of an unexpected kind`);
          else ctx.owned.set(ret, kind);
        }
        failed(ret, 'open');
        break;
      }
      case 'close': {
        const fd = resolve(ctx, op.fd);
        const ret = fds.close(fd);
        if (!checkRet(rec, ret, 'close')) break;
        ctx.owned.delete(fd);
        if (ret < 0 && ret !== -Errno.EBADF) rec.violation('errno', `close returned ${errnoName(ret)}`);
        break;
      }
      case 'eventfd': {
        const { fd } = fds.eventfd();
        ctx.owned.set(fd, 'eventfd');
        rec.ret(fd);
        break;
      }
      case 'read': {
        const fd = resolve(ctx, op.fd);
        const f = fds.get(fd);
        const ret = f ? f.read(new Uint8Array(op.len)) : -Errno.EBADF;
        if (!checkRet(rec, ret, 'read')) break;
        rec.outcome(`${kindOf(f)} read -> ${ret < 0 ? errnoName(ret) : 'ok'}`);
        failed(ret, 'read');
        break;
      }
      case 'write': {
        const fd = resolve(ctx, op.fd);
        const f = fds.get(fd);
        const ret = f ? f.write(op.bytes.slice()) : -Errno.EBADF;
        if (!checkRet(rec, ret, 'write')) break;
        rec.outcome(`${kindOf(f)} write -> ${ret < 0 ? errnoName(ret) : 'ok'}`);
        failed(ret, 'write');
        break;
      }
      case 'sysfs': {
        const ret = host.sysfsWrite(op.path, op.text);
        if (!checkRet(rec, ret, 'sysfs write')) break;
        rec.outcome(`sysfs ${op.path.slice(op.path.lastIndexOf('/') + 1)} -> ${ret < 0 ? errnoName(ret) : 'ok'}`);
        failed(ret, 'sysfs write');
        break;
      }
      case 'run':
        for (let i = 0; i < op.n && ctx.rig.sched.step(); i++);
        break;
    }
  } catch (e) {
    rec.threw(describe(op).slice(0, 80), e);
  }
  checkEventfds(ctx, rec);
}

function checkEventfds(ctx: Ctx, rec: Recorder): void {
  const fds = ctx.rig.host.process.fds;
  for (const [fd, kind] of ctx.owned) {
    if (kind !== 'eventfd') continue;
    const f = fds.get(fd);
    if (f instanceof EventFd && f.count > EVENTFD_MAX) {
      rec.violation('eventfd', `eventfd counter ${f.count} exceeds 0xfffffffffffffffe`);
      f.count = EVENTFD_MAX;
    }
  }
}

function setup(): Ctx {
  const rig = buildRig();
  const core = coreOf(rig.target);
  const env: ArgEnv = {
    user: rig.user,
    mappings: [],
    deviceName: rig.target.bdf,
    otherNames: [vfBdf(2), vfBdf(3), PF_BDF, '0000:75:00.9'],
    barSizes: rig.target.fn.barSizes,
    msiVectors: core ? core.irqs.count(VFIO_PCI_MSI_IRQ_INDEX) : 4,
  };
  return { rig, owned: new Map(), initial: witnessStates(rig), env };
}

export const ioctlCampaign: Campaign<Ctx, Op> = {
  name: 'ioctl',
  description: 'ioctls, reads and writes on container, group, device and eventfd fds in random sequences',
  defaultInputs: 600_000,
  checkpointEvery: 10_000,
  knownBugs: knownBugsOf('ioctl'),
  setup,
  next,
  apply,
  describe,
  checkpoint(ctx, rec, index) {
    checkWitnesses(ctx.rig, rec, index, ctx.initial);
  },
};

/** The oracle for requests an fd does not implement (tests use it too). */
export { unknownRequestErrno };
