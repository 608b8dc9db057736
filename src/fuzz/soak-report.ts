/**
 * The soak's figures: totals, downtime distributions (simulated and wall), pre-copy passes,
 * and the migrations that found something, each with the command that replays it.
 */
import { type Distribution, distribution, type HistogramBucket, histogramText, logHistogram, tally } from './soak-stats.js';
import type { MigrationRecord, SoakResult, SoakTotals } from './soak.js';

export interface SoakSummary {
  options: SoakResult['options'];
  ok: boolean;
  totals: SoakTotals;
  /** Simulated downtime of the successful migrations, ns. */
  downtimeNs: Distribution;
  downtimeHistogram: HistogramBucket[];
  /** Wall clock of the stopped phases (source stop-copy + destination switchover), us. */
  downtimeWallUs: Distribution;
  /** Wall clock of each whole migration, ms. */
  migrationWallMs: Distribution;
  /** Pre-copy passes per migration: value -> count. */
  iterations: { value: number; count: number }[];
  converged: number;
  /**
   * Converged migrations whose downtime still exceeded the limit: the convergence test counts
   * only the dirty RAM and the device's pending bytes at the link's bandwidth, not the stop,
   * CPU and config state or the destination's switchover (as QEMU's estimate).
   */
  convergedOverLimit: number;
  /** Simulated downtime of converged and of non-converged migrations, ns. */
  downtimeConvergedNs: Distribution;
  downtimeNotConvergedNs: Distribution;
  withPrecopy: number;
  dirtyModes: Record<string, number>;
  streamBytes: number;
  wallMs: number;
  findings: { index: number; problems: string[]; reproduce: string }[];
}

/** The command that replays a soak up to and including migration `index`. */
export function soakReproCommand(o: SoakResult['options'], index: number): string {
  const extra: string[] = [];
  if (o.engine !== 'zip') extra.push(`--engine ${o.engine}`);
  if (o.hw !== 'v3') extra.push(`--hw ${o.hw}`);
  if (o.protocol !== 'v2') extra.push(`--protocol ${o.protocol}`);
  if (o.ramBytes !== 32 * 2 ** 20) extra.push(`--ram-mib ${o.ramBytes / 2 ** 20}`);
  if (o.dirtyRegionPages !== 512) extra.push(`--region-pages ${o.dirtyRegionPages}`);
  if (o.drainEvery !== 10) extra.push(`--drain-every ${o.drainEvery}`);
  return `npm run soak -- --seed ${o.seed} --migrations ${index + 1}${extra.length ? ' ' + extra.join(' ') : ''}`;
}

export function summarize(r: SoakResult): SoakSummary {
  const ok = r.records.filter((m) => m.ok);
  const modes: Record<string, number> = {};
  for (const m of r.records) modes[m.dirtyMode ?? 'none'] = (modes[m.dirtyMode ?? 'none'] ?? 0) + 1;
  const dts = ok.map((m) => m.downtimeNs);
  return {
    options: r.options,
    ok: r.ok,
    totals: r.totals,
    downtimeNs: distribution(dts),
    downtimeHistogram: logHistogram(dts),
    downtimeWallUs: distribution(ok.map((m) => m.downtimeWallUs)),
    migrationWallMs: distribution(r.records.map((m) => m.wallUs / 1000)),
    iterations: tally(r.records.map((m) => m.iterations)),
    converged: r.records.filter((m) => m.converged).length,
    convergedOverLimit: ok.filter((m) => m.converged && m.downtimeNs > m.plan.downtimeLimitNs).length,
    downtimeConvergedNs: distribution(ok.filter((m) => m.converged).map((m) => m.downtimeNs)),
    downtimeNotConvergedNs: distribution(ok.filter((m) => !m.converged).map((m) => m.downtimeNs)),
    withPrecopy: r.records.filter((m) => m.precopy).length,
    dirtyModes: modes,
    streamBytes: r.records.reduce((a, m) => a + m.streamBytes, 0),
    wallMs: r.wallMs,
    findings: r.records.filter((m: MigrationRecord) => m.problems.length > 0)
      .map((m) => ({ index: m.index, problems: m.problems, reproduce: soakReproCommand(r.options, m.index) })),
  };
}

function us(ns: number): string {
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : `${(ns / 1e3).toFixed(0)} us`;
}

function dist(d: Distribution, f: (v: number) => string): string {
  return `min ${f(d.min)}, p50 ${f(d.p50)}, p90 ${f(d.p90)}, p99 ${f(d.p99)}, max ${f(d.max)} (mean ${f(d.mean)})`;
}

export function summaryText(s: SoakSummary): string {
  const t = s.totals;
  const o = s.options;
  const L: string[] = [];
  L.push(`soak: ${t.migrations} ping-pong live migrations A <-> B, ${o.engine}-${o.hw}, uAPI ${o.protocol}, guest RAM ${o.ramBytes / 2 ** 20} MiB, seed ${o.seed}`);
  L.push(`  migrations   ${t.succeeded} succeeded, ${t.failed} failed, ${t.verified} verified; ${s.withPrecopy} with device PRE_COPY; ` +
    `dirty tracking ${Object.entries(s.dirtyModes).map(([k, n]) => `${k} ${n}`).join(', ')}; ${s.converged} converged`);
  L.push(`  jobs         ${t.jobsSubmitted} submitted, ${t.jobsCompleted} completed exactly once with the right output; ` +
    `lost ${t.lostJobs}, duplicated ${t.duplicatedJobs}, wrong ${t.wrongJobs}, failed ${t.failedJobs}; ` +
    `${t.jobsInFlightAtStops} in flight across the stops; ${t.drains} drains`);
  L.push(`  RAM          ${t.ramMismatches} hash mismatches, ${t.lateWrites} late writes`);
  L.push(`  device state ${t.deviceStateMismatches} mismatches; guest kernel errors ${t.guestErrors}`);
  L.push(`  downtime     simulated: ${dist(s.downtimeNs, us)}`);
  L.push(`               converged (${s.downtimeConvergedNs.count}): ${dist(s.downtimeConvergedNs, us)}; ${s.convergedOverLimit} above their downtime limit`);
  L.push(`               not converged (${s.downtimeNotConvergedNs.count}): ${dist(s.downtimeNotConvergedNs, us)}`);
  L.push(`               wall:      ${dist(s.downtimeWallUs, (v) => (v >= 1000 ? `${(v / 1000).toFixed(1)} ms` : `${v.toFixed(0)} us`))}`);
  L.push('  simulated downtime histogram:');
  for (const line of histogramText(s.downtimeHistogram, us)) L.push(`    ${line}`);
  L.push(`  pre-copy passes: ${s.iterations.map((x) => `${x.value}: ${x.count}`).join(', ')}`);
  L.push(`  per migration wall: ${dist(s.migrationWallMs, (v) => `${v.toFixed(0)} ms`)}`);
  L.push(`  stream ${(s.streamBytes / 2 ** 30).toFixed(2)} GiB in total; wall ${(s.wallMs / 1000).toFixed(1)} s`);
  if (s.findings.length === 0) L.push('  findings: none');
  else {
    L.push(`  findings: ${s.findings.length} migration(s)`);
    for (const f of s.findings.slice(0, 20)) {
      L.push(`    #${f.index}: ${f.problems.join('; ')}`);
      L.push(`      reproduce: ${f.reproduce}`);
    }
  }
  L.push(s.ok ? 'soak: OK' : 'soak: FAILED');
  return L.join('\n') + '\n';
}
