/**
 * `hisi-acc-sim save --engine zip|sec|hpre [--hw v3|v4] --out FILE`: runs a guest workload
 * on a VF assigned through VFIO (VF bound to hisi-acc-vfio-pci, guest QM driver over the
 * device fd), leaves some jobs in flight, then does what a VMM does at the end of a live
 * migration: RUNNING -> PRE_COPY (match data), vCPUs stopped, -> STOP_COPY, the data fd
 * read to its end; the stream is written to FILE.
 *
 *   options: [--jobs N] jobs completed before the save (default 4)
 *            [--in-flight N] jobs submitted and not yet processed at the save (default 4)
 *            [--no-precopy] go RUNNING -> STOP_COPY directly
 *
 * Errors print one line on stderr and give exit code 1.
 */
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { type Command, Option } from 'commander';
import type { AccelJob, RsaKey } from '../guest/accel.js';
import { Rng } from '../sim/scheduler.js';
import { KernelError } from '../uapi/errno.js';
import { VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_STOP_COPY } from '../uapi/vfio.js';
import { decodeAccVfData } from '../drivers/hisi-acc/acc-vf-data.js';
import { AccHost, AccVm, readPrecopy, readToEnd, setMigState } from '../drivers/hisi-acc/testbed.js';

export interface SaveOptions {
  engine: string;
  hw?: string;
  out: string;
  jobs?: string | number;
  inFlight?: string | number;
  precopy?: boolean;
}

export interface SaveStreams {
  stdout: Writable;
  stderr: Writable;
}

class UsageError extends Error {}

function count(v: string | number | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  const n = typeof v === 'number' ? v : /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 10_000) throw new UsageError(`--${what} must be a count (got ${String(v)})`);
  return n;
}

function b64u(s: string | undefined): Uint8Array {
  return new Uint8Array(Buffer.from(s ?? '', 'base64url'));
}

/** A deterministic workload for `engine`: job i of a seeded stream. */
function workload(engine: 'zip' | 'sec' | 'hpre'): (i: number) => AccelJob {
  const rng = new Rng(0x5a7e);
  if (engine === 'zip') {
    return (i) => {
      const data = new Uint8Array(8192);
      for (let k = 0; k < data.length; k++) data[k] = k % 97 < 60 ? (i + k) & 0x0f : rng.u32() & 0xff;
      return { op: 'compress', format: 'deflate', data };
    };
  }
  if (engine === 'sec') {
    const key = rng.bytes(16);
    return () => ({ op: 'encrypt', alg: 'aes-128-cbc', key, iv: rng.bytes(16), data: rng.bytes(4096) });
  }
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const j = publicKey.export({ format: 'jwk' }) as JsonWebKey;
  const key: RsaKey = { n: b64u(j.n), e: b64u(j.e) };
  return () => {
    const input = rng.bytes(128);
    input[0] = 0x01;
    return { op: 'rsa', mode: 'public', key, input };
  };
}

/** Runs the command; returns the exit code. Never throws. */
export async function runSave(opts: SaveOptions, streams: SaveStreams): Promise<number> {
  try {
    const engine = opts.engine;
    if (engine !== 'zip' && engine !== 'sec' && engine !== 'hpre') throw new UsageError(`--engine must be zip, sec or hpre (got ${engine})`);
    const hw = opts.hw ?? 'v3';
    if (hw !== 'v3' && hw !== 'v4') throw new UsageError(`--hw must be v3 or v4: older parts do not migrate (got ${hw})`);
    if (!opts.out) throw new UsageError('--out FILE is required');
    const done = count(opts.jobs, 4, 'jobs');
    const inFlight = count(opts.inFlight, 4, 'in-flight');

    // Each SQE takes 20 us of device time, so jobs submitted right before the save are still queued.
    const host = new AccHost({ profile: `${engine}-${hw}`, numVfs: 1, latencies: { processNs: 20_000 } });
    const b = host.bind(1);
    if (b < 0) throw new KernelError(-b, 'binding VF 1 to hisi-acc-vfio-pci failed');
    const vm = new AccVm(host, 1);
    const accel = vm.accel!;
    const next = workload(engine);
    for (let i = 0; i < done; i++) accel.submitJob(next(i));
    accel.drain();
    for (let i = 0; i < inFlight; i++) accel.submitJob(next(done + i));

    const fds = host.fds;
    let dataFd = -1;
    let pre: Uint8Array = new Uint8Array(0);
    if (opts.precopy ?? true) {
      const r = setMigState(vm.device, VFIO_DEVICE_STATE_PRE_COPY);
      if (r.ret < 0) throw new KernelError(-r.ret, 'RUNNING -> PRE_COPY failed');
      dataFd = r.dataFd;
      pre = readPrecopy(fds, dataFd);
    }
    vm.io.pause();
    host.sched.advance(0);
    const r = setMigState(vm.device, VFIO_DEVICE_STATE_STOP_COPY);
    if (r.ret < 0) throw new KernelError(-r.ret, '-> STOP_COPY failed');
    if (r.dataFd >= 0) dataFd = r.dataFd;
    const rest = readToEnd(fds, dataFd);
    if (rest.last < 0) throw new KernelError(-rest.last, 'reading the STOP_COPY data failed');
    const stream = new Uint8Array(pre.length + rest.bytes.length);
    stream.set(pre);
    stream.set(rest.bytes, pre.length);
    writeFileSync(opts.out, stream);
    const d = decodeAccVfData(stream).data;
    streams.stdout.write(
      `saved ${stream.length} bytes of acc_vf_data to ${opts.out}: ${engine}-${hw} VF 1, dev_id 0x${d.dev_id.toString(16)}, ` +
        `qp_base ${d.qp_base}, qp_num ${d.qp_num}, vf_qm_state ${d.vf_qm_state === 0 ? 'QM_READY' : 'QM_NOT_READY'}, ` +
        `${done} jobs done, ${accel.pending} in flight\n`,
    );
    return 0;
  } catch (e) {
    const msg = e instanceof UsageError ? e.message
      : e instanceof KernelError ? e.message
        : `internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`;
    streams.stderr.write(`save: ${msg}\n`);
    return 1;
  }
}

export function registerSaveCommand(program: Command): void {
  program
    .command('save')
    .description('run a guest workload on a VF through hisi-acc-vfio-pci and save its migration stream')
    .addOption(new Option('--engine <engine>', 'accelerator').choices(['zip', 'sec', 'hpre']).makeOptionMandatory())
    .addOption(new Option('--hw <version>', 'QM hardware version').choices(['v3', 'v4']).default('v3'))
    .requiredOption('--out <file>', 'where to write the stream')
    .option('--jobs <n>', 'jobs completed before the save', '4')
    .option('--in-flight <n>', 'jobs still queued at the save', '4')
    .option('--no-precopy', 'go to STOP_COPY without PRE_COPY')
    .action(async (opts: SaveOptions) => {
      process.exitCode = await runSave(opts, { stdout: process.stdout, stderr: process.stderr });
    });
}
