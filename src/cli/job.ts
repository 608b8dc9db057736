/**
 * `hisi-acc-sim job`: stdin -> stdout through a VF of a freshly built accelerator, using the
 * guest VF driver end to end (SQE -> DMA -> engine -> CQE -> EQE -> MSI -> completion).
 *
 *   job --engine zip --op compress|decompress [--format deflate|zlib|gzip]
 *   job --engine sec --alg aes-128-cbc|aes-256-xts|aes-128-ctr|... --key HEX [--iv HEX] [--decrypt]
 *   job --engine sec --alg hmac-sha1|hmac-sha256|hmac-sha512 --key HEX
 *   job --engine hpre --op rsa-public|rsa-private --key FILE.pem
 *   common: [--hw v2|v3|v4] [--poll]
 *
 * Errors (bad options, device failures) print one line on stderr and give exit code 1.
 */
import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { Command, Option } from 'commander';
import { KernelError } from '../uapi/errno.js';
import { createBareVm } from '../guest/bare-vm.js';
import type { Accel, RsaKey } from '../guest/accel.js';
import { checkFormat } from '../guest/zip-job.js';

export interface JobOptions {
  engine: string;
  op?: string;
  format?: string;
  alg?: string;
  key?: string;
  iv?: string;
  decrypt?: boolean;
  hw?: string;
  poll?: boolean;
}

export interface JobStreams {
  stdin: Readable | Uint8Array;
  stdout: Writable;
  stderr: Writable;
}

class UsageError extends Error {}

function usage(msg: string): never {
  throw new UsageError(msg);
}

async function readAll(src: Readable | Uint8Array): Promise<Uint8Array> {
  if (src instanceof Uint8Array) return src;
  const chunks: Buffer[] = [];
  for await (const c of src) chunks.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

function hex(s: string | undefined, what: string): Uint8Array {
  if (s === undefined) usage(`--${what} is required`);
  const t = s.startsWith('0x') || s.startsWith('0X') ? s.slice(2) : s;
  if (t.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(t)) usage(`--${what} must be an even number of hex digits`);
  return new Uint8Array(Buffer.from(t, 'hex'));
}

function b64u(s: string | undefined): Uint8Array | undefined {
  return s === undefined ? undefined : new Uint8Array(Buffer.from(s, 'base64url'));
}

/** Reads a PEM (private or public) RSA key into the HPRE key form. */
export function rsaKeyFromPem(pem: string | Buffer, needPrivate: boolean): RsaKey {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    try {
      key = createPublicKey(pem);
    } catch {
      return usage('--key: not a PEM RSA key');
    }
  }
  if (key.asymmetricKeyType !== 'rsa') usage(`--key: ${key.asymmetricKeyType} key, need RSA`);
  if (needPrivate && key.type !== 'private') usage('rsa-private needs a private key');
  const j = key.export({ format: 'jwk' }) as JsonWebKey;
  return {
    n: b64u(j.n)!, e: b64u(j.e), d: b64u(j.d), p: b64u(j.p), q: b64u(j.q), dp: b64u(j.dp),
    dq: b64u(j.dq), qinv: b64u(j.qi),
  };
}

/** Runs one job; returns the exit code. Never throws. */
export async function runJob(opts: JobOptions, streams: JobStreams): Promise<number> {
  try {
    const hw = opts.hw ?? 'v3';
    if (hw !== 'v2' && hw !== 'v3' && hw !== 'v4') usage(`--hw must be v2, v3 or v4 (got ${hw})`);
    const engine = opts.engine;
    if (engine !== 'zip' && engine !== 'sec' && engine !== 'hpre') usage(`--engine must be zip, sec or hpre (got ${engine})`);

    // Check the options before building anything.
    let work: (accel: Accel, input: Uint8Array) => Uint8Array;
    if (engine === 'zip') {
      const op = opts.op ?? usage('--op compress|decompress is required for zip');
      let format: ReturnType<typeof checkFormat>;
      try {
        format = checkFormat(opts.format ?? 'deflate');
      } catch {
        return usage(`--format must be deflate, zlib or gzip (got ${opts.format})`);
      }
      if (op === 'compress') work = (a, d) => a.compress(d, format);
      else if (op === 'decompress') work = (a, d) => a.decompress(d, format);
      else usage(`--op must be compress or decompress for zip (got ${op})`);
    } else if (engine === 'sec') {
      const alg = opts.alg ?? usage('--alg is required for sec');
      const key = hex(opts.key, 'key');
      if (alg.startsWith('hmac-')) {
        if (opts.decrypt) usage('--decrypt does not apply to HMAC');
        work = (a, d) => a.hmac(alg, key, d);
      } else {
        const iv = opts.iv === undefined ? new Uint8Array(0) : hex(opts.iv, 'iv');
        work = opts.decrypt ? (a, d) => a.decrypt(alg, key, iv, d) : (a, d) => a.encrypt(alg, key, iv, d);
      }
    } else {
      const op = opts.op ?? usage('--op rsa-public|rsa-private is required for hpre');
      if (op !== 'rsa-public' && op !== 'rsa-private') usage(`--op must be rsa-public or rsa-private (got ${op})`);
      if (opts.key === undefined) usage('--key FILE.pem is required for hpre');
      let pem: Buffer;
      try {
        pem = readFileSync(opts.key);
      } catch (e) {
        return usage(`--key: cannot read ${opts.key}: ${(e as Error).message}`);
      }
      const key = rsaKeyFromPem(pem, op === 'rsa-private');
      work = (a, d) => a.rsa(op === 'rsa-public' ? 'public' : 'private', key, d);
    }

    const input = await readAll(streams.stdin);
    const vm = createBareVm({
      profile: `${engine}-${hw}`,
      // Sparse: only touched pages cost memory. Room for input, output and a 16 MiB bound.
      ramBytes: 256 * 2 ** 20 + 4 * input.length,
      driver: { completion: opts.poll ? 'poll' : 'interrupt' },
    });
    const out = work(vm.accel, input);
    await new Promise<void>((resolve, reject) => {
      streams.stdout.write(out, (err) => (err ? reject(err) : resolve()));
    });
    return 0;
  } catch (e) {
    const msg = e instanceof UsageError ? e.message
      : e instanceof KernelError ? `${opts.engine} job failed: ${e.message}`
        : `internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`;
    streams.stderr.write(`job: ${msg}\n`);
    return 1;
  }
}

export function registerJobCommand(program: Command): void {
  program
    .command('job')
    .description('run one accelerator job on stdin -> stdout through a VF and the guest driver')
    .addOption(new Option('--engine <engine>', 'accelerator').choices(['zip', 'sec', 'hpre']).makeOptionMandatory())
    .option('--op <op>', 'zip: compress|decompress; hpre: rsa-public|rsa-private')
    .option('--format <format>', 'zip stream format: deflate|zlib|gzip', 'deflate')
    .option('--alg <alg>', 'sec: aes-128-cbc, aes-256-xts, aes-128-ctr, des-ede3-cbc, sm4-cbc, hmac-sha256, ...')
    .option('--key <key>', 'sec: key as hex; hpre: PEM key file')
    .option('--iv <hex>', 'sec: IV as hex')
    .option('--decrypt', 'sec: decrypt instead of encrypt', false)
    .addOption(new Option('--hw <version>', 'QM hardware version').choices(['v2', 'v3', 'v4']).default('v3'))
    .option('--poll', 'complete by polling the CQ instead of by interrupt', false)
    .action(async (opts: JobOptions) => {
      process.exitCode = await runJob(opts, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
    });
}
