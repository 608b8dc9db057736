/**
 * `hisi-acc-sim inspect FILE [--json]`: decodes a saved hisi-acc-vfio-pci migration stream
 * (struct acc_vf_data, hisi-acc-vfio-pci.md section 3) field by field.
 *
 * The stream must be 40 bytes (match data only) or 176 bytes, carry the V2 or V1 magic, and,
 * for V2, the driver's major version. A V2 stream whose eqe_dma/aeqe_dma disagree with its
 * EQC/AEQC address dwords is flagged too (the V2 driver derives one from the other). Any of
 * these makes the exit code 1 with the reason on stderr. `--json` prints the fields under
 * the kernel's names: u16/u32 as JSON numbers, u64 as "0x..." strings.
 */
import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import {
  ACC_DEV_MAGIC_V1, ACC_DEV_MAGIC_V2, ACC_DRV_MAJOR_VER, ACC_VF_DATA_SIZE, QM_MATCH_SIZE,
  type AccVfField, accVfLayout, xeqcDma,
} from '../drivers/hisi-acc/acc-vf-data.js';

export interface InspectOptions {
  json?: boolean;
}

export interface InspectStreams {
  stdout: Writable;
  stderr: Writable;
}

type Value = number | string | (number | string)[];

export interface InspectReport {
  kind: 'v2' | 'v1' | null;
  length: number;
  fields: Record<string, Value>;
  errors: string[];
}

function hex64(v: bigint): string {
  return `0x${v.toString(16).padStart(16, '0')}`;
}

function readField(dv: DataView, f: AccVfField): Value {
  const one = (o: number): number | string =>
    f.size === 8 ? hex64(dv.getBigUint64(o, true)) : f.size === 4 ? dv.getUint32(o, true) : dv.getUint16(o, true);
  if (f.count === 1) return one(f.offset);
  const out: (number | string)[] = [];
  for (let i = 0; i < f.count; i++) out.push(one(f.offset + i * f.size));
  return out;
}

/** Decodes what it can of `bytes` and lists everything wrong with it. */
export function inspectStream(bytes: Uint8Array): InspectReport {
  const errors: string[] = [];
  const report: InspectReport = { kind: null, length: bytes.length, fields: {}, errors };
  if (bytes.length !== QM_MATCH_SIZE && bytes.length !== ACC_VF_DATA_SIZE) {
    errors.push(`length ${bytes.length}: a stream is ${QM_MATCH_SIZE} (match data only) or ${ACC_VF_DATA_SIZE} bytes`);
  }
  if (bytes.length < 8) {
    errors.push('too short to hold acc_magic');
    return report;
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getBigUint64(0, true);
  if (magic === ACC_DEV_MAGIC_V2) report.kind = 'v2';
  else if (magic === ACC_DEV_MAGIC_V1) report.kind = 'v1';
  else errors.push(`bad acc_magic ${hex64(magic)} (want ${hex64(ACC_DEV_MAGIC_V2)} or ${hex64(ACC_DEV_MAGIC_V1)})`);
  const limit = Math.min(bytes.length, ACC_VF_DATA_SIZE);
  for (const f of accVfLayout(report.kind ?? 'v2')) {
    if (f.offset + f.size * f.count <= limit) report.fields[f.name] = readField(dv, f);
  }
  if (report.kind === 'v2' && bytes.length >= 30) {
    const major = dv.getUint16(28, true);
    if (major !== ACC_DRV_MAJOR_VER) errors.push(`major_ver ${major} is not the driver's ${ACC_DRV_MAJOR_VER}`);
  }
  if (report.kind === 'v2' && bytes.length === ACC_VF_DATA_SIZE) {
    const dws = (off: number) => Array.from({ length: 7 }, (_, i) => dv.getUint32(off + 4 * i, true));
    if (dv.getBigUint64(144, true) !== xeqcDma(dws(64))) errors.push('eqe_dma does not match qm_eqc_dw[2]<<32 | qm_eqc_dw[1]');
    if (dv.getBigUint64(152, true) !== xeqcDma(dws(92))) errors.push('aeqe_dma does not match qm_aeqc_dw[2]<<32 | qm_aeqc_dw[1]');
  }
  return report;
}

function text(r: InspectReport): string {
  const lines: string[] = [];
  const kind = r.kind === 'v2' ? 'V2' : r.kind === 'v1' ? 'V1 (versions absent; DMA addresses recomputed from EQC/AEQC on load)' : 'unknown';
  lines.push(`acc_vf_data: ${r.length} bytes, magic ${kind}${r.length === QM_MATCH_SIZE ? ', match data only' : ''}`);
  const width = Math.max(...Object.keys(r.fields).map((k) => k.length), 8);
  for (const [k, v] of Object.entries(r.fields)) {
    const shown = Array.isArray(v) ? v.map((x) => (typeof x === 'number' ? `0x${x.toString(16).padStart(8, '0')}` : x)).join(' ')
      : typeof v === 'number' ? `${v} (0x${v.toString(16)})` : v;
    lines.push(`  ${k.padEnd(width)}  ${shown}`);
  }
  return lines.join('\n') + '\n';
}

/** Runs the command; returns the exit code. Never throws. */
export function runInspect(file: string, opts: InspectOptions, streams: InspectStreams): number {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(file));
  } catch (e) {
    streams.stderr.write(`inspect: cannot read ${file}: ${(e as Error).message}\n`);
    return 1;
  }
  const r = inspectStream(bytes);
  streams.stdout.write(opts.json ? JSON.stringify(r.fields, null, 2) + '\n' : text(r));
  if (r.errors.length > 0) {
    streams.stderr.write(`inspect: ${file} is not a valid acc_vf_data stream:\n${r.errors.map((e) => `  - ${e}`).join('\n')}\n`);
    return 1;
  }
  return 0;
}

export function registerInspectCommand(program: Command): void {
  program
    .command('inspect')
    .description('decode a saved hisi-acc-vfio-pci migration stream (struct acc_vf_data)')
    .argument('<file>', 'stream written by `save`')
    .option('--json', 'print the fields as JSON under the kernel names', false)
    .action((file: string, opts: InspectOptions) => {
      process.exitCode = runInspect(file, opts, { stdout: process.stdout, stderr: process.stderr });
    });
}
