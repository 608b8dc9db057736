/**
 * `hisi-acc-sim listen --port N [--host 127.0.0.1] | --path SOCKET [--json] [scenario options]`:
 * the destination process of a cross-process live migration. It builds a host with the
 * accelerator, a VF bound to hisi-acc-vfio-pci and a VM shell waiting for a guest, listens,
 * takes one incoming migration (`hisi-acc-sim migrate --to ...`), and when the guest has
 * started here lets it run, drains its jobs and checks the ledger that came with it.
 *
 * Output: first the address it listens on (with --json: {"listening":{"host","port"}} or
 * {"listening":{"path"}} on one line, so a caller can pass --port 0 and read the port), then
 * the result (--json: one {"result":{...}} line). Exit code 0 only when the guest started
 * here and every job completed exactly once with the right output.
 */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { Scheduler } from '../sim/scheduler.js';
import { listen } from '../vmm/transport/socket.js';
import { runDestination } from '../vmm/migration/destination.js';
import { destinationLines, jobLine } from '../vmm/migration/print.js';
import { buildDestination, finishGuest, jobVerdict } from '../vmm/migration/scenario.js';
import { UsageError, addScenarioOptions, scenarioFrom, type DemoOptions } from './demo.js';

export interface ListenOptions extends DemoOptions {
  port?: string | number;
  host?: string;
  path?: string;
  /** How long to wait for the migration to arrive, and idle timeout of the connection, in ms (default 30000). */
  timeoutMs?: string | number;
}

export interface CliStreams {
  stdout: Writable;
  stderr: Writable;
}

export async function runListen(opts: ListenOptions, streams: CliStreams): Promise<number> {
  try {
    const scenario = scenarioFrom(opts);
    if (opts.path === undefined && opts.port === undefined) throw new UsageError('--port N or --path SOCKET is required');
    const port = opts.port === undefined ? 0 : Number(opts.port);
    if (opts.path === undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new UsageError(`--port must be 0..65535 (got ${String(opts.port)})`);
    const timeout = opts.timeoutMs === undefined ? 30_000 : Number(opts.timeoutMs);
    const dest = buildDestination(scenario, new Scheduler());
    const ep = opts.path !== undefined ? { path: opts.path } : { host: opts.host ?? '127.0.0.1', port };
    const listener = await listen(ep, { idleTimeoutMs: timeout });
    const a = listener.address;
    if (opts.json) streams.stdout.write(JSON.stringify({ listening: a }) + '\n');
    else streams.stdout.write(`listening on ${'path' in a ? `unix:${a.path}` : `${a.host}:${a.port}`} (destination ${dest.bdf}, ${scenario.engine}-${scenario.hw}, ${scenario.protocol})\n`);
    // one migration per process: stop accepting at once (the server's close callback only
    // fires once this connection has ended too, so it is not awaited here)
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new UsageError(`no migration arrived within ${timeout} ms`)), timeout);
    });
    const link = await Promise.race([listener.accept(), waited]).finally(() => {
      clearTimeout(timer);
      void listener.close();
    });
    const report = await runDestination(dest, link);
    let jobs = null;
    let drainError: string | null = null;
    if (report.ok && dest.vm.workload) {
      drainError = finishGuest(dest, dest.vm.workload, scenario.afterNs);
      jobs = jobVerdict(dest.vm.workload);
    }
    const jobsOk = jobs !== null && jobs.lost === 0 && jobs.duplicated === 0 && jobs.wrong === 0 && jobs.inFlight === 0 && jobs.interruptsOk !== false;
    const ok = report.ok && report.started && (jobs === null || jobsOk) && drainError === null;
    if (opts.json) {
      streams.stdout.write(JSON.stringify({
        result: {
          ok,
          started: report.started,
          failure: report.failure ?? null,
          teardown: report.teardown,
          ram_hash: report.ramHash,
          stream_bytes: report.streamBytes,
          ram_pages: report.ramPages,
          device_bytes: report.deviceBytes,
          switchover_us: report.switchoverNs / 1000,
          switchover_wall_us: report.switchoverWallUs,
          vf_checks: report.devices.map((d) => d.check),
          jobs_submitted: jobs?.submitted ?? 0,
          jobs_completed: jobs?.completed ?? 0,
          jobs_lost: jobs?.lost ?? 0,
          jobs_duplicated: jobs?.duplicated ?? 0,
          jobs_wrong: jobs?.wrong ?? 0,
          interrupts_consistent: jobs?.interruptsOk ?? null,
          drain_error: drainError,
        },
      }) + '\n');
    } else {
      streams.stdout.write(destinationLines(report).join('\n') + '\n');
      for (const d of report.devices) if (d.check) streams.stdout.write(`  VF ${d.name} ${d.check.ok ? 'state matches' : 'state DIFFERS'}: ${d.check.note}\n`);
      if (jobs) streams.stdout.write(`  jobs       ${jobLine(jobs)}\n`);
      if (drainError) streams.stdout.write(`  problem    ${drainError}\n`);
      streams.stdout.write(`  result     ${ok ? 'the guest runs here; every job verified' : 'NOT migrated'}\n`);
    }
    return ok ? 0 : 1;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    streams.stderr.write(`listen: ${msg}\n`);
    return 2;
  }
}

export function registerListenCommand(program: Command): void {
  addScenarioOptions(program.command('listen').description('destination of a cross-process live migration: wait for one guest and run it'))
    .option('--port <n>', 'TCP port (0: any free port, printed)')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--path <socket>', 'UNIX socket path instead of TCP')
    .option('--timeout-ms <ms>', 'give up when no migration arrives, or the connection is silent, this long', '30000')
    .option('--json', 'print JSON lines')
    .action(async (opts: ListenOptions) => {
      process.exitCode = await runListen(opts, { stdout: process.stdout, stderr: process.stderr });
    });
}
