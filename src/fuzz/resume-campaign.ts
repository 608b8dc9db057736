/**
 * Campaign "resume" (issue 6 item 1e): mutated migration streams fed to RESUMING. A real
 * stream is saved once from VF1 (a running guest with a job done); every input resets VF2,
 * takes it to RESUMING, writes a mutation of that stream in random chunks, asks for STOP
 * (the load) and, when that worked, RUNNING.
 *
 * Oracles from hisi-acc-vfio-pci.md section 5: a write taking the received total past 176
 * bytes is ENOMEM; the write that completes the first 40 bytes runs the match check once
 * (V2 magic with major version 1, or the V1 magic; dev_id, qp_num and que_iso_cfg equal to
 * the destination's) and fails with EFAULT on a mismatch; RESUMING->STOP succeeds with
 * exactly the 40 match bytes or a full 176-byte state, and is EINVAL for any other length,
 * leaving the device in RESUMING; STOP->RUNNING then succeeds. Nothing throws, errnos are
 * Linux ones, and a corrupted state may break VF2's own queues but never the model, the
 * source VM on VF1 (whose jobs keep completing) or the witnesses (PF, VF3).
 */
import { errnoName, Errno, KernelError } from '../uapi/errno.js';
import { readS32, readU16, readU32, readU64, writeU32 } from '../uapi/codec.js';
import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_RESET, VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_RESUMING as RESUMING,
  VFIO_DEVICE_STATE_RUNNING as RUNNING, VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY,
} from '../uapi/vfio.js';
import type { Rng } from '../sim/scheduler.js';
import type { VfioFile } from '../vfio/fd.js';
import { pick, weighted, chance } from './gen.js';
import { knownBugsOf } from './known-bugs.js';
import { type AccRig, accCheckpoint, buildAccRig, runJob } from './acc-rig.js';
import type { Campaign, Recorder } from './runner.js';
import { checkGuards, resetGuards } from './storm.js';

type Mutation =
  | { m: 'none' }
  | { m: 'flip'; at: number[]; bits: number[] }
  | { m: 'u32'; at: number; value: number }
  | { m: 'truncate'; len: number }
  | { m: 'extend'; extra: number }
  | { m: 'magic'; v1: boolean }
  | { m: 'random'; len: number; seed: number };

interface Op {
  mutation: Mutation;
  /** Write sizes; the last one takes the rest. */
  chunks: number[];
  /** Let the device run this many scheduler steps after RUNNING. */
  run: number;
}

interface Ctx {
  rig: AccRig;
  stream: Uint8Array;
  /** The destination's own match values. */
  devId: number;
  qpNum: number;
  isoCfg: number;
}

const MATCH = 40;
const FULL = 176;
const MAGIC_V2 = 0xaaccfeeddecadeden;
const MAGIC_V1 = 0xcdcdcdcdfeedaaccn;

function featureBuf(flags: number): Uint8Array {
  const b = new Uint8Array(16);
  writeU32(b, 0, 16);
  writeU32(b, 4, flags);
  return b;
}

function setState(dev: VfioFile, state: number): { ret: number; fd: number } {
  const b = featureBuf(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
  writeU32(b, 8, state);
  writeU32(b, 12, 0xffffffff);
  const ret = dev.ioctl(VFIO_DEVICE_FEATURE, b);
  return { ret, fd: readS32(b, 12) };
}

function getState(dev: VfioFile): number {
  const b = featureBuf(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
  const r = dev.ioctl(VFIO_DEVICE_FEATURE, b);
  return r < 0 ? r : readU32(b, 8);
}

function mutate(stream: Uint8Array, mu: Mutation): Uint8Array {
  switch (mu.m) {
    case 'none':
      return stream.slice();
    case 'flip': {
      const b = stream.slice();
      mu.at.forEach((a, i) => (b[a % b.length]! ^= 1 << (mu.bits[i]! & 7)));
      return b;
    }
    case 'u32': {
      const b = stream.slice();
      writeU32(b, mu.at, mu.value);
      return b;
    }
    case 'truncate':
      return stream.slice(0, mu.len);
    case 'extend': {
      const b = new Uint8Array(stream.length + mu.extra);
      b.set(stream);
      b.fill(0x5a, stream.length);
      return b;
    }
    case 'magic': {
      const b = stream.slice();
      const v = mu.v1 ? MAGIC_V1 : MAGIC_V2 ^ 0x10000n;
      new DataView(b.buffer).setBigUint64(0, v, true);
      return b;
    }
    case 'random': {
      const b = new Uint8Array(mu.len);
      let x = mu.seed;
      for (let i = 0; i < b.length; i++) b[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
      return b;
    }
  }
}

/** The spec's match rule on the first 40 bytes, against the destination's values. */
function matches(ctx: Ctx, head: Uint8Array): boolean {
  const magic = readU64(head, 0);
  if (magic === MAGIC_V2) {
    if (readU16(head, 28) !== 1) return false;
  } else if (magic !== MAGIC_V1) {
    return false;
  }
  return readU32(head, 12) === ctx.devId && readU32(head, 8) === ctx.qpNum && readU32(head, 16) === ctx.isoCfg;
}

function next(_ctx: Ctx, rng: Rng): Op {
  const region = (): number => weighted(rng, [[3, rng.int(MATCH)], [3, MATCH + rng.int(104)], [2, 144 + rng.int(32)]]);
  const mutation = weighted<() => Mutation>(rng, [
    [2, () => ({ m: 'none' })],
    [8, () => {
      const n = 1 + rng.int(4);
      return { m: 'flip', at: Array.from({ length: n }, region), bits: Array.from({ length: n }, () => rng.int(8)) };
    }],
    [8, () => ({ m: 'u32', at: pick(rng, [8, 12, 16, 20, 24, 28, 40, 44, 48, 56, 60, 64, 68, 72, 92, 96, 100, 144, 148, 152, 156, 160, 164, 168, 172]), value: weighted(rng, [[3, 0], [2, rng.u32()], [1, 0xffffffff], [1, 1], [1, rng.int(1024)]]) })],
    [4, () => ({ m: 'truncate', len: weighted(rng, [[3, MATCH], [2, rng.int(FULL)], [1, MATCH - 1], [1, MATCH + 1], [1, FULL - 1], [1, 0]]) })],
    [2, () => ({ m: 'extend', extra: 1 + rng.int(64) })],
    [2, () => ({ m: 'magic', v1: chance(rng, 0.5) })],
    [2, () => ({ m: 'random', len: weighted(rng, [[3, FULL], [2, MATCH], [1, rng.int(300)]]), seed: rng.u32() })],
  ])();
  const chunks = weighted<() => number[]>(rng, [
    [6, () => [FULL + 64]],
    [3, () => [MATCH, FULL]],
    [3, () => Array.from({ length: 1 + rng.int(6) }, () => 1 + rng.int(64))],
    [1, () => [MATCH - 1, 1, FULL]],
  ])();
  return { mutation, chunks, run: weighted(rng, [[3, 0], [2, 1 + rng.int(200)]]) };
}

function describe(op: Op): string {
  return `resume(${JSON.stringify(op.mutation)}, chunks ${op.chunks.join('+')}, run ${op.run})`;
}

function ret(rec: Recorder, r: number, what: string): void {
  if (!Number.isInteger(r)) {
    rec.violation('errno', `${what} returned ${String(r)}`);
    return;
  }
  rec.ret(r);
  if (r < 0 && errnoName(r).startsWith('E#')) rec.violation('errno', `${what} returned ${r}, not a Linux errno`);
}

function apply(ctx: Ctx, op: Op, rec: Recorder): void {
  rec.entry('mutated stream');
  resetGuards(ctx.rig.guards);
  const dev = ctx.rig.dst.device;
  const fds = ctx.rig.host.host.process.fds;
  let fd = -1;
  try {
    const rr = dev.ioctl(VFIO_DEVICE_RESET);
    ret(rec, rr, 'VFIO_DEVICE_RESET');
    const s = setState(dev, RESUMING);
    ret(rec, s.ret, 'SET RESUMING');
    if (s.ret !== 0 || s.fd < 0) {
      rec.violation('fsm', `RUNNING -> RESUMING after a reset returned ${s.ret} with data fd ${s.fd}`);
      return;
    }
    fd = s.fd;
    const file = fds.get(fd)!;
    const data = mutate(ctx.stream, op.mutation);
    let pos = 0;
    // What the file holds: a refused chunk is not kept, so later chunks land where it would have.
    const kept = new Uint8Array(FULL);
    let accepted = 0;
    let matched = false;
    for (let i = 0; pos < data.length; i++) {
      const size = i < op.chunks.length - 1 ? op.chunks[i]! : data.length - pos;
      const chunk = data.subarray(pos, Math.min(data.length, pos + size));
      pos += chunk.length;
      const r = file.write(chunk);
      ret(rec, r, 'write(resume fd)');
      let expect: number = chunk.length;
      if (accepted + chunk.length > FULL) expect = -Errno.ENOMEM;
      else if (!matched && accepted + chunk.length >= MATCH) {
        const head = new Uint8Array(MATCH);
        head.set(kept.subarray(0, accepted));
        head.set(chunk.subarray(0, MATCH - accepted), accepted);
        expect = matches(ctx, head) ? chunk.length : -Errno.EFAULT;
      }
      if (r !== expect) {
        rec.violation('resume', `write of ${chunk.length} bytes at ${accepted} returned ${r < 0 ? errnoName(r) : r}, expected ${expect < 0 ? errnoName(expect) : expect}`);
        return;
      }
      rec.outcome(`resume write: ${r < 0 ? errnoName(r) : 'ok'}`);
      if (r < 0) continue;
      kept.set(chunk, accepted);
      accepted += r;
      if (accepted >= MATCH) matched = true;
    }
    const st = setState(dev, STOP);
    ret(rec, st.ret, 'SET STOP (load)');
    rec.outcome(`load of ${accepted === FULL ? 'a full state' : accepted === MATCH ? 'match data' : 'a bad length'}: ${st.ret < 0 ? errnoName(st.ret) : 'ok'}`);
    const loadable = matched && (accepted === MATCH || accepted === FULL);
    if (!loadable) {
      if (st.ret !== -Errno.EINVAL) rec.violation('resume', `load of ${accepted} bytes (match ${matched ? 'passed' : 'not done'}) returned ${st.ret < 0 ? errnoName(st.ret) : st.ret}, expected EINVAL`);
      const now = getState(dev);
      if (now !== RESUMING) rec.violation('resume', `a refused load left the device in state ${now}, expected RESUMING`);
      return;
    }
    if (st.ret !== 0) {
      rec.violation('resume', `load of ${accepted} matched bytes returned ${errnoName(st.ret)}`);
      return;
    }
    const run = setState(dev, RUNNING);
    ret(rec, run.ret, 'SET RUNNING');
    if (run.ret !== 0) rec.violation('resume', `STOP -> RUNNING after a load returned ${errnoName(run.ret)}`);
    for (let i = 0; i < op.run && ctx.rig.host.sched.step(); i++);
  } catch (e) {
    rec.threw(describe(op).slice(0, 120), e);
  } finally {
    if (fd >= 0) fds.close(fd);
    checkGuards(ctx.rig.guards, rec);
  }
}

function setup(): Ctx {
  const rig = buildAccRig();
  const src = rig.vm1.device;
  const fds = rig.host.host.process.fds;
  const err = runJob(rig.accel1, 0);
  if (err) throw new KernelError('EIO', `fuzz resume setup: source job ${err}`);
  // QEMU's order: PRE_COPY (match data), STOP_COPY (the rest), back to RUNNING.
  const parts: number[] = [];
  const pre = setState(src, VFIO_DEVICE_STATE_PRE_COPY);
  if (pre.ret !== 0) throw new KernelError(-pre.ret, 'fuzz resume setup: PRE_COPY');
  const f = fds.get(pre.fd)!;
  const drain = (): void => {
    for (;;) {
      const b = new Uint8Array(64);
      const r = f.read(b);
      if (r <= 0) return;
      for (let i = 0; i < r; i++) parts.push(b[i]!);
    }
  };
  drain();
  if (setState(src, VFIO_DEVICE_STATE_STOP_COPY).ret !== 0) throw new KernelError('EIO', 'fuzz resume setup: STOP_COPY');
  drain();
  fds.close(pre.fd);
  if (setState(src, RUNNING).ret !== 0) throw new KernelError('EIO', 'fuzz resume setup: back to RUNNING');
  const stream = Uint8Array.from(parts);
  if (stream.length !== FULL) throw new KernelError('EIO', `fuzz resume setup: saved ${stream.length} bytes`);
  const after = runJob(rig.accel1, 1);
  if (after) throw new KernelError('EIO', `fuzz resume setup: source job after the save ${after}`);
  // The destination is a VF of the same PF with the same queue count: the real stream matches it.
  return { rig, stream, devId: readU32(stream, 12), qpNum: readU32(stream, 8), isoCfg: readU32(stream, 16) };
}

export const resumeCampaign: Campaign<Ctx, Op> = {
  name: 'resume',
  description: 'mutated migration streams written to a RESUMING hisi-acc-vfio-pci VF, loaded and run',
  defaultInputs: 100_000,
  checkpointEvery: 5_000,
  knownBugs: knownBugsOf('resume'),
  setup,
  next,
  apply,
  describe,
  checkpoint(ctx, rec, index) {
    accCheckpoint(ctx, rec, index);
    rec.entry('witness job');
    const err = runJob(ctx.rig.accel1, index);
    if (err) rec.violation('victim', `source VM on VF1 ${err}`);
    else rec.outcome('witness ok: source VF1');
  },
};
