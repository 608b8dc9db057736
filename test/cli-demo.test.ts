/**
 * `hisi-acc-sim demo` (the main job, `npm start`): most cases call the command function with
 * in-memory streams; one spawns the real CLI with its defaults.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { type DemoOptions, runDemo } from '../src/cli/demo.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cli-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function demo(opts: DemoOptions, tty = false): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const stdout = new Writable({ write(c, _e, cb) { out += String(c); cb(); } });
  const stderr = Object.assign(new Writable({ write(c, _e, cb) { err += String(c); cb(); } }), { isTTY: tty, columns: 100 });
  const code = await runDemo(opts, { stdout, stderr });
  return { code, out, err };
}

const SMALL: DemoOptions = { ram: '64M', intensity: 'low' };

describe('demo --json', () => {
  it('one JSON object with the documented fields; exit 0 when verified', async () => {
    const r = await demo({ ...SMALL, json: true });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]!) as Record<string, unknown>;
    for (const k of ['verified', 'downtime_us', 'total_ms', 'precopy_iterations', 'ram_bytes', 'device_bytes', 'jobs_completed', 'jobs_lost']) {
      expect(j).toHaveProperty(k);
    }
    expect(j).toMatchObject({ verified: true, migrated: true, jobs_lost: 0, ram_identical: true, vf_state_ok: true, interrupts_consistent: true });
    expect(j.device_bytes).toBe(176); // one acc_vf_data (hisi-acc-vfio-pci.md section 3)
    expect(j.jobs_completed).toBe(j.jobs_submitted);
    expect(j.precopy_iterations as number).toBeGreaterThanOrEqual(1);
    expect(j.downtime_us as number).toBeGreaterThan(0);
    // the downtime is the sum of its parts, and the total includes it
    const d = j.downtime as { sourceNs: number; transferNs: number; destinationNs: number; totalNs: number };
    expect(d.totalNs).toBe(d.sourceNs + d.transferNs + d.destinationNs);
    expect((j.total_ms as number) * 1e6).toBeGreaterThan(d.totalNs);
  });

  it('--hw v2: QM V2 cannot migrate; exit 1, the reason in the JSON, no job lost', async () => {
    const r = await demo({ ...SMALL, hw: 'v2', json: true });
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as Record<string, unknown>;
    expect(j).toMatchObject({ verified: false, migrated: false, jobs_lost: 0 });
    expect((j.failure as { message: string }).message).toMatch(/offers no migration/);
    expect(j.jobs_completed as number).toBeGreaterThan(0);
  });

  it('bad options are usage errors (exit 2)', async () => {
    expect((await demo({ engine: 'gpu' })).code).toBe(2);
    const r = await demo({ ram: '3M' });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^demo: guest RAM of 3M is too small/);
  });
});

describe('demo (text)', () => {
  it('prints the timeline and the verification; --timeline writes an SVG with one bar per pass', async () => {
    const svg = join(dir, 'tl.svg');
    const r = await demo({ ...SMALL, engine: 'sec', protocol: 'v1', timeline: svg });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^hisi-acc-sim demo: live migration of a guest using a sec-v3 VF/);
    expect(r.out).toMatch(/pre-copy #0 /);
    expect(r.out).toMatch(/downtime {3}/);
    expect(r.out).toMatch(/result {5}VERIFIED/);
    expect(r.out).toContain(`timeline written to ${svg}`);
    const text = readFileSync(svg, 'utf8');
    expect(text.startsWith('<svg')).toBe(true);
    const passes = (r.out.match(/pre-copy #\d+/g) ?? []).length;
    expect(passes).toBeGreaterThan(0);
    expect((text.match(/<title>pass \d+:/g) ?? []).length).toBe(passes);
    // no progress bar when stderr is not a terminal
    expect(r.err).toBe('');
  });

  it('draws a progress bar on a terminal', async () => {
    const r = await demo({ ...SMALL }, true);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/pages sent/);
  });
});

describe('npm start (the real CLI, defaults)', () => {
  it('demo with default options verifies and exits 0', () => {
    const r = spawnSync('npx', ['tsx', 'src/cli/main.ts', 'demo', '--json'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
    expect(j).toMatchObject({ verified: true, engine: 'zip', hw: 'v3', protocol: 'v2', dirty_tracking: 'dma-logging', jobs_lost: 0 });
    expect(j.guest_ram_bytes).toBe(256 * 2 ** 20);
  });
});
