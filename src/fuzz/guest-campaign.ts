/**
 * Campaign "guest" (issue 6 item 1c): a hostile guest owns VF1 through VFIO, like a VM whose
 * kernel went rogue. It starts as a well-behaved QM driver (queues, EQ/AEQ, MSI through
 * eventfds), then issues random mailbox commands with random contexts, doorbells of every
 * kind, SQEs with random fields and DMA addresses (its RAM, holes, the MSI window, beyond the
 * aperture), scribbles over its own rings and contexts, resets itself and re-initialises.
 * All of it reaches the device the way a guest's accesses do: config and BARs through the
 * device fd, DMA through the container's IOMMU domain.
 *
 * Invariants: the model never throws (device fd accesses return a count or an errno,
 * scheduler steps run, a re-probe may fail only with a KernelError), and the other functions
 * keep working: at every checkpoint the PF, VF2 (its own VFIO container) and VF3 complete a
 * compression job checked with node:zlib and keep their state. The hostile guest's errors
 * must surface where hardware reports them; the campaign counts what it saw: mailbox
 * statuses, IOMMU fault reasons in VF1's domain, the QM's own error counters, AEQ interrupts.
 */
import { errnoName, KernelError } from '../uapi/errno.js';
import { Accel } from '../guest/accel.js';
import { QmVfDriver } from '../guest/qm-vf-driver.js';
import { GuestRamAllocator } from '../guest/ram.js';
import { Db, MB_BASE, MB_DATA_H, XQC_SIZE } from '../guest/regs.js';
import {
  ZIP_ALG_COMPRESS, ZIP_ALG_DECOMPRESS, ZIP_DEST_ADDR_H, ZIP_DEST_ADDR_L, ZIP_DEST_AVAIL_OUT, ZIP_DW7, ZIP_DW9,
  ZIP_INPUT_DATA_LENGTH, ZIP_SOURCE_ADDR_H, ZIP_SOURCE_ADDR_L, ZIP_SQE_SIZE, ZIP_SQE_TYPE_SHIFT, ZIP_TAG_DW26,
} from '../hw/engines/zip-sqe.js';
import { PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_BCR_FLR } from '../hw/pci/regs.js';
import type { QueuePair } from '../guest/queue-pair.js';
import type { Rng } from '../sim/scheduler.js';
import { VFIO_PCI_INDEX_TO_OFFSET } from '../uapi/vfio.js';
import { FdPciIo } from './fd-io.js';
import { Weights, chance, pick, weighted } from './gen.js';
import { knownBugsOf } from './known-bugs.js';
import { type FuzzRig, GUEST_RAM, type VfioVm, buildRig, checkWitnesses, openVfioVm, witnessStates } from './rig.js';
import { type Campaign, type Recorder, errorText } from './runner.js';
import { StormGuard, checkGuards, resetGuards } from './storm.js';

type Op =
  | { op: 'mb'; cmd: number; read: boolean; queue: number; addr: number; ctx: Uint8Array | null }
  | { op: 'db'; bar: 2 | 4; off: number; lo: number; hi: number }
  | { op: 'sqe'; q: number; slot: number; sqe: Uint8Array; tail: number }
  | { op: 'mmio'; write: boolean; bar: number; off: number; size: 1 | 2 | 4 | 8; lo: number; hi: number }
  | { op: 'mem'; at: number; bytes: Uint8Array }
  | { op: 'flr' }
  | { op: 'reinit' }
  | { op: 'run'; n: number };

interface Ctx {
  rig: FuzzRig;
  vm: VfioVm;
  io: FdPciIo;
  ram: GuestRamAllocator;
  driver: QmVfDriver | null;
  qps: QueuePair[];
  initial: string[];
  /** Counter values last seen, to turn increments into outcomes. */
  counters: Map<string, number>;
  faultsSeen: number;
  aeqSignals: number;
  /** VF1's storm guard first, then the witnesses'. */
  guards: StormGuard[];
}

const RAM_FLOOR = 2 ** 20;
const DEPTHS = { sqDepth: 64, cqDepth: 64, eqDepth: 64, aeqDepth: 64 };

/** DMA addresses: the guest's RAM and its structures, the RAM edge, holes, the MSI window, wild values. */
function dmaAddr(rng: Rng, ctx: Ctx): number {
  const qp = ctx.qps.length > 0 ? pick(rng, ctx.qps) : null;
  return weighted<() => number>(rng, [
    [6, () => RAM_FLOOR + rng.int((GUEST_RAM - RAM_FLOOR) / 64) * 64],
    [3, () => (qp ? pick(rng, [qp.sqBase, qp.cqBase, qp.sqBase + 64 * rng.int(64)]) : RAM_FLOOR)],
    [2, () => (ctx.driver ? ctx.driver.ctxBuf : RAM_FLOOR)],
    [2, () => GUEST_RAM - 8 * (1 + rng.int(8))],
    [2, () => GUEST_RAM + rng.int(GUEST_RAM)],
    [1, () => 0x8000000 + rng.int(0x100000)],
    [1, () => 2 ** 48 - 64],
    [1, () => pick(rng, [0, 2 ** 53 - 8, 2 ** 32, 2 ** 32 - 4])],
    [1, () => rng.u32() * 0x10000 + rng.int(0x10000)],
  ])();
}

function context(rng: Rng, ctx: Ctx): Uint8Array {
  const b = new Uint8Array(XQC_SIZE);
  const dv = new DataView(b.buffer);
  if (chance(rng, 0.3)) return rng.bytes(XQC_SIZE);
  const base = dmaAddr(rng, ctx);
  dv.setUint32(4, base % 2 ** 32, true);
  dv.setUint32(8, Math.floor(base / 2 ** 32) >>> 0, true);
  // depth and element size, queue number, alg/priority/phase bits around their fields
  dv.setUint32(12, (weighted(rng, [[4, 63], [2, rng.int(0x10000)], [1, 0]]) | (rng.int(16) << 12)) >>> 0, true);
  dv.setUint16(24, weighted(rng, [[4, rng.int(4)], [1, rng.int(0x10000)]]), true);
  dv.setUint16(26, rng.int(0x10000), true);
  dv.setUint32(28, rng.u32(), true);
  if (chance(rng, 0.3)) dv.setUint32(24, ((weighted(rng, [[3, 63], [1, rng.int(0x10000)]]) | (rng.int(2) << 16)) >>> 0), true);
  return b;
}

function zipSqe(rng: Rng, ctx: Ctx): Uint8Array {
  if (chance(rng, 0.2)) return rng.bytes(ZIP_SQE_SIZE);
  const b = new Uint8Array(ZIP_SQE_SIZE);
  const dv = new DataView(b.buffer);
  const put64 = (lo: number, hi: number, v: number): void => {
    dv.setUint32(lo, v % 2 ** 32, true);
    dv.setUint32(hi, Math.floor(v / 2 ** 32) >>> 0, true);
  };
  dv.setUint32(ZIP_INPUT_DATA_LENGTH, weighted(rng, [[5, 1 + rng.int(8192)], [1, 0], [1, rng.u32()], [1, 16 * 2 ** 20 + 1]]), true);
  dv.setUint32(ZIP_DW7, (weighted(rng, [[5, 3], [1, 0], [1, rng.int(16)]]) << ZIP_SQE_TYPE_SHIFT) >>> 0, true);
  dv.setUint32(ZIP_DW9, (weighted(rng, [[5, 1 + rng.int(3)], [1, rng.int(256)]]) | (weighted(rng, [[5, 0], [1, 1], [1, rng.int(16)]]) << 8)) >>> 0, true);
  dv.setUint32(ZIP_DEST_AVAIL_OUT, weighted(rng, [[5, 1 + rng.int(65536)], [1, 0], [1, rng.u32()]]), true);
  put64(ZIP_SOURCE_ADDR_L, ZIP_SOURCE_ADDR_H, dmaAddr(rng, ctx));
  put64(ZIP_DEST_ADDR_L, ZIP_DEST_ADDR_H, dmaAddr(rng, ctx));
  dv.setUint32(ZIP_TAG_DW26, rng.u32(), true);
  return b;
}

const TOP_W = new Weights([14, 14, 14, 16, 10, 1, 1, 8]);

function next(ctx: Ctx, rng: Rng): Op {
  const qpNum = ctx.driver?.info.qpNum ?? 4;
  switch (TOP_W.pick(rng)) {
    case 0: {
      const cmd = weighted(rng, [[10, rng.int(0xe)], [1, rng.int(0x40)]]);
      const queue = weighted(rng, [[6, rng.int(4)], [2, rng.int(qpNum + 2)], [1, 0xffff], [1, rng.int(0x10000)]]);
      const addr = chance(rng, 0.6) && ctx.driver ? ctx.driver.ctxBuf : dmaAddr(rng, ctx);
      return { op: 'mb', cmd, read: chance(rng, 0.3), queue, addr, ctx: chance(rng, 0.7) ? context(rng, ctx) : null };
    }
    case 1: {
      const iso = chance(rng, 0.15);
      const qn = weighted(rng, [[6, rng.int(4)], [2, rng.int(qpNum + 2)], [1, rng.int(0x10000)]]);
      const cmd = weighted(rng, [[3, Db.SQ], [3, Db.CQ], [2, Db.EQ], [2, Db.AEQ], [1, rng.int(16)]]);
      const index = weighted(rng, [[6, rng.int(64)], [1, rng.int(0x10000)]]);
      const lo = ((qn & 0xffff) | (cmd << 12)) >>> 0;
      const hi = (index | (rng.int(2) << 16)) >>> 0;
      if (iso) return { op: 'db', bar: 4, off: qn * 0x10000 + pick(rng, [0x1000, 0x2000, 0]), lo, hi };
      return { op: 'db', bar: 2, off: cmd >= 2 && chance(rng, 0.8) ? 0x2000 : 0x1000, lo, hi };
    }
    case 2:
      return { op: 'sqe', q: rng.int(4), slot: weighted(rng, [[6, rng.int(4)], [1, rng.int(64)]]), sqe: zipSqe(rng, ctx), tail: rng.int(6) };
    case 3: {
      const bar = weighted(rng, [[8, 2], [2, 4], [1, rng.int(6)]]);
      const off = weighted(rng, [
        [6, rng.int(0x10000 / 4) * 4],
        [3, pick(rng, [0x0, 0x4, 0xc, 0x20, 0x24, 0x2c, 0x30, 0x34, 0x60, 0x204, 0x208, 0x300, 0x320, 0x380, 0x1000, 0x2000, 0x3100, 0x8000, 0x8018])],
        [1, rng.int(0x20000)],
      ]);
      return { op: 'mmio', write: chance(rng, 0.6), bar, off, size: pick(rng, [1, 2, 4, 4, 8, 8] as const), lo: rng.u32(), hi: rng.u32() };
    }
    case 4: {
      const at = weighted(rng, [[5, dmaAddr(rng, ctx)], [3, RAM_FLOOR + rng.int(GUEST_RAM - RAM_FLOOR - 64)]]);
      return { op: 'mem', at: Math.min(Math.max(at, 0), GUEST_RAM - 64), bytes: rng.bytes(1 + rng.int(64)) };
    }
    case 5:
      return { op: 'flr' };
    case 6:
      return { op: 'reinit' };
    default:
      return { op: 'run', n: 1 + rng.int(200) };
  }
}

function hex(b: Uint8Array | null): string {
  if (!b) return '-';
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

function describe(op: Op): string {
  switch (op.op) {
    case 'mb':
      return `mailbox(cmd 0x${op.cmd.toString(16)}, ${op.read ? 'read' : 'write'}, queue ${op.queue}, addr 0x${op.addr.toString(16)}, ctx ${hex(op.ctx)})`;
    case 'db':
      return `doorbell(BAR${op.bar} + 0x${op.off.toString(16)}, 0x${op.lo.toString(16)}, 0x${op.hi.toString(16)})`;
    case 'sqe':
      return `sqe(qp#${op.q}, slot ${op.slot}, tail ${op.tail}, ${hex(op.sqe)})`;
    case 'mmio':
      return `mmio ${op.write ? 'write' : 'read'}${op.size * 8}(BAR${op.bar} + 0x${op.off.toString(16)}${op.write ? `, 0x${op.lo.toString(16)}:${op.hi.toString(16)}` : ''})`;
    case 'mem':
      return `ram[0x${op.at.toString(16)}] = ${hex(op.bytes)}`;
    case 'flr':
      return 'flr()';
    case 'reinit':
      return 'reinit()';
    case 'run':
      return `run(${op.n})`;
  }
}


/** One guest access through the device fd; a refused access is an errno, never an exception. */
function access(ctx: Ctx, rec: Recorder, bar: number, off: number, size: number, write: boolean, lo = 0, hi = 0): number {
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  if (write) {
    for (let i = 0; i < size; i++) b[i] = ((i < 4 ? lo : hi) >>> (8 * (i & 3))) & 0xff;
  }
  const pos = VFIO_PCI_INDEX_TO_OFFSET(bar) + off;
  const r = write ? ctx.vm.file.write(b, pos) : ctx.vm.file.read(b, pos);
  if (!Number.isInteger(r) || (r < 0 && errnoName(r).startsWith('E#')) || r > size) {
    rec.violation('errno', `device fd ${write ? 'write' : 'read'} of ${size} at BAR${bar}+0x${off.toString(16)} returned ${r}`);
  }
  rec.ret(r);
  return r === 4 ? dv.getUint32(0, true) : 0;
}

/** Counters of VF1's QM function whose increments are the "errors surface in hardware" evidence. */
function counters(ctx: Ctx): Map<string, number> {
  const m = new Map<string, number>();
  const f = ctx.rig.acc.qm.vf(1);
  if (!f) return m;
  for (const [k, v] of Object.entries(f.doorbellStats)) m.set(`doorbell ${k}`, v);
  for (const [k, v] of Object.entries(f.stats)) m.set(`queue ${k}`, v);
  for (const [k, v] of Object.entries(f.eventDrops)) m.set(`event ${k}`, v);
  return m;
}

function observe(ctx: Ctx, rec: Recorder): void {
  const now = counters(ctx);
  for (const [k, v] of now) {
    const was = ctx.counters.get(k) ?? 0;
    if (v > was) rec.outcome(`qm ${k}`, v - was);
  }
  ctx.counters = now;
  const dom = ctx.vm.container.type1?.domain;
  if (dom) {
    const n = dom.faultCount;
    if (n > ctx.faultsSeen) {
      const recent = dom.faults.slice(-Math.min(n - ctx.faultsSeen, 256));
      for (const f of recent) rec.outcome(`iommu fault ${f.reason} (${f.write ? 'write' : 'read'})`);
      ctx.faultsSeen = n;
    }
  }
  const aeq = ctx.driver?.info.vectors.aeq ?? 1;
  const efd = ctx.io.eventfds[aeq]?.file;
  if (efd && efd.signals > ctx.aeqSignals) {
    rec.outcome('aeq interrupt', efd.signals - ctx.aeqSignals);
    ctx.aeqSignals = efd.signals;
  }
}

function step(ctx: Ctx, n: number): void {
  for (let i = 0; i < n && ctx.rig.sched.step(); i++);
}

function reinit(ctx: Ctx, rec: Recorder): void {
  ctx.qps = [];
  ctx.driver = null;
  ctx.ram = new GuestRamAllocator(ctx.vm.mem, RAM_FLOOR, GUEST_RAM - RAM_FLOOR);
  try {
    const d = QmVfDriver.probe({ ...DEPTHS, io: ctx.io, ram: ctx.ram, sched: ctx.rig.sched, mailbox: { timeoutNs: 200_000 } });
    d.start();
    ctx.driver = d;
    ctx.qps = [d.createQp(ZIP_ALG_COMPRESS), d.createQp(ZIP_ALG_DECOMPRESS)];
    ctx.aeqSignals = ctx.io.eventfds[d.info.vectors.aeq]?.file.signals ?? 0;
    rec.outcome('reinit ok');
  } catch (e) {
    if (e instanceof KernelError) rec.outcome(`reinit failed: ${e.code}`);
    else rec.violation('exception', `guest driver re-probe threw ${errorText(e)}`);
  }
}

function apply(ctx: Ctx, op: Op, rec: Recorder): void {
  rec.entry(op.op === 'run' ? 'scheduler' : `hostile ${op.op}`);
  resetGuards(ctx.guards);
  try {
    switch (op.op) {
      case 'mb': {
        if (op.ctx) ctx.vm.mem.write(Math.min(op.addr, GUEST_RAM - XQC_SIZE), op.ctx);
        const w0 = (op.cmd & 0xff) | (op.read ? 1 << 14 : 0) | (1 << 13) | ((op.queue & 0xffff) << 16);
        access(ctx, rec, 2, MB_BASE, 8, true, w0 >>> 0, op.addr % 2 ** 32);
        access(ctx, rec, 2, MB_DATA_H, 8, true, Math.floor(op.addr / 2 ** 32) >>> 0, 0);
        step(ctx, 8);
        const status = (access(ctx, rec, 2, MB_BASE, 4, false) >>> 9) & 0xf;
        rec.outcome(`mailbox cmd ${op.cmd < 0xe ? op.cmd : 'other'} status ${status}`);
        break;
      }
      case 'db':
        access(ctx, rec, op.bar, op.off, 8, true, op.lo, op.hi);
        break;
      case 'sqe': {
        const qp = ctx.qps.length > 0 ? ctx.qps[op.q % ctx.qps.length]! : null;
        if (!qp) break;
        ctx.vm.mem.write(qp.sqBase + (op.slot % qp.sqDepth) * ZIP_SQE_SIZE, op.sqe);
        access(ctx, rec, 2, 0x1000, 8, true, (qp.qn | (Db.SQ << 12)) >>> 0, op.tail);
        break;
      }
      case 'mmio':
        access(ctx, rec, op.bar, op.off, op.size, op.write, op.lo, op.hi);
        break;
      case 'mem':
        ctx.vm.mem.write(op.at, op.bytes);
        break;
      case 'flr': {
        const cap = ctx.rig.target.fn.pcie.offset;
        const ctl = ctx.io.cfgRead(cap + PCI_EXP_DEVCTL, 2);
        ctx.io.cfgWrite(cap + PCI_EXP_DEVCTL, 2, ctl | PCI_EXP_DEVCTL_BCR_FLR);
        rec.ret(0);
        break;
      }
      case 'reinit':
        reinit(ctx, rec);
        break;
      case 'run':
        step(ctx, op.n);
        break;
    }
  } catch (e) {
    rec.threw(describe(op).slice(0, 100), e);
  }
  checkGuards(ctx.guards, rec);
  observe(ctx, rec);
}

function setup(): Ctx {
  const rig = buildRig();
  const vm = openVfioVm(rig.host, rig.target, rig.user.ramMem, rig.user.ram);
  const guard = new StormGuard('VF1');
  const io = guard.wrap(new FdPciIo(vm.file, rig.host.process.fds));
  const ctx: Ctx = {
    rig, vm, io, ram: new GuestRamAllocator(vm.mem, RAM_FLOOR, GUEST_RAM - RAM_FLOOR), driver: null, qps: [],
    initial: witnessStates(rig), counters: new Map(), faultsSeen: 0, aeqSignals: 0, guards: [guard, ...rig.guards],
  };
  // The hostile guest starts as a working one: its first job must complete.
  const rec = { outcome() {}, violation(_k: string, m: string) { throw new KernelError('EIO', `fuzz guest setup: ${m}`); } } as unknown as Recorder;
  reinit(ctx, rec);
  if (!ctx.driver) throw new KernelError('EIO', 'fuzz guest setup: the guest driver did not start');
  new Accel(ctx.driver, { timeoutNs: 1_000_000_000 }).compress(new TextEncoder().encode('hostile guest, first a good one'), 'deflate');
  ctx.counters = counters(ctx);
  return ctx;
}

export const guestCampaign: Campaign<Ctx, Op> = {
  name: 'guest',
  description: 'hostile guest on VF1: mailbox commands, doorbells, SQEs, contexts and DMA addresses through MMIO',
  defaultInputs: 600_000,
  checkpointEvery: 5_000,
  knownBugs: knownBugsOf('guest'),
  setup,
  next,
  apply,
  describe,
  checkpoint(ctx, rec, index) {
    ctx.rig.sched.runUntilIdle(2_000_000);
    observe(ctx, rec);
    checkWitnesses(ctx.rig, rec, index, ctx.initial);
  },
};
