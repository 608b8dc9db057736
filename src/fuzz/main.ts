/**
 * `npm run fuzz [-- --campaign NAME] [--inputs N] [--seed S] [--json] [--no-shrink]`
 *
 * Runs the campaigns (all by default, or the named ones, comma-separated or repeated) with a
 * seeded PRNG and prints, per campaign: inputs tried per entry point, distinct errnos seen,
 * invariant violations and time. Exits 1 when any violation is not a listed known bug,
 * after printing its reproduction (seed, input index, the call, and a shrunk op sequence).
 */
import { Command, Option } from 'commander';
import { CAMPAIGNS } from './campaigns.js';
import { type CampaignResult, type Violation, reproCommand, runCampaign } from './runner.js';

interface Opts {
  campaign?: string[];
  inputs?: string;
  seed: string;
  json?: boolean;
  shrink: boolean;
}

function printViolation(v: Violation, out: string[]): void {
  out.push(`    [${v.knownBug ? `known bug ${v.knownBug}` : 'VIOLATION'}] ${v.kind}: ${v.message}`);
  out.push(`      at input ${v.index}: ${v.call}${v.repeats ? ` (and ${v.repeats} more hits)` : ''}`);
  out.push(`      replay: ${reproCommand(v)}`);
  if (v.repro) {
    out.push(`      minimal reproduction (${v.repro.length} ops on a fresh world):`);
    for (const line of v.repro.slice(-40)) out.push(`        ${line}`);
  }
}

function format(r: CampaignResult): string {
  const out: string[] = [];
  out.push(`campaign ${r.campaign} (seed ${r.seed}): ${r.description}`);
  out.push(`  inputs: ${r.inputs} in ${(r.ms / 1000).toFixed(1)} s, ${r.checkpoints} checkpoints`);
  out.push('  inputs per entry point:');
  for (const [k, n] of Object.entries(r.entryPoints)) out.push(`    ${k}: ${n}`);
  out.push(`  returns: ${r.successes} successes, ${r.failures} errors`);
  const errnos = Object.entries(r.errnos);
  out.push(`  distinct errnos (${errnos.length}): ${errnos.map(([k, n]) => `${k}: ${n}`).join(', ')}`);
  out.push(`  distinct outcomes: ${Object.keys(r.outcomes).length}`);
  out.push(`  invariant violations: ${r.violations.length}`);
  for (const v of r.violations) printViolation(v, out);
  if (r.knownBugHits.length > 0) {
    out.push(`  known bugs hit (not failing the run, fix and remove from known-bugs.ts): ${r.knownBugHits.length}`);
    for (const v of r.knownBugHits) printViolation(v, out);
  }
  return out.join('\n');
}

const program = new Command();
program
  .name('fuzz')
  .description('Seeded fuzz campaigns against every entry point of hisi-acc-sim')
  .addOption(new Option('-c, --campaign <name...>', `campaigns to run (${CAMPAIGNS.map((c) => c.name).join(', ')})`))
  .option('-n, --inputs <n>', 'inputs per campaign (default: each campaign\'s own)')
  .option('-s, --seed <s>', 'PRNG seed', '1')
  .option('--json', 'print the results as JSON')
  .option('--no-shrink', 'do not shrink violations to a minimal reproduction');
program.parse(process.argv);
const opts = program.opts<Opts>();

const names = (opts.campaign ?? []).flatMap((c) => c.split(',')).filter((c) => c.length > 0);
const unknown = names.filter((n) => !CAMPAIGNS.some((c) => c.name === n));
if (unknown.length > 0) {
  console.error(`unknown campaign(s): ${unknown.join(', ')}; available: ${CAMPAIGNS.map((c) => c.name).join(', ')}`);
  process.exit(2);
}
const selected = names.length > 0 ? CAMPAIGNS.filter((c) => names.includes(c.name)) : CAMPAIGNS;
const inputs = opts.inputs === undefined ? undefined : Number(opts.inputs);
const seed = Number(opts.seed);
if ((inputs !== undefined && (!Number.isInteger(inputs) || inputs < 1)) || !Number.isInteger(seed)) {
  console.error('--inputs must be a positive integer and --seed an integer');
  process.exit(2);
}

const results: CampaignResult[] = [];
for (const c of selected) {
  const r = runCampaign(c, {
    inputs,
    seed,
    shrink: opts.shrink,
    progress: opts.json || !process.stderr.isTTY ? undefined : (done, total) => process.stderr.write(`\r${c.name}: ${done}/${total}`),
  });
  if (!opts.json && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  results.push(r);
  if (!opts.json) console.log(`${format(r)}\n`);
}
if (opts.json) console.log(JSON.stringify(results, null, 2));
const failed = results.reduce((n, r) => n + r.violations.length, 0);
if (failed > 0) {
  if (!opts.json) console.log(`FAILED: ${failed} invariant violation(s)`);
  process.exit(1);
}
