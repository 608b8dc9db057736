/**
 * Test helpers for the QM model: a flat-memory DmaPort, a fake engine, inline profiles and a
 * small guest driver that talks to a function through MMIO only (mailbox, doorbells, queue
 * memory), following qm-hardware.md section 8.
 */
import type { DmaPort } from '../src/hw/dma.js';
import type { DeviceProfile, EngineKind, HwVersion } from '../src/hw/profile.js';
import { Scheduler } from '../src/sim/scheduler.js';
import type { Engine, EngineContext } from '../src/hw/qm/engine-contract.js';
import { QmDevice } from '../src/hw/qm/qm-device.js';
import type { QmFunction, QmLatencies } from '../src/hw/qm/qm-function.js';

export const IOVA_BASE = 0x1_2340_0000; // above 4 GiB so base_h matters

/** Guest memory behind one function's IOMMU domain: [base, base+size) maps to `bytes`. */
export class FlatMemory implements DmaPort {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  faults = 0;
  reads = 0;
  writes = 0;
  /** Every successful write, in order (address, length). */
  readonly writeLog: { addr: number; len: number }[] = [];
  logWrites = false;
  private readonly faultRanges: [number, number][] = [];

  constructor(readonly size = 1 << 20, readonly base = IOVA_BASE) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  faultAt(addr: number, len: number): void {
    this.faultRanges.push([addr, addr + len]);
  }

  clearFaults(): void {
    this.faultRanges.length = 0;
  }

  private ok(iova: number, len: number): boolean {
    if (!(iova >= this.base && iova + len <= this.base + this.size)) return false;
    for (const [a, b] of this.faultRanges) if (iova < b && iova + len > a) return false;
    return true;
  }

  read(iova: number, dst: Uint8Array): boolean {
    if (!this.ok(iova, dst.length)) { this.faults++; return false; }
    dst.set(this.bytes.subarray(iova - this.base, iova - this.base + dst.length));
    this.reads++;
    return true;
  }

  write(iova: number, src: Uint8Array): boolean {
    if (!this.ok(iova, src.length)) { this.faults++; return false; }
    this.bytes.set(src, iova - this.base);
    this.writes++;
    if (this.logWrites) this.writeLog.push({ addr: iova, len: src.length });
    return true;
  }

  u8(addr: number): number { return this.bytes[addr - this.base]!; }
  u16(addr: number): number { return this.view.getUint16(addr - this.base, true); }
  u32(addr: number): number { return this.view.getUint32(addr - this.base, true); }
  setU32(addr: number, v: number): void { this.view.setUint32(addr - this.base, v >>> 0, true); }
  setU16(addr: number, v: number): void { this.view.setUint16(addr - this.base, v, true); }
  put(addr: number, b: Uint8Array): void { this.bytes.set(b, addr - this.base); }
  get(addr: number, len: number): Uint8Array { return this.bytes.slice(addr - this.base, addr - this.base + len); }
}

/**
 * Fake engine. SQE layout (our own, within any SQE size >= 64):
 *  byte 8 control: bit0 = report an error, bit1 = throw (contract violation)
 *  byte 12 <- status written by the engine: 0x01 ok, 0xEE error, 0x7F DMA fault
 *  byte 13 <- ctx.algType
 *  dw4 @16 length, u64 @24 src, u64 @32 dst: copies `length` bytes inverted (if src != 0)
 *  u32 @52 tag (never written)
 */
export const FAKE = { CTRL: 8, STATUS: 12, ALG: 13, LEN: 16, SRC: 24, DST: 32, TAG: 52 } as const;

export class FakeEngine implements Engine {
  readonly kind: EngineKind;
  /** tag -> times processed */
  readonly seen = new Map<number, number>();
  readonly order: number[] = [];
  constructor(readonly sqeSize = 128, kind: EngineKind = 'zip') {
    this.kind = kind;
  }
  process(sqe: Uint8Array, ctx: EngineContext): boolean {
    const v = new DataView(sqe.buffer, sqe.byteOffset, sqe.byteLength);
    const tag = this.tagOf(sqe);
    this.seen.set(tag, (this.seen.get(tag) ?? 0) + 1);
    this.order.push(tag);
    const ctrl = sqe[FAKE.CTRL]!;
    if (ctrl & 2) throw new Error('fake engine exploded');
    sqe[FAKE.ALG] = ctx.algType;
    const src = Number(v.getBigUint64(FAKE.SRC, true));
    if (src !== 0) {
      const len = v.getUint32(FAKE.LEN, true);
      const buf = new Uint8Array(len);
      if (!ctx.dma.read(src, buf)) { sqe[FAKE.STATUS] = 0x7f; return false; }
      for (let i = 0; i < len; i++) buf[i] = ~buf[i]! & 0xff;
      if (!ctx.dma.write(Number(v.getBigUint64(FAKE.DST, true)), buf)) { sqe[FAKE.STATUS] = 0x7f; return false; }
    }
    const ok = (ctrl & 1) === 0;
    sqe[FAKE.STATUS] = ok ? 0x01 : 0xee;
    return ok;
  }
  tagOf(sqe: Uint8Array): number {
    return new DataView(sqe.buffer, sqe.byteOffset, sqe.byteLength).getUint32(FAKE.TAG, true);
  }
}

/** An inline profile with the spec's values (qm-hardware.md 1, 4, 5, 7). */
export function makeProfile(engine: EngineKind = 'zip', hw: HwVersion = 'v3',
  patch: (p: DeviceProfile) => void = () => {}): DeviceProfile {
  const ids = { zip: [0xa250, 0xa251], sec: [0xa255, 0xa256], hpre: [0xa258, 0xa259] }[engine];
  const rev = { v2: 0x21, v3: 0x30, v4: 0x50 }[hw];
  const p: DeviceProfile = {
    name: `${engine}-${hw}`,
    engine,
    hwVersion: hw,
    pci: {
      vendorId: 0x19e5, pfDeviceId: ids[0]!, vfDeviceId: ids[1]!, revision: rev,
      subVersionId: hw === 'v4' ? 0x50 : 0, classCode: 0x120000, subsystemVendorId: 0x19e5,
      subsystemId: ids[0]!,
    },
    bars: { pf: { '2': 0x400000, '4': 0x4000000 }, vf: { '2': 0x10000, '4': 0x4000000 } },
    sriov: { totalVfs: 63, vfOffset: 1, vfStride: 1 },
    qm: {
      totalQps: 1024, pfQNum: engine === 'sec' ? 256 : 64, maxQpsPerFunction: 1024,
      sqeSize: engine === 'hpre' ? 64 : 128, sqDepth: 1024, cqDepth: 1024, eqDepth: 2048, aeqDepth: 1024,
    },
    caps: {
      funcCaps: hw === 'v2' ? 0 : 0x6f01, xeqDepthCap: 0x04000800, qpDepthCap: 0x04000400,
      eqIrqType: 0x10000, aeqIrqType: 0x10001, abnIrqType: 0x10003, pf2vfIrqType: 0x10002,
      irqNumCap: 0x40003, extBarIndex: 0x14, engine: { '0x3124': 0x7c77, '0x317C': 0xabcd },
    },
    msi: { pfVectors: 4, vfVectors: hw === 'v2' ? 2 : 3 },
    resetValues: { '0x4': 1, '0xC': 1, '0x24': 1, '0x60': 1 },
  };
  patch(p);
  return p;
}

export interface Rig {
  sched: Scheduler;
  dev: QmDevice;
  engine: FakeEngine;
  /** memory and MSI log per function number (0 = PF) */
  mem: Map<number, FlatMemory>;
  msi: Map<number, number[]>;
  fn(n: number): QmFunction;
}

/** A device with `numVfs` VFs, the default VFT applied, each function attached to its own memory. */
export function makeRig(opts: {
  engine?: EngineKind; hw?: HwVersion; numVfs?: number; latencies?: Partial<QmLatencies>;
  isolation?: boolean; patch?: (p: DeviceProfile) => void; fake?: FakeEngine;
} = {}): Rig {
  const kind = opts.engine ?? 'zip';
  const profile = makeProfile(kind, opts.hw ?? 'v3', opts.patch);
  const sched = new Scheduler();
  const engine = opts.fake ?? new FakeEngine(profile.qm.sqeSize, kind);
  const dev = new QmDevice({
    profile, scheduler: sched, engine, latencies: opts.latencies, doorbellIsolation: opts.isolation,
  });
  const numVfs = opts.numVfs ?? 2;
  for (let i = 1; i <= numVfs; i++) dev.addVf(i);
  dev.applyDefaultVft(numVfs);
  const mem = new Map<number, FlatMemory>();
  const msi = new Map<number, number[]>();
  const attach = (n: number) => {
    const m = new FlatMemory();
    const log: number[] = [];
    mem.set(n, m);
    msi.set(n, log);
    dev.functionAt(n)!.attach({ dma: m, msi: (v) => log.push(v) });
  };
  attach(0);
  for (let i = 1; i <= numVfs; i++) attach(i);
  return { sched, dev, engine, mem, msi, fn: (n) => dev.functionAt(n)! };
}

// ---------------------------------------------------------------- guest driver

export interface MbResult {
  status: number;
  dataL: number;
  dataH: number;
  polls: number;
}

export interface GuestLayout {
  eqDepth: number;
  aeqDepth: number;
  sqDepth: number;
  cqDepth: number;
  sqeSize: number;
  qps: number;
}

/**
 * A minimal guest QM driver. Memory map inside the function's FlatMemory:
 *   +0x0000 mailbox context buffer (64 B), +0x1000 EQE ring, +0x3000 AEQE ring,
 *   +0x5000 SQC array, +0x6000 CQC array, +0x10000 + qn*0x8000 per-qp SQ ring then CQ ring,
 *   +0xC0000.. scratch for tests.
 */
export class GuestDriver {
  readonly mb: number;
  readonly eqBase: number;
  readonly aeqBase: number;
  readonly sqcBase: number;
  readonly cqcBase: number;
  readonly scratch: number;
  readonly L: GuestLayout;
  eqHead = 0;
  eqPhase = 1;
  aeqHead = 0;
  aeqPhase = 1;
  readonly sqTail: number[] = [];
  readonly cqHead: number[] = [];
  readonly cqPhase: number[] = [];
  mbMode: '32' | '64' = '32';
  origin: 'guest' | 'driver' = 'guest';

  constructor(readonly fn: QmFunction, readonly m: FlatMemory, readonly sched: Scheduler,
    layout: Partial<GuestLayout> = {}) {
    this.mb = m.base;
    this.eqBase = m.base + 0x1000;
    this.aeqBase = m.base + 0x3000;
    this.sqcBase = m.base + 0x5000;
    this.cqcBase = m.base + 0x6000;
    this.scratch = m.base + 0xc0000;
    this.L = {
      eqDepth: 64, aeqDepth: 32, sqDepth: 16, cqDepth: 16, sqeSize: fn.engine.sqeSize, qps: 4,
      ...layout,
    };
  }

  /** The same guest software state bound to another function and memory (after migration). */
  moveTo(fn: QmFunction, m: FlatMemory, sched: Scheduler = this.sched): GuestDriver {
    const d = new GuestDriver(fn, m, sched, this.L);
    d.eqHead = this.eqHead; d.eqPhase = this.eqPhase;
    d.aeqHead = this.aeqHead; d.aeqPhase = this.aeqPhase;
    d.sqTail.push(...this.sqTail); d.cqHead.push(...this.cqHead); d.cqPhase.push(...this.cqPhase);
    return d;
  }

  sqRing(qn: number): number { return this.m.base + 0x10000 + qn * 0x8000; }
  cqRing(qn: number): number { return this.sqRing(qn) + this.L.sqeSize * this.L.sqDepth; }

  r32(off: number): number { return this.fn.bar2.read(off, 4, this.origin); }
  w32(off: number, v: number): void { this.fn.bar2.write(off, 4, v, this.origin); }

  /** Submits a mailbox command and polls for completion (running the scheduler between polls). */
  mailbox(cmd: number, op: 0 | 1, queue: number, lo: number, hi: number): MbResult {
    let polls = 0;
    while (this.r32(0x300) & (1 << 13)) {
      if (!this.sched.step()) throw new Error('mailbox busy before submit and nothing scheduled');
      if (++polls > 1000) throw new Error('mailbox stuck busy before submit');
    }
    const w0 = (cmd & 0xff) | (op ? 1 << 14 : 0) | (1 << 13) | ((queue & 0xffff) << 16);
    if (this.mbMode === '32') {
      this.w32(0x300, w0 >>> 0);
      this.w32(0x304, lo);
      this.w32(0x308, hi);
      this.w32(0x30c, 0);
    } else {
      this.fn.bar2.write64(0x300, w0 >>> 0, lo, this.origin);
      this.fn.bar2.write64(0x308, hi, 0, this.origin);
    }
    let v = this.r32(0x300);
    while (v & (1 << 13)) {
      if (!this.sched.step()) break;
      if (++polls > 100000) break;
      v = this.r32(0x300);
    }
    return { status: (v >>> 9) & 0xf, dataL: this.r32(0x304), dataH: this.r32(0x308), polls };
  }

  private hiLo(addr: number): [number, number] {
    return [addr % 0x1_0000_0000, Math.floor(addr / 0x1_0000_0000)];
  }

  mbAddr(cmd: number, op: 0 | 1, queue: number, addr: number): MbResult {
    const [lo, hi] = this.hiLo(addr);
    return this.mailbox(cmd, op, queue, lo, hi);
  }

  db(off: number, qn: number, cmd: number, index: number, prio: number): void {
    this.fn.bar2.write64(off, ((qn & 0xfff) | (cmd << 12)) >>> 0, ((index & 0xffff) | (prio << 16)) >>> 0, this.origin);
  }

  /** Probe + start (section 8). */
  start(): void {
    const [eL, eH] = this.hiLo(this.eqBase);
    const eqc = new DataView(new ArrayBuffer(28));
    eqc.setUint32(4, eL, true); eqc.setUint32(8, eH, true);
    eqc.setUint32(12, 2 << 12, true);
    eqc.setUint32(24, (this.L.eqDepth - 1) | (1 << 16), true);
    this.m.put(this.mb, new Uint8Array(eqc.buffer));
    this.expectOk(this.mbAddr(0x2, 0, 0, this.mb), 'EQC');
    const [aL, aH] = this.hiLo(this.aeqBase);
    eqc.setUint32(4, aL, true); eqc.setUint32(8, aH, true);
    eqc.setUint32(24, (this.L.aeqDepth - 1) | (1 << 16), true);
    this.m.put(this.mb, new Uint8Array(eqc.buffer));
    this.expectOk(this.mbAddr(0x3, 0, 0, this.mb), 'AEQC');
    this.expectOk(this.mbAddr(0x4, 0, 0, this.sqcBase), 'SQC_BT');
    this.expectOk(this.mbAddr(0x5, 0, 0, this.cqcBase), 'CQC_BT');
    this.db(0x2000, 0, 3, 0, 0);
    this.db(0x2000, 0, 2, 0, 0);
    this.w32(0xc, 0);
    this.w32(0x4, 0);
    this.w32(0x60, 0);
  }

  /** QP start: SQC then CQC through the mailbox (cq_head 0, phase 1). */
  startQp(qn: number, o: { algType?: number; cFlag?: boolean; sqeSizeLog2?: number } = {}): void {
    const [sL, sH] = this.hiLo(this.sqRing(qn));
    const sqc = new DataView(new ArrayBuffer(32));
    sqc.setUint32(4, sL, true); sqc.setUint32(8, sH, true);
    const log2 = o.sqeSizeLog2 ?? Math.log2(this.L.sqeSize);
    sqc.setUint32(12, (this.L.sqDepth - 1) | (log2 << 12), true);
    sqc.setUint16(24, qn, true);
    sqc.setUint16(26, ((o.algType ?? 0) & 0xf) << 8, true);
    this.m.put(this.mb, new Uint8Array(sqc.buffer));
    this.expectOk(this.mbAddr(0x0, 0, qn, this.mb), 'SQC');
    const [cL, cH] = this.hiLo(this.cqRing(qn));
    const cqc = new DataView(new ArrayBuffer(32));
    cqc.setUint32(4, cL, true); cqc.setUint32(8, cH, true);
    cqc.setUint32(12, (this.L.cqDepth - 1) | (4 << 12), true);
    cqc.setUint32(24, 1 | ((o.cFlag ?? true) ? 2 : 0), true);
    this.m.put(this.mb, new Uint8Array(cqc.buffer));
    this.expectOk(this.mbAddr(0x1, 0, qn, this.mb), 'CQC');
    this.sqTail[qn] = 0;
    this.cqHead[qn] = 0;
    this.cqPhase[qn] = 1;
  }

  expectOk(r: MbResult, what: string): void {
    if (r.status !== 0) throw new Error(`${what}: mailbox status ${r.status}`);
  }

  /** Writes an SQE with `tag` at the tail and rings the SQ doorbell. Returns the slot. */
  submit(qn: number, tag: number, fill?: (v: DataView) => void, ring = true): number {
    const slot = this.sqTail[qn]!;
    const sqe = new Uint8Array(this.L.sqeSize);
    const v = new DataView(sqe.buffer);
    v.setUint32(52, tag, true);
    fill?.(v);
    this.m.put(this.sqRing(qn) + slot * this.L.sqeSize, sqe);
    this.sqTail[qn] = (slot + 1) % this.L.sqDepth;
    if (ring) this.db(0x1000, qn, 0, this.sqTail[qn]!, 0);
    return slot;
  }

  /** Consumes CQEs while the phase matches; CQ doorbell per CQE and a final one with priority 1. */
  consumeCq(qn: number, final = true): { sqHead: number; sqNum: number; tag: number; status: number }[] {
    const out: { sqHead: number; sqNum: number; tag: number; status: number }[] = [];
    for (let guard = 0; guard < 100000; guard++) {
      const addr = this.cqRing(qn) + this.cqHead[qn]! * 16;
      if ((this.m.u16(addr + 14) & 1) !== this.cqPhase[qn]) break;
      const sqHead = this.m.u16(addr + 8);
      const sqeAddr = this.sqRing(qn) + sqHead * this.L.sqeSize;
      out.push({ sqHead, sqNum: this.m.u16(addr + 10), tag: this.m.u32(sqeAddr + 52), status: this.m.u8(sqeAddr + 12) });
      this.cqHead[qn] = this.cqHead[qn]! + 1;
      if (this.cqHead[qn] === this.L.cqDepth) { this.cqHead[qn] = 0; this.cqPhase[qn] = this.cqPhase[qn]! ^ 1; }
      this.db(0x1000, qn, 1, this.cqHead[qn]!, 0);
    }
    if (final) this.db(0x1000, qn, 1, this.cqHead[qn]!, 1);
    return out;
  }

  /** Consumes EQEs while the phase matches and rings the EQ doorbell; returns the CQ numbers. */
  consumeEq(max = Infinity): number[] {
    const out: number[] = [];
    while (out.length < max) {
      const v = this.m.u32(this.eqBase + this.eqHead * 4);
      if (((v >>> 16) & 1) !== this.eqPhase) break;
      out.push(v & 0xffff);
      this.eqHead++;
      if (this.eqHead === this.L.eqDepth) { this.eqHead = 0; this.eqPhase ^= 1; }
    }
    this.db(0x2000, 0, 2, this.eqHead, 0);
    return out;
  }

  consumeAeq(): { qn: number; type: number }[] {
    const out: { qn: number; type: number }[] = [];
    for (;;) {
      const v = this.m.u32(this.aeqBase + this.aeqHead * 4);
      if (((v >>> 16) & 1) !== this.aeqPhase) break;
      out.push({ qn: v & 0xffff, type: (v >>> 17) & 0xf });
      this.aeqHead++;
      if (this.aeqHead === this.L.aeqDepth) { this.aeqHead = 0; this.aeqPhase ^= 1; }
    }
    this.db(0x2000, 0, 3, this.aeqHead, 0);
    return out;
  }
}
