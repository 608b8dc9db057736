/**
 * Argument builders for the VFIO ioctls: each returns the bytes a VMM would pass, with
 * argsz, flags and fields drawn around their checks, user pointers from the process layout,
 * and fd numbers as patches resolved when the op runs (so a shrunk reproduction that opens
 * its fds in another order still passes the same kind of fd).
 */
import type { Rng } from '../sim/scheduler.js';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_IOEVENTFD_16, VFIO_DEVICE_IOEVENTFD_32, VFIO_DEVICE_IOEVENTFD_64, VFIO_DEVICE_IOEVENTFD_8,
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_MSI_IRQ_INDEX,
} from '../uapi/vfio.js';
import { PAGE, U64_MAX, argsz, bufLen, chance, edgyU32, iova, pick, size, u64, userPtr, vaddr, weighted } from './gen.js';
import type { UserLayout } from './rig.js';

export type FdKind = 'container' | 'group' | 'device' | 'eventfd';
/** An fd by role (the i-th open fd of that kind, modulo their number) or a raw number. */
export type FdRef = { kind: FdKind; i: number } | { raw: number };

export interface Patch {
  at: number;
  ref: FdRef;
}

export type IoctlArg =
  | { t: 'buf'; bytes: Uint8Array; patches: Patch[] }
  | { t: 'int'; v: number }
  | { t: 'fd'; ref: FdRef }
  | { t: 'none' };

export interface Mapping {
  iova: number;
  size: number;
}

/** What the builders may look at: the user layout and the target container's mappings. */
export interface ArgEnv {
  user: UserLayout;
  mappings: readonly Mapping[];
  /** Device name GET_DEVICE_FD should find. */
  deviceName: string;
  /** Names of other functions (other groups, the PF). */
  otherNames: readonly string[];
  barSizes: readonly number[];
  /** Vectors the MSI capability offers (SET_IRQS counts). */
  msiVectors: number;
}

export function fdRef(rng: Rng, preferred: FdKind): FdRef {
  return weighted<FdRef>(rng, [
    [10, { kind: preferred, i: 0 }],
    [6, { kind: preferred, i: rng.int(4) }],
    [3, { kind: pick(rng, ['container', 'group', 'device', 'eventfd'] as const), i: rng.int(4) }],
    [1, { raw: -1 }],
    [1, { raw: pick(rng, [0, 1, 2, 3, 7, 64, 1023, 0x7fffffff, -2, -0x80000000]) }],
    [1, { raw: rng.int(40) }],
  ]);
}

class Writer {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;
  readonly patches: Patch[] = [];
  constructor(len: number) {
    this.bytes = new Uint8Array(len);
    this.dv = new DataView(this.bytes.buffer);
  }
  u32(at: number, v: number): this {
    if (at + 4 <= this.bytes.length) this.dv.setUint32(at, v >>> 0, true);
    return this;
  }
  u64(at: number, v: bigint): this {
    if (at + 8 <= this.bytes.length) this.dv.setBigUint64(at, BigInt.asUintN(64, v), true);
    return this;
  }
  u8(at: number, v: number): this {
    if (at < this.bytes.length) this.bytes[at] = v & 0xff;
    return this;
  }
  fd(at: number, ref: FdRef): this {
    if (at + 4 <= this.bytes.length) this.patches.push({ at, ref });
    return this;
  }
  arg(): IoctlArg {
    return { t: 'buf', bytes: this.bytes, patches: this.patches };
  }
}

/** A struct of `size` bytes with argsz at 0: the buffer length and argsz drawn around size. */
function struct(rng: Rng, sz: number, extra = 0): { w: Writer; argsz: number } {
  const a = argsz(rng, sz + extra);
  const w = new Writer(bufLen(rng, a, sz + extra));
  w.u32(0, a);
  return { w, argsz: a };
}

/** Sometimes not a struct at all: NULL, a bare integer. */
function maybeNotStruct(rng: Rng, build: () => IoctlArg): IoctlArg {
  if (chance(rng, 0.03)) return { t: 'none' };
  if (chance(rng, 0.02)) return { t: 'int', v: edgyU32(rng) };
  return build();
}

export function intArg(rng: Rng, likely: readonly number[]): IoctlArg {
  return weighted<() => IoctlArg>(rng, [
    [10, () => ({ t: 'int', v: pick(rng, likely) })],
    [3, () => ({ t: 'int', v: rng.int(16) })],
    [1, () => ({ t: 'int', v: pick(rng, [-1, 0x7fffffff, 0xffffffff, 2 ** 32 + 3, 0.5, Number.NaN]) })],
    [1, () => ({ t: 'none' })],
    [1, () => ({ t: 'buf', bytes: new Uint8Array(rng.int(8)), patches: [] })],
  ])();
}

// ---- container -----------------------------------------------------------------------------

export function getInfoArg(rng: Rng): IoctlArg {
  return maybeNotStruct(rng, () => {
    const a = weighted(rng, [[3, 24], [2, 256], [1, 16], [1, 15], [1, rng.int(400)], [1, edgyU32(rng)]]);
    const w = new Writer(weighted(rng, [[8, Math.min(Math.max(a, 24), 1024)], [1, rng.int(32)], [1, 24]]));
    w.u32(0, a);
    return w.arg();
  });
}

function mapFlags(rng: Rng): number {
  return weighted(rng, [
    [10, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE],
    [2, VFIO_DMA_MAP_FLAG_READ],
    [1, VFIO_DMA_MAP_FLAG_WRITE],
    [2, VFIO_DMA_MAP_FLAG_VADDR],
    [1, 0],
    [1, VFIO_DMA_MAP_FLAG_VADDR | VFIO_DMA_MAP_FLAG_READ],
    [1, edgyU32(rng)],
  ]);
}

export function mapArg(rng: Rng, env: ArgEnv): IoctlArg {
  return maybeNotStruct(rng, () => {
    const { w } = struct(rng, 32);
    const at = iova(rng, env.mappings);
    w.u32(4, mapFlags(rng)).u64(8, vaddr(rng, env.user)).u64(16, at).u64(24, size(rng, at, env.mappings));
    return w.arg();
  });
}

/** A vfio_bitmap for [at, at+sz): pgsize, a byte size around the right one, a pointer. */
function bitmap(rng: Rng, w: Writer, off: number, sz: bigint, env: ArgEnv): void {
  const pg = weighted(rng, [[12, BigInt(PAGE)], [1, 0n], [1, BigInt(PAGE * 2)], [1, 1n], [1, 1n << 21n], [1, u64(rng)]]);
  const pages = sz / BigInt(PAGE);
  const need = ((pages + 63n) / 64n) * 8n;
  const bytes = weighted(rng, [[10, need], [1, need - 8n], [1, need + 8n], [1, 0n], [1, (1n << 28n) + 1n], [1, 1n << 28n], [1, u64(rng)]]);
  const ptrLen = Number(bytes > 0n && bytes < 1n << 20n ? bytes : 8n);
  w.u64(off, pg).u64(off + 8, bytes).u64(off + 16, userPtr(rng, env.user, ptrLen));
}

export function unmapArg(rng: Rng, env: ArgEnv): IoctlArg {
  return maybeNotStruct(rng, () => {
    const flags = weighted(rng, [
      [6, 0],
      [6, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP],
      [2, VFIO_DMA_UNMAP_FLAG_ALL],
      [2, VFIO_DMA_UNMAP_FLAG_VADDR],
      [1, VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL],
      [1, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL],
      [1, edgyU32(rng)],
    ]);
    const withBitmap = (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
    const { w } = struct(rng, withBitmap ? 48 : 24);
    let at = iova(rng, env.mappings);
    let sz = size(rng, at, env.mappings);
    if (flags & VFIO_DMA_UNMAP_FLAG_ALL && chance(rng, 0.7)) {
      at = 0n;
      sz = 0n;
    }
    w.u32(4, flags).u64(8, at).u64(16, sz);
    if (withBitmap || chance(rng, 0.1)) bitmap(rng, w, 24, sz, env);
    return w.arg();
  });
}

export function dirtyArg(rng: Rng, env: ArgEnv): IoctlArg {
  return maybeNotStruct(rng, () => {
    const flags = weighted(rng, [
      [3, VFIO_IOMMU_DIRTY_PAGES_FLAG_START],
      [2, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP],
      [8, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP],
      [1, 0],
      [1, VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP],
      [1, edgyU32(rng)],
    ]);
    const get = (flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) !== 0;
    const { w } = struct(rng, get ? 48 : 8);
    w.u32(4, flags);
    if (get) {
      let at = iova(rng, env.mappings);
      let sz = size(rng, at, env.mappings);
      if (chance(rng, 0.3) && env.mappings.length > 0) {
        // a range covering several whole mappings, the way a VMM queries a RAM block
        const a = pick(rng, env.mappings);
        const b = pick(rng, env.mappings);
        const lo = Math.min(a.iova, b.iova);
        const hi = Math.max(a.iova + a.size, b.iova + b.size);
        at = BigInt(lo);
        sz = BigInt(hi - lo);
      }
      w.u64(8, at).u64(16, sz);
      bitmap(rng, w, 24, sz, env);
    }
    return w.arg();
  });
}

// ---- group ---------------------------------------------------------------------------------

export function statusArg(rng: Rng): IoctlArg {
  return maybeNotStruct(rng, () => struct(rng, 8).w.arg());
}

export function setContainerArg(rng: Rng): IoctlArg {
  return weighted<() => IoctlArg>(rng, [
    [10, () => ({ t: 'fd', ref: fdRef(rng, 'container') })],
    [3, () => new Writer(4).fd(0, fdRef(rng, 'container')).arg()],
    [1, () => ({ t: 'buf', bytes: new Uint8Array(rng.int(4)), patches: [] })],
    [1, () => ({ t: 'none' })],
    [1, () => ({ t: 'int', v: pick(rng, [Number.NaN, 0.5, -1, 2 ** 40]) })],
  ])();
}

export function deviceNameArg(rng: Rng, env: ArgEnv): IoctlArg {
  const enc = (s: string, nul = true): Uint8Array => {
    const b = new TextEncoder().encode(s);
    const out = new Uint8Array(b.length + (nul ? 1 : 0));
    out.set(b);
    return out;
  };
  const bytes = weighted<() => Uint8Array>(rng, [
    [12, () => enc(env.deviceName)],
    [2, () => enc(pick(rng, env.otherNames))],
    [1, () => enc(`${env.deviceName} vf_token=2ab74924-c335-45f4-9b16-8569e5b08258`)],
    [1, () => enc(env.deviceName.toUpperCase())],
    [1, () => enc(env.deviceName, false)],
    [1, () => enc('')],
    [1, () => new Uint8Array(4096 + rng.int(8)).fill(0x41)],
    [1, () => rng.bytes(rng.int(32))],
  ])();
  if (chance(rng, 0.02)) return { t: 'none' };
  return { t: 'buf', bytes, patches: [] };
}

// ---- device --------------------------------------------------------------------------------

export function deviceInfoArg(rng: Rng): IoctlArg {
  return maybeNotStruct(rng, () => struct(rng, 24).w.arg());
}

function regionIndex(rng: Rng): number {
  return weighted(rng, [[10, rng.int(10)], [2, pick(rng, [2, 4, 7])], [1, edgyU32(rng)]]);
}

export function regionInfoArg(rng: Rng): IoctlArg {
  return maybeNotStruct(rng, () => {
    const { w } = struct(rng, 32, chance(rng, 0.3) ? 64 : 0);
    w.u32(8, regionIndex(rng)).u32(12, chance(rng, 0.9) ? 0 : edgyU32(rng));
    return w.arg();
  });
}

export function irqInfoArg(rng: Rng): IoctlArg {
  return maybeNotStruct(rng, () => {
    const { w } = struct(rng, 16);
    w.u32(8, weighted(rng, [[10, rng.int(6)], [1, edgyU32(rng)]]));
    return w.arg();
  });
}

export function setIrqsArg(rng: Rng, env: ArgEnv): IoctlArg {
  return maybeNotStruct(rng, () => {
    const data = weighted(rng, [[8, VFIO_IRQ_SET_DATA_EVENTFD], [3, VFIO_IRQ_SET_DATA_NONE], [3, VFIO_IRQ_SET_DATA_BOOL], [1, 0], [1, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_NONE]]);
    const action = weighted(rng, [[10, VFIO_IRQ_SET_ACTION_TRIGGER], [1, VFIO_IRQ_SET_ACTION_MASK], [1, VFIO_IRQ_SET_ACTION_UNMASK], [1, 0], [1, VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_ACTION_MASK]]);
    const flags = chance(rng, 0.03) ? edgyU32(rng) : data | action;
    const index = weighted(rng, [[10, VFIO_PCI_MSI_IRQ_INDEX], [2, pick(rng, [3, 4])], [1, pick(rng, [0, 2])], [1, edgyU32(rng)]]);
    const start = weighted(rng, [[10, 0], [3, rng.int(env.msiVectors + 2)], [1, edgyU32(rng)]]);
    const count = weighted(rng, [[6, env.msiVectors - Math.min(start, env.msiVectors)], [4, rng.int(env.msiVectors + 2)], [2, 0], [1, 1], [1, edgyU32(rng)]]);
    const per = data === VFIO_IRQ_SET_DATA_EVENTFD ? 4 : data === VFIO_IRQ_SET_DATA_BOOL ? 1 : 0;
    const n = Math.min(count, 40);
    const { w } = struct(rng, 20, per * n);
    w.u32(4, flags).u32(8, index).u32(12, start).u32(16, count);
    for (let i = 0; i < n; i++) {
      if (per === 4) {
        if (chance(rng, 0.15)) w.u32(20 + 4 * i, 0xffffffff);
        else w.fd(20 + 4 * i, fdRef(rng, 'eventfd'));
      } else if (per === 1) {
        w.u8(20 + i, weighted(rng, [[3, 1], [2, 0], [1, rng.int(256)]]));
      }
    }
    return w.arg();
  });
}

export function ioeventfdArg(rng: Rng, env: ArgEnv): IoctlArg {
  return maybeNotStruct(rng, () => {
    const { w } = struct(rng, 32);
    const sizeFlag = weighted(rng, [
      [3, VFIO_DEVICE_IOEVENTFD_32], [2, VFIO_DEVICE_IOEVENTFD_64], [1, VFIO_DEVICE_IOEVENTFD_16], [1, VFIO_DEVICE_IOEVENTFD_8],
      [1, 0], [1, VFIO_DEVICE_IOEVENTFD_32 | VFIO_DEVICE_IOEVENTFD_8], [1, edgyU32(rng)],
    ]);
    const bar = weighted(rng, [[8, 2], [3, 4], [2, rng.int(10)], [1, edgyU32(rng) & 0xffffff]]);
    const barSize = env.barSizes[bar] ?? 0;
    const off = weighted(rng, [
      [8, rng.int(Math.max(1, barSize / 8)) * 8],
      [2, pick(rng, [0x1000, 0x2000, 0x300, 0x100])],
      [1, Math.max(0, barSize - rng.int(9))],
      [1, rng.u32()],
    ]);
    const data = weighted(rng, [[6, BigInt(rng.u32())], [2, u64(rng)], [1, 0n], [1, U64_MAX]]);
    w.u32(4, sizeFlag).u64(8, (BigInt(bar) << 40n) + BigInt(off)).u64(16, data);
    if (chance(rng, 0.2)) w.u32(24, 0xffffffff);
    else w.fd(24, fdRef(rng, 'eventfd'));
    return w.arg();
  });
}

export function featureArg(rng: Rng, env: ArgEnv): IoctlArg {
  return maybeNotStruct(rng, () => {
    const id = weighted(rng, [[10, rng.int(11)], [1, rng.int(0x10000)]]);
    const op = weighted(rng, [
      [4, VFIO_DEVICE_FEATURE_GET], [4, VFIO_DEVICE_FEATURE_SET], [3, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET],
      [2, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET], [1, VFIO_DEVICE_FEATURE_PROBE], [1, 0],
      [1, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET], [1, edgyU32(rng) & ~0xffff],
    ]);
    const { w } = struct(rng, 8, 32);
    w.u32(4, (id | op) >>> 0);
    if (id === VFIO_DEVICE_FEATURE_DMA_LOGGING_START) {
      w.u64(8, weighted(rng, [[5, BigInt(PAGE)], [1, 0n], [1, BigInt(PAGE + 1)], [1, 1n << 21n]]));
      w.u32(16, weighted(rng, [[5, 1 + rng.int(4)], [1, 0], [1, 257], [1, edgyU32(rng)]]));
      w.u64(24, userPtr(rng, env.user, 64));
    } else if (id === VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT) {
      const at = iova(rng, env.mappings);
      w.u64(8, at).u64(16, size(rng, at, env.mappings)).u64(24, BigInt(PAGE)).u64(32, userPtr(rng, env.user, 64));
    } else if (id === VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE) {
      w.u32(8, rng.int(9));
    } else {
      for (let i = 8; i < w.bytes.length; i += 4) w.u32(i, chance(rng, 0.5) ? 0 : rng.u32());
    }
    return w.arg();
  });
}

export function hotResetArg(rng: Rng): IoctlArg {
  return maybeNotStruct(rng, () => {
    const { w } = struct(rng, 16, 8);
    w.u32(4, chance(rng, 0.8) ? 0 : edgyU32(rng)).u32(8, rng.int(3));
    w.fd(12, fdRef(rng, 'group'));
    return w.arg();
  });
}

/** Random bytes of random length (for requests nobody expects). */
export function junkArg(rng: Rng): IoctlArg {
  return weighted<() => IoctlArg>(rng, [
    [3, () => ({ t: 'buf', bytes: rng.bytes(rng.int(64)), patches: [] })],
    [1, () => ({ t: 'int', v: edgyU32(rng) })],
    [1, () => ({ t: 'none' })],
  ])();
}

/** Valid MAP_DMA of guest RAM at a free grid slot (keeps the fuzzer in deep states). */
export function validMapArg(rng: Rng, env: ArgEnv): IoctlArg {
  const w = new Writer(32);
  const pages = 1 + rng.int(16);
  const at = 0x100000 + rng.int(256) * PAGE;
  w.u32(0, 32).u32(4, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
  w.u64(8, BigInt(env.user.ram + rng.int(1024) * PAGE)).u64(16, BigInt(at)).u64(24, BigInt(pages * PAGE));
  return w.arg();
}
