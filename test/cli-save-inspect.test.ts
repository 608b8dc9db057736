/**
 * The `save` and `inspect` commands: save runs a guest workload on a VF bound to
 * hisi-acc-vfio-pci and writes the STOP_COPY stream; inspect decodes acc_vf_data
 * (hisi-acc-vfio-pci.md section 3) field by field, with kernel field names in --json, and
 * fails clearly on a bad stream. Streams are checked with DataView at the spec's offsets.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runInspect } from '../src/cli/inspect.js';
import { runSave } from '../src/cli/save.js';

function sink(): Writable & { text: () => string } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(c, _e, cb) {
      chunks.push(Buffer.from(c as Uint8Array));
      cb();
    },
  }) as Writable & { text: () => string };
  w.text = () => Buffer.concat(chunks).toString('utf8');
  return w;
}

const dir = mkdtempSync(join(tmpdir(), 'hisi-acc-cli-'));

async function save(args: Record<string, unknown>) {
  const out = sink();
  const err = sink();
  const code = await runSave({ engine: 'zip', out: join(dir, 'x.bin'), ...args } as never, { stdout: out, stderr: err });
  return { code, out: out.text(), err: err.text() };
}

function inspect(file: string, json = false) {
  const out = sink();
  const err = sink();
  const code = runInspect(file, { json }, { stdout: out, stderr: err });
  return { code, out: out.text(), err: err.text() };
}

describe('save', () => {
  for (const [engine, hw, devId] of [['zip', 'v3', 0xa251], ['sec', 'v3', 0xa256], ['hpre', 'v4', 0xa259]] as const) {
    it(`${engine} ${hw}: writes the 176-byte stream of a started VF with jobs in flight`, async () => {
      const file = join(dir, `${engine}-${hw}.bin`);
      const r = await save({ engine, hw, out: file, jobs: '3', inFlight: '5' });
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^saved 176 bytes/);
      expect(r.out).toContain('5 in flight');
      const b = new Uint8Array(readFileSync(file));
      expect(b.length).toBe(176);
      const dv = new DataView(b.buffer, b.byteOffset);
      expect(dv.getBigUint64(0, true)).toBe(0xaaccfeeddecadeden);
      expect(dv.getUint32(12, true)).toBe(devId);
      expect(dv.getUint32(24, true)).toBe(0);
      expect(dv.getBigUint64(160, true)).not.toBe(0n);
      // eqe_dma = DW2<<32 | DW1 of the EQC.
      expect(dv.getBigUint64(144, true)).toBe((BigInt(dv.getUint32(72, true)) << 32n) | BigInt(dv.getUint32(68, true)));
    });
  }

  it('fails clearly on bad options', async () => {
    const a = await save({ engine: 'gzip' });
    expect(a.code).toBe(1);
    expect(a.err).toMatch(/^save: --engine/);
    const b = await save({ hw: 'v2' });
    expect(b.code).toBe(1);
    expect(b.err).toContain('older parts do not migrate');
    const c = await save({ jobs: 'many' });
    expect(c.code).toBe(1);
  });
});

describe('inspect', () => {
  const good = join(dir, 'good.bin');
  const stream = (() => {
    const b = new Uint8Array(176);
    const dv = new DataView(b.buffer);
    dv.setBigUint64(0, 0xaaccfeeddecadeden, true);
    dv.setUint32(8, 15, true);
    dv.setUint32(12, 0xa251, true);
    dv.setUint32(20, 0x3c0, true);
    dv.setUint16(28, 1, true);
    dv.setUint32(68, 0x1000, true);
    dv.setUint32(72, 0x2, true);
    dv.setUint32(96, 0x3000, true);
    dv.setBigUint64(144, 0x2_0000_1000n, true);
    dv.setBigUint64(152, 0x3000n, true);
    dv.setBigUint64(160, 0xfedcba9876543210n, true);
    return b;
  })();
  writeFileSync(good, stream);

  it('prints every field of a good stream and exits 0', () => {
    const r = inspect(good);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toContain('176 bytes, magic V2');
    expect(r.out).toMatch(/qp_num\s+15 \(0xf\)/);
    expect(r.out).toMatch(/dev_id\s+41553 \(0xa251\)/);
    expect(r.out).toMatch(/sqc_dma\s+0xfedcba9876543210/);
  });

  it('--json uses the kernel names, numbers for u32, "0x..." strings for u64', () => {
    const r = inspect(good, true);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as Record<string, unknown>;
    expect(Object.keys(j)).toEqual([
      'acc_magic', 'qp_num', 'dev_id', 'que_iso_cfg', 'qp_base', 'vf_qm_state', 'major_ver', 'minor_ver', 'qm_rsv_state',
      'aeq_int_mask', 'eq_int_mask', 'ifc_int_source', 'ifc_int_mask', 'ifc_int_set', 'page_size', 'qm_eqc_dw', 'qm_aeqc_dw',
      'qm_rsv_regs', 'padding', 'eqe_dma', 'aeqe_dma', 'sqc_dma', 'cqc_dma',
    ]);
    expect(j.acc_magic).toBe('0xaaccfeeddecadede');
    expect(j.qp_num).toBe(15);
    expect(j.qp_base).toBe(0x3c0);
    expect(j.qm_eqc_dw).toEqual([0, 0x1000, 2, 0, 0, 0, 0]);
    expect(j.eqe_dma).toBe('0x0000000200001000');
    expect(j.sqc_dma).toBe('0xfedcba9876543210');
  });

  it('accepts a 40-byte match-only stream and a V1 stream', () => {
    const m = join(dir, 'match.bin');
    writeFileSync(m, stream.subarray(0, 40));
    const r = inspect(m, true);
    expect(r.code).toBe(0);
    expect(Object.keys(JSON.parse(r.out) as object)).toHaveLength(9);
    const v1 = stream.slice();
    new DataView(v1.buffer).setBigUint64(0, 0xcdcdcdcdfeedaaccn, true);
    new DataView(v1.buffer).setBigUint64(144, 0x1000_0000_0002n, true); // an old driver's swapped value
    const f = join(dir, 'v1.bin');
    writeFileSync(f, v1);
    const r1 = inspect(f, true);
    expect(r1.code).toBe(0);
    const j = JSON.parse(r1.out) as Record<string, unknown>;
    expect(j.major_ver).toBeUndefined();
    expect(j.qm_rsv_state).toEqual([1, 0, 0]);
  });

  const bad: [string, (b: Uint8Array) => Uint8Array, RegExp][] = [
    ['truncated', (b) => b.subarray(0, 100), /length 100/],
    ['too long', (b) => new Uint8Array([...b, 0]), /length 177/],
    ['bad magic', (b) => { const c = b.slice(); c[3] ^= 1; return c; }, /bad acc_magic/],
    ['foreign major', (b) => { const c = b.slice(); new DataView(c.buffer).setUint16(28, 3, true); return c; }, /major_ver 3/],
    ['eqe_dma inconsistent', (b) => { const c = b.slice(); new DataView(c.buffer).setBigUint64(144, 0x1000n, true); return c; }, /eqe_dma does not match/],
    ['empty', () => new Uint8Array(0), /too short/],
  ];
  for (const [name, make, msg] of bad) {
    it(`flags a bad stream (${name}) with exit code 1`, () => {
      const f = join(dir, `bad-${name.replace(/\W/g, '')}.bin`);
      writeFileSync(f, make(stream));
      const r = inspect(f);
      expect(r.code).toBe(1);
      expect(r.err).toContain('is not a valid acc_vf_data stream');
      expect(r.err).toMatch(msg);
    });
  }

  it('a missing file is exit code 1', () => {
    const r = inspect(join(dir, 'nope.bin'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot read/);
  });

  it('is wired into the CLI: save then inspect --json through src/cli/main.ts', () => {
    const file = join(dir, 'cli.bin');
    const run = (args: string[]) => execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
    expect(run(['save', '--engine', 'zip', '--out', file, '--in-flight', '2'])).toMatch(/^saved 176 bytes/);
    const j = JSON.parse(run(['inspect', file, '--json'])) as Record<string, unknown>;
    expect(j.dev_id).toBe(0xa251);
    expect(j.vf_qm_state).toBe(0);
  });
});
