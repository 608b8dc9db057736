/**
 * `hisi-acc-sim migrate --to HOST:PORT | --to unix:/path [--json] [scenario options]`: the
 * source process of a cross-process live migration. It builds a host whose VM runs the
 * workload on a VF bound to hisi-acc-vfio-pci, warms up, connects to a `hisi-acc-sim listen`
 * destination and live-migrates the guest there.
 *
 * On success the guest runs in the destination process (which verifies the jobs); this side
 * checks guest RAM (its hash at the final collection against the destination's after load)
 * and the VF state the destination reports. On failure the guest keeps running here: it runs
 * on, its jobs are drained and checked, and the failure is reported. Exit code 0 only for a
 * verified migration.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Scheduler } from '../sim/scheduler.js';
import { connect, type Endpoint } from '../vmm/transport/socket.js';
import { runSource } from '../vmm/migration/source.js';
import { sourceLines, verificationLines } from '../vmm/migration/print.js';
import { buildSource, finishGuest, jobVerdict, migrationOptions } from '../vmm/migration/scenario.js';
import { timelineSvg } from '../vmm/migration/timeline.js';
import { verifyMigration } from '../vmm/migration/verify.js';
import { UsageError, addScenarioOptions, scenarioFrom, type DemoOptions } from './demo.js';
import type { CliStreams } from './listen.js';

export interface MigrateOptions extends DemoOptions {
  to?: string;
  timeoutMs?: string | number;
}

/** "HOST:PORT", "PORT", "unix:/path" or "/path". */
export function parseTarget(to: string): Endpoint {
  if (to.startsWith('unix:')) return { path: to.slice(5) };
  if (to.startsWith('/')) return { path: to };
  const m = /^(?:\[?([^\]]*?)\]?:)?(\d{1,5})$/.exec(to);
  if (!m) throw new UsageError(`--to must be HOST:PORT or unix:/path (got ${to})`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new UsageError(`port ${port} out of range`);
  return { host: m[1] || '127.0.0.1', port };
}

export async function runMigrate(opts: MigrateOptions, streams: CliStreams): Promise<number> {
  try {
    const scenario = scenarioFrom(opts);
    if (!opts.to) throw new UsageError('--to HOST:PORT (or unix:/path) is required');
    const target = parseTarget(opts.to);
    const timeout = opts.timeoutMs === undefined ? 30_000 : Number(opts.timeoutMs);
    const source = buildSource(scenario, new Scheduler());
    const w = source.workload;
    source.vm.run(scenario.warmupNs);
    let inFlight = 0;
    const link = await connect(target, { idleTimeoutMs: timeout });
    const report = await runSource(source, link, {
      ...migrationOptions(scenario),
      onVcpusStopped: () => {
        inFlight = w?.inFlight ?? 0;
      },
    });
    // after a failure the guest is still here: it keeps running and its jobs are checked here
    let jobs = null;
    let drainError: string | null = null;
    if (!report.ok && w) {
      drainError = finishGuest(source, w, scenario.afterNs);
      jobs = jobVerdict(w);
    }
    const v = verifyMigration(report, jobs);
    if (drainError) v.problems.push(drainError);
    v.ok = v.problems.length === 0;
    if (opts.timeline) writeFileSync(opts.timeline, timelineSvg(report, `hisi-acc-sim migrate to ${opts.to}`));
    if (opts.json) {
      streams.stdout.write(JSON.stringify({
        verified: v.ok,
        migrated: report.ok,
        guest_runs_on: report.guestRunsOn,
        handover: report.handover,
        handover_note: report.handoverNote ?? null,
        downtime_us: report.ok && report.downtime ? report.downtime.totalNs / 1000 : null,
        total_ms: report.totalNs / 1e6,
        precopy_iterations: report.iterations.length,
        converged: report.converged,
        ram_bytes: report.ramBytesSent,
        device_bytes: report.deviceBytes,
        stream_bytes: report.streamBytes,
        jobs_in_flight_at_stop: inFlight,
        ram_identical: v.ram.ok,
        source_ram_hash: report.ramHash,
        destination_ram_hash: report.destination?.ramHash ?? null,
        vf_state_ok: v.devices.length > 0 && v.devices.every((d) => d.ok),
        jobs_completed: jobs?.completed ?? null,
        jobs_lost: jobs?.lost ?? null,
        failure: report.failure ?? null,
        recovery: report.recovery,
        problems: v.problems,
        downtime: report.downtime,
      }) + '\n');
    } else {
      streams.stdout.write(`hisi-acc-sim migrate: ${source.bdf} (${scenario.engine}-${scenario.hw}, ${scenario.protocol}) -> ${opts.to}\n`);
      streams.stdout.write(sourceLines(report).join('\n') + '\n');
      if (report.ok) streams.stdout.write(`  in flight  ${inFlight} job(s) in flight when the vCPUs stopped (the destination verifies them)\n`);
      streams.stdout.write(verificationLines(v).join('\n') + '\n');
    }
    return v.ok && report.ok ? 0 : 1;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    streams.stderr.write(`migrate: ${msg}\n`);
    return 2;
  }
}

export function registerMigrateCommand(program: Command): void {
  addScenarioOptions(program.command('migrate').description('source of a cross-process live migration: send the running guest to a listen process'))
    .requiredOption('--to <target>', 'HOST:PORT or unix:/path of a `hisi-acc-sim listen`')
    .option('--timeout-ms <ms>', 'give up on a silent connection after this long', '30000')
    .option('--timeline <file>', 'write an SVG picture of the migration timeline')
    .option('--json', 'print one JSON object')
    .action(async (opts: MigrateOptions) => {
      process.exitCode = await runMigrate(opts, { stdout: process.stdout, stderr: process.stderr });
    });
}
