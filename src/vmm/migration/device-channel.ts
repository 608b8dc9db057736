/**
 * One passed-through device's migration data path, for either uAPI the vendor driver
 * offers (vfio-uapi-and-migration.md sections 3-4):
 *
 * - v2: VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE arcs and a data fd. Source: RUNNING ->
 *   PRE_COPY (data while PRECOPY_INFO reports some, ENOMSG = nothing right now) ->
 *   STOP_COPY (drain until read() returns 0) -> STOP after the switchover. Destination:
 *   RESUMING, chunks written to the data fd, -> STOP (load) -> RUNNING.
 * - v1: the migration region's vfio_device_migration_info header. Source: SAVING|RUNNING,
 *   SAVING, then STOP; each chunk is pending_bytes / data_offset / data_size / data.
 *   Destination: RESUMING, data written into the window and committed with data_size,
 *   RUNNING (the driver loads and starts in one step).
 *
 * Recovery (section 6): back to RUNNING; if the device refuses, VFIO_DEVICE_RESET and
 * RUNNING again. Every step that fails throws MigrationError with the errno.
 */
import { Errno, errnoName } from '../../uapi/errno.js';
import { readU64Number, writeU32, writeU64 } from '../../uapi/codec.js';
import {
  VFIO_DEVICE_STATE_PRE_COPY,
  VFIO_DEVICE_STATE_RESUMING,
  VFIO_DEVICE_STATE_RUNNING,
  VFIO_DEVICE_STATE_STOP,
  VFIO_DEVICE_STATE_STOP_COPY,
  VFIO_DEVICE_STATE_V1_RESUMING,
  VFIO_DEVICE_STATE_V1_RUNNING,
  VFIO_DEVICE_STATE_V1_SAVING,
  VFIO_DEVICE_STATE_V1_STOP,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
  VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED,
  VFIO_REGION_TYPE_MIGRATION_DEPRECATED,
  migStateName,
} from '../../uapi/vfio.js';
import type { FdTable, VfioFile } from '../../vfio/fd.js';
import type { Scheduler } from '../../sim/scheduler.js';
import {
  deviceReset, disableMsi, findRegion, getMigState, migDataSize, migrationFlags, precopyInfo, setMigState,
  type RegionInfo,
} from './device-uapi.js';
import { MigrationError, type MigrationStep } from './errors.js';
import type { PassthroughDevice } from './types.js';

export type DeviceProtocol = 'v2' | 'v1';

/** QEMU's data-fd buffer: min(1 MiB, MIG_DATA_SIZE). */
const MAX_CHUNK = 1 << 20;
/** Bound on EAGAIN retries while a STOP_COPY stream is still being produced. */
const EAGAIN_RETRIES = 1000;
const EAGAIN_WAIT_NS = 1000;

interface Ctx {
  dev: PassthroughDevice;
  fds: FdTable;
  scheduler: Scheduler;
}

function fail(step: MigrationStep, dev: PassthroughDevice, what: string, ret: number): never {
  throw new MigrationError(step, `${dev.name}: ${what}: ${errnoName(ret)}`, { errno: -ret });
}

/** What the source does with one device. */
export interface DeviceSaver {
  readonly name: string;
  readonly protocol: DeviceProtocol;
  /** The device supports a pre-copy phase (v2 PRE_COPY, v1 SAVING|RUNNING). */
  readonly precopy: boolean;
  /** Human-readable device state for reports. */
  readonly state: string;
  /** RUNNING -> PRE_COPY (v2) or SAVING|RUNNING (v1). */
  startPrecopy(): void;
  /** Pre-copy bytes available now (to the temporary end). */
  readPrecopy(): Uint8Array[];
  /** Pre-copy bytes the device still has (initial + dirty). */
  precopyRemaining(): { initial: number; dirty: number };
  /** -> STOP_COPY (v2) or SAVING (v1): the device stops and saves its state. */
  stopCopy(): void;
  /** The whole stop-copy stream, to its end. */
  readStopCopy(): Uint8Array[];
  /** After the switchover: STOP_COPY -> STOP, data fds closed (the device stays stopped). */
  complete(): void;
  /** After a failure: the device runs again. Returns what had to be done, for the report. */
  recover(): string;
}

/** What the destination does with one device. */
export interface DeviceLoader {
  readonly name: string;
  readonly protocol: DeviceProtocol;
  /** -> RESUMING. */
  begin(): void;
  write(data: Uint8Array): void;
  /** v2: RESUMING -> STOP (the driver loads the state). v1: nothing (loading is part of start). */
  load(): void;
  /** -> RUNNING. */
  start(): void;
  /** Tear down without starting: data fds closed, the device reset so no loaded state runs. */
  abort(): void;
  /** Bytes written so far. */
  readonly received: number;
}

/** The protocol a device offers: v2 (with its flags), v1 (its region), or null. */
export function probeProtocol(dev: PassthroughDevice): { protocol: 'v2'; flags: number } | { protocol: 'v1'; region: RegionInfo } | { protocol: null; errno: number } {
  const flags = migrationFlags(dev.file);
  if (flags >= 0) return { protocol: 'v2', flags };
  const region = findRegion(dev.file, VFIO_REGION_TYPE_MIGRATION_DEPRECATED, VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED);
  if (region) return { protocol: 'v1', region };
  return { protocol: null, errno: -flags };
}

function unsupported(dev: PassthroughDevice, errno: number): never {
  throw new MigrationError(
    'probe',
    `${dev.name}: the device offers no migration (VFIO_DEVICE_FEATURE_MIGRATION: ${errnoName(errno)}, no v1 migration region); ` +
      'its vfio driver does not support migrating it (hisi-acc-vfio-pci migrates QM V3 and later only)',
    { errno },
  );
}

export function openSaver(ctx: Ctx, usePrecopy: boolean): DeviceSaver {
  const p = probeProtocol(ctx.dev);
  if (p.protocol === 'v2') {
    if ((p.flags & VFIO_MIGRATION_STOP_COPY) === 0) {
      throw new MigrationError('probe', `${ctx.dev.name}: migration flags 0x${p.flags.toString(16)} lack STOP_COPY`, { errno: Errno.EOPNOTSUPP });
    }
    return new V2Saver(ctx, usePrecopy && (p.flags & VFIO_MIGRATION_PRE_COPY) !== 0);
  }
  if (p.protocol === 'v1') return new V1Saver(ctx, p.region, usePrecopy);
  return unsupported(ctx.dev, p.errno);
}

export function openLoader(ctx: Ctx, want: DeviceProtocol): DeviceLoader {
  const p = probeProtocol(ctx.dev);
  if (p.protocol === null) unsupported(ctx.dev, p.errno);
  if (p.protocol !== want) {
    throw new MigrationError('destination', `${ctx.dev.name}: the stream carries ${want} migration data but this device speaks ${p.protocol}`, { errno: Errno.EPROTO });
  }
  return p.protocol === 'v2' ? new V2Loader(ctx) : new V1Loader(ctx, p.region);
}

// ---- v2 -----------------------------------------------------------------------------------

class V2Base {
  protected dataFd = -1;
  constructor(protected readonly ctx: Ctx) {}

  get name(): string {
    return this.ctx.dev.name;
  }

  get protocol(): DeviceProtocol {
    return 'v2';
  }

  get state(): string {
    const s = getMigState(this.ctx.dev.file);
    return s < 0 ? `unknown (${errnoName(s)})` : migStateName(s);
  }

  protected set(step: MigrationStep, state: number): void {
    const r = setMigState(this.ctx.dev.file, state);
    if (r.ret < 0) fail(step, this.ctx.dev, `-> ${migStateName(state)} failed`, r.ret);
    if (r.dataFd >= 0) {
      // a new data fd replaces the old one (PRE_COPY -> STOP_COPY keeps the same file)
      if (this.dataFd >= 0 && this.dataFd !== r.dataFd) this.ctx.fds.close(this.dataFd);
      this.dataFd = r.dataFd;
    }
  }

  protected data(step: MigrationStep): VfioFile {
    const f = this.dataFd >= 0 ? this.ctx.fds.get(this.dataFd) : undefined;
    if (!f) throw new MigrationError(step, `${this.name}: no migration data fd`, { errno: Errno.EBADF });
    return f;
  }

  protected closeData(): void {
    if (this.dataFd >= 0) this.ctx.fds.close(this.dataFd);
    this.dataFd = -1;
  }
}

class V2Saver extends V2Base implements DeviceSaver {
  readonly precopy: boolean;
  private readonly chunk: number;
  private inPrecopy = false;

  constructor(ctx: Ctx, precopy: boolean) {
    super(ctx);
    this.precopy = precopy;
    const est = migDataSize(ctx.dev.file);
    this.chunk = est > 0 ? Math.min(MAX_CHUNK, est) : MAX_CHUNK;
  }

  startPrecopy(): void {
    if (!this.precopy) return;
    this.set('precopy', VFIO_DEVICE_STATE_PRE_COPY);
    this.inPrecopy = true;
  }

  /** QEMU's vfio_save_iterate: read while PRECOPY_INFO reports data; ENOMSG counts as none. */
  readPrecopy(): Uint8Array[] {
    if (!this.inPrecopy) return [];
    const f = this.data('precopy');
    const out: Uint8Array[] = [];
    for (;;) {
      const left = this.precopyRemaining();
      if (left.initial + left.dirty === 0) return out;
      const buf = new Uint8Array(Math.min(this.chunk, left.initial + left.dirty));
      const r = f.read(buf);
      if (r === -Errno.ENOMSG || r === 0) return out;
      if (r < 0) fail('precopy', this.ctx.dev, 'reading pre-copy data', r);
      out.push(buf.subarray(0, r));
    }
  }

  precopyRemaining(): { initial: number; dirty: number } {
    if (!this.inPrecopy) return { initial: 0, dirty: 0 };
    const i = precopyInfo(this.data('precopy'));
    if (i.ret < 0) fail('precopy', this.ctx.dev, 'VFIO_MIG_GET_PRECOPY_INFO', i.ret);
    return { initial: i.initial, dirty: i.dirty };
  }

  stopCopy(): void {
    // Without P2P the core walks PRE_COPY -> STOP_COPY, or RUNNING -> STOP -> STOP_COPY.
    this.set('stop-copy', VFIO_DEVICE_STATE_STOP_COPY);
    this.inPrecopy = false;
  }

  readStopCopy(): Uint8Array[] {
    const f = this.data('stop-copy');
    const out: Uint8Array[] = [];
    let again = 0;
    for (;;) {
      const buf = new Uint8Array(this.chunk);
      const r = f.read(buf);
      if (r === 0) return out;
      if (r === -Errno.EAGAIN && again++ < EAGAIN_RETRIES) {
        this.ctx.scheduler.advance(EAGAIN_WAIT_NS);
        continue;
      }
      if (r < 0) fail('stop-copy', this.ctx.dev, 'reading stop-copy data', r);
      out.push(buf.subarray(0, r));
    }
  }

  complete(): void {
    this.set('cleanup', VFIO_DEVICE_STATE_STOP);
    this.closeData();
  }

  recover(): string {
    this.inPrecopy = false;
    const from = this.state;
    const r = setMigState(this.ctx.dev.file, VFIO_DEVICE_STATE_RUNNING);
    this.closeData();
    if (r.ret >= 0) return from === 'RUNNING' ? `${this.name}: still RUNNING` : `${this.name}: ${from} -> RUNNING`;
    const reset = deviceReset(this.ctx.dev.file);
    const now = getMigState(this.ctx.dev.file);
    if (now !== VFIO_DEVICE_STATE_RUNNING) {
      const again = setMigState(this.ctx.dev.file, VFIO_DEVICE_STATE_RUNNING);
      if (again.ret < 0) {
        throw new MigrationError('cleanup', `${this.name}: cannot bring the device back to RUNNING (reset: ${reset < 0 ? errnoName(reset) : 'ok'}, SET RUNNING: ${errnoName(again.ret)})`, { errno: -again.ret });
      }
    }
    return `${this.name}: ${from} -> RUNNING failed (${errnoName(r.ret)}); VFIO_DEVICE_RESET${reset < 0 ? ` failed (${errnoName(reset)})` : ''} and RUNNING`;
  }
}

class V2Loader extends V2Base implements DeviceLoader {
  received = 0;

  begin(): void {
    // The idle destination device is RUNNING: the core walks RUNNING -> STOP -> RESUMING.
    this.set('destination', VFIO_DEVICE_STATE_RESUMING);
  }

  write(data: Uint8Array): void {
    const f = this.data('destination');
    let at = 0;
    while (at < data.length) {
      const r = f.write(data.subarray(at));
      if (r < 0) {
        const why = r === -Errno.EFAULT || r === -Errno.EINVAL ? ' (the vendor driver rejected the device state: incompatible destination or bad data)' : '';
        fail('destination', this.ctx.dev, `writing device state${why}`, r);
      }
      if (r === 0) fail('destination', this.ctx.dev, 'writing device state made no progress', -Errno.EIO);
      at += r;
      this.received += r;
    }
  }

  load(): void {
    this.set('load', VFIO_DEVICE_STATE_STOP);
    this.closeData();
  }

  start(): void {
    this.set('switchover', VFIO_DEVICE_STATE_RUNNING);
  }

  abort(): void {
    this.closeData();
    deviceReset(this.ctx.dev.file);
  }
}

// ---- v1 -----------------------------------------------------------------------------------

const V1_DEVICE_STATE = 0;
const V1_PENDING = 8;
const V1_DATA_OFFSET = 16;
const V1_DATA_SIZE = 24;

class V1Base {
  constructor(protected readonly ctx: Ctx, protected readonly region: RegionInfo) {}

  get name(): string {
    return this.ctx.dev.name;
  }

  get protocol(): DeviceProtocol {
    return 'v1';
  }

  get state(): string {
    const b = new Uint8Array(4);
    const r = this.ctx.dev.file.read(b, this.region.offset + V1_DEVICE_STATE);
    if (r < 0) return `unknown (${errnoName(r)})`;
    return v1StateName(b[0]! | (b[1]! << 8));
  }

  protected u64(step: MigrationStep, field: number, what: string): number {
    const b = new Uint8Array(8);
    const r = this.ctx.dev.file.read(b, this.region.offset + field);
    if (r !== 8) fail(step, this.ctx.dev, `reading ${what}`, r < 0 ? r : -Errno.EIO);
    return readU64Number(b, 0);
  }

  protected setState(step: MigrationStep, state: number): number {
    const b = new Uint8Array(4);
    writeU32(b, 0, state);
    const r = this.ctx.dev.file.write(b, this.region.offset + V1_DEVICE_STATE);
    if (r < 0 && step !== 'cleanup') fail(step, this.ctx.dev, `device_state -> ${v1StateName(state)} failed`, r);
    return r;
  }
}

function v1StateName(s: number): string {
  switch (s) {
    case VFIO_DEVICE_STATE_V1_STOP: return 'STOP';
    case VFIO_DEVICE_STATE_V1_RUNNING: return 'RUNNING';
    case VFIO_DEVICE_STATE_V1_SAVING: return 'SAVING';
    case VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RUNNING: return 'SAVING|RUNNING';
    case VFIO_DEVICE_STATE_V1_RESUMING: return 'RESUMING';
    default: return `0x${s.toString(16)}`;
  }
}

class V1Saver extends V1Base implements DeviceSaver {
  readonly precopy: boolean;

  constructor(ctx: Ctx, region: RegionInfo, precopy: boolean) {
    super(ctx, region);
    this.precopy = precopy;
  }

  startPrecopy(): void {
    if (this.precopy) this.setState('precopy', VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RUNNING);
  }

  /** pending_bytes, then data_offset / data_size / data per chunk, until nothing is pending. */
  private drain(step: MigrationStep): Uint8Array[] {
    const out: Uint8Array[] = [];
    let pending = this.u64(step, V1_PENDING, 'pending_bytes');
    let guard = 0;
    while (pending > 0) {
      if (guard++ > 1_000_000) fail(step, this.ctx.dev, 'pending_bytes never drains', -Errno.EIO);
      const off = this.u64(step, V1_DATA_OFFSET, 'data_offset');
      const size = this.u64(step, V1_DATA_SIZE, 'data_size');
      if (size === 0 || off + size > this.region.size) fail(step, this.ctx.dev, `data window [${off}, +${size}) outside the region`, -Errno.EINVAL);
      const buf = new Uint8Array(size);
      const r = this.ctx.dev.file.read(buf, this.region.offset + off);
      if (r !== size) fail(step, this.ctx.dev, 'reading migration data', r < 0 ? r : -Errno.EIO);
      out.push(buf);
      pending = this.u64(step, V1_PENDING, 'pending_bytes');
    }
    return out;
  }

  readPrecopy(): Uint8Array[] {
    return this.precopy ? this.drain('precopy') : [];
  }

  precopyRemaining(): { initial: number; dirty: number } {
    // v1 has no separate counter: what is pending now is drained by readPrecopy at once
    return { initial: 0, dirty: 0 };
  }

  stopCopy(): void {
    this.setState('stop-copy', VFIO_DEVICE_STATE_V1_SAVING);
  }

  readStopCopy(): Uint8Array[] {
    return this.drain('stop-copy');
  }

  complete(): void {
    // Leaving SAVING for STOP restarts the VF's queues: cut its interrupts first so the
    // abandoned source device can never signal the (migrated) guest.
    disableMsi(this.ctx.dev.file);
    this.setState('cleanup', VFIO_DEVICE_STATE_V1_STOP);
  }

  recover(): string {
    const from = this.state;
    const r = this.setState('cleanup', VFIO_DEVICE_STATE_V1_RUNNING);
    if (r >= 0) return from === 'RUNNING' ? `${this.name}: still RUNNING` : `${this.name}: ${from} -> RUNNING`;
    const reset = deviceReset(this.ctx.dev.file);
    const again = this.setState('cleanup', VFIO_DEVICE_STATE_V1_RUNNING);
    if (again < 0 && this.state !== 'RUNNING') {
      throw new MigrationError('cleanup', `${this.name}: cannot bring the device back to RUNNING (${errnoName(again)})`, { errno: -again });
    }
    return `${this.name}: ${from} -> RUNNING failed (${errnoName(r)}); VFIO_DEVICE_RESET${reset < 0 ? ` failed (${errnoName(reset)})` : ''} and RUNNING`;
  }
}

class V1Loader extends V1Base implements DeviceLoader {
  received = 0;

  begin(): void {
    this.setState('destination', VFIO_DEVICE_STATE_V1_RESUMING);
  }

  /**
   * One chunk as the source read it (QEMU's v1 load): into the window at data_offset, then
   * committed by writing its size to data_size. A v1 source re-sends the whole state at the
   * stop, so each chunk stands for the stream so far, not a piece to append.
   */
  write(data: Uint8Array): void {
    const off = this.u64('destination', V1_DATA_OFFSET, 'data_offset');
    if (off + data.length > this.region.size) {
      fail('destination', this.ctx.dev, `a device state chunk of ${data.length} bytes does not fit the migration region`, -Errno.ENOMEM);
    }
    const r = this.ctx.dev.file.write(data, this.region.offset + off);
    if (r !== data.length) fail('destination', this.ctx.dev, 'writing migration data', r < 0 ? r : -Errno.EIO);
    const size = new Uint8Array(8);
    writeU64(size, 0, data.length);
    const c = this.ctx.dev.file.write(size, this.region.offset + V1_DATA_SIZE);
    if (c < 0) {
      const why = c === -Errno.EFAULT || c === -Errno.EINVAL ? ' (the vendor driver rejected the device state: incompatible destination or bad data)' : '';
      fail('destination', this.ctx.dev, `committing data_size${why}`, c);
    }
    this.received += data.length;
  }

  load(): void {
    // v1 loads on RESUMING -> RUNNING
  }

  start(): void {
    this.setState('switchover', VFIO_DEVICE_STATE_V1_RUNNING);
  }

  abort(): void {
    deviceReset(this.ctx.dev.file);
  }
}

