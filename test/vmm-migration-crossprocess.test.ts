/**
 * Cross-process live migration over loopback: a `hisi-acc-sim listen --port 0 --json`
 * destination process is spawned and prints its port; this test process is the source
 * (`runMigrate`, the `migrate` command's body). The guest ends up in the other process, which
 * verifies its jobs; this side verifies RAM and the VF state from the return path. Also over
 * a UNIX socket, and a refused migration where the guest stays here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runMigrate } from '../src/cli/migrate.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'vmm-migration-xp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const children: ChildProcess[] = [];
afterEach(() => {
  // only the process groups this file started (npx -> tsx -> node), by their own ids
  for (const c of children.splice(0)) {
    if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) continue;
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

interface Listening {
  child: ChildProcess;
  first: Promise<Record<string, unknown>>;
  result: Promise<{ code: number | null; lines: Record<string, unknown>[]; stderr: string }>;
}

const SMALL = ['--ram', '64M', '--intensity', 'low'];

function startListen(args: string[]): Listening {
  const child = spawn('npx', ['tsx', 'src/cli/main.ts', 'listen', '--json', '--timeout-ms', '60000', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.push(child);
  let out = '';
  let err = '';
  let resolveFirst!: (v: Record<string, unknown>) => void;
  let rejectFirst!: (e: Error) => void;
  const first = new Promise<Record<string, unknown>>((res, rej) => {
    resolveFirst = res;
    rejectFirst = rej;
  });
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const nl = out.indexOf('\n');
    if (nl >= 0) resolveFirst(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const result = new Promise<{ code: number | null; lines: Record<string, unknown>[]; stderr: string }>((res) => {
    child.on('close', (code) => {
      rejectFirst(new Error(`listen exited (${code}) before printing its address: ${err}`));
      res({ code, lines: out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>), stderr: err });
    });
  });
  return { child, first, result };
}

async function migrate(args: string[]): Promise<{ code: number; json: Record<string, unknown>; stderr: string }> {
  let out = '';
  let err = '';
  const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(String(c)); cb(); } });
  const code = await runMigrate(
    { ...Object.fromEntries(pairs(args)), json: true },
    { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)) },
  );
  return { code, json: out ? (JSON.parse(out) as Record<string, unknown>) : {}, stderr: err };
}

/** ['--to', 'x', '--ram', '64M'] -> [['to','x'], ['ram','64M']] with commander's camelCase. */
function pairs(args: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < args.length; i += 2) out.push([args[i]!.slice(2).replace(/-(\w)/g, (_, c: string) => c.toUpperCase()), args[i + 1]!]);
  return out;
}

describe('cross-process migration over loopback', () => {
  it('TCP: listen --port 0 prints its port; the guest moves there and every job verifies in that process', async () => {
    const l = startListen(['--port', '0', ...SMALL]);
    const first = await l.first;
    const addr = first.listening as { host: string; port: number };
    expect(addr.host).toBe('127.0.0.1');
    expect(addr.port).toBeGreaterThan(0);
    const m = await migrate(['--to', `127.0.0.1:${addr.port}`, ...SMALL]);
    expect(m.stderr).toBe('');
    expect(m.json).toMatchObject({ migrated: true, verified: true, guest_runs_on: 'destination', ram_identical: true, vf_state_ok: true });
    expect(m.json.source_ram_hash).toBe(m.json.destination_ram_hash);
    expect(m.code).toBe(0);
    const r = await l.result;
    expect(r.code).toBe(0);
    const res = r.lines[1]!.result as Record<string, unknown>;
    expect(res).toMatchObject({ ok: true, started: true, jobs_lost: 0, jobs_duplicated: 0, jobs_wrong: 0, interrupts_consistent: true });
    expect(res.ram_hash).toBe(m.json.source_ram_hash);
    expect(res.jobs_completed).toBe(res.jobs_submitted);
    expect(res.jobs_submitted as number).toBeGreaterThan(0);
  });

  it('UNIX socket (--path / --to unix:)', async () => {
    const path = join(dir, 'mig.sock');
    const l = startListen(['--path', path, ...SMALL]);
    expect((await l.first).listening).toEqual({ path });
    const m = await migrate(['--to', `unix:${path}`, ...SMALL]);
    expect(m.json).toMatchObject({ migrated: true, verified: true });
    const r = await l.result;
    expect(r.code).toBe(0);
    expect((r.lines[1]!.result as Record<string, unknown>).ok).toBe(true);
  });

  it('an incompatible destination process (sec VF for a zip guest): refused, the guest keeps running here', async () => {
    const l = startListen(['--port', '0', ...SMALL, '--engine', 'sec']);
    const addr = (await l.first).listening as { port: number };
    const m = await migrate(['--to', `127.0.0.1:${addr.port}`, ...SMALL]);
    expect(m.code).toBe(1);
    expect(m.json).toMatchObject({ migrated: false, guest_runs_on: 'source', jobs_lost: 0 });
    expect((m.json.failure as { side: string; message: string }).side).toBe('destination');
    expect((m.json.failure as { message: string }).message).toMatch(/incompatible destination/);
    expect(m.json.jobs_completed as number).toBeGreaterThan(0);
    const r = await l.result;
    expect(r.code).toBe(1);
    expect((r.lines[1]!.result as Record<string, unknown>)).toMatchObject({ ok: false, started: false });
  });
});
