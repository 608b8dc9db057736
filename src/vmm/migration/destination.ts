/**
 * The destination VMM's side of a live migration. The stream is parsed as it arrives
 * (StreamReader: checksums, truncation, version, ordering) and applied to a guest that is
 * not running:
 *
 *  header         compatibility: RAM size, page size, one device per source device with the
 *                 same PCI vendor/device id; guest RAM cleared (the source skips pages that
 *                 were never written)
 *  RAM sections   pages written into guest RAM
 *  device data    the device goes RESUMING at its first section; every DEV_DATA_STATE chunk
 *                 is written to its data fd (v2) or migration region (v1) at once, so the
 *                 vendor driver's match check refuses an incompatible source during pre-copy
 *  config, CPU    kept until the switchover
 *  END            only when the whole stream has arrived and checked out (nothing after END,
 *                 connection closed cleanly) does the switchover run: devices -> STOP (the
 *                 driver loads), the VF state is checked, config and CPU state restored,
 *                 devices -> RUNNING, vCPUs resumed.
 *
 * Any problem before that point tears down without starting: data fds closed, devices reset
 * (so no loaded state ever runs), vCPUs left stopped. The result goes back to the source on
 * the return path either way, and it matters most after the end of the stream: reading that
 * end acknowledges it to the source (transport/base.ts), which from then on leaves the guest
 * to this side and takes it back only on an explicit failure result. So the guest starts
 * here only after the whole stream loaded and checked out, and whenever it will not start,
 * the failure result says so.
 */
import { performance } from 'node:perf_hooks';
import { PAGE_SIZE } from '../../mem/sparse-memory.js';
import { Errno } from '../../uapi/errno.js';
import type { RamSectionEvent, StreamEvent, StreamHeader } from '../stream/format.js';
import { StreamReader } from '../stream/reader.js';
import type { Transport } from '../transport/types.js';
import { type DeviceLoader, type DeviceProtocol, openLoader } from './device-channel.js';
import { pciIdentity } from './device-uapi.js';
import { MigrationError, type MigrationStep, toFailure } from './errors.js';
import type { DestinationReport, PhaseRecord } from './report-types.js';
import { encodeMessage } from './return-path.js';
import { CPU_STATE_SECTION, type MigrationEndpoint, type PassthroughDevice } from './types.js';
import { checkVfState } from './vf-state-check.js';
import { cpuUs, engineOfDevice } from './source.js';

export interface DestinationOptions {
  /** Check every VF's state after load through the vendor driver's debug view (default true). */
  verifyDevices?: boolean;
  /** Hash guest RAM after it is applied (for the RAM comparison; default true). */
  hashRam?: boolean;
}

interface DevSlot {
  dev: PassthroughDevice;
  loader: DeviceLoader | null;
  protocol: DeviceProtocol | null;
  sent: Uint8Array[];
  sentBytes: number;
  config: Uint8Array | null;
}

export async function runDestination(ep: MigrationEndpoint, link: Transport, opts: DestinationOptions = {}): Promise<DestinationReport> {
  return new DestinationMigration(ep, opts).run(link);
}

class DestinationMigration {
  private readonly report: DestinationReport;
  private header: StreamHeader | null = null;
  private readonly byName = new Map<string, DevSlot>();
  private readonly slots: DevSlot[];
  private current: { slot: DevSlot | null; cpu: boolean } | null = null;
  private cpuParts: Uint8Array[] = [];
  private cpuBytes = 0;
  private step: MigrationStep = 'destination';
  private readonly teardown: string[] = [];

  constructor(private readonly ep: MigrationEndpoint, private readonly opts: DestinationOptions) {
    this.slots = ep.devices.map((dev) => ({ dev, loader: null, protocol: null, sent: [], sentBytes: 0, config: null }));
    this.report = {
      ok: false,
      started: false,
      streamBytes: 0,
      sections: 0,
      ramPages: 0,
      zeroPages: 0,
      deviceBytes: 0,
      ramHash: null,
      devices: [],
      cpuStateBytes: 0,
      configBytes: 0,
      phases: [],
      switchoverNs: 0,
      switchoverWallUs: 0,
      teardown: this.teardown,
    };
  }

  private phase(name: PhaseRecord['name'], startNs: number, startWall: number): void {
    this.report.phases.push({ name, side: 'destination', startNs, endNs: this.ep.scheduler.now, wallUs: (performance.now() - startWall) * 1000 });
  }

  async run(link: Transport): Promise<DestinationReport> {
    const r = this.report;
    const rxNs = this.ep.scheduler.now;
    const rxWall = performance.now();
    const events: StreamEvent[] = [];
    const reader = new StreamReader((ev) => events.push(ev));
    const it = link[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await it.next();
        if (next.done) break;
        reader.push(next.value);
        for (const ev of events) this.onEvent(ev);
        events.length = 0;
      }
      const summary = reader.finish();
      r.streamBytes = summary.bytes;
      r.sections = summary.sections;
      this.phase('receive', rxNs, rxWall);
      this.switchover();
      r.ok = true;
    } catch (e) {
      r.failure = toFailure(e, this.step, 'destination');
      this.tearDown();
    }
    r.devices = this.slots.map((s) => ({
      name: s.dev.name,
      protocol: s.protocol ?? 'none',
      bytes: s.sentBytes,
      check: r.devices.find((d) => d.name === s.dev.name)?.check ?? null,
    }));
    try {
      await link.send(encodeMessage({ t: 'result', report: r }));
      if (r.ok) await link.close();
      else link.abort('destination gave up');
    } catch {
      // the source is gone; it recovers on its own
    }
    return r;
  }

  private onEvent(ev: StreamEvent): void {
    switch (ev.type) {
      case 'header':
        this.onHeader(ev.header);
        return;
      case 'ram':
        this.applyRam(ev);
        return;
      case 'device-begin':
        this.onDeviceBegin(ev.name, ev.version);
        return;
      case 'device-setup':
        return;
      case 'device-data': {
        const cur = this.current!;
        if (cur.cpu) {
          this.cpuParts.push(ev.data.slice());
          this.cpuBytes += ev.data.length;
          return;
        }
        const slot = cur.slot!;
        slot.loader!.write(ev.data);
        slot.sent.push(ev.data.slice());
        slot.sentBytes += ev.data.length;
        this.report.deviceBytes += ev.data.length;
        return;
      }
      case 'device-config': {
        const slot = this.current?.slot;
        if (!slot) throw new MigrationError('destination', 'DEV_CONFIG_STATE in the CPU state section', { code: 'MALFORMED' });
        slot.config = ev.data.slice();
        this.report.configBytes += ev.data.length;
        return;
      }
      case 'device-init-data-sent':
      case 'end':
        return;
      case 'device-end':
        this.current = null;
        return;
    }
  }

  /**
   * Writes a RAM section into guest RAM. Pages with data that follow each other in guest RAM
   * (their data is consecutive in the section too) go in as one write.
   */
  private applyRam(ev: RamSectionEvent): void {
    const ram = this.ep.vm.ram;
    const { pfns, zero, data } = ev;
    const ps = ev.pageSize;
    let runPfn = -1;
    let runAt = 0;
    let runLen = 0;
    let at = 0;
    let zeros = 0;
    const flush = () => {
      if (runLen > 0) ram.write(runPfn * ps, data.subarray(runAt, runAt + runLen * ps));
      runLen = 0;
    };
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i]!;
      if (zero[i]) {
        flush();
        ram.fill(pfn * ps, ps, 0);
        zeros++;
        continue;
      }
      if (runLen === 0 || pfn !== runPfn + runLen) {
        flush();
        runPfn = pfn;
        runAt = at;
      }
      runLen++;
      at += ps;
    }
    flush();
    this.report.ramPages += pfns.length;
    this.report.zeroPages += zeros;
  }

  private onHeader(h: StreamHeader): void {
    const ep = this.ep;
    const s = h.source;
    this.header = h;
    if (s.ramBytes !== ep.vm.ramBytes) {
      throw new MigrationError('destination', `incompatible destination: the source guest has ${s.ramBytes} bytes of RAM, this one ${ep.vm.ramBytes}`, { errno: Errno.EINVAL });
    }
    if (s.pageSize !== PAGE_SIZE) {
      throw new MigrationError('destination', `incompatible destination: page size ${s.pageSize}, this host uses ${PAGE_SIZE}`, { errno: Errno.EINVAL });
    }
    if (s.deviceIds.length !== ep.devices.length) {
      throw new MigrationError('destination', `incompatible destination: the source passes through ${s.deviceIds.length} device(s), this VM has ${ep.devices.length}`, { errno: Errno.ENODEV });
    }
    ep.devices.forEach((d, i) => {
      const id = pciIdentity(d.file);
      if (typeof id === 'number') throw new MigrationError('destination', `${d.name}: reading its config space failed`, { errno: -id });
      const want = s.deviceIds[i]!;
      if (id.vendor !== s.vendorId || id.device !== want) {
        throw new MigrationError(
          'destination',
          `incompatible destination: source device ${i} is ${s.vendorId.toString(16)}:${want.toString(16)} (${engineOfDevice(want)}), ` +
            `${d.name} here is ${id.vendor.toString(16)}:${id.device.toString(16)} (${engineOfDevice(id.device)})`,
          { errno: Errno.ENODEV },
        );
      }
    });
    // pages the source never wrote are not sent: start from all-zero RAM
    ep.vm.ram.fill(0, ep.vm.ramBytes, 0);
  }

  private onDeviceBegin(name: string, version: number): void {
    if (!this.header) throw new MigrationError('destination', 'device section before the header', { code: 'MALFORMED' });
    if (name === CPU_STATE_SECTION) {
      this.current = { slot: null, cpu: true };
      return;
    }
    let slot = this.byName.get(name);
    if (!slot) {
      slot = this.slots[this.byName.size];
      if (!slot) throw new MigrationError('destination', `device section "${name}" has no device to go to here`, { errno: Errno.ENODEV });
      this.byName.set(name, slot);
    }
    if (!slot.loader) {
      if (version !== 1 && version !== 2) throw new MigrationError('destination', `device section "${name}" has unknown version ${version}`, { code: 'MALFORMED' });
      const want: DeviceProtocol = version === 2 ? 'v2' : 'v1';
      slot.protocol = want;
      slot.loader = openLoader({ dev: slot.dev, fds: this.ep.process.fds, scheduler: this.ep.scheduler }, want);
      slot.loader.begin();
    }
    this.current = { slot, cpu: false };
  }

  private switchover(): void {
    const ep = this.ep;
    const r = this.report;
    const t0 = ep.scheduler.now;
    const w0 = performance.now();
    const c0 = cpuUs();
    let deviceMs = 0;
    const device = (fn: () => void) => {
      const w = performance.now();
      fn();
      deviceMs += performance.now() - w;
    };
    const unused = this.slots.filter((s) => !s.loader);
    if (unused.length) {
      throw new MigrationError('destination', `no device state arrived for ${unused.map((s) => s.dev.name).join(', ')}`, { errno: Errno.ENODATA });
    }
    if (this.cpuParts.length === 0) throw new MigrationError('destination', 'the stream carries no CPU state', { errno: Errno.ENODATA });
    this.step = 'load';
    device(() => {
      for (const s of this.slots) s.loader!.load();
    });
    for (const s of this.slots) {
      if (!s.config) continue;
      if (!s.dev.io) throw new MigrationError('load', `${s.dev.name}: config state arrived but this VMM cannot restore it`, { errno: Errno.EOPNOTSUPP });
      s.dev.io.loadDeviceConfig(s.config);
    }
    const cpu = concat(this.cpuParts, this.cpuBytes);
    r.cpuStateBytes = cpu.length;
    ep.vm.loadCpuState(cpu);
    this.phase('load', t0, w0);
    // Verification, not migration work: its simulated and wall time are kept out of the
    // switchover figures. The devices are loaded and stopped, the guest has not run.
    const vNs = ep.scheduler.now;
    const vWall = performance.now();
    const vCpu = cpuUs();
    const checks = new Map<string, DestinationReport['devices'][number]['check']>();
    const check = (v1: boolean) => {
      if (!(this.opts.verifyDevices ?? true)) return;
      for (const s of this.slots) {
        if ((s.protocol === 'v1') !== v1) continue;
        // v2 data is one stream in pieces; a v1 source sends the whole state again at the stop
        const state = v1 ? s.sent[s.sent.length - 1] ?? new Uint8Array(0) : concat(s.sent, s.sentBytes);
        checks.set(s.dev.name, checkVfState(s.dev.name, s.dev.file, state, !v1));
      }
    };
    // v2: loaded and stopped, registers readable
    check(false);
    if (this.opts.hashRam ?? true) r.ramHash = ep.vm.ram.hash(0, ep.vm.ramBytes);
    const verifyNs = ep.scheduler.now - vNs;
    const verifyWall = performance.now() - vWall;
    const verifyCpu = cpuUs() - vCpu;
    this.step = 'switchover';
    const sNs = ep.scheduler.now;
    const sWall = performance.now();
    device(() => {
      for (const s of this.slots) s.loader!.start();
    });
    // the downtime ends here: what resumeVcpus runs (held interrupts, guest tasks) is guest time
    this.phase('switchover', sNs, sWall);
    r.switchoverNs = ep.scheduler.now - t0 - verifyNs;
    r.switchoverWallUs = (performance.now() - w0 - verifyWall) * 1000;
    r.switchoverDeviceWallUs = deviceMs * 1000;
    r.switchoverCpuUs = cpuUs() - c0 - verifyCpu;
    // v1 loads as it starts: only now has the driver taken the data (the guest is still stopped)
    check(true);
    ep.vm.resumeVcpus();
    r.started = true;
    r.devices = this.slots.map((s) => ({ name: s.dev.name, protocol: s.protocol ?? 'none', bytes: s.sentBytes, check: checks.get(s.dev.name) ?? null }));
  }

  private tearDown(): void {
    for (const s of this.slots) {
      if (!s.loader) continue;
      s.loader.abort();
      this.teardown.push(`${s.dev.name}: data fd closed, VFIO_DEVICE_RESET (no received state runs)`);
    }
    if (this.ep.vm.vcpusRunning) {
      // never the case unless someone else started it; make sure the half-loaded guest stays stopped
      this.ep.vm.pauseVcpus();
      this.teardown.push('vCPUs stopped');
    }
    this.teardown.push('guest not started');
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
