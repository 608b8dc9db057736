/**
 * Campaign "migfsm" (issue 6 item 1d): random v2 migration state transitions on a VF bound
 * to hisi-acc-vfio-pci whose guest driver is running, with the data fds read, written,
 * queried and closed in between, device resets, and guest jobs.
 *
 * Oracles (written from the spec, mig-oracle.ts): a SET succeeds exactly when the core's
 * path exists (a state out of range, unsupported (P2P) or ERROR is EINVAL and changes
 * nothing); after a success GET reports the target, and a data fd comes back exactly when
 * the last arc opens one (RUNNING->PRE_COPY, STOP->STOP_COPY, STOP->RESUMING); a failure
 * leaves the device on its path; MIG_DATA_SIZE is 176; a PRE_COPY fd yields the 40 match
 * bytes then ENOMSG and PRECOPY_INFO counts them down; a STOP_COPY stream is 40 or 176
 * bytes with the V2 magic and this VF's device id, then EOF; fds of a state the device left
 * fail; a reset returns the device to RUNNING. And: nothing throws, errnos are Linux ones,
 * the guest's job completes whenever the device is back in RUNNING without a load or reset
 * since (the VM survives an aborted migration), and the witnesses keep working.
 */
import { errnoName, Errno } from '../uapi/errno.js';
import { readS32, readU16, readU32, readU64, writeU32 } from '../uapi/codec.js';
import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_RESET,
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_RESUMING as RESUMING, VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY, VFIO_MIG_GET_PRECOPY_INFO,
} from '../uapi/vfio.js';
import type { Rng } from '../sim/scheduler.js';
import type { VfioFile } from '../vfio/fd.js';
import { HISI_ACC_MIG_FLAGS } from '../drivers/hisi-acc/device.js';
import { Weights, chance, pick, weighted } from './gen.js';
import { knownBugsOf } from './known-bugs.js';
import { type AccRig, buildAccRig, accCheckpoint, freshGuest, runJob } from './acc-rig.js';
import { closesFiles, migPath, opensFile } from './mig-oracle.js';
import type { Campaign, Recorder } from './runner.js';
import { checkGuards, resetGuards } from './storm.js';

type Op =
  | { op: 'set'; state: number }
  | { op: 'get' }
  | { op: 'size' }
  | { op: 'read'; k: number; len: number }
  | { op: 'write'; k: number; len: number; fromSave: boolean; seed: number }
  | { op: 'info'; k: number; argsz: number }
  | { op: 'close'; k: number }
  | { op: 'reset' }
  | { op: 'job' }
  | { op: 'run'; n: number };

interface DataFd {
  fd: number;
  kind: 'save' | 'resume';
  /** Still the device's current file (not left behind by a transition or reset). */
  live: boolean;
  /** Opened in PRE_COPY: 40 bytes before ENOMSG until STOP_COPY. */
  precopy: boolean;
  read: number;
  bytes: number[];
  eof: boolean;
}

interface Ctx {
  rig: AccRig;
  files: DataFd[];
  /** The state GET must report (what the oracle followed). */
  expect: number;
  /** A load or reset happened since the guest last ran a job: its queues may be gone. */
  disturbed: boolean;
  /**
   * The device was stopped (PAUSE_QM) while no guest driver was loaded and has not been
   * started with one loaded since: the driver's start skips a QM_NOT_READY function.
   */
  pausedWithoutGuest: boolean;
  lastStream: Uint8Array | null;
}

const MATCH = 40;
const FULL = 176;
const V2_MAGIC = 0xaaccfeeddecadeden;

function featureBuf(flags: number, payload: number): Uint8Array {
  const b = new Uint8Array(8 + payload);
  writeU32(b, 0, b.length);
  writeU32(b, 4, flags);
  return b;
}

const TOP_W = new Weights([30, 4, 2, 20, 8, 4, 4, 3, 4, 3]);

function next(ctx: Ctx, rng: Rng): Op {
  // A resuming fd that took garbage never loads: feed it a real stream or reset, else the
  // device would sit in RESUMING refusing everything.
  if (ctx.expect === RESUMING && chance(rng, 0.3)) {
    if (chance(rng, 0.3)) return { op: 'reset' };
    return { op: 'write', k: ctx.files.length - 1, len: FULL, fromSave: true, seed: 0 };
  }
  switch (TOP_W.pick(rng)) {
    case 0:
      return { op: 'set', state: weighted(rng, [[20, pick(rng, [1, 2, 3, 4, 6])], [2, pick(rng, [0, 5, 7])], [1, 8 + rng.int(8)], [1, rng.u32()]]) };
    case 1:
      return { op: 'get' };
    case 2:
      return { op: 'size' };
    case 3:
      return { op: 'read', k: rng.int(4), len: weighted(rng, [[4, 64], [3, 1 + rng.int(200)], [1, 0], [1, 4096]]) };
    case 4:
      return { op: 'write', k: rng.int(4), len: weighted(rng, [[4, FULL], [3, MATCH], [3, 1 + rng.int(200)]]), fromSave: chance(rng, 0.7), seed: rng.u32() };
    case 5:
      return { op: 'info', k: rng.int(4), argsz: weighted(rng, [[6, 24], [1, rng.int(24)], [1, 24 + rng.int(16)]]) };
    case 6:
      return { op: 'close', k: rng.int(4) };
    case 7:
      return { op: 'reset' };
    case 8:
      return { op: 'job' };
    default:
      return { op: 'run', n: 1 + rng.int(100) };
  }
}

function describe(op: Op): string {
  switch (op.op) {
    case 'set': return `SET MIG_DEVICE_STATE ${op.state}`;
    case 'get': return 'GET MIG_DEVICE_STATE';
    case 'size': return 'GET MIG_DATA_SIZE';
    case 'read': return `read(datafd#${op.k}, ${op.len})`;
    case 'write': return `write(datafd#${op.k}, ${op.len} bytes of ${op.fromSave ? 'the last saved stream' : `noise ${op.seed}`})`;
    case 'info': return `PRECOPY_INFO(datafd#${op.k}, argsz ${op.argsz})`;
    case 'close': return `close(datafd#${op.k})`;
    case 'reset': return 'VFIO_DEVICE_RESET';
    case 'job': return 'guest job';
    case 'run': return `run(${op.n})`;
  }
}

function dev(ctx: Ctx): VfioFile {
  return ctx.rig.vm1.device;
}

function getState(ctx: Ctx): number {
  const b = featureBuf(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, 8);
  const r = dev(ctx).ioctl(VFIO_DEVICE_FEATURE, b);
  return r < 0 ? r : readU32(b, 8);
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

function fileOf(ctx: Ctx, k: number): DataFd | null {
  return ctx.files.length > 0 ? ctx.files[k % ctx.files.length]! : null;
}

function leaveFiles(ctx: Ctx): void {
  for (const f of ctx.files) f.live = false;
}

function applySet(ctx: Ctx, op: Extract<Op, { op: 'set' }>, rec: Recorder): void {
  const cur = ctx.expect;
  const path = migPath(HISI_ACC_MIG_FLAGS, cur, op.state);
  const b = featureBuf(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, 8);
  writeU32(b, 8, op.state);
  writeU32(b, 12, 0xffffffff);
  const r = dev(ctx).ioctl(VFIO_DEVICE_FEATURE, b);
  if (!checkRet(rec, r, 'SET MIG_DEVICE_STATE')) return;
  const dataFd = readS32(b, 12);
  const now = getState(ctx);
  rec.outcome(`set ${cur}->${op.state < 8 ? op.state : 'invalid'}: ${r < 0 ? errnoName(r) : 'ok'}`);
  if (path === null) {
    if (r !== -Errno.EINVAL) rec.violation('fsm', `SET ${cur} -> ${op.state}: no path exists, expected EINVAL, got ${r < 0 ? errnoName(r) : r}`);
    if (now !== cur) rec.violation('fsm', `SET ${cur} -> ${op.state} was refused but the state is now ${now}`);
    return;
  }
  if (r < 0) {
    // the driver may stop part way: the device sits at a state of the path before the failing arc
    const onPath = [cur, ...path.map((a) => a[1])];
    if (!onPath.includes(now)) rec.violation('fsm', `SET ${cur} -> ${op.state} failed (${errnoName(r)}) leaving state ${now}, not on its path ${onPath.join('>')}`);
    const walked = path.slice(0, Math.max(0, onPath.indexOf(now)));
    if (walked.some(closesFiles)) leaveFiles(ctx);
    if (walked.some((a) => a[0] === RESUMING)) ctx.disturbed = true;
    ctx.expect = now < 0 ? cur : now;
    return;
  }
  if (now !== op.state) rec.violation('fsm', `SET ${cur} -> ${op.state} succeeded but GET reports ${now}`);
  ctx.expect = op.state;
  for (const [a, b2] of path) {
    const stops = (a === RUNNING && b2 === STOP) || (a === PRE_COPY && b2 === STOP_COPY);
    if (stops && ctx.disturbed) ctx.pausedWithoutGuest = true;
    if (a === STOP && b2 === RUNNING && !ctx.disturbed) ctx.pausedWithoutGuest = false;
  }
  if (path.some(closesFiles)) leaveFiles(ctx);
  // A load replaced the device state: the running guest no longer owns what it thinks it does.
  if (path.some((a) => a[0] === RESUMING)) ctx.disturbed = true;
  const opens = path.length > 0 ? opensFile(path[path.length - 1]!) : null;
  if ((opens !== null) !== (dataFd >= 0)) {
    rec.violation('fsm', `SET ${cur} -> ${op.state}: data fd ${dataFd}, expected ${opens ? 'a new fd' : 'none'}`);
    return;
  }
  if (opens !== null) {
    const last = path[path.length - 1]!;
    ctx.files.push({ fd: dataFd, kind: opens, live: true, precopy: last[1] === PRE_COPY, read: 0, bytes: [], eof: false });
    if (ctx.files.length > 6) ctx.rig.host.fds.close(ctx.files.shift()!.fd);
  }
  // PRE_COPY -> STOP_COPY keeps the pre-copy fd: its stream now continues to the full state.
  if (path.some((a) => a[0] === PRE_COPY && a[1] === STOP_COPY)) for (const f of ctx.files) if (f.live && f.precopy) f.precopy = false;
}

function checkStream(rec: Recorder, ctx: Ctx, f: DataFd): void {
  const b = Uint8Array.from(f.bytes);
  if (b.length !== MATCH && b.length !== FULL) {
    rec.violation('stream', `a saving fd ended after ${b.length} bytes, expected ${MATCH} or ${FULL}`);
    return;
  }
  if (readU64(b, 0) !== V2_MAGIC || readU16(b, 28) !== 1 || readU32(b, 12) !== ctx.rig.host.vf(1).device) {
    rec.violation('stream', 'a saved stream lacks the V2 magic, major version 1 or this VF\'s device id');
    return;
  }
  ctx.lastStream = b;
  rec.outcome(`saved stream ${b.length} bytes`);
}

function applyRead(ctx: Ctx, op: Extract<Op, { op: 'read' }>, rec: Recorder): void {
  const f = fileOf(ctx, op.k);
  if (!f) return;
  const file = ctx.rig.host.fds.get(f.fd);
  const buf = new Uint8Array(op.len);
  const r = file ? file.read(buf) : -Errno.EBADF;
  if (!checkRet(rec, r, 'read(data fd)')) return;
  rec.outcome(`read ${f.kind} fd (${f.live ? (f.precopy ? 'pre-copy' : 'live') : 'left'}): ${r < 0 ? errnoName(r) : r === 0 ? 'EOF' : 'data'}`);
  if (!f.live) {
    if (r >= 0 && op.len > 0) rec.violation('datafd', `read on a data fd of a state the device left returned ${r}`);
    return;
  }
  if (f.kind === 'resume') {
    if (r >= 0 && op.len > 0) rec.violation('datafd', `read on the resuming fd returned ${r}`);
    return;
  }
  if (r > 0) {
    for (let i = 0; i < r; i++) f.bytes.push(buf[i]!);
    f.read += r;
  }
  if (f.precopy) {
    if (f.read > MATCH) rec.violation('datafd', `pre-copy fd gave ${f.read} bytes, the match data is ${MATCH}`);
    if (r < 0 && r !== -Errno.ENOMSG) rec.violation('datafd', `pre-copy read failed with ${errnoName(r)}, expected data or ENOMSG`);
    if (r === -Errno.ENOMSG && f.read < MATCH) rec.violation('datafd', `ENOMSG after ${f.read} of ${MATCH} pre-copy bytes`);
    return;
  }
  if (r < 0) rec.violation('datafd', `STOP_COPY read failed with ${errnoName(r)}`);
  if (r === 0 && op.len > 0 && !f.eof) {
    f.eof = true;
    checkStream(rec, ctx, f);
  }
}

function applyWrite(ctx: Ctx, op: Extract<Op, { op: 'write' }>, rec: Recorder): void {
  const f = fileOf(ctx, op.k);
  if (!f) return;
  const file = ctx.rig.host.fds.get(f.fd);
  let data: Uint8Array;
  if (op.fromSave && ctx.lastStream) data = ctx.lastStream.subarray(0, Math.min(op.len, ctx.lastStream.length));
  else {
    data = new Uint8Array(op.len);
    let x = op.seed;
    for (let i = 0; i < data.length; i++) data[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  }
  const r = file ? file.write(data) : -Errno.EBADF;
  if (!checkRet(rec, r, 'write(data fd)')) return;
  rec.outcome(`write ${f.kind} fd (${f.live ? 'live' : 'left'}): ${r < 0 ? errnoName(r) : 'ok'}`);
  if ((!f.live || f.kind === 'save') && r >= 0 && data.length > 0) {
    rec.violation('datafd', `write on a ${f.live ? 'saving' : 'left-behind'} data fd returned ${r}`);
  }
}

function applyInfo(ctx: Ctx, op: Extract<Op, { op: 'info' }>, rec: Recorder): void {
  const f = fileOf(ctx, op.k);
  if (!f) return;
  const file = ctx.rig.host.fds.get(f.fd);
  const b = new Uint8Array(Math.max(op.argsz, 24));
  writeU32(b, 0, op.argsz);
  const r = file ? file.ioctl(VFIO_MIG_GET_PRECOPY_INFO, b) : -Errno.EBADF;
  if (!checkRet(rec, r, 'PRECOPY_INFO')) return;
  rec.outcome(`precopy info: ${r < 0 ? errnoName(r) : 'ok'}`);
  const inPrecopy = f.live && f.kind === 'save' && f.precopy && ctx.expect === PRE_COPY;
  if (r === 0) {
    if (!inPrecopy) rec.violation('datafd', 'PRECOPY_INFO succeeded outside PRE_COPY');
    else if (readU64(b, 8) !== BigInt(MATCH - f.read) || readU64(b, 16) !== 0n) {
      rec.violation('datafd', `PRECOPY_INFO initial ${readU64(b, 8)} dirty ${readU64(b, 16)} after ${f.read} bytes read, expected ${MATCH - f.read} and 0`);
    }
  } else if (inPrecopy && op.argsz >= 24) {
    rec.violation('datafd', `PRECOPY_INFO failed with ${errnoName(r)} in PRE_COPY`);
  }
}

function apply(ctx: Ctx, op: Op, rec: Recorder): void {
  rec.entry(op.op === 'job' || op.op === 'run' ? op.op : `migration ${op.op}`);
  resetGuards(ctx.rig.guards);
  try {
    switch (op.op) {
      case 'set':
        applySet(ctx, op, rec);
        break;
      case 'get': {
        const s = getState(ctx);
        checkRet(rec, s, 'GET MIG_DEVICE_STATE');
        if (s !== ctx.expect) rec.violation('fsm', `GET reports ${s}, expected ${ctx.expect}`);
        break;
      }
      case 'size': {
        const b = featureBuf(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, 8);
        const r = dev(ctx).ioctl(VFIO_DEVICE_FEATURE, b);
        checkRet(rec, r, 'MIG_DATA_SIZE');
        if (r !== 0 || readU64(b, 8) !== BigInt(FULL)) rec.violation('fsm', `MIG_DATA_SIZE returned ${r} with ${readU64(b, 8)}, expected ${FULL}`);
        break;
      }
      case 'read':
        applyRead(ctx, op, rec);
        break;
      case 'write':
        applyWrite(ctx, op, rec);
        break;
      case 'info':
        applyInfo(ctx, op, rec);
        break;
      case 'close': {
        const i = ctx.files.length > 0 ? op.k % ctx.files.length : -1;
        if (i < 0) break;
        const r = ctx.rig.host.fds.close(ctx.files[i]!.fd);
        checkRet(rec, r, 'close(data fd)');
        ctx.files.splice(i, 1);
        break;
      }
      case 'reset': {
        const r = dev(ctx).ioctl(VFIO_DEVICE_RESET);
        checkRet(rec, r, 'VFIO_DEVICE_RESET');
        const s = getState(ctx);
        if (r === 0 && s !== RUNNING) rec.violation('fsm', `after VFIO_DEVICE_RESET the state is ${s}, expected RUNNING`);
        if (r === 0) {
          leaveFiles(ctx);
          ctx.expect = RUNNING;
          ctx.disturbed = true;
          ctx.pausedWithoutGuest = false;
        }
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

/**
 * In RUNNING, the guest's job must complete unless a load or reset replaced the device state
 * under it; then the guest re-probes its driver (what a guest does after a surprise reset)
 * and that job must complete.
 */
function guestJob(ctx: Ctx, rec: Recorder): void {
  if (ctx.expect !== RUNNING) return;
  if (ctx.disturbed) {
    const err = reprobe(ctx);
    if (err) {
      rec.violation('victim', `guest re-probe after a load/reset failed: ${err}`);
      return;
    }
    ctx.disturbed = false;
    rec.outcome('guest re-probed');
  }
  const err = runJob(ctx.rig.accel1, ctx.rig.host.sched.now);
  const why = ctx.pausedWithoutGuest ? ' (stopped and restarted while no guest driver was loaded)' : '';
  if (err) rec.violation('victim', `VF1 guest ${err} with the device back in RUNNING${why}`);
  else rec.outcome('guest job ok');
}

function reprobe(ctx: Ctx): string | null {
  try {
    ctx.rig.accel1 = freshGuest(ctx.rig);
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

function setup(): Ctx {
  const rig = buildAccRig();
  return { rig, files: [], expect: RUNNING, disturbed: false, pausedWithoutGuest: false, lastStream: null };
}

export const migfsmCampaign: Campaign<Ctx, Op> = {
  name: 'migfsm',
  description: 'v2 migration state sequences, data fds and resets on a hisi-acc-vfio-pci VF with a running guest',
  defaultInputs: 500_000,
  checkpointEvery: 5_000,
  knownBugs: knownBugsOf('migfsm'),
  setup,
  next,
  apply,
  describe,
  checkpoint: accCheckpoint,
};
