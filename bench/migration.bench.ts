/**
 * Live migration through the orchestrator (in-process link), beside a raw copy of the same
 * guest RAM measured in the same suite.
 *
 * Each migration case migrates a running guest back and forth between two hosts: every
 * iteration moves the guest to a fresh destination VM on the other host (the previous
 * source VM is shut down and a new VM shell is created on its host; that shell setup is part
 * of the iteration and is small next to the migration), then lets the guest run 1 ms of
 * simulated time with its workload busy so there is new dirty memory for the next move.
 * RAM hashing (verification work, which the tests do) is off here.
 *
 * What is touched: guest RAM is sparse, so the guest is given a working set of 1/16 of its
 * RAM (one 64 KiB block per MiB, written through vCPU 1 before the first migration: 4 MiB
 * of a 64 MiB guest, 64 MiB of 1 GiB, 256 MiB of 4 GiB), plus the guest driver's rings and
 * job buffers and the workload's 1024-page dirtying region. Pages never written are zero on
 * both sides and are not sent. The raw copy baseline copies exactly the pages with storage
 * behind them, 4 KiB at a time, into a fresh sparse memory.
 *
 * Simulated downtime / total time per case are printed after each suite, with the total set
 * against the link time of one plain copy of the guest's RAM (its pages with storage behind
 * them) at the same bandwidth: the simulated counterpart of the wall-clock baseline.
 *
 * Wall clock: every migration is preceded by a raw copy of the same guest RAM, timed on its
 * own, so each migration has its baseline measured next to it on the same pages (the copy is
 * kept alive until the migration ends, so its garbage is not collected on the migration's
 * clock). benny's ops/s for a migrate case therefore include that copy, the new VM shell and
 * 1 ms of guest run; the wall-clock table is the comparison. The
 * summaries give wall total and wall downtime beside it, and split them: the wall clock spent
 * simulating the guest while it runs during pre-copy (its jobs and the device processing
 * them, which a real guest and device do beside the migration), and the wall clock inside
 * the devices' migration ioctls during the downtime (vendor driver plus simulated hardware).
 * Process CPU time is given as well: on a shared machine it moves far less than wall clock.
 */
import type { BenchSuite } from './harness.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { KernelError } from '../src/uapi/errno.js';
import { assignExtraVfs, type ExtraVf, releaseExtraVfs, withDevices } from '../src/vmm/migration/extra-vfs.js';
import { migrateInProcess } from '../src/vmm/migration/in-process.js';
import { transferNs } from '../src/vmm/migration/options.js';
import type { SourceReport } from '../src/vmm/migration/report-types.js';
import type { MigrationEndpoint } from '../src/vmm/migration/types.js';
import { createDestination, createSource, type TestbedEndpoint, type TestbedOptions } from '../src/vmm/testbed.js';
import { Vm } from '../src/vmm/vm.js';
import type { Workload } from '../src/vmm/workload.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const PAGE = 4096;
const BUSY = { processNs: 40_000, irqNs: 1_000, mailboxNs: 2_000, wbNs: 5_000 };

interface Side {
  host: TestbedEndpoint['host'];
  bdf: string;
  vm: Vm;
  extra: ExtraVf[];
  ep: MigrationEndpoint;
}

interface BedOptions {
  ramBytes: number;
  dirtyPagesPerMs: number;
  /** VFs passed through to the VM (VF 1 busy, the others idle). */
  vfs: number;
  /** VFs enabled on each host (default max(2, vfs)). */
  enabled?: number;
  /** Guest job submissions per simulated ms (default 30; 0: an idle VF). */
  jobsPerMs?: number;
}

/** A guest that migrates back and forth between two hosts. */
class PingPong {
  cur: Side;
  next: Side;
  readonly w: Workload;
  readonly reports: SourceReport[] = [];
  /** Bytes with storage behind them in the guest's RAM at each migration. */
  readonly backed: number[] = [];
  /** Wall clock and process CPU time (ms) of the raw copy taken right before each migration. */
  readonly rawWallMs: number[] = [];
  readonly rawCpuMs: number[] = [];
  private readonly extraIdx: number[] = [];

  constructor(readonly opts: BedOptions) {
    const sched = new Scheduler();
    const tb: TestbedOptions = {
      ramBytes: opts.ramBytes,
      numVfs: Math.max(opts.enabled ?? 2, opts.vfs),
      latencies: BUSY,
      workload: { inFlight: 8, jobsPerMs: opts.jobsPerMs ?? 30, dirtyPagesPerMs: opts.dirtyPagesPerMs, dirtyRegionPages: 1024, jobBytes: 4096 },
      warmupJobs: 4,
    };
    const s = createSource(tb, sched);
    const d = createDestination(tb, sched, s.workload);
    this.w = s.workload!;
    for (let i = 2; i <= opts.vfs; i++) this.extraIdx.push(i);
    this.cur = this.side(s.host, s.bdf, s.vm);
    this.next = this.side(d.host, d.bdf, d.vm);
    // the working set: one 64 KiB block of non-zero bytes in every MiB
    const block = new Uint8Array(64 * 1024);
    for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 0xff;
    for (let off = 0; off < opts.ramBytes; off += MiB) s.vm.ramWrite(s.vm.ramBase + off + MiB / 2, block, 1);
    s.vm.run(1_000_000);
  }

  private side(host: Side['host'], bdf: string, vm: Vm): Side {
    const base: MigrationEndpoint = {
      scheduler: host.scheduler,
      vm,
      devices: [{ name: bdf, fd: vm.deviceFd, file: vm.device, io: vm.io }],
      containerFd: vm.containerFd,
      container: vm.container,
      process: host.process,
    };
    const extra = this.extraIdx.length ? assignExtraVfs(host, base, this.extraIdx) : [];
    return { host, bdf, vm, extra, ep: extra.length ? withDevices(base, extra) : base };
  }

  private queue: Promise<unknown> = Promise.resolve();

  /**
   * One migration. Calls are serialised: benny probes a case by calling it (once without
   * awaiting) before it times it, and two migrations of one guest cannot overlap.
   */
  step(): Promise<SourceReport> {
    const p = this.queue.then(() => this.migrateOnce());
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async migrateOnce(): Promise<SourceReport> {
    const w = performance.now();
    const c = cpuMs();
    // held until the migration is over, so collecting the copy is not charged to the migration
    const raw = this.rawCopyInto();
    this.rawWallMs.push(performance.now() - w);
    this.rawCpuMs.push(cpuMs() - c);
    this.backed.push(this.cur.vm.ram.backedBytes);
    const out = await migrateInProcess(this.cur.ep, this.next.ep, { hashRam: false, destination: { hashRam: false } });
    if (!out.source.ok) throw new Error(`migration failed: ${out.source.failure?.message}`);
    void raw.size;
    this.reports.push(out.source);
    const old = this.cur;
    this.cur = this.next;
    // the guest runs on at its new home; the old host gets a fresh shell for the way back
    this.cur.vm.run(1_000_000);
    releaseExtraVfs(old.ep, old.extra);
    old.vm.shutdown();
    const vm = new Vm(old.host, { bdf: old.bdf, ramBytes: this.opts.ramBytes, boot: false });
    vm.workload = this.w;
    this.next = this.side(old.host, old.bdf, vm);
    return out.source;
  }

  /** The current guest RAM copied page by page into a fresh memory (the baseline). */
  rawCopy(): number {
    return this.rawCopyInto().backedBytes / PAGE;
  }

  private rawCopyInto(): SparseMemory {
    const src = this.cur.vm.ram;
    const dst = new SparseMemory(src.size);
    const page = new Uint8Array(PAGE);
    src.forEachBackedPage((pfn) => {
      src.copyPage(pfn, page);
      dst.write(pfn * PAGE, page);
    });
    return dst;
  }

  /** Every job of the guest, across all its moves, completed exactly once and right. */
  finish(): void {
    try {
      this.w.drain();
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
      throw new Error(`jobs did not finish: ${e.message}`);
    }
    const v = this.w.verify();
    if (!v.ok) throw new Error(`workload verification failed: ${JSON.stringify(v)}`);
  }
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function fmt(ns: number): string {
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(3)} ms` : `${(ns / 1e3).toFixed(1)} us`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

const beds = new Map<string, PingPong>();

function bed(name: string, o: BedOptions): PingPong {
  let pp = beds.get(name);
  if (!pp) {
    pp = new PingPong(o);
    beds.set(name, pp);
  }
  return pp;
}

function range(xs: number[], digits = 1): string {
  if (!xs.length) return '-';
  const s = [...xs].sort((a, b) => a - b);
  return `${median(s).toFixed(digits)} (${s[0]!.toFixed(digits)}-${s[s.length - 1]!.toFixed(digits)})`;
}

/**
 * Wall clock beside the raw copy of the same RAM, per migration: median (min-max) over the
 * migrations of each bed. "VMM" columns leave out the guest simulated during pre-copy
 * (total) and the devices' own ioctl time (downtime).
 */
function wallSummary(title: string): void {
  const rows: string[] = [];
  for (const [name, pp] of beds) {
    const r = pp.reports;
    if (!r.length) continue;
    const ms = (us: number | undefined) => (us ?? 0) / 1000;
    const raw = pp.rawWallMs.slice(0, r.length);
    const rawCpu = pp.rawCpuMs.slice(0, r.length);
    const total = r.map((x) => ms(x.totalWallUs));
    const guest = r.map((x) => ms(x.guestWallUs));
    const vmm = r.map((x, i) => total[i]! - guest[i]!);
    const down = r.map((x) => ms(x.downtime!.sourceWallUs + x.downtime!.destinationWallUs));
    const devDown = r.map((x) => ms((x.downtime!.sourceDeviceWallUs ?? 0) + (x.downtime!.destinationDeviceWallUs ?? 0)));
    const downCpu = r.map((x) => ms((x.downtime!.sourceCpuUs ?? 0) + (x.destination?.switchoverCpuUs ?? 0)));
    rows.push(
      `| ${name} | ${r.length} | ${range(raw)} | ${range(total)} | ${range(total.map((t, i) => t / raw[i]!), 2)}x | ` +
        `${range(guest)} | ${range(vmm.map((t, i) => t / raw[i]!), 2)}x | ` +
        `${range(r.map((x, i) => ms(x.totalCpuUs) / rawCpu[i]!), 2)}x | ` +
        `${range(down, 2)} | ${range(devDown, 2)} | ${range(down.map((d, i) => d - devDown[i]!), 2)} | ${range(downCpu, 2)} | ` +
        `${(median(r.map((x) => x.cpuStateBytes)) / 1024).toFixed(1)} KiB |`,
    );
  }
  console.log(
    `\n${title} (wall clock; median (min-max) per migration)\n` +
      '| case | migrations | raw copy ms | total ms | total / raw | guest sim ms | total - guest sim / raw | CPU time / raw CPU | ' +
      'downtime ms | of which device ioctls ms | downtime - device ms | downtime CPU ms | CPU state |\n' +
      `|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n${rows.join('\n')}`,
  );
}

function summary(title: string): void {
  const rows: string[] = [];
  for (const [name, pp] of beds) {
    const r = pp.reports;
    if (!r.length) continue;
    rows.push(
      `| ${name} | ${r.length} | ${fmt(median(r.map((x) => x.downtime!.totalNs)))} | ` +
        `${(median(r.map((x) => x.downtime!.sourceWallUs + x.downtime!.destinationWallUs)) / 1000).toFixed(2)} ms | ` +
        `${fmt(median(r.map((x) => x.totalNs)))} | ${(median(r.map((x) => x.totalWallUs)) / 1000).toFixed(1)} ms | ` +
        `${median(r.map((x) => x.iterations.length))} | ${r[r.length - 1]!.converged} | ${(median(r.map((x) => x.ramBytesSent)) / MiB).toFixed(1)} MiB | ` +
        `${median(r.map((x, i) => x.totalNs / transferNs(pp.backed[i]!, x.bandwidthBytesPerSec))).toFixed(2)}x |`,
    );
  }
  console.log(
    `\n${title}\n| case | migrations | downtime (sim) | downtime (wall, src+dst) | total (sim) | total (wall) | passes | converged | RAM sent | total / link copy of RAM (sim) |\n` +
      `|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n${rows.join('\n')}`,
  );
}

function teardownAll(title: string): void {
  summary(title);
  wallSummary(title);
  for (const pp of beds.values()) pp.finish();
  beds.clear();
}

function sizeName(b: number): string {
  return b >= GiB ? `${b / GiB} GiB` : `${b / MiB} MiB`;
}

const SIZES = [64 * MiB, GiB, 4 * GiB];
const RATES = [0, 300, 600];
const VF_COUNTS = [1, 8, 63];

const sizeBed = (s: number) => bed(sizeName(s), { ramBytes: s, dirtyPagesPerMs: 300, vfs: 1 });
const rateBed = (r: number) => bed(`${r} pages/ms`, { ramBytes: GiB, dirtyPagesPerMs: r, vfs: 1 });
const idleBed = () => bed('idle guest', { ramBytes: GiB, dirtyPagesPerMs: 0, vfs: 1, jobsPerMs: 0 });
const wallIdle = () => bed('1 GiB, idle guest', { ramBytes: GiB, dirtyPagesPerMs: 0, vfs: 1, jobsPerMs: 0 });
const wallBusy = () => bed('1 GiB, busy guest', { ramBytes: GiB, dirtyPagesPerMs: 300, vfs: 1 });
const enabledBed = (n: number) => bed(`${n} VFs enabled`, { ramBytes: 64 * MiB, dirtyPagesPerMs: 300, vfs: 1, enabled: n });
const assignedBed = (n: number) => bed(`${n} VFs assigned`, { ramBytes: 64 * MiB, dirtyPagesPerMs: 300, vfs: n });

export const suites: BenchSuite[] = [
  {
    // issue 5 item 8: wall-clock downtime and total beside a raw copy of the same RAM
    suite: 'migration: wall clock vs raw copy (1 GiB guest, idle and busy)',
    quick: true,
    setup() {
      wallIdle();
      wallBusy();
    },
    teardown() {
      teardownAll('1 GiB guest, idle (no jobs, no dirtying) and busy (30 jobs/ms on the VF, 300 pages/ms dirtied)');
    },
    cases: [
      { name: 'raw copy 1 GiB (idle guest)', fn: () => void wallIdle().rawCopy() },
      {
        name: 'migrate 1 GiB, idle guest',
        baseline: 'raw copy 1 GiB (idle guest)',
        fn: async () => {
          await wallIdle().step();
        },
      },
      { name: 'raw copy 1 GiB (busy guest)', fn: () => void wallBusy().rawCopy() },
      {
        name: 'migrate 1 GiB, busy guest',
        baseline: 'raw copy 1 GiB (busy guest)',
        fn: async () => {
          await wallBusy().step();
        },
      },
    ],
  },
  {
    suite: 'migration: RAM size (busy VF, 300 pages/ms dirtied)',
    quick: true,
    setup() {
      for (const s of SIZES) sizeBed(s);
    },
    teardown() {
      teardownAll('migration vs RAM size');
    },
    cases: SIZES.flatMap((s) => [
      { name: `raw copy ${sizeName(s)}`, fn: () => void sizeBed(s).rawCopy() },
      {
        name: `migrate ${sizeName(s)}`,
        baseline: `raw copy ${sizeName(s)}`,
        fn: async () => {
          await sizeBed(s).step();
        },
      },
    ]),
  },
  {
    suite: 'migration: dirty rate (1 GiB guest)',
    setup() {
      idleBed();
      for (const r of RATES) rateBed(r);
    },
    teardown() {
      teardownAll('migration vs dirty rate (the link moves about 763 pages per ms at 25 Gbit/s)');
    },
    cases: [
      { name: 'raw copy 1 GiB', fn: () => void rateBed(0).rawCopy() },
      {
        // what the orchestrator itself costs: no guest work during the migration
        name: 'migrate, idle guest (no jobs, no dirtying)',
        baseline: 'raw copy 1 GiB',
        fn: async () => {
          await idleBed().step();
        },
      },
      ...RATES.map((r) => ({
        name: `migrate, ${r} pages/ms dirtied`,
        baseline: 'raw copy 1 GiB',
        fn: async () => {
          await rateBed(r).step();
        },
      })),
    ],
  },
  {
    suite: 'migration: VFs on the host (64 MiB guest, one VF assigned)',
    setup() {
      for (const n of VF_COUNTS) enabledBed(n);
    },
    teardown() {
      teardownAll('migration vs VFs enabled on each host (sriov_numvfs; the VM has VF 1)');
    },
    cases: VF_COUNTS.map((n) => ({
      name: `migrate, ${n} VF${n > 1 ? 's' : ''} enabled`,
      ...(n > 1 ? { baseline: 'migrate, 1 VF enabled' } : {}),
      fn: async () => {
        await enabledBed(n).step();
      },
    })),
  },
  {
    suite: 'migration: VFs passed through to one VM (64 MiB guest)',
    setup() {
      for (const n of VF_COUNTS) assignedBed(n);
    },
    teardown() {
      teardownAll(
        'migration vs VFs assigned to one VM (VF 1 busy; the others run no guest driver, so each stop waits out ' +
          "the driver's 1 ms QM_VF_STATE poll and sends 40 bytes of match data: hisi-acc-vfio-pci.md section 4)",
      );
    },
    cases: VF_COUNTS.map((n) => ({
      name: `migrate with ${n} VF${n > 1 ? 's' : ''} assigned`,
      ...(n > 1 ? { baseline: 'migrate with 1 VF assigned' } : {}),
      fn: async () => {
        await assignedBed(n).step();
      },
    })),
  },
];
