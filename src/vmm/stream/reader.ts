/**
 * Incremental parser of the migration stream (layout in format.ts). Bytes may arrive split
 * anywhere, down to one per push(); each complete item is checked (checksum first, then
 * meaning) and delivered to the event callback at once. The first problem poisons the
 * reader: that StreamError is thrown from push()/finish() and from every later call.
 *
 * "Complete and valid" means finish() returned: the END section arrived, every checksum
 * matched and nothing followed it. Anything else (an exception, or `complete` false) means
 * the destination must discard what it loaded.
 *
 * Event payloads (`data`) may alias the pushed chunks: do not modify a chunk after pushing it.
 */
import { ByteQueue } from './byte-queue.js';
import { crc32 } from './crc32.js';
import { StreamError } from './errors.js';
import type { StreamErrorCode } from './errors.js';
import {
  CRC_BYTES,
  DEFAULT_MAX_RECORD_BYTES,
  MAX_DESC_BYTES,
  MarkerLo,
  RAM_ENTRY_BYTES,
  RAM_PAGE_ZERO,
  SECTION_HEAD_BYTES,
  STREAM_F_PRECOPY,
  STREAM_KNOWN_FLAGS,
  STREAM_MAGIC,
  STREAM_VERSION,
  SectionKind,
  decodeSource,
  getU64,
  markerName,
  sectionKindName,
  utf8Strict,
} from './format.js';
import type { StreamEvent, StreamHeader } from './format.js';

export interface StreamReaderOptions {
  /** Largest section payload / device record accepted (LIMIT beyond it). */
  maxRecordBytes?: number;
}

export interface StreamSummary {
  header: StreamHeader;
  /** Sections including END. */
  sections: number;
  /** Total stream bytes. */
  bytes: number;
  ramPages: number;
  zeroPages: number;
  deviceSections: number;
  deviceDataBytes: number;
}

type Step = (b: Uint8Array) => void;
type DevState = 'open' | 'setup' | 'config' | 'data';

export class StreamReader {
  private readonly onEvent: (ev: StreamEvent) => void;
  private readonly maxRecord: number;
  private readonly q = new ByteQueue();
  private want = 8;
  private what = 'header magic';
  private step: Step = this.onMagic;
  private pos = 0; // stream offset of the next byte to consume
  private itemAt = 0; // stream offset where the item being read starts
  private failure: unknown = null;
  private done = false;

  private headerCrc = 0;
  private headerFlags = 0;
  private header: StreamHeader | null = null;
  private ramPageCount = 0;
  private nextSeq = 1;
  private sectionAt = 0;
  private secKind = 0;
  private secSeq = 0;
  private secLen = 0;
  private lastIteration = 0;
  private device: { name: string; seq: number; state: DevState; initSent: boolean } | null = null;
  private readonly recHead = new Uint8Array(16);
  private recMarker = 0;
  private recSize = 0;
  private readonly stats = { ramPages: 0, zeroPages: 0, deviceSections: 0, deviceDataBytes: 0 };

  constructor(onEvent: (ev: StreamEvent) => void, opts: StreamReaderOptions = {}) {
    this.onEvent = onEvent;
    this.maxRecord = opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  }

  /** True once END was read and validated (finish() will succeed unless more bytes arrive). */
  get complete(): boolean {
    return this.done && this.failure === null;
  }

  /** Bytes consumed so far. */
  get offset(): number {
    return this.pos;
  }

  push(chunk: Uint8Array): void {
    if (this.failure !== null) throw this.failure;
    try {
      if (this.done) {
        if (chunk.length !== 0) this.fail('TRAILING_DATA', `${chunk.length} bytes of trailing data after END section`, this.pos);
        return;
      }
      this.q.push(chunk);
      while (!this.done && this.q.length >= this.want) {
        const b = this.q.take(this.want);
        this.itemAt = this.pos;
        this.pos += b.length;
        this.step(b);
      }
      if (this.done && this.q.length !== 0) {
        this.fail('TRAILING_DATA', `${this.q.length} bytes of trailing data after END section`, this.pos);
      }
    } catch (e) {
      this.failure = e;
      this.q.clear();
      throw e;
    }
  }

  /** The input ended: returns the summary of a complete stream, or throws why it is not one. */
  finish(): StreamSummary {
    if (this.failure !== null) throw this.failure;
    if (!this.done) {
      const missing = this.want - this.q.length;
      const err =
        this.step === this.onSectionHead && this.q.length === 0
          ? new StreamError('TRUNCATED', 'truncated stream: stream ended before END section', this.pos)
          : new StreamError('TRUNCATED', `truncated stream: expected ${missing} more bytes of ${this.what}`, this.pos);
      this.failure = err;
      throw err;
    }
    return {
      header: this.header!,
      sections: this.nextSeq - 1,
      bytes: this.pos,
      ...this.stats,
    };
  }

  private fail(code: StreamErrorCode, msg: string, at = this.itemAt): never {
    throw new StreamError(code, msg, at);
  }

  private expect(n: number, what: string, step: Step): void {
    this.want = n;
    this.what = what;
    this.step = step;
  }

  // ---- header ----

  private onMagic(b: Uint8Array): void {
    for (let i = 0; i < 8; i++) {
      if (b[i] !== STREAM_MAGIC[i]) this.fail('BAD_MAGIC', `bad magic: expected ${hex(STREAM_MAGIC)}, got ${hex(b)}`);
    }
    this.headerCrc = crc32(b);
    this.expect(4, 'stream header', this.onVersion);
  }

  private onVersion(b: Uint8Array): void {
    const v = dv(b).getUint32(0);
    if (v !== STREAM_VERSION) this.fail('BAD_VERSION', `unsupported stream version ${v} (this reader speaks ${STREAM_VERSION})`);
    this.headerCrc = crc32(b, this.headerCrc);
    this.expect(8, 'stream header', this.onFlagsAndLength);
  }

  private onFlagsAndLength(b: Uint8Array): void {
    const descLen = dv(b).getUint32(4);
    if (descLen > MAX_DESC_BYTES) this.fail('LIMIT', `stream header description of ${descLen} bytes exceeds ${MAX_DESC_BYTES}`);
    this.headerCrc = crc32(b, this.headerCrc);
    this.headerFlags = dv(b).getUint32(0); // interpreted only once the checksum holds
    this.expect(descLen + CRC_BYTES, 'stream header', this.onDescription);
  }

  private onDescription(b: Uint8Array): void {
    const desc = b.subarray(0, b.length - CRC_BYTES);
    if (crc32(desc, this.headerCrc) !== dv(b).getUint32(desc.length)) this.fail('CHECKSUM', 'checksum mismatch in stream header', 0);
    const flags = this.headerFlags;
    if ((flags & ~STREAM_KNOWN_FLAGS) !== 0) this.fail('MALFORMED', `unsupported stream flags 0x${flags.toString(16)}`, 0);
    const source = decodeSource(desc);
    if (typeof source === 'string') this.fail('MALFORMED', `malformed stream header: ${source}`, 0);
    this.header = { version: STREAM_VERSION, flags, source };
    this.ramPageCount = source.ramBytes / source.pageSize;
    this.onEvent({ type: 'header', header: this.header });
    this.expectSection();
  }

  // ---- sections ----

  private expectSection(): void {
    this.expect(SECTION_HEAD_BYTES, 'section header', this.onSectionHead);
  }

  private onSectionHead(b: Uint8Array): void {
    const d = dv(b);
    if (crc32(b.subarray(0, 9)) !== d.getUint32(9)) this.fail('CHECKSUM', `checksum mismatch in section header at offset ${this.itemAt}`);
    const kind = b[0]!;
    const seq = d.getUint32(1);
    const len = d.getUint32(5);
    if (seq !== this.nextSeq) this.fail('MALFORMED', `section sequence error: expected section ${this.nextSeq}, got ${seq}`);
    if (kind !== SectionKind.RAM && kind !== SectionKind.DEVICE && kind !== SectionKind.END) {
      this.fail('MALFORMED', `unknown section kind 0x${kind.toString(16)} (section ${seq})`);
    }
    if (len > this.maxRecord) this.fail('LIMIT', `${sectionKindName(kind)} section ${seq} declares ${len} bytes, limit ${this.maxRecord}`);
    this.nextSeq++;
    this.sectionAt = this.itemAt;
    this.secKind = kind;
    this.secSeq = seq;
    this.secLen = len;
    this.expect(len + CRC_BYTES, `${sectionKindName(kind)} section ${seq}`, this.onSectionBody);
  }

  private onSectionBody(b: Uint8Array): void {
    const payload = b.subarray(0, this.secLen);
    const name = `${sectionKindName(this.secKind)} section ${this.secSeq}`;
    if (crc32(payload) !== dv(b).getUint32(this.secLen)) this.fail('CHECKSUM', `checksum mismatch in ${name}`, this.sectionAt);
    switch (this.secKind) {
      case SectionKind.RAM:
        this.onRam(payload);
        this.expectSection();
        return;
      case SectionKind.DEVICE:
        this.onDeviceHeader(payload);
        return;
      default:
        this.onEnd(payload);
    }
  }

  private malformed(msg: string): never {
    this.fail('MALFORMED', `malformed ${sectionKindName(this.secKind)} section ${this.secSeq}: ${msg}`, this.sectionAt);
  }

  private onRam(p: Uint8Array): void {
    const h = this.header!;
    if (p.length < 8) this.malformed('shorter than its fixed part');
    const d = dv(p);
    const iteration = d.getUint32(0);
    const count = d.getUint32(4);
    const table = 8 + count * RAM_ENTRY_BYTES;
    if (table > p.length) this.malformed(`${count} page entries do not fit in ${p.length} bytes`);
    if (iteration < this.lastIteration) this.malformed(`iteration ${iteration} after iteration ${this.lastIteration}`);
    if (iteration !== 0 && (h.flags & STREAM_F_PRECOPY) === 0) this.malformed(`iteration ${iteration} in a stream without pre-copy`);
    const pfns = new Float64Array(count);
    const zero = new Uint8Array(count);
    let nonZero = 0;
    for (let i = 0, e = 8; i < count; i++, e += RAM_ENTRY_BYTES) {
      const pfn = getU64(d, e);
      const fl = p[e + 8]!;
      if ((fl & ~RAM_PAGE_ZERO) !== 0) this.malformed(`unknown page flags 0x${fl.toString(16)}`);
      if (pfn >= this.ramPageCount) this.malformed(`page ${pfn} beyond guest RAM of ${this.ramPageCount} pages`);
      pfns[i] = pfn;
      if (fl & RAM_PAGE_ZERO) zero[i] = 1;
      else nonZero++;
    }
    const ps = h.source.pageSize;
    if (p.length !== table + nonZero * ps) this.malformed(`length ${p.length} does not match ${nonZero} data pages of ${ps} bytes`);
    this.lastIteration = iteration;
    this.stats.ramPages += count;
    this.stats.zeroPages += count - nonZero;
    this.onEvent({ type: 'ram', seq: this.secSeq, iteration, pageSize: ps, pfns, zero, data: p.subarray(table) });
  }

  private onDeviceHeader(p: Uint8Array): void {
    if (p.length < 1) this.malformed('empty');
    const n = p[0]!;
    if (n === 0 || p.length !== 1 + n + 8) this.malformed(`name length ${n} does not match a payload of ${p.length} bytes`);
    let name: string;
    try {
      name = utf8Strict.decode(p.subarray(1, 1 + n));
    } catch {
      this.malformed('device name is not valid UTF-8');
    }
    const d = dv(p);
    this.device = { name, seq: this.secSeq, state: 'open', initSent: false };
    this.stats.deviceSections++;
    this.onEvent({ type: 'device-begin', seq: this.secSeq, name, instance: d.getUint32(1 + n), version: d.getUint32(5 + n) });
    this.expectMarker();
  }

  private onEnd(p: Uint8Array): void {
    if (p.length !== 12) this.malformed(`payload of ${p.length} bytes, expected 12`);
    const d = dv(p);
    const sections = d.getUint32(0);
    const bytes = getU64(d, 4);
    if (sections !== this.secSeq - 1) this.malformed(`says ${sections} sections precede it, read ${this.secSeq - 1}`);
    if (bytes !== this.sectionAt) this.malformed(`says ${bytes} stream bytes precede it, read ${this.sectionAt}`);
    this.done = true;
    this.onEvent({ type: 'end', seq: this.secSeq, sections, bytes });
  }

  // ---- device records ----

  private devLabel(): string {
    const d = this.device!;
    return `device section ${d.seq} (${d.name})`;
  }

  private expectMarker(): void {
    this.expect(8, `device marker in ${this.devLabel()}`, this.onMarker);
  }

  private onMarker(b: Uint8Array): void {
    const d = dv(b);
    const hi = d.getUint32(0);
    const lo = d.getUint32(4);
    const name = markerName(hi, lo);
    if (name === undefined) {
      this.fail('UNEXPECTED_MARKER', `unexpected marker 0x${hex(b)} in ${this.devLabel()}`);
    }
    const dev = this.device!;
    const unexpected = (why: string): never => this.fail('UNEXPECTED_MARKER', `unexpected marker ${name} in ${this.devLabel()}: ${why}`);
    switch (lo) {
      case MarkerLo.DEV_SETUP_STATE:
      case MarkerLo.DEV_CONFIG_STATE:
        if (dev.state !== 'open') unexpected(`must be the only record of its section`);
        break;
      case MarkerLo.DEV_DATA_STATE:
        if (dev.state === 'setup' || dev.state === 'config') unexpected(`after ${dev.state} state`);
        break;
      case MarkerLo.DEV_INIT_DATA_SENT:
        if (dev.state === 'setup' || dev.state === 'config') unexpected(`after ${dev.state} state`);
        if (dev.initSent) unexpected('sent twice in one section');
        break;
      default: // END_OF_STATE is always allowed
        break;
    }
    this.recHead.set(b, 0);
    this.recMarker = lo;
    if (lo === MarkerLo.DEV_DATA_STATE || lo === MarkerLo.DEV_CONFIG_STATE) {
      this.expect(8, `${name} size`, this.onRecordSize);
    } else {
      this.expect(CRC_BYTES, `${name} checksum`, this.onMarkerOnly);
    }
  }

  private onRecordSize(b: Uint8Array): void {
    const size = getU64(dv(b), 0);
    const name = markerName(0xffffffff, this.recMarker)!;
    if (size > this.maxRecord) this.fail('LIMIT', `${name} record of ${size} bytes in ${this.devLabel()} exceeds ${this.maxRecord}`);
    this.recHead.set(b, 8);
    this.recSize = size;
    this.expect(size + CRC_BYTES, name, this.onRecordData);
  }

  private onRecordData(b: Uint8Array): void {
    const name = markerName(0xffffffff, this.recMarker)!;
    const data = b.subarray(0, this.recSize);
    if (crc32(data, crc32(this.recHead)) !== dv(b).getUint32(this.recSize)) {
      this.fail('CHECKSUM', `checksum mismatch in ${name} record of ${this.devLabel()}`, this.itemAt - 16);
    }
    const dev = this.device!;
    if (this.recMarker === MarkerLo.DEV_DATA_STATE) {
      dev.state = 'data';
      this.stats.deviceDataBytes += data.length;
      this.onEvent({ type: 'device-data', seq: dev.seq, name: dev.name, data });
    } else {
      dev.state = 'config';
      this.onEvent({ type: 'device-config', seq: dev.seq, name: dev.name, data });
    }
    this.expectMarker();
  }

  private onMarkerOnly(b: Uint8Array): void {
    const name = markerName(0xffffffff, this.recMarker)!;
    if (crc32(this.recHead.subarray(0, 8)) !== dv(b).getUint32(0)) {
      this.fail('CHECKSUM', `checksum mismatch in ${name} record of ${this.devLabel()}`, this.itemAt - 8);
    }
    const dev = this.device!;
    switch (this.recMarker) {
      case MarkerLo.DEV_SETUP_STATE:
        dev.state = 'setup';
        this.onEvent({ type: 'device-setup', seq: dev.seq, name: dev.name });
        this.expectMarker();
        return;
      case MarkerLo.DEV_INIT_DATA_SENT:
        dev.state = 'data';
        dev.initSent = true;
        this.onEvent({ type: 'device-init-data-sent', seq: dev.seq, name: dev.name });
        this.expectMarker();
        return;
      default:
        this.device = null;
        this.onEvent({ type: 'device-end', seq: dev.seq, name: dev.name });
        this.expectSection();
    }
  }
}

/**
 * Reads a whole stream from an async byte source, awaiting `onEvent` for each event in
 * order. Resolves with the summary only for a complete, valid stream; rejects with the
 * StreamError (or the source's own error, e.g. a dropped connection) otherwise. Events
 * parsed before a failure are still delivered first.
 */
export async function readStream(
  source: AsyncIterable<Uint8Array>,
  onEvent: (ev: StreamEvent) => void | Promise<void>,
  opts: StreamReaderOptions = {},
): Promise<StreamSummary> {
  const pending: StreamEvent[] = [];
  const reader = new StreamReader((ev) => pending.push(ev), opts);
  const drain = async () => {
    for (let i = 0; i < pending.length; i++) await onEvent(pending[i]!);
    pending.length = 0;
  };
  for await (const chunk of source) {
    let err: unknown = null;
    try {
      reader.push(chunk);
    } catch (e) {
      err = e;
    }
    await drain();
    if (err !== null) throw err;
  }
  return reader.finish();
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.length);
}

function hex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += b[i]!.toString(16).padStart(2, '0');
  return s;
}
