/**
 * Produces a migration stream (layout in format.ts) as byte chunks handed to a sink, in
 * order. Each call builds its bytes synchronously and queues them behind earlier ones, so
 * callers may await every call or only the last; a sink failure fails every later call.
 * Chunks passed to the sink are freshly allocated and never touched again by the writer.
 *
 * The writer refuses to produce anything the reader would reject (order of sections and
 * device records, sizes), throwing StreamError with code USAGE.
 */
import { Buffer } from 'node:buffer';
import { crc32 } from './crc32.js';
import { StreamError } from './errors.js';
import {
  CRC_BYTES,
  DEFAULT_MAX_RECORD_BYTES,
  HEADER_FIXED_BYTES,
  MARKER_HI,
  MAX_NAME_BYTES,
  MarkerLo,
  RAM_ENTRY_BYTES,
  RAM_PAGE_ZERO,
  SECTION_HEAD_BYTES,
  STREAM_F_PRECOPY,
  STREAM_KNOWN_FLAGS,
  STREAM_MAGIC,
  STREAM_VERSION,
  SectionKind,
  checkSource,
  encodeSource,
  isU32,
  setU64,
  utf8,
} from './format.js';
import type { SourceDescription } from './format.js';

export type ChunkSink = (chunk: Uint8Array) => void | Promise<void>;

/** Where ramFrom() gets its pages. */
export interface RamPageSource {
  /** Copies the next page into `dst` and returns its page frame number; -1: no more pages. */
  next(dst: Uint8Array): number;
  /** For a page that read as all zero: whether it still needs a (zero) entry. Default: yes. */
  keepZero?(pfn: number): boolean;
}

export interface RamFromResult {
  /** Entries in the section (0: no section was written). */
  pages: number;
  zeroPages: number;
  /** Stream bytes of the section. */
  bytes: number;
  /** Settles like the other writer calls (when the sink took the section). */
  sent: Promise<void>;
}

export interface StreamWriterOptions {
  /** Largest section payload / device record (must match the reader's limit). */
  maxRecordBytes?: number;
}

type DeviceState = 'open' | 'setup' | 'config' | 'data';

export class StreamWriter {
  private readonly sink: ChunkSink;
  private readonly maxRecord: number;
  private tail: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  private phase: 'init' | 'sections' | 'device' | 'done' = 'init';
  private seq = 0;
  private flags = 0;
  private pageSize = 0;
  private ramPages = 0;
  private lastIteration = 0;
  private dev: { name: string; state: DeviceState; initSent: boolean } | null = null;
  private ramPfns = new Float64Array(0);
  private ramZero = new Uint8Array(0);
  /** Bytes produced so far (queued to the sink, not necessarily delivered yet). */
  bytesWritten = 0;

  constructor(sink: ChunkSink, opts: StreamWriterOptions = {}) {
    this.sink = sink;
    this.maxRecord = opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  }

  /** Sections written so far (END excluded). */
  get sections(): number {
    return this.seq;
  }

  /** Starts the stream. `flags`: STREAM_F_* bits. */
  header(source: SourceDescription, flags = 0): Promise<void> {
    return this.guard(() => {
      if (this.phase !== 'init') usage('header already written');
      const bad = checkSource(source);
      if (bad) usage(`bad source description: ${bad}`);
      if (!isU32(flags) || (flags & ~STREAM_KNOWN_FLAGS) !== 0) usage(`unknown stream flags 0x${flags.toString(16)}`);
      const desc = encodeSource(source);
      const out = new Uint8Array(HEADER_FIXED_BYTES + desc.length + CRC_BYTES);
      const dv = view(out);
      out.set(STREAM_MAGIC, 0);
      dv.setUint32(8, STREAM_VERSION);
      dv.setUint32(12, flags);
      dv.setUint32(16, desc.length);
      out.set(desc, HEADER_FIXED_BYTES);
      dv.setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)));
      this.flags = flags;
      this.pageSize = source.pageSize;
      this.ramPages = source.ramBytes / source.pageSize;
      this.phase = 'sections';
      return out;
    });
  }

  /**
   * One RAM section: pages `pfns[i]` with contents at `contents[i*pageSize ..]`. All-zero
   * pages are detected and sent as flags only. `iteration` never decreases, and stays 0
   * without STREAM_F_PRECOPY.
   */
  ram(iteration: number, pfns: ArrayLike<number>, contents: Uint8Array): Promise<void> {
    return this.guard(() => {
      this.inSections('RAM section');
      const ps = this.pageSize;
      const n = pfns.length;
      if (!isU32(iteration)) usage(`bad iteration ${iteration}`);
      if (iteration < this.lastIteration) usage(`iteration ${iteration} after iteration ${this.lastIteration}`);
      if (iteration !== 0 && (this.flags & STREAM_F_PRECOPY) === 0) usage('iterations > 0 need STREAM_F_PRECOPY');
      if (contents.length !== n * ps) usage(`${contents.length} bytes of contents for ${n} pages of ${ps}`);
      const zero = new Uint8Array(n);
      let nonZero = 0;
      for (let i = 0; i < n; i++) {
        const pfn = pfns[i]!;
        if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.ramPages) usage(`page ${pfn} outside guest RAM`);
        if (isZeroPage(contents, i * ps, ps)) zero[i] = 1;
        else nonZero++;
      }
      const len = 8 + n * RAM_ENTRY_BYTES + nonZero * ps;
      if (len > this.maxRecord) usage(`RAM section of ${len} bytes exceeds ${this.maxRecord}; send fewer pages per section`);
      const { out, payload } = this.frame(SectionKind.RAM, len);
      const dv = view(payload);
      dv.setUint32(0, iteration);
      dv.setUint32(4, n);
      let e = 8;
      let d = 8 + n * RAM_ENTRY_BYTES;
      for (let i = 0; i < n; i++, e += RAM_ENTRY_BYTES) {
        setU64(dv, e, pfns[i]!);
        if (zero[i]) {
          payload[e + 8] = RAM_PAGE_ZERO;
        } else {
          payload.set(contents.subarray(i * ps, (i + 1) * ps), d);
          d += ps;
        }
      }
      this.lastIteration = iteration;
      return this.seal(out, payload);
    });
  }

  /**
   * One RAM section built in place: `src.next(dst)` copies the next page straight into the
   * section (dst is a page-sized view of it) and returns its page frame number, or -1 when
   * there are no more; up to `maxPages` entries. A page that turns out all zero becomes a
   * zero entry, or no entry at all when `src.keepZero(pfn)` says the reader does not need it.
   * Same bytes on the wire as ram() with the same pages; it only skips the staging copy.
   * Returns what went into the section (nothing is written when no entry was produced).
   */
  ramFrom(iteration: number, maxPages: number, src: RamPageSource): RamFromResult {
    const res: RamFromResult = { pages: 0, zeroPages: 0, bytes: 0, sent: Promise.resolve() };
    res.sent = this.guard(() => {
      this.inSections('RAM section');
      if (!isU32(iteration)) usage(`bad iteration ${iteration}`);
      if (iteration < this.lastIteration) usage(`iteration ${iteration} after iteration ${this.lastIteration}`);
      if (iteration !== 0 && (this.flags & STREAM_F_PRECOPY) === 0) usage('iterations > 0 need STREAM_F_PRECOPY');
      const ps = this.pageSize;
      if (!Number.isInteger(maxPages) || maxPages < 1 || 8 + maxPages * (RAM_ENTRY_BYTES + ps) > this.maxRecord) {
        usage(`RAM section of up to ${maxPages} pages does not fit a record of ${this.maxRecord} bytes`);
      }
      // the entry table's final size is known only at the end: data is gathered after a
      // table sized for maxPages and moved down when fewer entries came
      const dataAt = SECTION_HEAD_BYTES + 8 + maxPages * RAM_ENTRY_BYTES;
      const out = new Uint8Array(dataAt + maxPages * ps + CRC_BYTES);
      const pfns = this.ramPfns.length >= maxPages ? this.ramPfns : (this.ramPfns = new Float64Array(maxPages));
      const zero = this.ramZero.length >= maxPages ? this.ramZero : (this.ramZero = new Uint8Array(maxPages));
      let n = 0;
      let data = 0;
      while (n < maxPages) {
        const at = dataAt + data * ps;
        const slot = out.subarray(at, at + ps);
        const pfn = src.next(slot);
        if (pfn < 0) break;
        if (!Number.isInteger(pfn) || pfn >= this.ramPages) usage(`page ${pfn} outside guest RAM`);
        if (isZeroPage(out, at, ps)) {
          if (src.keepZero && !src.keepZero(pfn)) continue;
          zero[n] = 1;
          res.zeroPages++;
        } else {
          zero[n] = 0;
          data++;
        }
        pfns[n++] = pfn;
      }
      if (n === 0) return [];
      const table = 8 + n * RAM_ENTRY_BYTES;
      const len = table + data * ps;
      if (n < maxPages) out.copyWithin(SECTION_HEAD_BYTES + table, dataAt, dataAt + data * ps);
      const chunk = out.subarray(0, SECTION_HEAD_BYTES + len + CRC_BYTES);
      const payload = this.head(chunk, SectionKind.RAM, len);
      const dv = view(payload);
      dv.setUint32(0, iteration);
      dv.setUint32(4, n);
      for (let i = 0, e = 8; i < n; i++, e += RAM_ENTRY_BYTES) {
        setU64(dv, e, pfns[i]!);
        payload[e + 8] = zero[i] ? RAM_PAGE_ZERO : 0;
      }
      this.lastIteration = iteration;
      res.pages = n;
      res.bytes = chunk.length;
      return this.seal(chunk, payload);
    });
    return res;
  }

  /** Opens a device section; records follow until endDevice(). */
  beginDevice(name: string, opts: { instance?: number; version?: number } = {}): Promise<void> {
    return this.guard(() => {
      this.inSections('device section');
      const nm = utf8.encode(name);
      if (nm.length === 0 || nm.length > MAX_NAME_BYTES) usage(`device name must be 1..${MAX_NAME_BYTES} bytes`);
      const instance = opts.instance ?? 0;
      const version = opts.version ?? 1;
      if (!isU32(instance) || !isU32(version)) usage('instance and version must be u32');
      const { out, payload } = this.frame(SectionKind.DEVICE, 1 + nm.length + 8);
      payload[0] = nm.length;
      payload.set(nm, 1);
      const dv = view(payload);
      dv.setUint32(1 + nm.length, instance);
      dv.setUint32(5 + nm.length, version);
      this.phase = 'device';
      this.dev = { name, state: 'open', initSent: false };
      return this.seal(out, payload);
    });
  }

  /** DEV_SETUP_STATE: only as the first record of a section, followed by endDevice(). */
  deviceSetup(): Promise<void> {
    return this.guard(() => {
      const d = this.inDevice('DEV_SETUP_STATE');
      if (d.state !== 'open') usage('DEV_SETUP_STATE must be the only record of its section');
      d.state = 'setup';
      return record(MarkerLo.DEV_SETUP_STATE, null);
    });
  }

  /** DEV_CONFIG_STATE with the device's config space / vendor state; alone in its section. */
  deviceConfig(data: Uint8Array): Promise<void> {
    return this.guard(() => {
      const d = this.inDevice('DEV_CONFIG_STATE');
      if (d.state !== 'open') usage('DEV_CONFIG_STATE must be the only record of its section');
      if (data.length > this.maxRecord) usage(`config state of ${data.length} bytes exceeds ${this.maxRecord}`);
      d.state = 'config';
      return record(MarkerLo.DEV_CONFIG_STATE, data);
    });
  }

  /** DEV_DATA_STATE: device migration data; large buffers are split into several records. */
  deviceData(data: Uint8Array): Promise<void> {
    return this.guard(() => {
      const d = this.inDevice('DEV_DATA_STATE');
      if (d.state !== 'open' && d.state !== 'data') usage('DEV_DATA_STATE not allowed after setup/config records');
      d.state = 'data';
      if (data.length <= this.maxRecord) return record(MarkerLo.DEV_DATA_STATE, data);
      const parts: Uint8Array[] = [];
      for (let at = 0; at < data.length; at += this.maxRecord) {
        parts.push(record(MarkerLo.DEV_DATA_STATE, data.subarray(at, at + this.maxRecord)));
      }
      return parts;
    });
  }

  /** DEV_INIT_DATA_SENT: the device's initial pre-copy bytes are all sent (once per section). */
  deviceInitDataSent(): Promise<void> {
    return this.guard(() => {
      const d = this.inDevice('DEV_INIT_DATA_SENT');
      if (d.state !== 'open' && d.state !== 'data') usage('DEV_INIT_DATA_SENT not allowed after setup/config records');
      if (d.initSent) usage('DEV_INIT_DATA_SENT twice in one section');
      d.initSent = true;
      d.state = 'data';
      return record(MarkerLo.DEV_INIT_DATA_SENT, null);
    });
  }

  /** END_OF_STATE: closes the device section. */
  endDevice(): Promise<void> {
    return this.guard(() => {
      this.inDevice('END_OF_STATE');
      this.dev = null;
      this.phase = 'sections';
      return record(MarkerLo.END_OF_STATE, null);
    });
  }

  /** The END section; the stream is complete once the sink has taken it. */
  end(): Promise<void> {
    return this.guard(() => {
      this.inSections('END section');
      const sections = this.seq;
      const before = this.bytesWritten;
      const { out, payload } = this.frame(SectionKind.END, 12);
      const dv = view(payload);
      dv.setUint32(0, sections);
      setU64(dv, 4, before);
      this.phase = 'done';
      return this.seal(out, payload);
    });
  }

  /** Resolves when every queued chunk has been accepted by the sink. */
  flush(): Promise<void> {
    return this.tail;
  }

  private inSections(what: string): void {
    if (this.phase === 'init') usage(`${what} before the header`);
    if (this.phase === 'device') usage(`${what} inside the open device section "${this.dev!.name}"`);
    if (this.phase === 'done') usage(`${what} after END`);
  }

  private inDevice(what: string): { name: string; state: DeviceState; initSent: boolean } {
    if (this.phase !== 'device' || !this.dev) usage(`${what} outside a device section`);
    return this.dev;
  }

  /** Allocates a whole section: head, payload (returned as a view) and payload CRC slot. */
  private frame(kind: number, len: number): { out: Uint8Array; payload: Uint8Array } {
    const out = new Uint8Array(SECTION_HEAD_BYTES + len + CRC_BYTES);
    return { out, payload: this.head(out, kind, len) };
  }

  /** Writes the section head into out[0, 13) and returns the payload view after it. */
  private head(out: Uint8Array, kind: number, len: number): Uint8Array {
    const dv = view(out);
    out[0] = kind;
    dv.setUint32(1, ++this.seq);
    dv.setUint32(5, len);
    dv.setUint32(9, crc32(out.subarray(0, 9)));
    return out.subarray(SECTION_HEAD_BYTES, SECTION_HEAD_BYTES + len);
  }

  private seal(out: Uint8Array, payload: Uint8Array): Uint8Array {
    view(out).setUint32(out.length - 4, crc32(payload));
    return out;
  }

  /**
   * Runs a synchronous builder; on success queues its chunk(s) behind earlier ones. Builder
   * errors reject this call only; sink errors poison the writer.
   */
  private guard(build: () => Uint8Array | Uint8Array[]): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    let chunks: Uint8Array[];
    try {
      const r = build();
      chunks = Array.isArray(r) ? r : [r];
    } catch (e) {
      return Promise.reject(e);
    }
    for (const c of chunks) this.bytesWritten += c.length;
    this.tail = this.tail.then(async () => {
      if (this.failure !== null) throw this.failure;
      try {
        for (const c of chunks) await this.sink(c);
      } catch (e) {
        this.failure = e;
        throw e;
      }
    });
    return this.tail;
  }
}

function usage(msg: string): never {
  throw new StreamError('USAGE', `stream writer: ${msg}`);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.length);
}

/** One device record: marker [| size | data] | crc32(all before). */
function record(markerLo: number, data: Uint8Array | null): Uint8Array {
  const body = data ? 16 + data.length : 8;
  const out = new Uint8Array(body + CRC_BYTES);
  const dv = view(out);
  dv.setUint32(0, MARKER_HI);
  dv.setUint32(4, markerLo);
  if (data) {
    setU64(dv, 8, data.length);
    out.set(data, 16);
  }
  dv.setUint32(body, crc32(out.subarray(0, body)));
  return out;
}

const ZERO_PAGE = new Uint8Array(65536);

/** Zero test of b[at, at+len) (len <= 64 KiB), by the native compare against a zero page. */
function isZeroPage(b: Uint8Array, at: number, len: number): boolean {
  return Buffer.compare(b.subarray(at, at + len), ZERO_PAGE.subarray(0, len)) === 0;
}
