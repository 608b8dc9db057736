/**
 * Where each engine's SQE keeps the tag the driver matches completions with
 * (qm-hardware.md 6). The offsets come from the shared SQE headers in src/hw/engines.
 */
import type { EngineKind, HwVersion } from '../hw/profile.js';
import { HPRE_TAG } from '../hw/engines/hpre-sqe.js';
import { SEC2_TAG, SEC3_TAG } from '../hw/engines/sec-sqe.js';
import { ZIP_TAG_DW26 } from '../hw/engines/zip-sqe.js';

export interface TagField {
  offset: number;
  /** 2 (u16) or 4 (u32; a u64 tag field gets its high half zeroed). */
  bytes: 2 | 4;
  /** Width of the field in the SQE (8 for the SEC type 3 u64 tag). */
  width: 2 | 4 | 8;
}

export function tagFieldFor(engine: EngineKind, hw: HwVersion): TagField {
  switch (engine) {
    case 'zip':
      // sqe_type 3 layout: tag in dw26 (V2 and later).
      return { offset: ZIP_TAG_DW26, bytes: 4, width: 4 };
    case 'sec':
      // V2 hardware takes type 2 BDs (u16 tag @40), V3+ type 3 BDs (u64 tag @8).
      return hw === 'v2' ? { offset: SEC2_TAG, bytes: 2, width: 2 } : { offset: SEC3_TAG, bytes: 4, width: 8 };
    case 'hpre':
      return { offset: HPRE_TAG, bytes: 2, width: 2 };
  }
}

export function readTag(sqe: Uint8Array, f: TagField): number {
  const o = f.offset;
  const lo16 = sqe[o]! | (sqe[o + 1]! << 8);
  return f.bytes === 2 ? lo16 : (lo16 | (sqe[o + 2]! << 16) | (sqe[o + 3]! << 24)) >>> 0;
}

export function writeTag(sqe: Uint8Array, f: TagField, tag: number): void {
  const o = f.offset;
  sqe.fill(0, o, o + f.width);
  sqe[o] = tag & 0xff;
  sqe[o + 1] = (tag >>> 8) & 0xff;
  if (f.bytes === 4) {
    sqe[o + 2] = (tag >>> 16) & 0xff;
    sqe[o + 3] = (tag >>> 24) & 0xff;
  }
}
