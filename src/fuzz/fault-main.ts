/**
 * `npm run faults [-- --slice] [--cell ID ...] [--kind K,...] [--jobs N] [--json FILE]`
 *
 * The fault-injection matrix (fault-matrix.ts): records the steps of a clean migration of a
 * busy guest, then runs one fresh migration per (step, fitting fault) and prints a table of
 * the cells and a summary per kind of step and fault. Exits 1 when any cell breaks the
 * requirement (the source keeps running with 0 lost or duplicated jobs; the destination
 * never starts on bad data), after printing a one-command reproduction of each.
 *
 * Cells run in `--jobs` child processes (default 2); each cell is a fresh world, so the
 * results do not depend on how cells are spread over processes.
 */
import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import {
  type CellResult, type CellSpec, type MatrixSummary, type Step, cellId, cellsFor, parseCellId, recordSteps, reproCommand,
  runCell, sliceCells, summarize,
} from './fault-matrix.js';
import type { WorldOptions } from './fault-world.js';

interface Job {
  spec: CellSpec;
  label: string;
}

interface WorkerRequest {
  jobs: Job[];
  world: WorldOptions;
}

// ---- worker side --------------------------------------------------------------------------------

async function worker(): Promise<void> {
  const req = await new Promise<WorkerRequest>((resolve) => process.once('message', (m) => resolve(m as WorkerRequest)));
  for (const j of req.jobs) {
    const r = await runCell(j.spec, j.label, req.world);
    await new Promise<void>((resolve) => process.send!(r, () => resolve()));
  }
  process.disconnect();
}

// ---- parent side --------------------------------------------------------------------------------

function runWorkers(jobs: Job[], world: WorldOptions, n: number, onResult: (r: CellResult) => void): Promise<void> {
  const shards: Job[][] = Array.from({ length: n }, () => []);
  // round robin keeps early, middle and late steps spread over the workers
  jobs.forEach((j, i) => shards[i % n]!.push(j));
  return Promise.all(shards.filter((s) => s.length > 0).map((shard) => new Promise<void>((resolve, reject) => {
    const child = fork(process.argv[1]!, ['--worker'], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let got = 0;
    child.on('message', (m) => {
      got++;
      onResult(m as CellResult);
    });
    child.on('exit', (code) => {
      if (got === shard.length) resolve();
      else reject(new Error(`a matrix worker exited (code ${code}) after ${got} of ${shard.length} cells`));
    });
    child.send({ jobs: shard, world } satisfies WorkerRequest);
  }))).then(() => undefined);
}

function outcomeText(r: CellResult): string {
  const o = r.outcome;
  if (!o) return 'no outcome';
  if (o.migrated) return 'migrated';
  const step = o.failure ? o.failure.slice(0, o.failure.indexOf(':')) : '?';
  const code = o.destCode && o.destCode !== o.code ? `${o.code ?? '-'}, dest ${o.destCode}` : o.code;
  return `failed at ${step}${code ? ` (${code})` : ''}`;
}

function table(results: CellResult[]): string {
  const rows = [['cell', 'step', 'result', 'guest runs on', 'jobs after', 'lost/dup/wrong', 'dest started', 'verdict']];
  for (const r of results) {
    const o = r.outcome;
    rows.push([
      r.id,
      r.label.length > 48 ? `${r.label.slice(0, 45)}...` : r.label,
      outcomeText(r),
      o?.runsOn ?? '-',
      String(o?.jobsAfter ?? '-'),
      o ? `${o.lost}/${o.duplicated}/${o.wrong}` : '-',
      o ? (o.destStarted ? (o.destCheckNote ? 'yes (check failed)' : 'yes') : 'no') : '-',
      r.violations.length ? 'VIOLATION' : 'ok',
    ]);
  }
  const width = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((c, i) => c.padEnd(width[i]!)).join('  ').trimEnd()).join('\n');
}

function summaryText(s: MatrixSummary, ms: number, jobsN: number): string {
  const out: string[] = [];
  out.push(`steps of the clean migration: ${Object.entries(s.steps).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  if (s.uncovered.length) {
    const labels = new Map<string, number>();
    for (const u of s.uncovered) {
      const k = `${u.side} ${u.label}`;
      labels.set(k, (labels.get(k) ?? 0) + 1);
    }
    out.push(`steps without a fitting fault switch in the model (not run): ${s.uncovered.length} (${[...labels].map(([k, n]) => `${k} x${n}`).join(', ')})`);
  }
  out.push(`cells: ${s.cells} (${s.migrated} migrated, ${s.failed} failed), violating: ${s.violating}, ${(ms / 1000).toFixed(1)} s on ${jobsN} worker(s)`);
  if (s.uncheckedStarts) {
    out.push(`note: in ${s.uncheckedStarts} migrated cell(s) the destination started although its own VF-state check did not pass (the check does not gate the start; RAM and the job ledger were judged instead)`);
  }
  out.push('per kind of step and fault:');
  for (const g of s.groups) {
    const codes = Object.entries(g.codes).map(([k, n]) => `${k} ${n}`).join(', ');
    const unchecked = g.uncheckedStarts ? `, ${g.uncheckedStarts} started unchecked` : '';
    out.push(`  ${g.side} ${g.kind} / ${g.fault}: ${g.cells} cells, ${g.migrated} migrated, ${g.failed} failed${codes ? ` [${codes}]` : ''}, ${g.jobsAfter} jobs after${unchecked}, ${g.violations} violating`);
  }
  return out.join('\n');
}

interface Opts {
  cell?: string[];
  kind?: string;
  side?: string;
  slice?: boolean;
  jobs: string;
  json?: string;
  ram: string;
  engine: string;
  table: boolean;
}

async function main(): Promise<void> {
  const program = new Command();
  program
    .name('faults')
    .description('Fault-injection matrix: one fault at every step of a live migration, outcome per cell')
    .option('--cell <id...>', 'run only these cells (side:kind:ordinal:fault, e.g. source:send:7:flip)')
    .option('--kind <kinds>', 'only steps of these kinds (comma-separated: mailbox,poll,writeback,call,send,recv)')
    .option('--side <side>', 'only steps of this side (source or dest)')
    .option('--slice', 'a fast slice: first, middle and last step of each kind and fault')
    .option('-j, --jobs <n>', 'worker processes', '2')
    .option('--json <file>', 'write steps, cells and summary as JSON to FILE')
    .option('--ram <mib>', 'guest RAM in MiB', '16')
    .option('--engine <engine>', 'zip, sec or hpre', 'zip')
    .option('--no-table', 'print only the summary and the violations');
  program.parse(process.argv);
  const o = program.opts<Opts>();
  const jobsN = Number(o.jobs);
  const ram = Number(o.ram);
  if (!Number.isInteger(jobsN) || jobsN < 1 || !Number.isInteger(ram) || ram < 4 || !['zip', 'sec', 'hpre'].includes(o.engine)) {
    console.error('--jobs must be a positive integer, --ram an integer >= 4, --engine zip, sec or hpre');
    process.exit(2);
  }
  const world: WorldOptions = { ramMiB: ram, engine: o.engine as WorldOptions['engine'] & string };
  const t0 = performance.now();
  const rec = await recordSteps(world);
  if (rec.outcome.violations.length) {
    console.error(`the clean recording run itself breaks the requirement: ${rec.outcome.violations.join('; ')}`);
    process.exit(1);
  }
  const steps = rec.steps;
  const byKey = new Map<string, Step>(steps.map((s) => [`${s.side}:${s.kind}:${s.ordinal}`, s]));
  let specs: CellSpec[];
  if (o.cell?.length) {
    specs = [];
    for (const id of o.cell.flatMap((c) => c.split(','))) {
      const c = parseCellId(id);
      if (!c || !byKey.has(`${c.side}:${c.kind}:${c.ordinal}`)) {
        console.error(`unknown cell ${id} (the clean run has no such step, or the fault is unknown)`);
        process.exit(2);
      }
      specs.push(c);
    }
  } else {
    specs = o.slice ? sliceCells(steps) : cellsFor(steps);
  }
  if (o.kind) {
    const kinds = o.kind.split(',');
    specs = specs.filter((c) => kinds.includes(c.kind));
  }
  if (o.side) specs = specs.filter((c) => c.side === o.side);
  const jobs: Job[] = specs.map((spec) => ({ spec, label: byKey.get(`${spec.side}:${spec.kind}:${spec.ordinal}`)!.label }));
  const results: CellResult[] = [];
  const progress = process.stderr.isTTY ? (n: number) => process.stderr.write(`\rcells ${n}/${jobs.length}`) : () => {};
  if (jobsN === 1 || jobs.length <= 1) {
    for (const j of jobs) {
      results.push(await runCell(j.spec, j.label, world));
      progress(results.length);
    }
  } else {
    await runWorkers(jobs, world, Math.min(jobsN, jobs.length), (r) => {
      results.push(r);
      progress(results.length);
    });
  }
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  // the order of the clean run, whatever order the workers finished in
  const order = new Map(jobs.map((j, i) => [cellId(j.spec), i]));
  results.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
  const ms = performance.now() - t0;
  const summary = summarize(steps, results);
  if (o.table) console.log(`${table(results)}\n`);
  console.log(summaryText(summary, ms, jobs.length <= 1 ? 1 : Math.min(jobsN, jobs.length)));
  const bad = results.filter((r) => r.violations.length > 0);
  for (const r of bad) {
    console.log(`\n[VIOLATION] ${r.id} at "${r.label}": ${outcomeText(r)}${r.outcome?.failure ? ` - ${r.outcome.failure}` : ''}`);
    for (const v of r.violations) console.log(`  - ${v}`);
    console.log(`  reproduce: ${reproCommand(r, world)}`);
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ world, steps, summary, cells: results }, null, 2));
  if (bad.length) {
    console.log(`\nFAILED: ${bad.length} cell(s) break the requirement`);
    process.exit(1);
  }
}

if (process.argv.includes('--worker')) void worker();
else void main();
