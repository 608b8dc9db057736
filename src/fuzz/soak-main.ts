/**
 * `npm run soak [-- --migrations N] [--seed S] [--json FILE] ...`
 *
 * Ping-pongs one busy guest between two simulated hosts N times (default 1000), verifying
 * every migration, and prints the figures: migrations, lost / duplicated jobs, RAM and device
 * state mismatches, the downtime distribution (simulated and wall) with a histogram, and the
 * pre-copy passes. Exit 0 when everything verified, 1 on any failure, loss or mismatch
 * (each printed with the command that replays it), 2 on bad arguments.
 */
import { writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { describeError, type MigrationRecord, runSoak, type SoakOptions } from './soak.js';
import { summarize, summaryText } from './soak-report.js';

interface Opts {
  migrations: string;
  seed: string;
  engine: 'zip' | 'sec' | 'hpre';
  hw: 'v3' | 'v4';
  protocol: 'v2' | 'v1';
  ramMib: string;
  regionPages: string;
  drainEvery: string;
  json?: string;
  progress: boolean;
}

function intArg(v: string, what: string, lo: number, hi: number): number {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < lo || n > hi) {
    console.error(`soak: --${what} must be an integer in [${lo}, ${hi}] (got ${v})`);
    process.exit(2);
  }
  return n;
}

const program = new Command();
program
  .name('soak')
  .description('Ping-pong live migrations of a busy guest between two simulated hosts, every one verified')
  .option('-n, --migrations <n>', 'migrations to run', '1000')
  .option('-s, --seed <s>', 'seed of the per-migration plans and the workload', '1')
  .addOption(new Option('--engine <engine>', 'accelerator').choices(['zip', 'sec', 'hpre']).default('zip'))
  .addOption(new Option('--hw <version>', 'QM hardware version').choices(['v3', 'v4']).default('v3'))
  .addOption(new Option('--protocol <uapi>', 'hisi-acc-vfio-pci migration uAPI').choices(['v2', 'v1']).default('v2'))
  .option('--ram-mib <n>', 'guest RAM in MiB', '32')
  .option('--region-pages <n>', 'pages the guest application dirties', '512')
  .option('--drain-every <n>', 'let every outstanding job finish after this many migrations', '10')
  .option('--json <file>', 'write the summary and every migration record as JSON')
  .option('--no-progress', 'no progress lines on stderr');
program.parse(process.argv);
const opts = program.opts<Opts>();

const soakOpts: SoakOptions = {
  migrations: intArg(opts.migrations, 'migrations', 1, 1_000_000),
  seed: intArg(opts.seed, 'seed', 0, 0xffffffff),
  engine: opts.engine,
  hw: opts.hw,
  protocol: opts.protocol,
  ramBytes: intArg(opts.ramMib, 'ram-mib', 16, 4096) * 2 ** 20,
  dirtyRegionPages: intArg(opts.regionPages, 'region-pages', 16, 1 << 20),
  drainEvery: intArg(opts.drainEvery, 'drain-every', 1, 1_000_000),
};
if (soakOpts.dirtyRegionPages! * 4096 > soakOpts.ramBytes! / 4) {
  console.error('soak: --region-pages must fit in a quarter of the guest RAM (the guest driver needs the rest)');
  process.exit(2);
}

const started = Date.now();
let bad = 0;
soakOpts.onMigration = (m: MigrationRecord) => {
  if (m.problems.length) bad++;
  if (!opts.progress) return;
  if (m.problems.length) console.error(`soak: migration #${m.index} ${m.from}->${m.to}: ${m.problems.join('; ')}`);
  if ((m.index + 1) % 50 === 0 || m.index + 1 === soakOpts.migrations) {
    console.error(`soak: ${m.index + 1}/${soakOpts.migrations} migrations, ${bad} with findings, ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
};

try {
  const result = await runSoak(soakOpts);
  const summary = summarize(result);
  process.stdout.write(summaryText(summary));
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ summary, records: result.records }, null, 1) + '\n');
  process.exitCode = result.ok ? 0 : 1;
} catch (e) {
  // the soak itself broke (a simulator bug outside a migration): also a finding
  console.error(`soak: aborted: ${e instanceof Error ? e.stack ?? describeError(e) : describeError(e)}`);
  process.exitCode = 1;
}
