/**
 * File descriptors of the simulated VMM process. VFIO hands integers across its ABI (the
 * data_fd of MIG_DEVICE_STATE, eventfds in SET_IRQS and IOEVENTFD), so fd-like objects live
 * in a per-process table and are addressed by number, as in Linux.
 *
 * Every entry point returns 0 / a non-negative result or -errno, never throws for bad input.
 */
import { Errno, KernelError } from '../uapi/errno.js';

/** `syscall`'s error half: a KernelError becomes -errno, anything else is a bug and propagates. */
function negErrno(e: unknown): number {
  if (e instanceof KernelError) return -e.errno;
  throw e;
}

/**
 * Base of every fd-like object: container, group, device, migration data fd, eventfd.
 *
 * `isClosed` is assigned in the constructor rather than class-field initialised: every kind
 * of file runs this constructor, and the field's DefineOwnProperty on receivers of that many
 * different shapes took the slow path (a migration opens a data fd per state change). The
 * subclasses keep their class fields: under tsx, whose emitted classes redefine `name`,
 * assignments in derived constructors measured slower than field initializers.
 */
export abstract class VfioFile {
  private declare isClosed: boolean;

  constructor() {
    this.isClosed = false;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * `ioctl(request, arg)`: `arg` is the struct bytes in Linux layout (modified in place for
   * _IOWR-style calls) or an integer where Linux takes one. Returns 0 / result or -errno.
   */
  ioctl(request: number, arg?: Uint8Array | number): number {
    if (this.isClosed) return -Errno.EBADF;
    // syscall() inlined: these three run on every device access, a closure each was measurable.
    try {
      const r = this.doIoctl(request, arg);
      return r === undefined ? 0 : r;
    } catch (e) {
      return negErrno(e);
    }
  }

  /** read(2) at `pos` (pread). Returns bytes read or -errno. */
  read(buf: Uint8Array, pos = 0): number {
    if (this.isClosed) return -Errno.EBADF;
    try {
      return this.doRead(buf, pos);
    } catch (e) {
      return negErrno(e);
    }
  }

  /** write(2) at `pos` (pwrite). Returns bytes written or -errno. */
  write(buf: Uint8Array, pos = 0): number {
    if (this.isClosed) return -Errno.EBADF;
    try {
      return this.doWrite(buf, pos);
    } catch (e) {
      return negErrno(e);
    }
  }

  /** close(2): idempotent for the object; the fd table reports EBADF on a second close. */
  close(): number {
    if (this.isClosed) return -Errno.EBADF;
    this.isClosed = true;
    try {
      this.release();
      return 0;
    } catch (e) {
      return negErrno(e);
    }
  }

  protected doIoctl(_request: number, _arg?: Uint8Array | number): number | void {
    throw new KernelError('ENOTTY');
  }
  protected doRead(_buf: Uint8Array, _pos: number): number {
    throw new KernelError('EINVAL');
  }
  protected doWrite(_buf: Uint8Array, _pos: number): number {
    throw new KernelError('EINVAL');
  }
  protected release(): void {}
}

/** Largest value an eventfd counter can hold (ULLONG_MAX - 1). */
const EVENTFD_MAX = 0xfffffffffffffffen;

/**
 * eventfd(2) semantics for interrupt delivery: a 64-bit counter incremented by `signal`,
 * drained by `read`, plus an optional callback so a VMM can react without polling.
 */
export class EventFd extends VfioFile {
  count = 0n;
  /** Total signals ever received (not reset by reads), for interrupt accounting. */
  signals = 0;
  onSignal?: (fd: EventFd) => void;

  signal(n = 1n): void {
    if (this.closed) return;
    // eventfd_signal saturates: the counter never exceeds ULLONG_MAX - 1.
    const room = EVENTFD_MAX - this.count;
    this.count += n < room ? n : room;
    this.signals++;
    this.onSignal?.(this);
  }

  /** Reads and resets the counter into an 8-byte LE buffer; EAGAIN when it is 0. */
  protected override doRead(buf: Uint8Array): number {
    if (buf.length < 8) throw new KernelError('EINVAL');
    if (this.count === 0n) throw new KernelError('EAGAIN');
    new DataView(buf.buffer, buf.byteOffset, 8).setBigUint64(0, this.count, true);
    this.count = 0n;
    return 8;
  }

  /** Writing adds the LE u64 value to the counter, like eventfd. */
  protected override doWrite(buf: Uint8Array): number {
    if (buf.length < 8) throw new KernelError('EINVAL');
    const v = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
    if (v === 0xffffffffffffffffn) throw new KernelError('EINVAL');
    // A write that would overflow blocks in eventfd(2); a non-blocking fd gets EAGAIN.
    if (v > EVENTFD_MAX - this.count) throw new KernelError('EAGAIN');
    this.signal(v);
    return 8;
  }
}

/**
 * The process's descriptor table. Numbers start at 3 like a process with stdio open, and a
 * new fd takes the lowest free number at or above the last freed one, as Linux hands out the
 * lowest free fd.
 *
 * A plain array indexed by fd, not a Map: every migration data fd is installed and closed
 * again, and a Map with hundreds of entries (a host with many assigned devices) rehashes
 * under that churn at several microseconds per operation.
 */
export class FdTable {
  private readonly slots: (VfioFile | undefined)[] = [];
  private count = 0;
  private nextHint = 3;

  install(file: VfioFile): number {
    let fd = this.nextHint;
    while (this.slots[fd] !== undefined) fd++;
    this.slots[fd] = file;
    this.count++;
    this.nextHint = fd + 1;
    return fd;
  }

  private slot(fd: number): VfioFile | undefined {
    return Number.isInteger(fd) && fd >= 0 && fd < this.slots.length ? this.slots[fd] : undefined;
  }

  get(fd: number): VfioFile | undefined {
    const f = this.slot(fd);
    return f && !f.closed ? f : undefined;
  }

  /** Looks up an fd of a given class; EBADF if absent, EINVAL if it is another kind of file. */
  getAs<T extends VfioFile>(fd: number, cls: abstract new (...args: never[]) => T): T {
    const f = this.get(fd);
    if (!f) throw new KernelError('EBADF');
    if (!(f instanceof cls)) throw new KernelError('EINVAL');
    return f;
  }

  close(fd: number): number {
    const f = this.slot(fd);
    if (!f) return -Errno.EBADF;
    this.slots[fd] = undefined;
    this.count--;
    if (fd < this.nextHint) this.nextHint = Math.max(3, fd);
    return f.closed ? 0 : f.close();
  }

  /** eventfd(2). */
  eventfd(): { fd: number; file: EventFd } {
    const file = new EventFd();
    return { fd: this.install(file), file };
  }

  get size(): number {
    return this.count;
  }
}
