/**
 * `hisi-acc-sim job`: stdin -> stdout through a VF and the guest driver, checked against
 * node:zlib and node:crypto. Most cases call the command function with in-memory streams;
 * two spawn the real CLI.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import * as zlib from 'node:zlib';
import { type JobOptions, runJob } from '../src/cli/job.js';

async function job(opts: JobOptions, input: Uint8Array): Promise<{ code: number; out: Buffer; err: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (arr: Buffer[]) => new Writable({ write(c, _e, cb) { arr.push(Buffer.from(c)); cb(); } });
  const code = await runJob(opts, { stdin: input, stdout: sink(out), stderr: sink(err) });
  return { code, out: Buffer.concat(out), err: Buffer.concat(err).toString() };
}

const text = new Uint8Array(Buffer.from('The quick brown fox jumps over the lazy dog. '.repeat(400)));
const dir = mkdtempSync(join(tmpdir(), 'cli-job-'));
const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 });
const privPem = join(dir, 'priv.pem');
const pubPem = join(dir, 'pub.pem');
writeFileSync(privPem, privateKey.export({ type: 'pkcs8', format: 'pem' }));
writeFileSync(pubPem, publicKey.export({ type: 'spki', format: 'pem' }));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('job --engine zip', () => {
  for (const hw of ['v2', 'v3', 'v4']) {
    it(`${hw}: compress/decompress in every format agree with node:zlib`, async () => {
      for (const format of ['deflate', 'zlib', 'gzip']) {
        const c = await job({ engine: 'zip', op: 'compress', format, hw }, text);
        expect(c.code).toBe(0);
        const back = format === 'deflate' ? zlib.inflateRawSync(c.out) : format === 'zlib' ? zlib.inflateSync(c.out) : zlib.gunzipSync(c.out);
        expect(back.equals(Buffer.from(text))).toBe(true);
        const nodeC = format === 'deflate' ? zlib.deflateRawSync(text) : format === 'zlib' ? zlib.deflateSync(text) : zlib.gzipSync(text);
        const d = await job({ engine: 'zip', op: 'decompress', format, hw }, nodeC);
        expect(d.code).toBe(0);
        expect(d.out.equals(Buffer.from(text))).toBe(true);
      }
    });
  }

  it('a corrupt stream is a device error: exit 1 and the errno on stderr', async () => {
    const bad = Buffer.from(zlib.gzipSync(text));
    bad[bad.length - 5] ^= 0x55; // CRC-32 in the trailer
    const r = await job({ engine: 'zip', op: 'decompress', format: 'gzip' }, bad);
    expect(r.code).toBe(1);
    expect(r.out.length).toBe(0);
    expect(r.err).toMatch(/^job: zip job failed: EIO/);
  });
});

describe('job --engine sec', () => {
  const key = crypto.randomBytes(32);
  const iv = crypto.randomBytes(16);
  const data = crypto.randomBytes(4096);

  function node(alg: string, k: Buffer, decrypt = false, input: Buffer = data): Buffer {
    const c = decrypt ? crypto.createDecipheriv(alg, k, iv) : crypto.createCipheriv(alg, k, iv);
    c.setAutoPadding(false);
    return Buffer.concat([c.update(input), c.final()]);
  }

  it('aes-128-cbc, aes-256-xts and aes-128-ctr encrypt like node:crypto; --decrypt inverts', async () => {
    for (const [alg, klen] of [['aes-128-cbc', 16], ['aes-256-xts', 64], ['aes-128-ctr', 16]] as const) {
      const k = key.length >= klen ? key.subarray(0, klen) : Buffer.concat([key, crypto.randomBytes(klen - key.length)]);
      const r = await job({ engine: 'sec', alg, key: k.toString('hex'), iv: iv.toString('hex') }, data);
      expect(r.code).toBe(0);
      expect(r.out.equals(node(alg, k))).toBe(true);
      const back = await job({ engine: 'sec', alg, key: k.toString('hex'), iv: iv.toString('hex'), decrypt: true }, r.out);
      expect(back.out.equals(data)).toBe(true);
    }
  });

  it('hmac-sha1/256/512 match node:crypto', async () => {
    for (const h of ['sha1', 'sha256', 'sha512']) {
      const r = await job({ engine: 'sec', alg: `hmac-${h}`, key: key.toString('hex') }, data);
      expect(r.code).toBe(0);
      expect(r.out.equals(crypto.createHmac(h, key).update(data).digest())).toBe(true);
    }
  });

  it('errors: CTR on V2, bad hex, missing --alg, bad length — exit 1 with a message', async () => {
    const v2 = await job({ engine: 'sec', alg: 'aes-128-ctr', key: '00'.repeat(16), iv: '00'.repeat(16), hw: 'v2' }, data);
    expect(v2.code).toBe(1);
    expect(v2.err).toContain('EOPNOTSUPP');
    const hex = await job({ engine: 'sec', alg: 'aes-128-cbc', key: 'xyz', iv: '00' }, data);
    expect(hex.code).toBe(1);
    expect(hex.err).toContain('--key must be an even number of hex digits');
    const noAlg = await job({ engine: 'sec', key: '00' }, data);
    expect(noAlg.code).toBe(1);
    expect(noAlg.err).toContain('--alg is required');
    const len = await job({ engine: 'sec', alg: 'aes-128-cbc', key: '00'.repeat(16), iv: '00'.repeat(16) }, data.subarray(0, 10));
    expect(len.code).toBe(1);
    expect(len.err).toContain('EINVAL');
  });
});

describe('job --engine hpre', () => {
  it('rsa-public / rsa-private on a key-sized big-endian input match node:crypto NO_PADDING', async () => {
    const m = Buffer.concat([Buffer.alloc(1), crypto.randomBytes(127)]);
    const enc = await job({ engine: 'hpre', op: 'rsa-public', key: privPem }, m);
    expect(enc.code).toBe(0);
    expect(enc.out.equals(crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_NO_PADDING }, m))).toBe(true);
    const encPub = await job({ engine: 'hpre', op: 'rsa-public', key: pubPem }, m);
    expect(encPub.out.equals(enc.out)).toBe(true);
    const dec = await job({ engine: 'hpre', op: 'rsa-private', key: privPem, hw: 'v2' }, enc.out);
    expect(dec.code).toBe(0);
    expect(dec.out.equals(m)).toBe(true);
  });

  it('rsa-private with a public key, an unreadable key file, a bad --op: exit 1', async () => {
    const a = await job({ engine: 'hpre', op: 'rsa-private', key: pubPem }, new Uint8Array(128));
    expect(a.code).toBe(1);
    expect(a.err).toContain('needs a private key');
    const b = await job({ engine: 'hpre', op: 'rsa-public', key: join(dir, 'missing.pem') }, new Uint8Array(128));
    expect(b.code).toBe(1);
    expect(b.err).toContain('cannot read');
    const c = await job({ engine: 'hpre', op: 'dh', key: privPem }, new Uint8Array(128));
    expect(c.code).toBe(1);
    expect(c.err).toContain('--op must be rsa-public or rsa-private');
  });
});

describe('the real CLI process', () => {
  const run = (args: string[], input: Uint8Array) =>
    spawnSync('npx', ['tsx', 'src/cli/main.ts', 'job', ...args], { input, cwd: fileURLToPath(new URL('..', import.meta.url)), maxBuffer: 1 << 26 });

  it('gzip compression through `hisi-acc-sim job` round-trips with gunzip', () => {
    const r = run(['--engine', 'zip', '--op', 'compress', '--format', 'gzip', '--hw', 'v4'], text);
    expect(r.status).toBe(0);
    expect(zlib.gunzipSync(r.stdout).equals(Buffer.from(text))).toBe(true);
  }, 30_000);

  it('a device error exits non-zero with the reason on stderr', () => {
    const r = run(['--engine', 'zip', '--op', 'decompress', '--format', 'zlib'], Uint8Array.of(0x78, 0x9c, 0xff, 0xff, 0xff));
    expect(r.status).toBe(1);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr.toString()).toContain('job: zip job failed: EIO');
  }, 30_000);
});
