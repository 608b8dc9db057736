/**
 * The source VMM's side of a live migration, in QEMU's order (vfio-uapi-and-migration.md
 * section 6; iommu-notifiers-and-dirty-ring.md section 2):
 *
 *  setup      probe every device (v2 MIGRATION with STOP_COPY, or the v1 region) and the
 *             dirty tracking (DMA logging on every device, else type1 DIRTY_PAGES); start
 *             tracking; header and one DEV_SETUP_STATE section per device; RUNNING -> PRE_COPY
 *  pre-copy   pass 0 sends every page with storage, later passes the dirty set; device
 *             pre-copy data while PRECOPY_INFO reports some (ENOMSG = none now); the guest
 *             runs for the link time of every section; after each pass: ring harvest +
 *             reset, device report. Stop when the dirty set fits the downtime limit at the
 *             link's bandwidth, or after maxIterations
 *  stop       vCPUs stop; devices -> STOP_COPY (through STOP, as the core's FSM walks it)
 *  stop-copy  final ring harvest, device report, the WITH_BITMAP backup last; final pages;
 *             each device's data fd drained until read() returns 0; DEV_CONFIG_STATE; the
 *             CPU state; END
 *  switchover end the stream and wait until the destination's reader has taken all of it
 *             (the transport's end acknowledgement, transport/base.ts); then wait for the
 *             destination's result on the return path; on success STOP_COPY -> STOP, DMA
 *             logging off, data fds closed
 *
 * Any failure before the destination took the whole stream, on either side: the devices go
 * back to RUNNING (or VFIO_DEVICE_RESET + RUNNING), tracking stops, the vCPUs resume and the
 * guest carries on here. Once the destination took the whole stream, the guest is the
 * destination's to start, and the source takes it back only on the destination's explicit
 * failure result [inference: section 6 of vfio-uapi-and-migration.md says the source VM
 * keeps running after a failed migration; it does not say who decides after the stream was
 * delivered. We follow QEMU's precopy, where a completed source stays stopped]. A return path lost after that point cannot prove the destination
 * did not start the guest, so the source stays stopped and reports the handover as
 * 'unconfirmed' (the guest belongs to the destination): resuming here could run the guest on
 * both hosts. The price is the one case no two-party protocol escapes: a destination that fails
 * after taking the stream and whose failure result is lost leaves the guest stopped on both
 * hosts, for the management layer to restart. The result says what happened; nothing is thrown.
 */
import { performance } from 'node:perf_hooks';
import { PAGE_SIZE } from '../../mem/sparse-memory.js';
import { Errno, errnoName } from '../../uapi/errno.js';
import { PCI_DEVICE_ID_HUAWEI_HPRE_VF, PCI_DEVICE_ID_HUAWEI_SEC_VF, PCI_DEVICE_ID_HUAWEI_ZIP_VF } from '../../drivers/hisi-acc/regs.js';
import { STREAM_F_PRECOPY } from '../stream/format.js';
import type { SourceDescription } from '../stream/format.js';
import { StreamWriter } from '../stream/writer.js';
import type { Transport } from '../transport/types.js';
import { type DeviceSaver, openSaver } from './device-channel.js';
import { pciIdentity } from './device-uapi.js';
import { DirtyTracker } from './dirty-tracker.js';
import { MigrationError, type MigrationFailure, type MigrationStep, toFailure } from './errors.js';
import { type MigrationOptions, type ResolvedMigrationOptions, resolveMigrationOptions, transferNs } from './options.js';
import { RamSender } from './ram-sender.js';
import type { PhaseRecord, SourceReport } from './report-types.js';
import { ReturnPathReader } from './return-path.js';
import { CPU_STATE_SECTION, type MigrationEndpoint } from './types.js';

/** Engine names by VF device id, for the stream header. */
export function engineOfDevice(deviceId: number): string {
  switch (deviceId) {
    case PCI_DEVICE_ID_HUAWEI_ZIP_VF: return 'zip';
    case PCI_DEVICE_ID_HUAWEI_SEC_VF: return 'sec';
    case PCI_DEVICE_ID_HUAWEI_HPRE_VF: return 'hpre';
    default: return `pci-${deviceId.toString(16).padStart(4, '0')}`;
  }
}

/** The stream header's description of this VM and its devices. */
export function describeSource(ep: MigrationEndpoint): SourceDescription {
  const ids: number[] = [];
  let vendor = 0;
  let revision = 0;
  for (const d of ep.devices) {
    const id = pciIdentity(d.file);
    if (typeof id === 'number') throw new MigrationError('probe', `${d.name}: reading its config space: ${errnoName(id)}`, { errno: -id });
    ids.push(id.device);
    vendor = id.vendor;
    revision = Math.max(revision, id.revision);
  }
  const engines = [...new Set(ids.map(engineOfDevice))];
  return {
    engine: engines.length ? engines.join('+') : 'none',
    hwVersion: revision,
    vendorId: vendor,
    deviceIds: ids,
    ramBytes: ep.vm.ramBytes,
    pageSize: PAGE_SIZE,
  };
}

const HANDED_OVER = { transfer: true } as const;

/** Process CPU time so far (user + system, every thread), in us. */
export function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

class Clock {
  constructor(private readonly ep: MigrationEndpoint) {}
  get ns(): number {
    return this.ep.scheduler.now;
  }
}

export async function runSource(ep: MigrationEndpoint, link: Transport, options: MigrationOptions = {}): Promise<SourceReport> {
  return new SourceMigration(ep, link, resolveMigrationOptions(options)).run();
}

class SourceMigration {
  private readonly clock: Clock;
  private readonly report: SourceReport;
  private readonly reply: ReturnPathReader;
  private readonly writer: StreamWriter;
  private tracker: DirtyTracker | null = null;
  private savers: DeviceSaver[] = [];
  private pausedByUs = false;
  private step: MigrationStep = 'probe';
  private readonly t0Ns: number;
  private readonly t0Wall: number;
  private pagesSent = 0;
  private sender: RamSender | null = null;
  private guestWallMs = 0;
  private readonly t0Cpu: number;

  constructor(
    private readonly ep: MigrationEndpoint,
    private readonly link: Transport,
    private readonly o: ResolvedMigrationOptions,
  ) {
    this.clock = new Clock(ep);
    this.t0Ns = ep.scheduler.now;
    this.t0Wall = performance.now();
    this.t0Cpu = cpuUs();
    this.reply = new ReturnPathReader(link);
    // the writer's chunks are fresh and never touched again: the link may keep them as they are
    this.writer = new StreamWriter((chunk) => link.send(chunk, HANDED_OVER));
    this.report = {
      ok: false,
      recovery: [],
      cleanup: [],
      guestRunsOn: 'source',
      handover: null,
      protocol: null,
      dirtyMode: null,
      dirtyNote: '',
      precopy: false,
      converged: false,
      iterations: [],
      final: null,
      downtime: null,
      totalNs: 0,
      totalWallUs: 0,
      ramBytes: ep.vm.ramBytes,
      ramPagesSent: 0,
      ramBytesSent: 0,
      deviceBytes: 0,
      streamBytes: 0,
      cpuStateBytes: 0,
      configBytes: 0,
      ramHash: null,
      lateWrites: 0,
      devices: [],
      phases: [],
      bandwidthBytesPerSec: o.bandwidthBytesPerSec,
      downtimeLimitNs: o.downtimeLimitNs,
      destination: null,
    };
  }

  private phase<T>(name: PhaseRecord['name'], fn: () => T): T {
    const s = this.clock.ns;
    const w = performance.now();
    try {
      return fn();
    } finally {
      this.report.phases.push({ name, side: 'source', startNs: s, endNs: this.clock.ns, wallUs: (performance.now() - w) * 1000 });
    }
  }

  private async phaseAsync<T>(name: PhaseRecord['name'], fn: () => Promise<T>): Promise<T> {
    const s = this.clock.ns;
    const w = performance.now();
    try {
      return await fn();
    } finally {
      this.report.phases.push({ name, side: 'source', startNs: s, endNs: this.clock.ns, wallUs: (performance.now() - w) * 1000 });
    }
  }

  private progress(phase: 'setup' | 'precopy' | 'stop-copy' | 'switchover' | 'done' | 'failed', iteration: number): void {
    this.o.onProgress?.({
      phase,
      iteration,
      pagesSent: this.pagesSent,
      pagesDirty: this.tracker ? this.tracker.pending.popcount() : 0,
      ramPages: this.ep.vm.ramBytes / PAGE_SIZE,
    });
  }

  /** A destination that already answered "no" ends the migration now. */
  private checkDestination(): void {
    const r = this.reply.report;
    if (r && !r.ok) {
      const f = r.failure;
      throw new MigrationError(f?.step ?? 'destination', `destination refused: ${f?.message ?? 'no reason given'}`, {
        ...(f?.errno !== undefined ? { errno: f.errno } : {}),
        ...(f?.code !== undefined ? { code: f.code } : {}),
      });
    }
  }

  /** Sends through the writer; a broken link is reported with the destination's reason when it gave one. */
  private async sent(p: Promise<void>): Promise<void> {
    try {
      await p;
    } catch (e) {
      // a broken link ends the return path too; its result, if any, explains the drop
      await this.reply.result;
      this.checkDestination();
      throw e;
    }
  }

  async run(): Promise<SourceReport> {
    const r = this.report;
    try {
      this.step = 'setup';
      this.phase('setup', () => this.setup());
      await this.sent(this.writer.header(describeSource(this.ep), STREAM_F_PRECOPY));
      for (const s of this.savers) {
        await this.sent(this.writer.beginDevice(s.name, { version: s.protocol === 'v2' ? 2 : 1 }));
        await this.sent(this.writer.deviceSetup());
        await this.sent(this.writer.endDevice());
      }
      for (const s of this.savers) s.startPrecopy();
      this.step = 'precopy';
      await this.phaseAsync('precopy', () => this.precopy());
      await this.stopAndCopy();
      this.step = 'switchover';
      await this.switchover();
      r.ok = true;
      r.guestRunsOn = 'destination';
      this.progress('done', r.iterations.length);
    } catch (e) {
      await this.fail(e);
    }
    r.streamBytes = this.writer.bytesWritten;
    r.totalWallUs = (performance.now() - this.t0Wall) * 1000;
    r.totalCpuUs = cpuUs() - this.t0Cpu;
    r.guestWallUs = this.guestWallMs * 1000;
    return r;
  }

  private setup(): void {
    const ep = this.ep;
    const r = this.report;
    // savers first: an unsupported device must fail before anything is started
    this.step = 'probe';
    this.savers = ep.devices.map((dev) => openSaver({ dev, fds: ep.process.fds, scheduler: ep.scheduler }, this.o.precopy));
    const protos = new Set(this.savers.map((s) => s.protocol));
    if (protos.size > 1) throw new MigrationError('probe', 'devices speak different migration protocols (v1 and v2)', { errno: Errno.EPROTO });
    r.protocol = this.savers[0]?.protocol ?? null;
    r.precopy = this.savers.length > 0 && this.savers.every((s) => s.precopy);
    r.devices = this.savers.map((s) => ({ name: s.name, protocol: s.protocol, precopyBytes: 0, stopCopyBytes: 0 }));
    this.step = 'setup';
    const t = new DirtyTracker(ep, this.o.dirty);
    r.dirtyMode = t.mode;
    r.dirtyNote = t.note;
    t.start();
    this.tracker = t;
    this.progress('setup', 0);
  }

  /** Lets the guest run for the link time of `bytes` (pre-copy: the guest is live meanwhile). */
  private runGuest(bytes: number): void {
    if (bytes <= 0 || !this.ep.vm.vcpusRunning) return;
    const w = performance.now();
    this.ep.vm.run(transferNs(bytes, this.o.bandwidthBytesPerSec));
    this.guestWallMs += performance.now() - w;
  }

  private async sendDevicePrecopy(iteration: number): Promise<number> {
    let total = 0;
    for (let i = 0; i < this.savers.length; i++) {
      const s = this.savers[i]!;
      if (!s.precopy) continue;
      const chunks = s.readPrecopy();
      const left = s.precopyRemaining();
      if (chunks.length === 0 && iteration > 0) continue;
      const before = this.writer.bytesWritten;
      await this.sent(this.writer.beginDevice(s.name, { version: s.protocol === 'v2' ? 2 : 1 }));
      for (const c of chunks) {
        await this.sent(this.writer.deviceData(c));
        this.report.devices[i]!.precopyBytes += c.length;
      }
      if (iteration === 0 && left.initial === 0) await this.sent(this.writer.deviceInitDataSent());
      await this.sent(this.writer.endDevice());
      const bytes = this.writer.bytesWritten - before;
      total += bytes;
      this.runGuest(bytes);
    }
    return total;
  }

  private async precopy(): Promise<void> {
    const t = this.tracker!;
    const r = this.report;
    const sender = new RamSender(this.ep.vm.ram, t.pages, this.writer, this.o.pagesPerSection);
    this.sender = sender;
    t.markBackedPages();
    for (let it = 0; ; it++) {
      this.checkDestination();
      const startNs = this.clock.ns;
      const w = performance.now();
      const sent = await sender.send(t.pending, it, (bytes) => this.runGuest(bytes));
      this.pagesSent += sent.pages;
      const deviceBytes = await this.sendDevicePrecopy(it);
      const sync = t.sync();
      const dirty = t.pending.popcount();
      r.iterations.push({
        index: it,
        pages: sent.pages,
        zeroPages: sent.zeroPages,
        bytes: sent.bytes + deviceBytes,
        deviceBytes,
        dirtyAfter: dirty,
        deviceDirtyAfter: sync.devicePages,
        startNs,
        endNs: this.clock.ns,
        wallUs: (performance.now() - w) * 1000,
      });
      this.progress('precopy', it);
      let devicePending = 0;
      for (const s of this.savers) {
        const left = s.precopyRemaining();
        devicePending += left.initial + left.dirty;
      }
      const expectNs = transferNs(dirty * PAGE_SIZE + devicePending, this.o.bandwidthBytesPerSec);
      if (expectNs <= this.o.downtimeLimitNs) {
        r.converged = true;
        return;
      }
      if (it + 1 >= this.o.maxIterations) return;
    }
  }

  private async stopAndCopy(): Promise<void> {
    const r = this.report;
    const t = this.tracker!;
    const ep = this.ep;
    const stopNs = this.clock.ns;
    const stopWall = performance.now();
    const stopCpu = cpuUs();
    let deviceMs = 0;
    const device = <T>(fn: () => T): T => {
      const w = performance.now();
      try {
        return fn();
      } finally {
        deviceMs += performance.now() - w;
      }
    };
    const bytesAtStop = this.writer.bytesWritten;
    this.step = 'stop';
    this.phase('stop', () => {
      ep.vm.pauseVcpus();
      this.pausedByUs = true;
      this.o.onVcpusStopped?.();
      device(() => {
        for (const s of this.savers) s.stopCopy();
      });
    });
    this.step = 'stop-copy';
    this.progress('stop-copy', r.iterations.length);
    await this.phaseAsync('stop-copy', async () => {
      const sync = t.finalSync();
      const fin = await this.sender!.send(t.pending, r.iterations.length);
      this.pagesSent += fin.pages;
      let deviceBytes = 0;
      for (let i = 0; i < this.savers.length; i++) {
        const s = this.savers[i]!;
        const chunks = device(() => s.readStopCopy());
        await this.sent(this.writer.beginDevice(s.name, { version: s.protocol === 'v2' ? 2 : 1 }));
        for (const c of chunks) {
          await this.sent(this.writer.deviceData(c));
          deviceBytes += c.length;
          r.devices[i]!.stopCopyBytes += c.length;
        }
        await this.sent(this.writer.endDevice());
      }
      for (const d of ep.devices) {
        const cfg = d.io?.saveDeviceConfig();
        if (!cfg) continue;
        await this.sent(this.writer.beginDevice(d.name, { version: 1 }));
        await this.sent(this.writer.deviceConfig(cfg));
        await this.sent(this.writer.endDevice());
        r.configBytes += cfg.length;
      }
      const cpu = ep.vm.saveCpuState();
      r.cpuStateBytes = cpu.length;
      await this.sent(this.writer.beginDevice(CPU_STATE_SECTION));
      await this.sent(this.writer.deviceData(cpu));
      await this.sent(this.writer.endDevice());
      await this.sent(this.writer.end());
      r.final = {
        pages: fin.pages,
        zeroPages: fin.zeroPages,
        bytes: fin.bytes,
        ringEntries: sync.ringEntries,
        devicePages: sync.devicePages,
        backupPages: sync.backupPages,
        deviceBytes,
      };
    });
    const stoppedBytes = this.writer.bytesWritten - bytesAtStop;
    r.downtime = {
      sourceNs: this.clock.ns - stopNs,
      transferNs: transferNs(stoppedBytes, this.o.bandwidthBytesPerSec),
      destinationNs: 0,
      totalNs: 0,
      sourceWallUs: (performance.now() - stopWall) * 1000,
      destinationWallUs: 0,
      sourceDeviceWallUs: deviceMs * 1000,
      destinationDeviceWallUs: 0,
      sourceCpuUs: cpuUs() - stopCpu,
    };
    r.phases.push({ name: 'transfer', side: 'source', startNs: this.clock.ns, endNs: this.clock.ns + r.downtime.transferNs, wallUs: 0 });
    r.ramPagesSent = this.sender!.totalPages;
    r.ramBytesSent = this.sender!.totalBytes;
    r.deviceBytes = r.devices.reduce((a, d) => a + d.precopyBytes + d.stopCopyBytes, 0);
  }

  private async switchover(): Promise<void> {
    const r = this.report;
    this.progress('switchover', r.iterations.length);
    // The source's RAM no longer changes (guest and devices stopped, final sync done): hash it
    // for the verification while the destination loads.
    if (this.o.hashRam) r.ramHash = this.ep.vm.ram.hash(0, this.ep.vm.ramBytes);
    r.lateWrites = this.ep.vm.dirtyRings.lateWrites;
    try {
      await this.link.end();
    } catch (e) {
      // the destination's reader never took the end of the stream: it cannot start the guest
      await this.reply.result;
      this.checkDestination();
      throw new MigrationError('transfer', `the stream did not reach the destination: ${(e as Error).message}`);
    }
    // The destination has taken the whole stream: from here only its explicit failure result
    // gives the guest back to this host (see the file comment).
    const dest = await this.reply.result;
    r.destination = dest;
    const d = r.downtime!;
    if (dest) {
      this.checkDestination();
      if (!dest.started) throw new MigrationError('switchover', 'the destination reports it did not start the guest');
      r.handover = 'confirmed';
      d.destinationNs = dest.switchoverNs;
      d.destinationWallUs = dest.switchoverWallUs;
      d.destinationDeviceWallUs = dest.switchoverDeviceWallUs ?? 0;
    } else {
      const why = this.reply.error instanceof Error ? this.reply.error.message : 'the return path ended without a result';
      r.handover = 'unconfirmed';
      r.handoverNote = `the destination took the whole stream but its result never arrived (${why}); it owns the guest, the source stays stopped`;
    }
    // unconfirmed: the destination's part is unknown, so the downtime is a lower bound
    d.totalNs = d.sourceNs + d.transferNs + d.destinationNs;
    r.totalNs = this.clock.ns - this.t0Ns + d.transferNs + d.destinationNs;
    // The guest runs on the destination from here: nothing below may resume it here, so
    // cleanup problems are reported, not treated as a failed migration.
    this.pausedByUs = false;
    this.step = 'cleanup';
    this.phase('cleanup', () => {
      // after the switchover, so none of this counts as downtime
      for (const s of this.savers) {
        try {
          s.complete();
        } catch (e) {
          r.cleanup.push((e as Error).message);
        }
      }
      try {
        this.tracker?.stop();
      } catch (e) {
        r.cleanup.push(`stopping dirty tracking: ${(e as Error).message}`);
      }
    });
  }

  private async fail(e: unknown): Promise<void> {
    const r = this.report;
    const failure: MigrationFailure = toFailure(e, this.step, 'source');
    if (this.reply.report && !this.reply.report.ok && this.reply.report.failure) failure.side = 'destination';
    r.failure = failure;
    this.link.abort(`source: ${failure.message}`);
    this.phase('recover', () => {
      for (const s of this.savers) {
        try {
          r.recovery.push(s.recover());
        } catch (err) {
          r.recovery.push((err as Error).message);
        }
      }
      try {
        this.tracker?.stop();
      } catch (err) {
        r.recovery.push(`stopping dirty tracking: ${(err as Error).message}`);
      }
      if (this.pausedByUs) {
        this.ep.vm.resumeVcpus();
        this.pausedByUs = false;
        r.recovery.push('vCPUs resumed on the source');
      }
    });
    r.guestRunsOn = this.ep.vm.vcpusRunning ? 'source' : 'nowhere';
    r.totalNs = this.clock.ns - this.t0Ns;
    r.ramPagesSent = this.sender?.totalPages ?? 0;
    r.ramBytesSent = this.sender?.totalBytes ?? 0;
    r.destination = await this.reply.result;
    this.progress('failed', r.iterations.length);
  }
}
