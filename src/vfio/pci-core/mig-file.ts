/**
 * Base classes for the migration data fds a variant driver returns from MIG_DEVICE_STATE
 * (vfio-uapi-and-migration.md section 3).
 *
 * Both are streams: read/write go at the file's own position, so an explicit non-zero
 * position is ESPIPE (pread/pwrite on a stream). Reading the resume file or writing the save
 * file is EBADF (they are opened O_WRONLY / O_RDONLY). Once the device leaves the state the
 * file belongs to, the driver disables it and further reads/writes fail with ENODEV; the fd
 * itself stays open until the user closes it.
 */
import { fail } from '../../uapi/errno.js';
import { VFIO_MIG_GET_PRECOPY_INFO } from '../../uapi/vfio.js';
import { vfio_precopy_info, VFIO_PRECOPY_INFO_MINSZ } from '../../uapi/structs.js';
import { VfioFile } from '../fd.js';
import { allocBytes } from './byte-slab.js';

const NO_BYTES: Uint8Array = new Uint8Array(0);

/**
 * A growable byte buffer: appends amortised, no per-byte objects. Nothing is allocated
 * until the first append, which takes exactly what it needs (most device states arrive in
 * one piece); later growth doubles. Bytes below `length` are never rewritten, so a view of
 * them stays valid after the store grows or is cleared.
 */
class ByteStore {
  private buf = NO_BYTES;
  length = 0;
  append(src: Uint8Array): void {
    const need = this.length + src.length;
    if (need > this.buf.length) {
      let cap = this.length === 0 ? need : this.buf.length;
      while (cap < need) cap *= 2;
      const n = allocBytes(cap);
      if (this.length > 0) n.set(this.buf.subarray(0, this.length));
      this.buf = n;
    }
    this.buf.set(src, this.length);
    this.length = need;
  }
  /** append(src) that, into an empty store, keeps `src` itself (the caller gives it up). */
  adopt(src: Uint8Array): void {
    if (this.length !== 0) {
      this.append(src);
      return;
    }
    this.buf = src;
    this.length = src.length;
  }
  view(from = 0, to = this.length): Uint8Array {
    return this.buf.subarray(from, to);
  }
  clear(): void {
    this.buf = NO_BYTES;
    this.length = 0;
  }
}

export abstract class MigrationDataFile extends VfioFile {
  private isDisabled = false;

  get disabled(): boolean {
    return this.isDisabled;
  }

  /** The device left this file's state (or was reset/closed): I/O is ENODEV from now on. */
  disable(): void {
    if (this.isDisabled) return;
    this.isDisabled = true;
    this.onDisable();
  }

  /** Subclass hook: drop buffers. */
  protected onDisable(): void {}

  protected checkStream(pos: number): void {
    if (pos !== 0) fail('ESPIPE', 'migration data fds are streams');
  }
}

export type SavePhase = 'precopy' | 'stopcopy';

/**
 * The saving fd (RUNNING -> PRE_COPY, or STOP -> STOP_COPY). The driver appends device state
 * with `append` and calls `finish()` once everything of STOP_COPY is in. Reads drain what is
 * there; with nothing left a read returns -ENOMSG in PRE_COPY (more may come: the temporary
 * end), 0 in STOP_COPY once finished (the end of the stream), and -EAGAIN while STOP_COPY data
 * is still being produced.
 */
export class MigrationSaveFile extends MigrationDataFile {
  private readonly data = new ByteStore();
  private readPos = 0;
  private phaseNow: SavePhase;
  private finished = false;

  constructor(phase: SavePhase) {
    super();
    this.phaseNow = phase;
  }

  get phase(): SavePhase {
    return this.phaseNow;
  }

  /** Bytes produced and not read yet. */
  get pending(): number {
    return this.data.length - this.readPos;
  }

  /** Bytes produced so far (the stream length). */
  get totalLength(): number {
    return this.data.length;
  }

  /** Bytes the user has read. */
  get position(): number {
    return this.readPos;
  }

  get isFinished(): boolean {
    return this.finished;
  }

  append(bytes: Uint8Array): void {
    if (this.disabled) fail('ENODEV', 'file disabled');
    if (this.finished) fail('EINVAL', 'stream already finished');
    this.data.append(bytes);
  }

  /**
   * `append` without the copy when nothing was appended yet: the file keeps `bytes` itself,
   * which the caller must never change afterwards (the driver hands over a freshly encoded
   * device state).
   */
  appendOwned(bytes: Uint8Array): void {
    if (this.disabled) fail('ENODEV', 'file disabled');
    if (this.finished) fail('EINVAL', 'stream already finished');
    this.data.adopt(bytes);
  }

  /** PRE_COPY -> STOP_COPY keeps the same fd. */
  enterStopCopy(): void {
    this.phaseNow = 'stopcopy';
  }

  /** No more data will be appended: draining ends in read() == 0. */
  finish(): void {
    this.phaseNow = 'stopcopy';
    this.finished = true;
  }

  /**
   * VFIO_MIG_GET_PRECOPY_INFO numbers. Default: everything pending counts as initial data,
   * nothing as dirty (a device that re-sends state overrides this).
   */
  protected precopySizes(): { initial: number; dirty: number } {
    return { initial: this.pending, dirty: 0 };
  }

  protected override doRead(buf: Uint8Array, pos: number): number {
    this.checkStream(pos);
    if (this.disabled) fail('ENODEV', 'file disabled');
    if (buf.length === 0) return 0;
    const n = Math.min(buf.length, this.pending);
    if (n > 0) {
      buf.set(this.data.view(this.readPos, this.readPos + n));
      this.readPos += n;
      return n;
    }
    if (this.phaseNow === 'precopy') fail('ENOMSG', 'no pre-copy data right now');
    if (this.finished) return 0;
    fail('EAGAIN', 'stop-copy data not produced yet');
  }

  protected override doWrite(): number {
    fail('EBADF', 'the saving fd is read-only');
  }

  protected override doIoctl(request: number, arg?: Uint8Array | number): number | void {
    if (request !== VFIO_MIG_GET_PRECOPY_INFO) fail('ENOTTY');
    if (!(arg instanceof Uint8Array)) fail('EFAULT', 'no argument');
    const info = vfio_precopy_info;
    if (arg.length < VFIO_PRECOPY_INFO_MINSZ) fail('EFAULT', 'argument shorter than vfio_precopy_info');
    const argsz = info.read(arg, 'argsz');
    if (argsz < VFIO_PRECOPY_INFO_MINSZ) fail('EINVAL', `argsz ${argsz}`);
    // A disabled file means the device has left PRE_COPY (the driver disables on the way out).
    if (this.phaseNow !== 'precopy' || this.disabled) fail('EINVAL', 'not in PRE_COPY');
    const { initial, dirty } = this.precopySizes();
    info.write(arg, 'initial_bytes', initial);
    info.write(arg, 'dirty_bytes', dirty);
    return 0;
  }

  protected override onDisable(): void {
    this.data.clear();
    this.readPos = 0;
  }
}

/**
 * The resuming fd (STOP -> RESUMING). Writes append to the received stream; `maxBytes` bounds
 * it (ENOMEM beyond, checked before anything else, as hisi does). Subclasses may check data as
 * it arrives in `onData`, which runs before the chunk is stored: throwing refuses the write
 * and nothing is kept.
 */
export class MigrationResumeFile extends MigrationDataFile {
  private readonly data = new ByteStore();

  constructor(readonly maxBytes = Number.MAX_SAFE_INTEGER) {
    super();
  }

  /** Everything received so far. */
  get received(): Uint8Array {
    return this.data.view();
  }

  get length(): number {
    return this.data.length;
  }

  /** Subclass hook: `chunk` is about to be stored at `offset` of the stream. */
  protected onData(_chunk: Uint8Array, _offset: number): void {}

  protected override doWrite(buf: Uint8Array, pos: number): number {
    this.checkStream(pos);
    if (this.data.length + buf.length > this.maxBytes) fail('ENOMEM', `stream would exceed ${this.maxBytes} bytes`);
    if (this.disabled) fail('ENODEV', 'file disabled');
    if (buf.length === 0) return 0;
    this.onData(buf, this.data.length);
    this.data.append(buf);
    return buf.length;
  }

  protected override doRead(): number {
    fail('EBADF', 'the resuming fd is write-only');
  }

  protected override onDisable(): void {
    this.data.clear();
  }
}
