/**
 * Campaign "regions" (issue 6 item 1b): random reads and writes of every size and offset of
 * VF1's config space and BARs, through the vfio-pci device fd (pread/pwrite on every region
 * index, mmaps of the BARs) and through the raw PCI function (config and MMIO accessors as a
 * bus master would issue them), with scheduler steps in between so whatever the writes
 * started (doorbells, mailbox commands, resets) runs.
 *
 * Invariants: nothing throws except a KernelError from the raw accessors' documented argument
 * checks (an access size other than 1/2/4 for config and non-64-bit MMIO, a config offset
 * outside the 4 KiB); device fd returns are a byte count within the buffer or a Linux errno;
 * mapped BAR accesses never throw; VF1's own VFIO state (its container's mappings, its group)
 * is untouched by BAR/config traffic; the virtual Vendor/Device ID stay the VF's (19e5:a251); and at
 * every checkpoint the witnesses (PF, VF2 through VFIO, VF3) complete a job checked with
 * node:zlib and keep their config space.
 */
import { errnoName, KernelError } from '../uapi/errno.js';
import { VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INDEX_TO_OFFSET } from '../uapi/vfio.js';
import type { Rng } from '../sim/scheduler.js';
import type { VfioMapping } from '../vfio/pci-core/ops.js';
import { Weights, chance, pick, weighted } from './gen.js';
import { knownBugsOf } from './known-bugs.js';
import { type FuzzRig, type VfioVm, buildRig, checkWitnesses, openVfioVm, witnessStates } from './rig.js';
import { type Campaign, type Recorder, errorText } from './runner.js';

type Op =
  | { op: 'fd'; write: boolean; index: number; off: number; len: number; fill: number }
  | { op: 'mmap'; index: number; off: number; len: number }
  | { op: 'munmap'; k: number }
  | { op: 'map'; k: number; write: boolean; size: 1 | 2 | 4 | 8; off: number; lo: number; hi: number }
  | { op: 'cfg'; write: boolean; off: number; size: number; value: number }
  | { op: 'mmio'; write: boolean; bar: number; off: number; size: number; lo: number; hi: number }
  | { op: 'run'; n: number };

interface Ctx {
  rig: FuzzRig;
  vm: VfioVm;
  maps: VfioMapping[];
  initial: string[];
  vmState: string;
}

const CFG_SIZE = 0x1000;

function vmState(vm: VfioVm): string {
  return JSON.stringify({ maps: vm.container.type1?.mappings() ?? null, groupIn: vm.group.container === vm.container, devs: vm.group.openDeviceCount });
}

/** Offsets that sit on register and region boundaries, plus uniform ones. */
function offset(rng: Rng, size: number): number {
  return weighted(rng, [
    [8, rng.int(Math.max(1, size))],
    [3, rng.int(Math.max(1, size / 4)) * 4],
    [2, Math.max(0, size - 1 - rng.int(16))],
    [1, size + rng.int(64)],
    [1, pick(rng, [0x300, 0x304, 0x308, 0x1000, 0x2000, 0x60, 0x4, 0xc, 0x3100, 0x8000])],
    [1, pick(rng, [2 ** 32, 2 ** 40 - 8, rng.u32() * 256])],
  ]);
}

const TOP_W = new Weights([30, 6, 1, 14, 24, 22, 3]);

function next(ctx: Ctx, rng: Rng): Op {
  const bars = ctx.rig.target.fn.barSizes;
  switch (TOP_W.pick(rng)) {
    case 0: {
      const index = weighted(rng, [[10, VFIO_PCI_CONFIG_REGION_INDEX], [8, 2], [3, 4], [2, rng.int(12)], [1, rng.u32() & 0xffff]]);
      const size = index === VFIO_PCI_CONFIG_REGION_INDEX ? CFG_SIZE : (bars[index] ?? 0x1000);
      const len = weighted(rng, [[6, pick(rng, [1, 2, 4, 8])], [3, rng.int(17)], [1, 16 + rng.int(256)], [1, 4096]]);
      return { op: 'fd', write: chance(rng, 0.5), index, off: offset(rng, size), len, fill: rng.u32() };
    }
    case 1: {
      const index = weighted(rng, [[6, 2], [3, 4], [1, rng.int(10)]]);
      const size = bars[index] ?? 0x1000;
      const off = weighted(rng, [[6, rng.int(Math.max(1, size / 4096)) * 4096], [1, rng.int(size + 1)], [1, size]]);
      const len = weighted(rng, [[4, size - Math.min(off, size)], [3, 4096 * (1 + rng.int(4))], [1, 0], [1, 1 + rng.int(4096)]]);
      return { op: 'mmap', index, off, len };
    }
    case 2:
      return { op: 'munmap', k: rng.int(8) };
    case 3: {
      const size = pick(rng, [1, 2, 4, 8] as const);
      return { op: 'map', k: rng.int(8), write: chance(rng, 0.5), size, off: offset(rng, 0x10000), lo: rng.u32(), hi: rng.u32() };
    }
    case 4: {
      const size = weighted(rng, [[10, pick(rng, [1, 2, 4])], [1, pick(rng, [0, 3, 8])]]);
      const off = weighted(rng, [[10, rng.int(0x100)], [6, rng.int(CFG_SIZE)], [1, CFG_SIZE - rng.int(4)], [1, CFG_SIZE + rng.int(16)], [1, -1 - rng.int(4)]]);
      return { op: 'cfg', write: chance(rng, 0.5), off, size, value: rng.u32() };
    }
    case 5: {
      const bar = weighted(rng, [[8, 2], [3, 4], [2, rng.int(7)], [1, -1]]);
      const size = weighted(rng, [[10, pick(rng, [1, 2, 4, 8])], [1, 3]]);
      return { op: 'mmio', write: chance(rng, 0.5), bar, off: offset(rng, bars[bar] ?? 0x10000), size, lo: rng.u32(), hi: rng.u32() };
    }
    default:
      return { op: 'run', n: 1 + rng.int(100) };
  }
}

function describe(op: Op): string {
  switch (op.op) {
    case 'fd':
      return `${op.write ? 'pwrite' : 'pread'}(device, region ${op.index} + 0x${op.off.toString(16)}, ${op.len}${op.write ? `, fill 0x${op.fill.toString(16)}` : ''})`;
    case 'mmap':
      return `mmap(device, region ${op.index} + 0x${op.off.toString(16)}, ${op.len})`;
    case 'munmap':
      return `munmap(map#${op.k})`;
    case 'map':
      return `map#${op.k}.${op.write ? 'write' : 'read'}${op.size * 8}(0x${op.off.toString(16)}${op.write ? `, 0x${op.lo.toString(16)}, 0x${op.hi.toString(16)}` : ''})`;
    case 'cfg':
      return `raw config ${op.write ? 'write' : 'read'}(0x${op.off.toString(16)}, ${op.size}${op.write ? `, 0x${op.value.toString(16)}` : ''})`;
    case 'mmio':
      return `raw MMIO ${op.write ? 'write' : 'read'}(BAR${op.bar}, 0x${op.off.toString(16)}, ${op.size}${op.write ? `, 0x${op.lo.toString(16)}:${op.hi.toString(16)}` : ''})`;
    case 'run':
      return `run(${op.n})`;
  }
}

function entryName(op: Op): string {
  switch (op.op) {
    case 'fd':
      return op.index === VFIO_PCI_CONFIG_REGION_INDEX ? 'device fd config read/write' : 'device fd BAR/region read/write';
    case 'mmap':
    case 'munmap':
    case 'map':
      return 'device fd mmap';
    case 'cfg':
      return 'raw config access';
    case 'mmio':
      return 'raw MMIO access';
    case 'run':
      return 'scheduler';
  }
}


function fdReturn(rec: Recorder, r: number, len: number, what: string): void {
  if (!Number.isInteger(r)) {
    rec.violation('errno', `${what} returned ${String(r)}`);
    return;
  }
  rec.ret(r);
  if (r < 0 && errnoName(r).startsWith('E#')) rec.violation('errno', `${what} returned ${r}, not a Linux errno`);
  if (r > len) rec.violation('errno', `${what} returned ${r} for a ${len}-byte buffer`);
}

/** The raw accessors may refuse bad arguments with a KernelError; anything else is a bug. */
function rawCall(rec: Recorder, what: string, fn: () => void): void {
  try {
    fn();
    rec.ret(0);
  } catch (e) {
    if (e instanceof KernelError) {
      rec.ret(-e.errno);
      rec.outcome(`${what} refused: ${e.code}`);
    } else {
      rec.violation('exception', `${what} threw ${errorText(e)}`);
    }
  }
}

function apply(ctx: Ctx, op: Op, rec: Recorder): void {
  rec.entry(entryName(op));
  const { vm, rig } = ctx;
  const fn = rig.target.fn;
  try {
    switch (op.op) {
      case 'fd': {
        const buf = new Uint8Array(op.len);
        if (op.write) for (let i = 0; i < buf.length; i++) buf[i] = (op.fill >>> (8 * (i & 3))) & 0xff;
        const pos = VFIO_PCI_INDEX_TO_OFFSET(op.index) + op.off;
        const r = op.write ? vm.file.write(buf, pos) : vm.file.read(buf, pos);
        fdReturn(rec, r, op.len, op.write ? 'pwrite' : 'pread');
        rec.outcome(`fd region ${Math.min(op.index, 10)} ${op.write ? 'write' : 'read'} -> ${r < 0 ? errnoName(r) : r === op.len ? 'full' : r === 0 ? 'zero' : 'short'}`);
        break;
      }
      case 'mmap': {
        const m = vm.file.mmap(VFIO_PCI_INDEX_TO_OFFSET(op.index) + op.off, op.len);
        if (typeof m === 'number') {
          fdReturn(rec, m, 0, 'mmap');
          rec.outcome(`mmap -> ${errnoName(m)}`);
        } else {
          rec.ret(0);
          rec.outcome(`mmap BAR${op.index} -> ok`);
          ctx.maps.push(m);
          if (ctx.maps.length > 8) ctx.maps.shift()!.unmap();
        }
        break;
      }
      case 'munmap': {
        const m = ctx.maps.length > 0 ? ctx.maps.splice(op.k % ctx.maps.length, 1)[0]! : null;
        m?.unmap();
        break;
      }
      case 'map': {
        const m = ctx.maps.length > 0 ? ctx.maps[op.k % ctx.maps.length]! : null;
        if (m === null) break;
        const faults = m.faults;
        if (op.write) {
          if (op.size === 1) m.write8(op.off, op.lo);
          else if (op.size === 2) m.write16(op.off, op.lo);
          else if (op.size === 4) m.write32(op.off, op.lo);
          else m.write64(op.off, op.lo, op.hi);
        } else if (op.size === 1) m.read8(op.off);
        else if (op.size === 2) m.read16(op.off);
        else if (op.size === 4) m.read32(op.off);
        else m.read64(op.off);
        rec.ret(0);
        rec.outcome(m.faults > faults ? 'mapped access faulted' : 'mapped access ok');
        break;
      }
      case 'cfg':
        rawCall(rec, 'raw config access', () => {
          const size = op.size as 1 | 2 | 4;
          if (op.write) fn.configWrite(op.off, size, op.value);
          else fn.configRead(op.off, size);
        });
        break;
      case 'mmio':
        rawCall(rec, 'raw MMIO access', () => {
          if (op.size === 8) {
            if (op.write) fn.mmioWrite64(op.bar, op.off, op.lo, op.hi, 'guest');
            else fn.mmioRead64(op.bar, op.off, 'guest');
          } else {
            const size = op.size as 1 | 2 | 4;
            if (op.write) fn.mmioWrite(op.bar, op.off, size, op.lo, 'guest');
            else fn.mmioRead(op.bar, op.off, size, 'guest');
          }
        });
        break;
      case 'run':
        for (let i = 0; i < op.n && rig.sched.step(); i++);
        break;
    }
  } catch (e) {
    rec.threw(describe(op), e);
  }
}

function setup(): Ctx {
  const rig = buildRig();
  const vm = openVfioVm(rig.host, rig.target, rig.user.ramMem, rig.user.ram);
  const maps: VfioMapping[] = [];
  for (const bar of [2, 4]) {
    const size = rig.target.fn.barSizes[bar] ?? 0;
    if (size === 0) continue;
    const m = vm.file.mmap(VFIO_PCI_INDEX_TO_OFFSET(bar), size);
    if (typeof m !== 'number') maps.push(m);
  }
  return { rig, vm, maps, initial: witnessStates(rig), vmState: vmState(vm) };
}

export const regionCampaign: Campaign<Ctx, Op> = {
  name: 'regions',
  description: 'BAR and config space accesses of every size and offset, through the device fd, its mmaps and the raw PCI function',
  defaultInputs: 1_000_000,
  checkpointEvery: 20_000,
  knownBugs: knownBugsOf('regions'),
  setup,
  next,
  apply,
  describe,
  checkpoint(ctx, rec, index) {
    // Whatever the writes queued runs now, so the witnesses start from a settled device.
    ctx.rig.sched.runUntilIdle(1_000_000);
    checkWitnesses(ctx.rig, rec, index, ctx.initial);
    const s = vmState(ctx.vm);
    if (s !== ctx.vmState) rec.violation('state-changed', `VF1's VFIO state changed under BAR/config traffic: ${s}, was ${ctx.vmState}`);
    const id = new Uint8Array(4);
    const r = ctx.vm.file.read(id, VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX));
    const v = new DataView(id.buffer).getUint32(0, true);
    const t = ctx.rig.target;
    const want = ((t.device << 16) | t.vendor) >>> 0;
    if (r !== 4 || v !== want) rec.violation('semantics', `virtual Vendor/Device ID read ${r} bytes 0x${v.toString(16)}, expected 0x${want.toString(16)}`);
  },
};
