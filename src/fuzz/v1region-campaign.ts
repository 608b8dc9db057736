/**
 * Campaign "v1region" (issue 6 item 1, the v1 migration protocol): random reads and writes
 * of every size at every offset of the v1 migration region of a hisi-acc-vfio-pci VF
 * (device_state, reserved, pending_bytes, data_offset, data_size, the data window and past
 * the end), mmap attempts on it, device resets and guest jobs, in random orders and states.
 *
 * The oracle follows hisi-acc-vfio-pci.md section 7 and uAPI section 4 with its own model of
 * the region (state bits, pending bytes, the prepared chunk, the resume window, the committed
 * size and the match flag), predicting every return before the call:
 * - device_state: 4 bytes or EFAULT; an invalid value (bits beyond the mask, RESUMING with
 *   anything, SAVING|RESUMING) EINVAL; the current state a no-op; the driver's documented
 *   refusals (pre-copy only from RUNNING, no save while resuming, resuming only from STOP or
 *   RUNNING) EINVAL; a failed write leaves the state unchanged (read back after every write);
 *   RESUMING -> RUNNING must fail unless exactly 40 or 176 bytes were committed, and must
 *   load a genuine saved stream;
 * - reserved reads 0 and is not writable; pending_bytes and data_offset are read-only 8-byte
 *   fields (write EFAULT, other size EINVAL), data_offset is always 32; data_size is 8 bytes,
 *   written only while resuming (0 or > 176 EINVAL, a wrong magic fails the match check);
 * - the data window: reads only while saving, writes only while resuming, counts clipped at
 *   the region end, count 0 and header offsets that are no field EINVAL;
 * - a saved stream starts with the V2 magic, this VF's device id and major version 1; the
 *   region is never mmap-able (EINVAL);
 * - a reset returns RUNNING with nothing pending; the guest's job completes whenever the
 *   state has the RUNNING bit (after a load or reset the guest driver re-probes first);
 *   the witnesses keep working.
 */
import { Errno, errnoName } from '../uapi/errno.js';
import { VFIO_DEVICE_RESET, VFIO_PCI_INDEX_TO_OFFSET } from '../uapi/vfio.js';
import type { Rng } from '../sim/scheduler.js';
import { type AccRig, buildAccRig, accCheckpoint, freshGuest, runJob } from './acc-rig.js';
import { Weights, chance, edgyU32, pick, weighted } from './gen.js';
import { knownBugsOf } from './known-bugs.js';
import type { Campaign, Recorder } from './runner.js';
import { checkGuards, resetGuards } from './storm.js';

const STOP = 0;
const RUNNING = 1;
const SAVING = 2;
const RESUMING = 4;
const HDR = 32;
const DATA = 176;
const MATCH = 40;
const SIZE = HDR + DATA;
/** The region's index: the first device-specific region after the nine PCI ones. */
const INDEX = 9;
const BASE = Number(VFIO_PCI_INDEX_TO_OFFSET(INDEX));
const V2_MAGIC = 0xaaccfeeddecadeden;
const V1_MAGIC = 0xcdcdcdcdfeedaaccn;

type Data =
  | { k: 'u32'; v: number }
  | { k: 'u64'; v: bigint }
  /** Bytes of the last saved stream from the window position on (or zeros before one exists). */
  | { k: 'stream' }
  | { k: 'noise'; seed: number };

type Op =
  | { op: 'read'; off: number; len: number }
  | { op: 'write'; off: number; len: number; data: Data }
  | { op: 'mmap'; off: number; len: number }
  | { op: 'reset' }
  | { op: 'job' }
  | { op: 'run'; n: number };

interface Model {
  state: number;
  /** Saving: bytes produced; resuming: bytes committed. */
  bufLen: number;
  pending: number;
  prepared: boolean;
  chunk: number;
  /** Where the last prepared chunk starts in the saved bytes (kept after it is retired). */
  chunkStart: number;
  matchDone: boolean;
  window: Uint8Array;
}

interface Ctx {
  rig: AccRig;
  m: Model;
  lastStream: Uint8Array | null;
  /** Streams the device produced (any saved one is genuine). */
  genuine: Set<string>;
  disturbed: boolean;
  pausedWithoutGuest: boolean;
}

const valid = (s: number): boolean => (s & ~7) === 0 && ((s & RESUMING) === 0 || s === RESUMING);

function stateValue(rng: Rng): number {
  return weighted(rng, [[20, pick(rng, [STOP, RUNNING, SAVING, SAVING | RUNNING, RESUMING])], [3, pick(rng, [5, 6, 7])], [1, 8 + rng.int(8)], [1, edgyU32(rng)]]) >>> 0;
}

function size(rng: Rng, natural: number): number {
  return weighted(rng, [[12, natural], [3, pick(rng, [1, 2, 4, 8, 16])], [1, 0], [1, 1 + rng.int(64)]]);
}

const TOP = new Weights([30, 30, 2, 2, 6, 3]);

/** A step of the protocol as a VMM takes it from the current state (half of the inputs). */
function protocolStep(ctx: Ctx, rng: Rng): Op {
  const s = ctx.m.state;
  const st = (v: number): Op => ({ op: 'write', off: 0, len: 4, data: { k: 'u32', v } });
  if ((s & SAVING) !== 0) {
    return weighted<() => Op>(rng, [
      [4, () => ({ op: 'read', off: 8, len: 8 })],
      [4, () => ({ op: 'read', off: 16, len: 8 })],
      [3, () => ({ op: 'read', off: 24, len: 8 })],
      [5, () => ({ op: 'read', off: HDR, len: DATA })],
      [2, () => st(pick(rng, [SAVING, STOP, RUNNING]))],
    ])();
  }
  if (s === RESUMING) {
    return weighted<() => Op>(rng, [
      [5, () => ({ op: 'write', off: HDR, len: pick(rng, [MATCH, DATA, DATA]), data: chance(rng, 0.85) ? { k: 'stream' } : { k: 'noise', seed: rng.u32() | 1 } })],
      [4, () => ({ op: 'write', off: 24, len: 8, data: { k: 'u64', v: BigInt(pick(rng, [MATCH, DATA, DATA, 1 + rng.int(DATA)])) } })],
      [3, () => st(pick(rng, [RUNNING, RUNNING, STOP]))],
    ])();
  }
  if (chance(rng, 0.3)) return { op: 'job' };
  return st(pick(rng, [SAVING | RUNNING, SAVING | RUNNING, SAVING, RESUMING, RESUMING, STOP, RUNNING]));
}

function next(ctx: Ctx, rng: Rng): Op {
  if (chance(rng, 0.5)) return protocolStep(ctx, rng);
  const s = ctx.m.state;
  const w = TOP.pick(rng);
  if (w === 2) return { op: 'mmap', off: pick(rng, [0, 0, HDR, 4096, rng.int(SIZE)]), len: pick(rng, [4096, SIZE, 1 + rng.int(8192), 0]) };
  if (w === 3) return { op: 'reset' };
  if (w === 4) return { op: 'job' };
  if (w === 5) return { op: 'run', n: 1 + rng.int(50) };
  const write = w === 1;
  // offsets: mostly the fields, then the window, then anything
  const where = weighted(rng, [[8, 'state'], [2, 'reserved'], [5, 'pending'], [5, 'offset'], [5, 'size'], [8, 'data'], [2, 'any'], [1, 'past']] as const);
  switch (where) {
    case 'state':
      return write ? { op: 'write', off: 0, len: size(rng, 4), data: { k: 'u32', v: stateValue(rng) } } : { op: 'read', off: 0, len: size(rng, 4) };
    case 'reserved':
      return write ? { op: 'write', off: 4, len: size(rng, 4), data: { k: 'u32', v: rng.u32() } } : { op: 'read', off: 4, len: size(rng, 4) };
    case 'pending':
    case 'offset':
    case 'size': {
      const off = where === 'pending' ? 8 : where === 'offset' ? 16 : 24;
      if (!write) return { op: 'read', off, len: size(rng, 8) };
      const committed = weighted(rng, [[6, pick(rng, [MATCH, DATA])], [2, 1 + rng.int(DATA)], [1, 0], [1, DATA + 1 + rng.int(4096)]]);
      return { op: 'write', off, len: size(rng, 8), data: { k: 'u64', v: weighted(rng, [[10, BigInt(committed)], [1, 1n << 63n], [1, BigInt(rng.u32()) << 32n]]) } };
    }
    case 'data': {
      const pos = weighted(rng, [[10, 0], [3, MATCH], [3, rng.int(DATA)]]);
      const len = weighted(rng, [[8, DATA - pos], [3, MATCH], [3, 1 + rng.int(DATA)], [1, 0], [1, 4096]]);
      if (!write) return { op: 'read', off: HDR + pos, len };
      const data: Data = (s === RESUMING ? chance(rng, 0.8) : chance(rng, 0.5)) ? { k: 'stream' } : { k: 'noise', seed: rng.u32() | 1 };
      return { op: 'write', off: HDR + pos, len, data };
    }
    case 'any': {
      const off = rng.int(SIZE + 8);
      const len = 1 + rng.int(16);
      return write ? { op: 'write', off, len, data: { k: 'noise', seed: rng.u32() | 1 } } : { op: 'read', off, len };
    }
    default: {
      const off = pick(rng, [SIZE, SIZE + 1, 4096, 1 << 20, 2 ** 39, 2 ** 40 - 8]);
      return write ? { op: 'write', off, len: 8, data: { k: 'noise', seed: 7 } } : { op: 'read', off, len: 8 };
    }
  }
}

function describe(op: Op): string {
  switch (op.op) {
    case 'read': return `pread(region ${INDEX} + ${op.off}, ${op.len})`;
    case 'write': {
      const d = op.data;
      const what = d.k === 'u32' ? `u32 ${d.v}` : d.k === 'u64' ? `u64 ${d.v}` : d.k === 'stream' ? 'the saved stream' : `noise ${d.seed}`;
      return `pwrite(region ${INDEX} + ${op.off}, ${op.len} bytes of ${what})`;
    }
    case 'mmap': return `mmap(region ${INDEX} + ${op.off}, ${op.len})`;
    case 'reset': return 'VFIO_DEVICE_RESET';
    case 'job': return 'guest job';
    case 'run': return `run(${op.n})`;
  }
}

function bytesOf(ctx: Ctx, op: Extract<Op, { op: 'write' }>): Uint8Array {
  const b = new Uint8Array(op.len);
  const d = op.data;
  if (d.k === 'u32') {
    for (let i = 0; i < Math.min(4, b.length); i++) b[i] = (d.v >>> (8 * i)) & 0xff;
  } else if (d.k === 'u64') {
    const t = new Uint8Array(8);
    new DataView(t.buffer).setBigUint64(0, d.v, true);
    b.set(t.subarray(0, Math.min(8, b.length)));
  } else if (d.k === 'stream') {
    const src = ctx.lastStream;
    const pos = op.off - HDR;
    if (src && pos >= 0) b.set(src.subarray(Math.min(pos, src.length), Math.min(src.length, pos + b.length)));
  } else {
    let x = d.seed;
    for (let i = 0; i < b.length; i++) b[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  }
  return b;
}

const key = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function clearData(m: Model): void {
  m.window.fill(0);
  m.bufLen = 0;
  m.pending = 0;
  m.prepared = false;
  m.chunk = 0;
  m.chunkStart = 0;
}

function u64At(b: Uint8Array, o: number): bigint {
  return new DataView(b.buffer, b.byteOffset + o, 8).getBigUint64(0, true);
}

function checkRet(rec: Recorder, r: number, what: string): boolean {
  if (!Number.isInteger(r)) {
    rec.violation('errno', `${what} returned ${String(r)}`);
    return false;
  }
  rec.ret(r);
  if (r < 0 && errnoName(r).startsWith('E#')) rec.violation('errno', `${what} returned ${r}, not a Linux errno`);
  return true;
}

const name = (r: number): string => (r < 0 ? errnoName(r) : String(r));

function readState(ctx: Ctx): number {
  const b = new Uint8Array(4);
  const r = ctx.rig.vm1.device.read(b, BASE);
  return r === 4 ? new DataView(b.buffer).getUint32(0, true) : r;
}

/** The header accesses that do not depend on the state: an expected errno, or null. */
function headerVerdict(off: number, len: number, write: boolean): number | null {
  if (len === 0) return -Errno.EINVAL;
  if (off >= SIZE) return -Errno.EINVAL;
  if (off >= HDR) return null;
  switch (off) {
    case 0: return len !== 4 ? -Errno.EFAULT : null;
    case 4: return write ? -Errno.EINVAL : null;
    case 8:
    case 16: return len !== 8 ? -Errno.EINVAL : write ? -Errno.EFAULT : null;
    case 24: return len !== 8 ? -Errno.EINVAL : null;
    default: return -Errno.EINVAL;
  }
}

function applyRead(ctx: Ctx, op: Extract<Op, { op: 'read' }>, rec: Recorder): void {
  const m = ctx.m;
  const before = m.state;
  const b = new Uint8Array(op.len);
  const r = ctx.rig.vm1.device.read(b, BASE + op.off);
  if (!checkRet(rec, r, describe(op))) return;
  rec.outcomeKey(op.off * 1000 + (r < 0 ? 500 - r : 0), () => `read ${op.off < HDR ? `header +${op.off}` : op.off < SIZE ? 'data' : 'past the end'}: ${r < 0 ? errnoName(r) : 'ok'}`);
  const h = headerVerdict(op.off, op.len, false);
  const bad = (want: number | string): void => rec.violation('spec', `${describe(op)} in state ${before} returned ${name(r)}, expected ${typeof want === 'number' ? name(want) : want}`);
  if (h !== null) {
    if (r !== h) bad(h);
    return;
  }
  const v64 = r === 8 ? u64At(b, 0) : -1n;
  switch (op.off) {
    case 0:
      if (r !== 4 || new DataView(b.buffer).getUint32(0, true) !== m.state) bad(`4 bytes holding ${m.state}`);
      return;
    case 4:
      if (r !== Math.min(4, op.len) || b.subarray(0, r).some((x) => x !== 0)) bad(`${Math.min(4, op.len)} zero bytes`);
      return;
    case 8:
      if (m.prepared) {
        m.pending -= m.chunk;
        m.prepared = false;
        m.chunk = 0;
      }
      if (v64 !== BigInt(m.pending)) bad(`pending_bytes ${m.pending}`);
      return;
    case 16:
      if ((m.state & SAVING) !== 0 && !m.prepared && m.pending > 0) {
        m.chunkStart = m.bufLen - m.pending;
        m.chunk = m.pending;
        m.prepared = true;
      }
      if (v64 !== 32n) bad('data_offset 32');
      return;
    case 24: {
      const want = (m.state & SAVING) !== 0 ? m.chunk : m.bufLen;
      if (v64 !== BigInt(want)) bad(`data_size ${want}`);
      return;
    }
  }
  // the data window
  if ((m.state & SAVING) === 0) {
    if (r !== -Errno.EINVAL) bad(-Errno.EINVAL);
    return;
  }
  const n = Math.min(op.len, SIZE - op.off);
  if (r !== n) {
    bad(n);
    return;
  }
  const pos = op.off - HDR;
  const chunkStart = m.chunkStart;
  for (let i = 0; i < n; i++) {
    if (chunkStart + pos + i >= m.bufLen && b[i] !== 0) {
      rec.violation('spec', `${describe(op)}: byte ${pos + i} of the window lies past the ${m.bufLen} saved bytes but reads ${b[i]}`);
      return;
    }
  }
  if (pos === 0 && chunkStart === 0 && n >= m.bufLen && m.bufLen > 0) {
    const s = b.slice(0, m.bufLen);
    const dv = new DataView(s.buffer);
    if (u64At(s, 0) !== V2_MAGIC || dv.getUint16(28, true) !== 1 || dv.getUint32(12, true) !== ctx.rig.host.vf(1).device) {
      rec.violation('stream', 'a saved v1 stream lacks the V2 magic, major version 1 or this VF\'s device id');
      return;
    }
    ctx.lastStream = s;
    ctx.genuine.add(key(s));
    rec.outcome(`saved stream ${s.length} bytes`);
  }
}

function applyWrite(ctx: Ctx, op: Extract<Op, { op: 'write' }>, rec: Recorder): void {
  const m = ctx.m;
  const before = m.state;
  const data = bytesOf(ctx, op);
  const r = ctx.rig.vm1.device.write(data, BASE + op.off);
  if (!checkRet(rec, r, describe(op))) return;
  const bad = (want: number | string): void => rec.violation('spec', `${describe(op)} in state ${before} returned ${name(r)}, expected ${typeof want === 'number' ? name(want) : want}`);
  const h = headerVerdict(op.off, op.len, true);
  rec.outcomeKey(op.off * 1000 + 100_000_000 + (r < 0 ? 500 - r : 0), () => `write ${op.off < HDR ? `header +${op.off}` : op.off < SIZE ? 'data' : 'past the end'}: ${r < 0 ? errnoName(r) : 'ok'}`);
  if (h !== null) {
    if (r !== h) bad(h);
  } else if (op.off === 0) {
    writeState(ctx, data, r, rec);
  } else if (op.off === 24) {
    commit(ctx, data, r, rec, bad);
  } else {
    // the data window
    if (m.state !== RESUMING) {
      if (r !== -Errno.EINVAL) bad(-Errno.EINVAL);
    } else {
      const n = Math.min(op.len, SIZE - op.off);
      if (r !== n) bad(n);
      if (r === n) m.window.set(data.subarray(0, n), op.off - HDR);
    }
  }
  const now = readState(ctx);
  if (now !== m.state) rec.violation('state-changed', `after ${describe(op)} -> ${name(r)} device_state reads ${now}, the model says ${m.state} (was ${before})`);
}

function commit(ctx: Ctx, data: Uint8Array, r: number, rec: Recorder, bad: (w: number | string) => void): void {
  const m = ctx.m;
  if (m.state !== RESUMING) {
    if (r !== -Errno.EINVAL) bad(-Errno.EINVAL);
    return;
  }
  const v = u64At(data, 0);
  if (v === 0n || v > BigInt(DATA)) {
    if (r !== -Errno.EINVAL) bad(-Errno.EINVAL);
    return;
  }
  const size = Number(v);
  const checks = size >= MATCH && !m.matchDone;
  if (checks) {
    const head = m.window.subarray(0, MATCH);
    const genuine = [...ctx.genuine].some((g) => g.startsWith(key(head)));
    const magic = u64At(head, 0);
    if (genuine && r !== 8) bad('8 (the match data of a stream this VF saved)');
    if (magic !== V2_MAGIC && magic !== V1_MAGIC && r !== -Errno.EINVAL) bad(-Errno.EINVAL);
    rec.outcome(`match check: ${r === 8 ? 'ok' : name(r)}`);
  } else if (r !== 8) {
    bad(8);
  }
  if (r === 8) {
    m.bufLen = size;
    if (checks) m.matchDone = true;
  }
}

function writeState(ctx: Ctx, data: Uint8Array, r: number, rec: Recorder): void {
  const m = ctx.m;
  const cur = m.state;
  const s = new DataView(data.buffer).getUint32(0, true);
  const bad = (want: string): void => rec.violation('spec', `device_state ${cur} -> ${s} returned ${name(r)}, expected ${want}`);
  rec.outcomeKey(200_000_000 + cur * 1000 + (valid(s) ? s : 9) * 10 + (r < 0 ? 1 : 0), () => `state ${cur} -> ${valid(s) ? s : 'invalid'}: ${r < 0 ? errnoName(r) : 'ok'}`);
  if (!valid(s)) {
    if (r !== -Errno.EINVAL) bad('EINVAL');
    return;
  }
  if (s === cur) {
    if (r !== 4) bad('4 (a no-op)');
    return;
  }
  const refused = (s === (SAVING | RUNNING) && cur !== RUNNING) || (s === SAVING && cur === RESUMING) || (s === RESUMING && cur !== STOP && cur !== RUNNING);
  if (refused) {
    if (r !== -Errno.EINVAL) bad('EINVAL (the driver refuses this arc)');
    return;
  }
  if (s === RUNNING && cur === RESUMING) {
    const committed = m.bufLen;
    const win = m.window.subarray(0, committed);
    const genuine = committed > 0 && [...ctx.genuine].some((g) => g.length === committed * 2 && g === key(win));
    if (committed !== MATCH && committed !== DATA && r >= 0) bad(`a failure: ${committed} committed bytes are no stream`);
    if (genuine && r !== 4) bad('4 (a genuine saved stream loads)');
    rec.outcome(`load of ${committed === MATCH || committed === DATA ? committed : committed === 0 ? 0 : 'other'} bytes${genuine ? ' (genuine)' : ''}: ${r < 0 ? errnoName(r) : 'ok'}`);
  }
  if (r < 0) return;
  if (r !== 4) {
    bad('4 or an errno');
    return;
  }
  // success: the model follows
  const stops = (cur === RUNNING && (s === STOP || s === SAVING)) || (cur === (SAVING | RUNNING) && s === SAVING);
  if (stops && ctx.disturbed) ctx.pausedWithoutGuest = true;
  if (s === RUNNING && cur === STOP && !ctx.disturbed) ctx.pausedWithoutGuest = false;
  if (s === RUNNING && cur === RESUMING) ctx.disturbed = true;
  m.state = s;
  if (s === STOP || s === RUNNING) clearData(m);
  else if (s === RESUMING) {
    clearData(m);
    m.matchDone = false;
  } else {
    m.window.fill(0);
    m.prepared = false;
    m.chunk = 0;
    m.chunkStart = 0;
    // SAVING|RUNNING: the match data; SAVING: the full state, or the match data only when no
    // guest driver is loaded (QM_NOT_READY, spec section 4)
    const p = readPending(ctx);
    if (s === (SAVING | RUNNING) ? p !== MATCH : p !== DATA && p !== MATCH) rec.violation('spec', `after device_state ${cur} -> ${s} pending_bytes is ${p}`);
    m.bufLen = p;
    m.pending = p;
  }
}

/** pending_bytes right after entering a saving state (nothing prepared: no side effect). */
function readPending(ctx: Ctx): number {
  const b = new Uint8Array(8);
  const r = ctx.rig.vm1.device.read(b, BASE + 8);
  return r === 8 ? Number(u64At(b, 0)) : r;
}

function apply(ctx: Ctx, op: Op, rec: Recorder): void {
  rec.entry(op.op === 'read' || op.op === 'write' ? `v1 region ${op.op}` : op.op === 'mmap' ? 'v1 region mmap' : op.op);
  resetGuards(ctx.rig.guards);
  try {
    switch (op.op) {
      case 'read':
        applyRead(ctx, op, rec);
        break;
      case 'write':
        applyWrite(ctx, op, rec);
        break;
      case 'mmap': {
        const r = ctx.rig.vm1.device.mmap(BASE + op.off, op.len);
        if (typeof r !== 'number') {
          rec.violation('spec', `${describe(op)} succeeded: the v1 region has no MMAP flag`);
          break;
        }
        checkRet(rec, r, describe(op));
        if (r !== -Errno.EINVAL) rec.violation('spec', `${describe(op)} returned ${name(r)}, expected EINVAL`);
        rec.outcome(`mmap: ${name(r)}`);
        break;
      }
      case 'reset': {
        const r = ctx.rig.vm1.device.ioctl(VFIO_DEVICE_RESET);
        checkRet(rec, r, 'VFIO_DEVICE_RESET');
        if (r !== 0) rec.violation('spec', `VFIO_DEVICE_RESET returned ${name(r)}`);
        clearData(ctx.m);
        ctx.m.state = RUNNING;
        ctx.disturbed = true;
        ctx.pausedWithoutGuest = false;
        const s = readState(ctx);
        if (s !== RUNNING) rec.violation('spec', `after VFIO_DEVICE_RESET device_state is ${s}, expected RUNNING`);
        const p = readPending(ctx);
        if (p !== 0) rec.violation('spec', `after VFIO_DEVICE_RESET pending_bytes is ${p}, expected 0`);
        break;
      }
      case 'job':
        guestJob(ctx, rec);
        break;
      case 'run':
        for (let i = 0; i < op.n && ctx.rig.host.sched.step(); i++);
        break;
    }
  } catch (e) {
    rec.threw(describe(op), e);
  }
  checkGuards(ctx.rig.guards, rec);
}

/** Whenever device_state has RUNNING the guest's job must complete (re-probing after a load or reset). */
function guestJob(ctx: Ctx, rec: Recorder): void {
  if ((ctx.m.state & RUNNING) === 0) return;
  if (ctx.disturbed) {
    try {
      ctx.rig.accel1 = freshGuest(ctx.rig);
    } catch (e) {
      rec.violation('victim', `guest re-probe after a load/reset failed: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    ctx.disturbed = false;
    rec.outcome('guest re-probed');
  }
  const err = runJob(ctx.rig.accel1, ctx.rig.host.sched.now);
  const why = ctx.pausedWithoutGuest ? ' (stopped and restarted while no guest driver was loaded)' : '';
  if (err) rec.violation('victim', `VF1 guest ${err} with device_state ${ctx.m.state}${why}`);
  else rec.outcome(`guest job ok in state ${ctx.m.state}`);
}

function setup(): Ctx {
  const rig = buildAccRig({ protocol: 'v1' });
  const m: Model = { state: RUNNING, bufLen: 0, pending: 0, prepared: false, chunk: 0, chunkStart: 0, matchDone: false, window: new Uint8Array(DATA) };
  return { rig, m, lastStream: null, genuine: new Set(), disturbed: false, pausedWithoutGuest: false };
}

export const v1regionCampaign: Campaign<Ctx, Op> = {
  name: 'v1region',
  description: 'reads, writes and mmaps of every size and offset of the v1 migration region, with resets and a running guest',
  defaultInputs: 100_000,
  checkpointEvery: 5_000,
  knownBugs: knownBugsOf('v1region'),
  setup,
  next,
  apply,
  describe,
  checkpoint: accCheckpoint,
};
