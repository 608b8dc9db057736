/**
 * Human and JSON renderings of migration results for the CLI (`demo`, `migrate`, `listen`).
 */
import { describeFailure } from './errors.js';
import type { DestinationReport, SourceReport } from './report-types.js';
import type { DemoResult } from './scenario.js';
import { fmtNs } from './timeline.js';
import type { JobVerdict, Verification } from './verify.js';

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(2)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

function fmtUs(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(0)} us`;
}

function gbit(bps: number): string {
  return `${((bps * 8) / 1e9).toFixed(1)} Gbit/s`;
}

/** The source side's story, one line per step. */
export function sourceLines(r: SourceReport): string[] {
  const L: string[] = [];
  L.push(`  link ${gbit(r.bandwidthBytesPerSec)}, downtime limit ${fmtNs(r.downtimeLimitNs)}, guest RAM ${fmtBytes(r.ramBytes)}`);
  if (r.protocol) L.push(`  setup      migration uAPI ${r.protocol}${r.precopy ? ' with PRE_COPY' : ''}; dirty tracking ${r.dirtyMode}: ${r.dirtyNote}`);
  for (const it of r.iterations) {
    L.push(
      `  pre-copy #${String(it.index).padEnd(3)} ${String(it.pages).padStart(7)} pages ${fmtBytes(it.bytes).padStart(10)} ` +
        `in ${fmtNs(it.endNs - it.startNs).padStart(9)} -> ${it.dirtyAfter} dirty (${it.deviceDirtyAfter} from device DMA)` +
        (it.deviceBytes ? `, device ${it.deviceBytes} B` : ''),
    );
  }
  if (r.iterations.length) {
    L.push(r.converged
      ? `  converged after ${r.iterations.length} pass(es): the dirty set fits the downtime limit`
      : `  did not converge in ${r.iterations.length} pass(es) (limit reached): stopping anyway`);
  }
  if (r.final) {
    const f = r.final;
    L.push(`  stop-copy  final ${f.pages} pages (${f.ringEntries} ring entries, ${f.devicePages} device-dirty, ${f.backupPages} from the backup bitmap) ${fmtBytes(f.bytes)}; device state ${f.deviceBytes} B; CPU state ${fmtBytes(r.cpuStateBytes)}; config ${r.configBytes} B`);
  }
  if (r.ok && r.handover === 'unconfirmed') {
    L.push(`  handover   UNCONFIRMED: ${r.handoverNote ?? 'no result from the destination'}`);
  }
  if (r.ok && r.downtime) {
    const d = r.downtime;
    L.push(r.handover === 'unconfirmed'
      ? `  downtime   at least ${fmtNs(d.totalNs)} (source ${fmtNs(d.sourceNs)} + link ${fmtNs(d.transferNs)} + destination unknown); wall: source ${fmtUs(d.sourceWallUs)}`
      : `  downtime   ${fmtNs(d.totalNs)} (source ${fmtNs(d.sourceNs)} + link ${fmtNs(d.transferNs)} + destination ${fmtNs(d.destinationNs)}); wall: source ${fmtUs(d.sourceWallUs)}, destination ${fmtUs(d.destinationWallUs)}`);
    L.push(`  total      ${fmtNs(r.totalNs)} simulated (${fmtUs(r.totalWallUs)} wall, ${fmtUs(r.guestWallUs ?? 0)} of it simulating the running guest); RAM sent ${r.ramPagesSent} pages, ${fmtBytes(r.ramBytesSent)}; device ${r.deviceBytes} B; stream ${fmtBytes(r.streamBytes)}`);
  }
  if (!r.ok && r.failure) {
    L.push(`  FAILED     ${describeFailure(r.failure)}`);
    for (const x of r.recovery) L.push(`  recovery   ${x}`);
    L.push(`  the guest runs on: ${r.guestRunsOn}`);
  }
  const wall = r.phases.filter((p) => p.wallUs > 0).map((p) => `${p.name} ${fmtUs(p.wallUs)}`);
  if (wall.length) L.push(`  wall clock ${wall.join(', ')}`);
  return L;
}

export function destinationLines(d: DestinationReport): string[] {
  const L: string[] = [];
  if (d.ok) {
    L.push(`  destination received ${fmtBytes(d.streamBytes)} in ${d.sections} sections: ${d.ramPages} pages (${d.zeroPages} zero), device ${d.deviceBytes} B; switchover ${fmtNs(d.switchoverNs)} simulated, ${fmtUs(d.switchoverWallUs)} wall`);
  } else if (d.failure) {
    L.push(`  destination FAILED ${describeFailure(d.failure)}`);
    for (const t of d.teardown) L.push(`  teardown   ${t}`);
  }
  return L;
}

export function jobLine(j: JobVerdict): string {
  return `${j.submitted} jobs submitted, ${j.completed} completed exactly once, ${j.lost} lost, ${j.duplicated} duplicated, ${j.wrong} wrong; interrupts ${j.interruptsOk ? 'consistent' : 'INCONSISTENT'} (${j.interruptNote})`;
}

export function verificationLines(v: Verification): string[] {
  const L: string[] = [];
  L.push(`  RAM        ${v.ram.ok ? `identical (sha256 ${v.ram.sourceHash!.slice(0, 16)}...)` : 'NOT verified'}${v.ram.lateWrites ? `, ${v.ram.lateWrites} late writes` : ''}`);
  for (const d of v.devices) L.push(`  VF ${d.name} ${d.ok ? 'state matches' : 'state DIFFERS'} (${d.source}): ${d.note}`);
  if (v.jobs) L.push(`  jobs       ${jobLine(v.jobs)}`);
  for (const p of v.problems) L.push(`  problem    ${p}`);
  L.push(`  result     ${v.ok ? 'VERIFIED' : 'NOT VERIFIED'}`);
  return L;
}

export function demoText(r: DemoResult): string {
  const o = r.options;
  const L: string[] = [];
  L.push(`hisi-acc-sim demo: live migration of a guest using a ${o.engine}-${o.hw} VF (${o.vfs} VF${o.vfs > 1 ? 's' : ''}, ${o.protocol} uAPI, ${o.dirty}, ${o.intensity} load)`);
  L.push(`  source ${r.sourceBdf} -> destination ${r.destinationBdf}, both bound to hisi-acc-vfio-pci`);
  L.push(`  warm-up    ${fmtNs(o.warmupNs)}: ${r.jobsBefore} jobs done before the migration`);
  L.push(...sourceLines(r.source));
  if (r.source.final) L.push(`  in flight  ${r.jobsInFlightAtStop} job(s) in flight when the vCPUs stopped`);
  L.push(...destinationLines(r.destination));
  L.push('verification');
  L.push(...verificationLines(r.verification));
  return L.join('\n') + '\n';
}

/** The one-object JSON of `demo --json`. */
export function demoJson(r: DemoResult): Record<string, unknown> {
  const s = r.source;
  const j = r.verification.jobs;
  return {
    verified: r.verification.ok,
    migrated: s.ok,
    handover: s.handover,
    downtime_us: s.downtime && s.ok ? s.downtime.totalNs / 1000 : null,
    downtime_wall_us: s.downtime && s.ok
      ? {
        source: s.downtime.sourceWallUs,
        destination: s.downtime.destinationWallUs,
        device_ioctls: (s.downtime.sourceDeviceWallUs ?? 0) + (s.downtime.destinationDeviceWallUs ?? 0),
      }
      : null,
    total_ms: s.totalNs / 1e6,
    total_wall_ms: s.totalWallUs / 1000,
    guest_sim_wall_ms: (s.guestWallUs ?? 0) / 1000,
    precopy_iterations: s.iterations.length,
    converged: s.converged,
    ram_bytes: s.ramBytesSent,
    ram_pages: s.ramPagesSent,
    guest_ram_bytes: s.ramBytes,
    device_bytes: s.deviceBytes,
    stream_bytes: s.streamBytes,
    jobs_submitted: j?.submitted ?? 0,
    jobs_completed: j?.completed ?? 0,
    jobs_lost: j?.lost ?? 0,
    jobs_duplicated: j?.duplicated ?? 0,
    jobs_wrong: j?.wrong ?? 0,
    jobs_in_flight_at_stop: r.jobsInFlightAtStop,
    interrupts_consistent: j?.interruptsOk ?? null,
    ram_identical: r.verification.ram.ok,
    vf_state_ok: r.verification.devices.length > 0 && r.verification.devices.every((d) => d.ok),
    protocol: s.protocol,
    dirty_tracking: s.dirtyMode,
    engine: r.options.engine,
    hw: r.options.hw,
    vfs: r.options.vfs,
    failure: s.failure ?? r.destination.failure ?? null,
    recovery: s.recovery,
    problems: r.verification.problems,
    iterations: s.iterations.map((it) => ({ index: it.index, pages: it.pages, bytes: it.bytes, dirty_after: it.dirtyAfter, sim_ns: it.endNs - it.startNs })),
    final_pass: s.final,
    downtime: s.downtime,
    phases: [...s.phases, ...r.destination.phases],
  };
}
