/**
 * The live-migration stream between a source and a destination VMM. All integers are big
 * endian (as in QEMU's stream). Layout, version 1:
 *
 *   header   magic "HACCMIG\n" (8) | be32 version | be32 flags | be32 descLen | desc
 *            | be32 crc32(magic .. desc)
 *   desc     u8 engineLen | engine (utf-8) | be32 hwVersion | be16 vendorId
 *            | be16 nIds | nIds x be16 deviceId | be64 ramBytes | be32 pageSize
 *   section  u8 kind | be32 seq | be32 len | be32 crc32(kind, seq, len)
 *            | payload[len] | be32 crc32(payload)
 *            seq counts sections from 1 with no gaps.
 *   RAM      be32 iteration | be32 count | count x (be64 pfn | u8 flags)
 *            | the data of every page without RAM_PAGE_ZERO, in entry order
 *   DEVICE   u8 nameLen | name (utf-8, e.g. a BDF) | be32 instance | be32 version,
 *            then records until END_OF_STATE (QEMU's vfio framing, spec
 *            vfio-uapi-and-migration.md §6):
 *              be64 marker [| be64 size | bytes  (DEV_CONFIG_STATE, DEV_DATA_STATE)]
 *              | be32 crc32(marker .. bytes)
 *   END      be32 sections before END | be64 stream bytes before END
 *
 * Separate header and payload checksums mean a corrupted length is caught before it is
 * trusted. Nothing may follow END.
 */

/** 8-byte magic: "HACCMIG" and a newline, so text-mode mangling is visible. */
export const STREAM_MAGIC = new Uint8Array([0x48, 0x41, 0x43, 0x43, 0x4d, 0x49, 0x47, 0x0a]);
export const STREAM_VERSION = 1;
/** RAM is sent in iterations while the guest runs; without it every RAM section is iteration 0. */
export const STREAM_F_PRECOPY = 1 << 0;
export const STREAM_KNOWN_FLAGS = STREAM_F_PRECOPY;

export const SectionKind = {
  RAM: 0x01,
  DEVICE: 0x02,
  END: 0x7f,
} as const;
export type SectionKindValue = (typeof SectionKind)[keyof typeof SectionKind];

export function sectionKindName(kind: number): string {
  switch (kind) {
    case SectionKind.RAM:
      return 'RAM';
    case SectionKind.DEVICE:
      return 'device';
    case SectionKind.END:
      return 'END';
    default:
      return `kind 0x${kind.toString(16)}`;
  }
}

/** RAM entry flag: an all-zero page, sent without data. */
export const RAM_PAGE_ZERO = 0x01;

/** QEMU VFIO_MIG_FLAG_* markers (be64 on the wire). All share the high word 0xffffffff. */
export const DeviceMarker = {
  END_OF_STATE: 0xffffffffef100001n,
  DEV_CONFIG_STATE: 0xffffffffef100002n,
  DEV_SETUP_STATE: 0xffffffffef100003n,
  DEV_DATA_STATE: 0xffffffffef100004n,
  DEV_INIT_DATA_SENT: 0xffffffffef100005n,
} as const;
export const MARKER_HI = 0xffffffff;
/** Low words of the markers, for comparisons without BigInt. */
export const MarkerLo = {
  END_OF_STATE: 0xef100001,
  DEV_CONFIG_STATE: 0xef100002,
  DEV_SETUP_STATE: 0xef100003,
  DEV_DATA_STATE: 0xef100004,
  DEV_INIT_DATA_SENT: 0xef100005,
} as const;

export function markerName(hi: number, lo: number): string | undefined {
  if (hi !== MARKER_HI) return undefined;
  for (const [name, v] of Object.entries(MarkerLo)) if (v === lo) return name;
  return undefined;
}

/** Sizes of fixed parts. */
export const HEADER_FIXED_BYTES = 20;
export const SECTION_HEAD_BYTES = 13;
export const CRC_BYTES = 4;
export const RAM_ENTRY_BYTES = 9;
export const MAX_DESC_BYTES = 4096;
export const MAX_DEVICE_IDS = 256;
export const MAX_NAME_BYTES = 255;
/** Default bound on one section payload or one device record (reader and writer). */
export const DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024;

/** Who is sending: checked by the destination before it accepts anything. */
export interface SourceDescription {
  /** Accelerator engine, e.g. "zip", "sec", "hpre". */
  engine: string;
  /** QM hardware version (u32), e.g. 0x30 for QM_HW_V3. */
  hwVersion: number;
  /** PCI vendor id (u16). */
  vendorId: number;
  /** PCI device ids (u16 each) of the functions being migrated. */
  deviceIds: number[];
  /** Guest RAM size in bytes (multiple of pageSize). */
  ramBytes: number;
  /** Guest page size: a power of two from 4 KiB to 64 KiB. */
  pageSize: number;
}

export interface StreamHeader {
  version: number;
  flags: number;
  source: SourceDescription;
}

export interface RamSectionEvent {
  type: 'ram';
  seq: number;
  iteration: number;
  pageSize: number;
  /** Guest page frame numbers, in stream order. */
  pfns: Float64Array;
  /** 1 where the page is all zero (no data sent). */
  zero: Uint8Array;
  /** The non-zero pages' contents, concatenated in entry order. */
  data: Uint8Array;
}

export type StreamEvent =
  | { type: 'header'; header: StreamHeader }
  | RamSectionEvent
  | { type: 'device-begin'; seq: number; name: string; instance: number; version: number }
  | { type: 'device-setup'; seq: number; name: string }
  | { type: 'device-config'; seq: number; name: string; data: Uint8Array }
  | { type: 'device-data'; seq: number; name: string; data: Uint8Array }
  | { type: 'device-init-data-sent'; seq: number; name: string }
  | { type: 'device-end'; seq: number; name: string }
  | { type: 'end'; seq: number; sections: number; bytes: number };

/** Calls `cb` for each page of a RAM section: its contents, or null for a zero page. */
export function forEachRamPage(ev: RamSectionEvent, cb: (pfn: number, page: Uint8Array | null) => void): void {
  let at = 0;
  for (let i = 0; i < ev.pfns.length; i++) {
    if (ev.zero[i]) {
      cb(ev.pfns[i]!, null);
    } else {
      cb(ev.pfns[i]!, ev.data.subarray(at, at + ev.pageSize));
      at += ev.pageSize;
    }
  }
}

/** Problems with a source description, or null when it is valid. */
export function checkSource(s: SourceDescription): string | null {
  if (typeof s.engine !== 'string' || s.engine.length === 0) return 'engine must be a non-empty string';
  if (utf8.encode(s.engine).length > 255) return 'engine name longer than 255 bytes';
  if (!isU32(s.hwVersion)) return `hwVersion ${s.hwVersion} is not a u32`;
  if (!isU16(s.vendorId)) return `vendorId ${s.vendorId} is not a u16`;
  if (!Array.isArray(s.deviceIds) || s.deviceIds.length > MAX_DEVICE_IDS) return 'too many device ids';
  for (const id of s.deviceIds) if (!isU16(id)) return `device id ${id} is not a u16`;
  if (!Number.isInteger(s.pageSize) || s.pageSize < 4096 || s.pageSize > 65536 || (s.pageSize & (s.pageSize - 1)) !== 0) {
    return `page size ${s.pageSize} is not a power of two in [4096, 65536]`;
  }
  if (!Number.isSafeInteger(s.ramBytes) || s.ramBytes < 0 || s.ramBytes % s.pageSize !== 0) {
    return `RAM size ${s.ramBytes} is not a multiple of the page size`;
  }
  return null;
}

export function encodeSource(s: SourceDescription): Uint8Array {
  const engine = utf8.encode(s.engine);
  const out = new Uint8Array(1 + engine.length + 4 + 2 + 2 + 2 * s.deviceIds.length + 8 + 4);
  const dv = new DataView(out.buffer);
  let p = 0;
  out[p++] = engine.length;
  out.set(engine, p);
  p += engine.length;
  dv.setUint32(p, s.hwVersion);
  p += 4;
  dv.setUint16(p, s.vendorId);
  p += 2;
  dv.setUint16(p, s.deviceIds.length);
  p += 2;
  for (const id of s.deviceIds) {
    dv.setUint16(p, id);
    p += 2;
  }
  setU64(dv, p, s.ramBytes);
  p += 8;
  dv.setUint32(p, s.pageSize);
  return out;
}

/** Parses a description; returns a message for a malformed one. */
export function decodeSource(b: Uint8Array): SourceDescription | string {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  let p = 0;
  const need = (n: number) => p + n <= b.length;
  if (!need(1)) return 'description too short';
  const el = b[p++]!;
  if (!need(el + 8)) return 'description too short';
  let engine: string;
  try {
    engine = utf8Strict.decode(b.subarray(p, p + el));
  } catch {
    return 'engine name is not valid UTF-8';
  }
  p += el;
  const hwVersion = dv.getUint32(p);
  p += 4;
  const vendorId = dv.getUint16(p);
  p += 2;
  const n = dv.getUint16(p);
  p += 2;
  if (!need(2 * n + 12)) return 'description too short';
  const deviceIds: number[] = [];
  for (let i = 0; i < n; i++, p += 2) deviceIds.push(dv.getUint16(p));
  const ramBytes = getU64(dv, p);
  p += 8;
  const pageSize = dv.getUint32(p);
  p += 4;
  if (p !== b.length) return `description has ${b.length - p} unexpected trailing bytes`;
  const s: SourceDescription = { engine, hwVersion, vendorId, deviceIds, ramBytes, pageSize };
  const bad = checkSource(s);
  return bad ?? s;
}

export const utf8 = new TextEncoder();
export const utf8Strict = new TextDecoder('utf-8', { fatal: true });

export function isU32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}
export function isU16(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

/** be64 store of a non-negative safe integer. */
export function setU64(dv: DataView, at: number, v: number): void {
  dv.setUint32(at, Math.floor(v / 0x1_0000_0000));
  dv.setUint32(at + 4, v >>> 0);
}

/** be64 load; values above 2^53 come back as a number >= 2^53 (callers range-check). */
export function getU64(dv: DataView, at: number): number {
  return dv.getUint32(at) * 0x1_0000_0000 + dv.getUint32(at + 4);
}
