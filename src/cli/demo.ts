/**
 * `hisi-acc-sim demo` (= `npm start`): the project's main job. Two hosts in one process,
 * each with an ACC accelerator, its PF driver, SR-IOV VFs and hisi-acc-vfio-pci; a VM on the
 * source whose guest drives a VF through VFIO with a busy workload; a live migration to the
 * destination in QEMU's order; the guest carries on there; then verification (guest RAM
 * identical, VF state equivalent, every job exactly once with the right output, interrupts
 * consistent). Prints a timeline (or one JSON object with --json) and exits non-zero unless
 * everything verified.
 *
 *   --engine zip|sec|hpre   --hw v2|v3|v4   --ram SIZE (e.g. 256M, 1G)
 *   --intensity idle|low|medium|high   --vfs N (VFs passed through; VF 1 runs the workload)
 *   --dirty dma-logging|type1   --protocol v2|v1   --bandwidth GBITS   --downtime-limit US
 *   --max-iterations N   --seed N   --timeline FILE.svg   --json
 *
 * A progress bar (cli-progress) is drawn on stderr only when it is a terminal.
 */
import { writeFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { type Command, Option } from 'commander';
import { demoJson, demoText } from '../vmm/migration/print.js';
import type { MigrationProgress } from '../vmm/migration/options.js';
import { DEFAULT_SCENARIO, type DemoResult, type Intensity, runInProcessScenario, type ScenarioOptions } from '../vmm/migration/scenario.js';
import { timelineSvg } from '../vmm/migration/timeline.js';

export interface DemoOptions {
  engine?: string;
  hw?: string;
  ram?: string;
  intensity?: string;
  vfs?: string | number;
  dirty?: string;
  protocol?: string;
  bandwidth?: string | number;
  downtimeLimit?: string | number;
  maxIterations?: string | number;
  seed?: string | number;
  timeline?: string;
  json?: boolean;
}

export interface DemoStreams {
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean };
}

export class UsageError extends Error {}

/** "256M", "1G", "4GiB", "65536" -> bytes (page multiple). */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(s.trim());
  if (!m) throw new UsageError(`bad size "${s}" (use e.g. 64M, 1G)`);
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n % 4096 !== 0) throw new UsageError(`size "${s}" is not a whole number of 4 KiB pages`);
  if (n < 16 * 2 ** 20) throw new UsageError(`guest RAM of ${s} is too small (at least 16M)`);
  if (n > 2 ** 42) throw new UsageError(`guest RAM of ${s} is too large (at most 4T)`);
  return n;
}

function int(v: string | number | undefined, what: string, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < lo || n > hi) throw new UsageError(`--${what} must be an integer in [${lo}, ${hi}] (got ${String(v)})`);
  return n;
}

function num(v: string | number | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${what} must be a positive number (got ${String(v)})`);
  return n;
}

function oneOf<T extends string>(v: string | undefined, what: string, allowed: readonly T[], dflt: T): T {
  if (v === undefined) return dflt;
  if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`--${what} must be one of ${allowed.join(', ')} (got ${v})`);
  return v as T;
}

/** Options shared by demo, listen and migrate, validated into a scenario. */
export function scenarioFrom(o: DemoOptions): ScenarioOptions {
  const s: ScenarioOptions = {
    ...DEFAULT_SCENARIO,
    engine: oneOf(o.engine, 'engine', ['zip', 'sec', 'hpre'] as const, DEFAULT_SCENARIO.engine),
    hw: oneOf(o.hw, 'hw', ['v2', 'v3', 'v4'] as const, DEFAULT_SCENARIO.hw),
    ramBytes: o.ram === undefined ? DEFAULT_SCENARIO.ramBytes : parseSize(o.ram),
    intensity: oneOf<Intensity>(o.intensity, 'intensity', ['idle', 'low', 'medium', 'high'], DEFAULT_SCENARIO.intensity),
    vfs: int(o.vfs, 'vfs', 1, 63) ?? DEFAULT_SCENARIO.vfs,
    dirty: oneOf(o.dirty, 'dirty', ['dma-logging', 'type1'] as const, DEFAULT_SCENARIO.dirty),
    protocol: oneOf(o.protocol, 'protocol', ['v2', 'v1'] as const, DEFAULT_SCENARIO.protocol),
    seed: int(o.seed, 'seed', 0, 2 ** 31 - 1) ?? DEFAULT_SCENARIO.seed,
  };
  const bw = num(o.bandwidth, 'bandwidth');
  if (bw !== undefined) s.bandwidthBytesPerSec = (bw * 1e9) / 8;
  const dl = num(o.downtimeLimit, 'downtime-limit');
  if (dl !== undefined) s.downtimeLimitNs = dl * 1000;
  const mi = int(o.maxIterations, 'max-iterations', 1, 1000);
  if (mi !== undefined) s.maxIterations = mi;
  return s;
}

/** Adds the scenario options to a command. */
export function addScenarioOptions(c: Command): Command {
  return c
    .addOption(new Option('--engine <engine>', 'accelerator').choices(['zip', 'sec', 'hpre']).default('zip'))
    .addOption(new Option('--hw <version>', 'QM hardware version (v2 cannot migrate)').choices(['v2', 'v3', 'v4']).default('v3'))
    .option('--ram <size>', 'guest RAM (sparse: only touched pages cost memory)', '256M')
    .addOption(new Option('--intensity <level>', 'guest load: jobs and RAM dirtying').choices(['idle', 'low', 'medium', 'high']).default('medium'))
    .option('--vfs <n>', 'VFs passed through to the VM (VF 1 runs the workload)', '1')
    .addOption(new Option('--dirty <mode>', 'device dirty tracking').choices(['dma-logging', 'type1']).default('dma-logging'))
    .addOption(new Option('--protocol <uapi>', 'hisi-acc-vfio-pci migration uAPI').choices(['v2', 'v1']).default('v2'))
    .option('--bandwidth <gbit>', 'link bandwidth in Gbit/s (default 25)')
    .option('--downtime-limit <us>', 'downtime limit in microseconds (default 500)')
    .option('--max-iterations <n>', 'pre-copy passes before stopping anyway (default 30)')
    .option('--seed <n>', 'workload seed', '1');
}

function progressBar(stderr: DemoStreams['stderr']): { update: (p: MigrationProgress) => void; stop: () => void } | null {
  if (!stderr.isTTY) return null;
  const bar = new cliProgress.SingleBar(
    {
      stream: stderr,
      format: ' {phase} pass {pass} |{bar}| {value}/{total} pages sent, {dirty} dirty',
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(p) {
      const total = Math.max(1, p.pagesSent + p.pagesDirty);
      if (!started) {
        bar.start(total, 0, { phase: p.phase, pass: p.iteration, dirty: p.pagesDirty });
        started = true;
      }
      bar.setTotal(total);
      bar.update(p.pagesSent, { phase: p.phase, pass: p.iteration, dirty: p.pagesDirty });
      bar.render();
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** Runs the command; returns the exit code (0 only when the migration verified). Never throws. */
export async function runDemo(opts: DemoOptions, streams: DemoStreams): Promise<number> {
  let bar: ReturnType<typeof progressBar> = null;
  try {
    const scenario = scenarioFrom(opts);
    bar = opts.json ? null : progressBar(streams.stderr);
    let result: DemoResult;
    try {
      result = await runInProcessScenario(scenario, bar ? (p) => bar!.update(p) : undefined);
    } finally {
      bar?.stop();
    }
    if (opts.timeline) {
      const title = `hisi-acc-sim live migration: ${scenario.engine}-${scenario.hw}, ${scenario.protocol}, ${scenario.dirty}, ${scenario.intensity}`;
      writeFileSync(opts.timeline, timelineSvg(result.source, title));
    }
    if (opts.json) streams.stdout.write(JSON.stringify(demoJson(result)) + '\n');
    else {
      streams.stdout.write(demoText(result));
      if (opts.timeline) streams.stdout.write(`timeline written to ${opts.timeline}\n`);
    }
    return result.verification.ok ? 0 : 1;
  } catch (e) {
    const msg = e instanceof UsageError || e instanceof RangeError ? e.message : `internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`;
    streams.stderr.write(`demo: ${msg}\n`);
    return 2;
  }
}

export function registerDemoCommand(program: Command): void {
  addScenarioOptions(program.command('demo').description('live-migrate a busy guest with an ACC VF between two simulated hosts and verify it (npm start)'))
    .option('--timeline <file>', 'write an SVG picture of the migration timeline')
    .option('--json', 'print one JSON object instead of the timeline')
    .action(async (opts: DemoOptions) => {
      process.exitCode = await runDemo(opts, { stdout: process.stdout, stderr: process.stderr });
    });
}
