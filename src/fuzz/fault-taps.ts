/**
 * Observation points of the fault matrix outside the device model: every call the migration
 * orchestrator makes on a VFIO file (device fd, migration data fd, container), every chunk the
 * source writes to the transport and every chunk the destination reads from it. Each point
 * goes to a `StepTap` that may answer with a fault for that very step. The orchestrator runs
 * unmodified: it sees wrapped files and a wrapped transport only.
 *
 * The wrappers sit between the orchestrator and the fd layer, so the guest (which reaches its
 * VF through its own VfioGuestIo) is never counted nor disturbed.
 */
import { Errno } from '../uapi/errno.js';
import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS, VFIO_IOMMU_DIRTY_PAGES, VFIO_MIG_GET_PRECOPY_INFO, migStateName,
} from '../uapi/vfio.js';
import type { FdTable, VfioFile } from '../vfio/fd.js';
import { TransportError } from '../vmm/transport/types.js';
import type { Transport } from '../vmm/transport/types.js';
import type { MigrationEndpoint, PassthroughDevice } from '../vmm/migration/types.js';

export type Side = 'source' | 'dest';

/** Kinds of step the matrix counts (device-model kinds come from src/hw/qm/faults.ts taps). */
export type StepKind = 'mailbox' | 'poll' | 'writeback' | 'call' | 'send' | 'recv';

/** One step as the tap sees it. `label` names it for the table (stable across runs). */
export interface StepEvent {
  side: Side;
  kind: StepKind;
  label: string;
  /** For sends and reads: the chunk's length. */
  bytes?: number;
}

/** What a tap may answer for an orchestrator call: nothing, or the errno the call fails with. */
export type CallVerdict = number | undefined;

/** What a tap may answer for a source send. */
export type SendFault =
  | { kind: 'drop' }
  | { kind: 'flip'; byte: number; xor: number }
  | { kind: 'truncate' }
  | { kind: 'delay'; wallMs: number; simNs: number };

/** What a tap may answer for a destination read. */
export type RecvFault = { kind: 'reset' };

export interface StepTap {
  call?(ev: StepEvent): CallVerdict;
  send?(ev: StepEvent): SendFault | undefined;
  recv?(ev: StepEvent): RecvFault | undefined;
}

// ---- naming --------------------------------------------------------------------------------

function featureName(feature: number): string {
  switch (feature) {
    case VFIO_DEVICE_FEATURE_MIGRATION: return 'MIGRATION';
    case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: return 'MIG_DEVICE_STATE';
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_START: return 'DMA_LOGGING_START';
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP: return 'DMA_LOGGING_STOP';
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: return 'DMA_LOGGING_REPORT';
    case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: return 'MIG_DATA_SIZE';
    default: return `feature ${feature}`;
  }
}

const u32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

/** A readable name of an ioctl as the orchestrator issues it ("FEATURE SET MIG_DEVICE_STATE -> STOP_COPY"). */
export function ioctlName(request: number, arg?: Uint8Array | number): string {
  switch (request) {
    case VFIO_DEVICE_FEATURE: {
      if (!(arg instanceof Uint8Array) || arg.length < 8) return 'DEVICE_FEATURE';
      const flags = u32(arg, 4);
      const ops = [
        flags & VFIO_DEVICE_FEATURE_PROBE ? 'PROBE' : '',
        flags & VFIO_DEVICE_FEATURE_GET ? 'GET' : '',
        flags & VFIO_DEVICE_FEATURE_SET ? 'SET' : '',
      ].filter((s) => s).join('|');
      const feature = flags & 0xffff;
      let s = `FEATURE ${ops} ${featureName(feature)}`;
      // vfio_device_feature_mig_state: device_state u32 right after the 8-byte header
      if (feature === VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE && flags & VFIO_DEVICE_FEATURE_SET && !(flags & VFIO_DEVICE_FEATURE_PROBE) && arg.length >= 12) {
        s += ` -> ${migStateName(u32(arg, 8))}`;
      }
      return s;
    }
    case VFIO_MIG_GET_PRECOPY_INFO: return 'MIG_GET_PRECOPY_INFO';
    case VFIO_DEVICE_RESET: return 'DEVICE_RESET';
    case VFIO_DEVICE_SET_IRQS: return 'DEVICE_SET_IRQS';
    case VFIO_DEVICE_GET_INFO: return 'DEVICE_GET_INFO';
    case VFIO_DEVICE_GET_REGION_INFO: return 'DEVICE_GET_REGION_INFO';
    case VFIO_IOMMU_DIRTY_PAGES: return 'IOMMU_DIRTY_PAGES';
    default: return `ioctl 0x${request.toString(16)}`;
  }
}

// ---- files ---------------------------------------------------------------------------------

type FileRole = 'device' | 'data' | 'container';

/**
 * A view of `file` whose ioctl/read/write first ask the tap. Everything else (getters with
 * private state, `closed`, instanceof) reaches the real file.
 */
function tapFile<T extends VfioFile>(file: T, role: FileRole, side: Side, tap: StepTap): T {
  const call = (label: string): CallVerdict => tap.call?.({ side, kind: 'call', label: `${role} ${label}` });
  const ioctl = (request: number, arg?: Uint8Array | number): number => {
    const e = call(ioctlName(request, arg));
    return e !== undefined ? -e : file.ioctl(request, arg);
  };
  const read = (buf: Uint8Array, pos = 0): number => {
    const e = call(role === 'device' ? `pread @0x${pos.toString(16)}` : 'read');
    return e !== undefined ? -e : file.read(buf, pos);
  };
  const write = (buf: Uint8Array, pos = 0): number => {
    const e = call(role === 'device' ? `pwrite @0x${pos.toString(16)}` : 'write');
    return e !== undefined ? -e : file.write(buf, pos);
  };
  return new Proxy(file, {
    get(target, prop) {
      if (prop === 'ioctl') return ioctl;
      if (prop === 'read') return read;
      if (prop === 'write') return write;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** The fd table as the orchestrator uses it: data fds come back tapped. */
function tapFds(fds: FdTable, side: Side, tap: StepTap): FdTable {
  const cache = new Map<VfioFile, VfioFile>();
  const get = (fd: number): VfioFile | undefined => {
    const f = fds.get(fd);
    if (!f) return f;
    let w = cache.get(f);
    if (!w) {
      w = tapFile(f, 'data', side, tap);
      cache.set(f, w);
    }
    return w;
  };
  return new Proxy(fds, {
    get(target, prop) {
      if (prop === 'get') return get;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The endpoint the orchestrator gets: the same VM, scheduler and process, with its
 * passed-through devices, container and data fds tapped. `beforeResume` runs each time the
 * orchestrator resumes the vCPUs, just before they run (the moment a destination starts).
 */
export function tapEndpoint<E extends MigrationEndpoint>(ep: E, side: Side, tap: StepTap, beforeResume?: () => void): MigrationEndpoint {
  const vm = beforeResume
    ? new Proxy(ep.vm, {
      get(target, prop) {
        if (prop === 'resumeVcpus') {
          return () => {
            beforeResume();
            target.resumeVcpus();
          };
        }
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    })
    : ep.vm;
  const devices: PassthroughDevice[] = ep.devices.map((d) => {
    const w: PassthroughDevice = { name: d.name, fd: d.fd, file: tapFile(d.file, 'device', side, tap), ...(d.io ? { io: d.io } : {}) };
    return w;
  });
  return {
    scheduler: ep.scheduler,
    vm,
    devices,
    containerFd: ep.containerFd,
    container: tapFile(ep.container, 'container', side, tap),
    process: { fds: tapFds(ep.process.fds, side, tap), user: ep.process.user },
  };
}

// ---- transport -----------------------------------------------------------------------------

/** Names a source chunk by the migration phase it was written in. */
export type PhaseOf = () => string;

class TappedTransport implements Transport {
  private sends = 0;
  private dropped: TransportError | null = null;
  private swallowing = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly inner: Transport,
    private readonly side: Side,
    private readonly tap: StepTap,
    private readonly phase: PhaseOf,
    private readonly advance: (ns: number) => void,
  ) {}

  get label(): string { return `${this.inner.label} (tapped)`; }
  get bytesSent(): number { return this.inner.bytesSent; }
  get bytesReceived(): number { return this.inner.bytesReceived; }
  get closed(): Promise<TransportError | null> { return this.inner.closed; }

  send(chunk: Uint8Array): Promise<void> {
    if (this.dropped) return Promise.reject(this.dropped);
    if (this.swallowing) return Promise.resolve();
    const n = this.sends++;
    const f = this.tap.send?.({ side: this.side, kind: 'send', label: `${this.phase()} write #${n}`, bytes: chunk.length });
    if (!f) return this.ordered(() => this.inner.send(chunk));
    switch (f.kind) {
      case 'drop':
        this.dropped = new TransportError('INJECTED', `connection dropped by fault injection at write #${n}`);
        this.inner.abort(this.dropped.message);
        return Promise.reject(this.dropped);
      case 'flip': {
        const out = chunk.slice();
        if (out.length > 0) out[Math.min(f.byte, out.length - 1)]! ^= f.xor;
        return this.ordered(() => this.inner.send(out));
      }
      case 'truncate':
        // this write and every later one vanish; end() then closes the stream cleanly early
        this.swallowing = true;
        return Promise.resolve();
      case 'delay': {
        this.advance(f.simNs);
        const held = chunk.slice();
        return this.ordered(() => new Promise<void>((resolve) => setTimeout(resolve, f.wallMs)).then(() => this.inner.send(held)));
      }
    }
  }

  /** Keeps sends in order behind a delayed one. */
  private ordered(fn: () => Promise<void>): Promise<void> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => {});
    return p;
  }

  end(): Promise<void> {
    if (this.dropped) return Promise.reject(this.dropped);
    return this.chain.then(() => this.inner.end());
  }

  abort(reason?: string): void {
    this.inner.abort(reason);
  }

  async close(): Promise<void> {
    await this.end();
    const e = await this.inner.closed;
    if (e) throw e;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    const it = this.inner[Symbol.asyncIterator]();
    let reads = 0;
    return {
      next: async () => {
        const r = await it.next();
        if (r.done) return r;
        const n = reads++;
        const f = this.tap.recv?.({ side: this.side, kind: 'recv', label: `${this.phase()} read #${n}`, bytes: r.value.length });
        if (f) {
          const e = new TransportError('INJECTED', `read #${n} failed: connection reset (fault injection)`);
          this.inner.abort(e.message);
          throw e;
        }
        return r;
      },
      return: async () => {
        await it.return?.();
        return { value: undefined, done: true };
      },
    };
  }
}

/** A transport whose sends and reads are steps of the matrix. */
export function tapTransport(inner: Transport, side: Side, tap: StepTap, phase: PhaseOf, advance: (ns: number) => void): Transport {
  return new TappedTransport(inner, side, tap, phase, advance);
}

/** The errno an injected orchestrator call failure returns (an I/O error: the call did nothing). */
export const INJECTED_CALL_ERRNO = Errno.EIO;
