import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  firmwareDir,
  listProfiles,
  loadProfile,
  loadProfileFromJson,
  ProfileError,
  profileFor,
} from '../src/hw/firmware.js';
import type { EngineKind, HwVersion } from '../src/hw/profile.js';

// Expected values typed from qm-hardware.md sections 1, 3, 4, 5 and 7 (not from the loader).
const ENGINE_FACTS: Record<EngineKind, { pf: number; vf: number; classCode: number; pfQNum: number; sqe: number }> = {
  zip: { pf: 0xa250, vf: 0xa251, classCode: 0x120000, pfQNum: 64, sqe: 128 },
  sec: { pf: 0xa255, vf: 0xa256, classCode: 0x100000, pfQNum: 256, sqe: 128 },
  hpre: { pf: 0xa258, vf: 0xa259, classCode: 0x100000, pfQNum: 64, sqe: 64 },
};
const REVISION: Record<HwVersion, number> = { v2: 0x21, v3: 0x30, v4: 0x50 };
const ALL = (['zip', 'sec', 'hpre'] as const).flatMap((e) => (['v2', 'v3', 'v4'] as const).map((v) => [e, v] as const));

function raw(name: string): Record<string, any> {
  return JSON.parse(readFileSync(join(firmwareDir(), `${name}.json`), 'utf8'));
}

/** Mutates a copy of a stock profile and returns the ProfileError it must raise. */
function errorOf(name: string, mutate: (p: Record<string, any>) => void): ProfileError {
  const p = raw(name);
  mutate(p);
  try {
    loadProfileFromJson(p, `firmware/${name}.json`);
  } catch (e) {
    expect(e).toBeInstanceOf(ProfileError);
    return e as ProfileError;
  }
  throw new Error('mutated profile was accepted');
}

function expectIssue(name: string, mutate: (p: Record<string, any>) => void, path: string, text: string): void {
  const err = errorOf(name, mutate);
  expect(err.message).toContain(`firmware/${name}.json: ${path}: ${text}`);
  expect(err.issues.some((i) => i.path === path)).toBe(true);
}

describe('stock profiles (qm-hardware.md 7)', () => {
  it('lists exactly the nine engine/version files', () => {
    expect(listProfiles()).toEqual([
      'hpre-v2', 'hpre-v3', 'hpre-v4', 'sec-v2', 'sec-v3', 'sec-v4', 'zip-v2', 'zip-v3', 'zip-v4',
    ]);
  });

  it.each(ALL)('%s-%s carries the spec ids, revision, class code and queue numbers', (engine, hw) => {
    const p = profileFor(engine, hw);
    const f = ENGINE_FACTS[engine];
    expect(p.name).toBe(`${engine}-${hw}`);
    expect(p.engine).toBe(engine);
    expect(p.hwVersion).toBe(hw);
    expect(p.pci.vendorId).toBe(0x19e5);
    expect(p.pci.pfDeviceId).toBe(f.pf);
    expect(p.pci.vfDeviceId).toBe(f.vf);
    expect(p.pci.revision).toBe(REVISION[hw]);
    expect(p.pci.classCode).toBe(f.classCode);
    expect(p.bars.vf['2']).toBe(64 * 1024);
    expect(p.bars.pf['2']).toBeGreaterThanOrEqual(0x301154 + 4);
    expect(p.bars.pf['2']).toBeGreaterThanOrEqual(0x180000 + 64 * 0x2000);
    expect(p.sriov.totalVfs).toBe(63);
    expect(p.qm.totalQps).toBe(1024);
    expect(p.qm.pfQNum).toBe(f.pfQNum);
    expect(p.qm.sqeSize).toBe(f.sqe);
    expect([p.qm.sqDepth, p.qm.cqDepth, p.qm.eqDepth, p.qm.aeqDepth]).toEqual([1024, 1024, 2048, 1024]);
    expect(p.resetValues).toEqual({ '0x4': 1, '0xC': 1, '0x24': 1, '0x60': 1 });
    expect(p.msi.pfVectors).toBe(4);
    expect(p.msi.vfVectors).toBe(hw === 'v2' ? 2 : 3);
  });

  it.each(ALL.filter(([, hw]) => hw !== 'v2'))('%s-%s has the V3 capability register defaults (spec 1)', (engine, hw) => {
    const c = profileFor(engine, hw).caps;
    expect(c.funcCaps).toBe(0x6f01);
    expect(c.xeqDepthCap).toBe(0x04000800);
    expect(c.qpDepthCap).toBe(0x04000400);
    expect([c.eqIrqType, c.aeqIrqType, c.abnIrqType, c.pf2vfIrqType]).toEqual([0x10000, 0x10001, 0x10003, 0x10002]);
    expect(c.irqNumCap).toBe(0x40003);
    expect(c.extBarIndex).toBe(0x14);
    // Doorbell isolation: every queue a VF can own needs qn*0x10000+0x1000 inside BAR4.
    const p = profileFor(engine, hw);
    expect(p.bars.vf['4']).toBeGreaterThanOrEqual((1024 - ENGINE_FACTS[engine].pfQNum) * 0x10000);
  });

  it.each(ALL.filter(([, hw]) => hw === 'v2'))('%s-%s encodes "no capability registers" as zeros (cap_ver 0)', (engine, hw) => {
    const p = profileFor(engine, hw);
    const { engine: eng, ...regs } = p.caps;
    expect(Object.values(regs)).toEqual(new Array(9).fill(0));
    expect(eng).toEqual({});
    expect(p.bars.pf['4']).toBeUndefined();
  });

  it('engine capability registers hold the driver V3 defaults (ZIP core counts, SEC/HPRE bitmaps)', () => {
    const zip = profileFor('zip', 'v3').caps.engine;
    // 0x313C packs cluster 1 [31:28], core types 2 [27:24], cores 5 [23:16], comp 2 [15:8], decomp 3 [7:0].
    expect(zip['0x313C']).toBe((1 << 28) + (2 << 24) + (5 << 16) + (2 << 8) + 3);
    expect(zip['0x3140']).toBe((0x1c << 16) | 0x3);
    const sec = profileFor('sec', 'v3').caps.engine;
    expect(sec['0x314C']).toBe(0xffffffff);
    expect(sec['0x3144']).toBe(0x18670cf);
    const hpre = profileFor('hpre', 'v3').caps.engine;
    expect(hpre['0x313C']).toBe((1 << 20) + (2 << 16) + (10 << 8) + 10);
    expect(hpre['0x3170']).toBe(0x10);
  });

  it('V4 reports sub version 0x50 and is accepted with revision 0x30 + sub version (driver rule)', () => {
    expect(profileFor('zip', 'v4').pci.subVersionId).toBe(0x50);
    const p = raw('zip-v4');
    p.pci.revision = '0x30';
    expect(loadProfileFromJson(p, 'x').pci.revision).toBe(0x30);
  });

  it('returns a fresh object per load (callers may mutate their copy)', () => {
    const a = loadProfile('sec-v3');
    a.qm.pfQNum = 1;
    expect(loadProfile('sec-v3').qm.pfQNum).toBe(256);
  });
});

describe('number and key normalisation', () => {
  it('accepts decimal numbers and "0x" strings alike', () => {
    const p = raw('zip-v3');
    p.qm.pfQNum = '0x40';
    p.pci.vendorId = 6629;
    const out = loadProfileFromJson(p, 't');
    expect(out.qm.pfQNum).toBe(64);
    expect(out.pci.vendorId).toBe(0x19e5);
  });

  it('canonicalises offset keys to 0x + upper-case hex', () => {
    const p = raw('zip-v3');
    p.resetValues = { '0x004': 1, '0x00c': '0x1', '0x24': 1, '0x60': 1 };
    p.caps.engine = { '0x312c': 8 };
    const out = loadProfileFromJson(p, 't');
    expect(out.resetValues).toEqual({ '0x4': 1, '0xC': 1, '0x24': 1, '0x60': 1 });
    expect(out.caps.engine).toEqual({ '0x312C': 8 });
  });
});

describe('validation names the field (one test per rule)', () => {
  it('rejects a non-object document', () => {
    expect(() => loadProfileFromJson([], 'firmware/x.json')).toThrow('firmware/x.json: (root): must be an object (got an array)');
  });
  it('unknown field at top level and nested', () => {
    expectIssue('zip-v3', (p) => (p.foo = 1), 'foo', 'unknown field');
    expectIssue('zip-v3', (p) => (p.qm.extra = 1), 'qm.extra', 'unknown field');
  });
  it('missing field', () => {
    expectIssue('zip-v3', (p) => delete p.qm.sqDepth, 'qm.sqDepth', 'missing');
  });
  it('wrong type for a number', () => {
    expectIssue('zip-v3', (p) => (p.pci.vendorId = true), 'pci.vendorId', 'must be a number or a "0x..." hex string (got true)');
  });
  it('decimal strings are not numbers', () => {
    expectIssue('zip-v3', (p) => (p.qm.totalQps = '1024'), 'qm.totalQps', 'must be a number or a "0x..." hex string (got "1024")');
  });
  it('non-integer', () => {
    expectIssue('zip-v3', (p) => (p.qm.totalQps = 1.5), 'qm.totalQps', 'must be an integer (got 1.5)');
  });
  it('16-bit ids exclude 0xFFFF', () => {
    expectIssue('zip-v3', (p) => (p.pci.vendorId = '0xFFFF'), 'pci.vendorId', 'must be between 0x1 and 0xfffe (got 0xffff)');
    expectIssue('zip-v3', (p) => (p.pci.vfDeviceId = 0x10000), 'pci.vfDeviceId', 'must be between 0x1 and 0xfffe (got 0x10000)');
  });
  it('revision is a byte', () => {
    expectIssue('zip-v3', (p) => (p.pci.revision = '0x130'), 'pci.revision', 'must be between 0x0 and 0xff (got 0x130)');
  });
  it('class code is 24-bit', () => {
    expectIssue('zip-v3', (p) => (p.pci.classCode = '0x1000000'), 'pci.classCode', 'must be between 0x0 and 0xffffff (got 0x1000000)');
  });
  it('depths are powers of two (the brief example)', () => {
    expectIssue('zip-v3', (p) => (p.qm.sqDepth = 1000), 'qm.sqDepth', 'must be a power of two (got 1000)');
  });
  it('SQ depth fits the 12-bit SQC dw3 field', () => {
    expectIssue('zip-v3', (p) => (p.qm.sqDepth = 8192), 'qm.sqDepth', 'must be between 2 and 4096 (got 8192)');
  });
  it('engine and hwVersion are enumerations', () => {
    expectIssue('zip-v3', (p) => (p.engine = 'gzip'), 'engine', 'must be one of "zip", "sec", "hpre" (got "gzip")');
    expectIssue('zip-v3', (p) => (p.hwVersion = 'v5'), 'hwVersion', 'must be one of "v2", "v3", "v4" (got "v5")');
  });
  it('name is a file stem', () => {
    expectIssue('zip-v3', (p) => (p.name = 'ZIP V3'), 'name', 'must be a lower-case file stem');
  });
  it('BAR keys are even indexes 0..4', () => {
    expectIssue('zip-v3', (p) => (p.bars.pf['1'] = '0x1000'), 'bars.pf.1', 'BARs are 64-bit');
    expectIssue('zip-v3', (p) => (p.bars.pf['6'] = '0x1000'), 'bars.pf.6', 'BAR index must be 0..5');
  });
  it('BAR sizes are powers of two', () => {
    expectIssue('zip-v3', (p) => (p.bars.pf['2'] = '0x300000'), 'bars.pf.2', 'must be a power of two (got 0x300000)');
  });
  it('VF BAR2 is exactly 64 KiB', () => {
    expectIssue('zip-v3', (p) => (p.bars.vf['2'] = '0x20000'), 'bars.vf.2', 'must be 0x10000: VF BAR2 is 64 KiB (got 0x20000)');
    expectIssue('zip-v3', (p) => delete p.bars.vf['2'], 'bars.vf.2', 'missing');
  });
  it('PF BAR2 covers the PF register file', () => {
    expectIssue('zip-v3', (p) => (p.bars.pf['2'] = '0x200000'), 'bars.pf.2', 'must cover the PF registers up to 0x301804 (got 0x200000)');
  });
  it('BAR4 holds the isolated doorbells on V3/V4', () => {
    expectIssue('sec-v3', (p) => delete p.bars.vf['4'], 'bars.vf.4', 'missing (v3 supports doorbell isolation in BAR4)');
    expectIssue('sec-v3', (p) => (p.bars.vf['4'] = '0x1000000'), 'bars.vf.4', 'must hold the isolated doorbells of 768 queues (0x3000000 bytes) (got 0x1000000)');
    expectIssue('zip-v4', (p) => (p.bars.pf['4'] = '0x2000000'), 'bars.pf.4', 'must hold the isolated doorbells of 1024 queues');
  });
  it('revision must match hwVersion', () => {
    expectIssue('zip-v3', (p) => (p.pci.revision = '0x21'), 'pci.revision', 'QM version 0x21 does not match hwVersion "v3" (0x30)');
    expectIssue('zip-v3', (p) => (p.pci.subVersionId = '0x50'), 'pci.revision', 'QM version 0x50 does not match hwVersion "v3"');
  });
  it('V2 has no sub version register', () => {
    expectIssue('zip-v2', (p) => (p.pci.subVersionId = '0x21'), 'pci.subVersionId', 'V2 has no QM_SUB_VERSION_ID register: must be 0 (got 0x21)');
  });
  it('PF and VF device ids differ', () => {
    expectIssue('hpre-v3', (p) => (p.pci.vfDeviceId = p.pci.pfDeviceId), 'pci.vfDeviceId', 'must differ from pci.pfDeviceId (got 0xa258)');
  });
  it('TotalVFs is at most 63', () => {
    expectIssue('zip-v3', (p) => (p.sriov.totalVfs = 64), 'sriov.totalVfs', 'must be between 1 and 63 (got 64)');
  });
  it('VFs stay on the PF bus', () => {
    expectIssue('zip-v3', (p) => (p.sriov.vfStride = 5), 'sriov', 'VF 63 would be 311 functions after the PF');
  });
  it('pfQNum < totalQps', () => {
    expectIssue('zip-v3', (p) => (p.qm.pfQNum = 1024), 'qm.pfQNum', 'must be less than qm.totalQps (1024) (got 1024)');
  });
  it('every VF gets at least one queue', () => {
    expectIssue('zip-v3', (p) => {
      p.qm.totalQps = 100;
      p.qm.maxQpsPerFunction = 100;
    }, 'qm.totalQps', 'leaves 36 queues for 63 VFs');
  });
  it('maxQpsPerFunction within [pfQNum, totalQps]', () => {
    expectIssue('zip-v3', (p) => (p.qm.totalQps = 512), 'qm.maxQpsPerFunction', 'must not exceed qm.totalQps (512) (got 1024)');
    expectIssue('sec-v3', (p) => (p.qm.maxQpsPerFunction = 128), 'qm.maxQpsPerFunction', 'must be at least qm.pfQNum (256) (got 128)');
  });
  it('sqeSize matches the engine', () => {
    expectIssue('hpre-v3', (p) => (p.qm.sqeSize = 128), 'qm.sqeSize', 'must be 64 for hpre (got 128)');
  });
  it('V2 capability registers are all zero', () => {
    expectIssue('zip-v2', (p) => (p.caps.funcCaps = '0x6F01'), 'caps.funcCaps', 'V2 has no capability registers: must be 0 (got 0x6f01)');
    expectIssue('zip-v2', (p) => (p.caps.engine = { '0x3124': 1 }), 'caps.engine', 'V2 has no capability registers: must be empty');
  });
  it('V3 cap_ver is non-zero', () => {
    expectIssue('zip-v3', (p) => (p.caps.funcCaps = '0x6F00'), 'caps.funcCaps', 'cap_ver (bits 7:0) must be non-zero on v3 (got 0x6f00)');
  });
  it('depth caps match the qm depths', () => {
    expectIssue('zip-v3', (p) => (p.qm.sqDepth = 512), 'caps.qpDepthCap', 'must be 0x4000200 to match qm.sqDepth/qm.cqDepth (got 0x4000400)');
    expectIssue('zip-v3', (p) => (p.qm.eqDepth = 4096), 'caps.xeqDepthCap', 'must be 0x4001000 to match qm.eqDepth/qm.aeqDepth (got 0x4000800)');
  });
  it('IRQ_NUM_CAP matches the MSI vector counts', () => {
    expectIssue('sec-v3', (p) => (p.msi.pfVectors = 8), 'caps.irqNumCap', 'must be 0x80003 to match msi.pfVectors/msi.vfVectors (got 0x40003)');
  });
  it('IRQ type registers: reserved bits, presence, vector range, distinct EQ/AEQ', () => {
    expectIssue('zip-v3', (p) => (p.caps.eqIrqType = '0x30000'), 'caps.eqIrqType', 'bits 31:17 must be zero (got 0x30000)');
    expectIssue('zip-v3', (p) => (p.caps.aeqIrqType = '0x1'), 'caps.aeqIrqType', 'bit 16 (present) must be set');
    expectIssue('zip-v3', (p) => (p.caps.pf2vfIrqType = '0x10003'), 'caps.pf2vfIrqType', 'vector 3 must be below msi.vfVectors (3) (got 0x10003)');
    expectIssue('zip-v3', (p) => (p.caps.abnIrqType = '0x10004'), 'caps.abnIrqType', 'vector 4 must be below msi.pfVectors (4) (got 0x10004)');
    expectIssue('zip-v3', (p) => (p.caps.aeqIrqType = '0x10000'), 'caps.aeqIrqType', 'EQ and AEQ need different vectors (got 0x10000)');
  });
  it('engine capability keys: hex, aligned, 0x3124..0x317C; values 32-bit', () => {
    expectIssue('zip-v3', (p) => (p.caps.engine['0x3120'] = 1), 'caps.engine.0x3120', 'engine capability offsets are 0x3124..0x317C');
    expectIssue('zip-v3', (p) => (p.caps.engine['0x3125'] = 1), 'caps.engine.0x3125', 'offset must be dword aligned');
    expectIssue('zip-v3', (p) => (p.caps.engine['12580'] = 1), 'caps.engine.12580', 'offset key must be a "0x..." hex string');
    expectIssue('zip-v3', (p) => (p.caps.engine['0x3124'] = '0x100000000'), 'caps.engine.0x3124', 'must be between 0x0 and 0xffffffff (got 0x100000000)');
  });
  it('reset value keys: no duplicates, functional window, not capability registers', () => {
    expectIssue('zip-v3', (p) => (p.resetValues['0x00c'] = 1), 'resetValues.0x00c', 'duplicates key 0xC');
    expectIssue('zip-v3', (p) => (p.resetValues['0x8000'] = 1), 'resetValues.0x8000', 'reset values cover the functional window below 0x8000');
    expectIssue('zip-v3', (p) => (p.resetValues['0x3100'] = 1), 'resetValues.0x3100', 'capability registers 0x3100..0x317C are set under "caps"');
  });
  it('MSI vector counts', () => {
    expectIssue('zip-v3', (p) => (p.msi.pfVectors = 3), 'msi.pfVectors', 'must be between 4 and 32 (got 3)');
    expectIssue('zip-v3', (p) => (p.msi.vfVectors = 1), 'msi.vfVectors', 'must be between 2 and 32 (got 1)');
  });
  it('reports every structural issue at once', () => {
    const err = errorOf('zip-v3', (p) => {
      p.qm.sqDepth = 1000;
      p.pci.revision = '0x100';
    });
    expect(err.issues.map((i) => i.path).sort()).toEqual(['pci.revision', 'qm.sqDepth']);
  });
});

describe('loadProfile file handling', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hisi-fw-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('rejects a name that is not a file stem (no path traversal)', () => {
    expect(() => loadProfile('../package')).toThrow(ProfileError);
    expect(() => loadProfile('../package')).toThrow('firmware/../package.json: (file): bad profile name "../package"');
  });
  it('unknown profile lists the known ones', () => {
    expect(() => loadProfile('zip-v9')).toThrow('firmware/zip-v9.json: (file): no such profile (known: hpre-v2, hpre-v3');
  });
  it('the name field must equal the file stem', () => {
    writeFileSync(join(dir, 'my-zip.json'), JSON.stringify(raw('zip-v3')));
    expect(() => loadProfile('my-zip', dir)).toThrow('firmware/my-zip.json: name: must equal the file stem "my-zip" (got "zip-v3")');
    const renamed = { ...raw('zip-v3'), name: 'my-zip' };
    writeFileSync(join(dir, 'my-zip.json'), JSON.stringify(renamed));
    expect(loadProfile('my-zip', dir).name).toBe('my-zip');
    expect(listProfiles(dir)).toEqual(['my-zip']);
  });
  it('invalid JSON is a ProfileError', () => {
    writeFileSync(join(dir, 'broken.json'), '{"name": ');
    expect(() => loadProfile('broken', dir)).toThrow(/firmware\/broken\.json: \(file\): invalid JSON/);
  });
});
