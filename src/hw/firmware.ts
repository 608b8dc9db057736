import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DeviceProfile, EngineKind, HwVersion } from './profile.js';

/**
 * Device profiles ("firmware") live in `firmware/<engine>-<hw>.json` at the package root.
 * Loading validates every field against a declarative schema plus cross-field rules, and
 * normalises numbers (decimal or "0x..." strings) to plain numbers and offset keys to the
 * canonical "0x" + upper-case hex spelling (e.g. "0xC", "0x3124").
 */

export interface ProfileIssue {
  /** Dotted path of the offending field, e.g. "qm.sqDepth" or "caps.engine.0x3124". */
  path: string;
  message: string;
}

/** A profile failed validation; the message lists every issue as `<source>: <path>: <why>`. */
export class ProfileError extends Error {
  readonly source: string;
  readonly issues: readonly ProfileIssue[];
  constructor(source: string, issues: readonly ProfileIssue[]) {
    super(issues.map((i) => `${source}: ${i.path}: ${i.message}`).join('\n'));
    this.name = 'ProfileError';
    this.source = source;
    this.issues = issues;
  }
}

export const ENGINES: readonly EngineKind[] = ['zip', 'sec', 'hpre'];
export const HW_VERSIONS: readonly HwVersion[] = ['v2', 'v3', 'v4'];

/** QM version byte of each hardware generation (qm-hardware.md 7). */
export const QM_VERSION: Readonly<Record<HwVersion, number>> = { v2: 0x21, v3: 0x30, v4: 0x50 };
/** SQE size per engine (qm-hardware.md 3). */
export const SQE_SIZE: Readonly<Record<EngineKind, number>> = { zip: 128, sec: 128, hpre: 64 };

/** VF BAR2: 32 KiB functional window + 32 KiB migration window (qm-hardware.md 1). */
export const VF_BAR2_SIZE = 0x10000;
/** Highest PF register the model implements (HPRE_HAC_INT_STATUS 0x301800) plus its dword. */
export const PF_REGS_END = 0x301804;
/** V4 migration windows in the PF BAR2: 0x180000 + vf_id * 0x2000. */
export const PF_MIG_WINDOW_BASE = 0x180000;
export const PF_MIG_WINDOW_STRIDE = 0x2000;
/** Doorbell isolation: queue n's doorbells at n * 0x10000 + 0x1000 in BAR4. */
export const DB_ISOLATION_STRIDE = 0x10000;
/** Engine capability registers 0x3124-0x317C and all capability registers 0x3100-0x317C. */
export const ENGINE_CAP_FIRST = 0x3124;
export const ENGINE_CAP_LAST = 0x317c;
export const CAP_REGS_FIRST = 0x3100;
/** The functional (guest-visible) half of VF BAR2. */
export const VF_FUNCTIONAL_WINDOW = 0x8000;

// ---- schema --------------------------------------------------------------------------

type KeyKind = 'bar' | 'engineCap' | 'vfReg';

type Spec =
  | { kind: 'int'; min: number; max: number; pow2?: boolean; hex?: boolean }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'name' }
  | { kind: 'object'; fields: Readonly<Record<string, Spec>> }
  | { kind: 'map'; key: KeyKind; value: Spec };

const int = (min: number, max: number, extra: { pow2?: boolean; hex?: boolean } = {}): Spec => ({ kind: 'int', min, max, ...extra });
const uint = (bits: number): Spec => int(0, 2 ** bits - 1, { hex: true });
const obj = (fields: Record<string, Spec>): Spec => ({ kind: 'object', fields });
const map = (key: KeyKind, value: Spec): Spec => ({ kind: 'map', key, value });

/** 0x0000 and 0xFFFF are not valid vendor/device ids (0xFFFF is what an absent function reads). */
const ID16 = int(1, 0xfffe, { hex: true });
const BAR_SIZE = int(16, 2 ** 40, { pow2: true, hex: true });
const U32 = uint(32);

const PROFILE_SCHEMA: Spec = obj({
  name: { kind: 'name' },
  engine: { kind: 'enum', values: ENGINES },
  hwVersion: { kind: 'enum', values: HW_VERSIONS },
  pci: obj({
    vendorId: ID16,
    pfDeviceId: ID16,
    vfDeviceId: ID16,
    revision: uint(8),
    subVersionId: uint(8),
    classCode: uint(24),
    subsystemVendorId: uint(16),
    subsystemId: uint(16),
  }),
  bars: obj({ pf: map('bar', BAR_SIZE), vf: map('bar', BAR_SIZE) }),
  sriov: obj({
    totalVfs: int(1, 63),
    vfOffset: int(1, 0xff),
    vfStride: int(1, 0xff),
  }),
  qm: obj({
    // QM_TOTAL_QP [10:0] / [21:11] are 11-bit fields; the VFT encodes num-1 in 10 bits.
    totalQps: int(1, 2047),
    pfQNum: int(1, 1024),
    maxQpsPerFunction: int(1, 1024),
    sqeSize: int(1, 4096),
    // SQC/CQC dw3 hold depth-1 in 12 bits; EQC/AEQC dw6 and the depth caps in 16 bits.
    sqDepth: int(2, 4096, { pow2: true }),
    cqDepth: int(2, 4096, { pow2: true }),
    eqDepth: int(2, 32768, { pow2: true }),
    aeqDepth: int(2, 32768, { pow2: true }),
  }),
  caps: obj({
    funcCaps: U32,
    xeqDepthCap: U32,
    qpDepthCap: U32,
    eqIrqType: U32,
    aeqIrqType: U32,
    abnIrqType: U32,
    pf2vfIrqType: U32,
    irqNumCap: U32,
    extBarIndex: U32,
    engine: map('engineCap', U32),
  }),
  msi: obj({
    // Vectors 0 EQ, 1 AEQ, 2 IFC, 3 abnormal (PF only): the PF needs 4, a VF at least 2.
    pfVectors: int(4, 32),
    vfVectors: int(2, 32),
  }),
  resetValues: map('vfReg', U32),
});

// ---- value parsing ------------------------------------------------------------------------

const HEX_RE = /^0[xX][0-9a-fA-F]+$/;

function fmt(n: number, hex: boolean | undefined): string {
  return hex ? `0x${n.toString(16)}` : String(n);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return JSON.stringify(v);
}

/** Number from a JSON number or "0x..." string; a string message on failure. */
function toNumber(v: unknown): number | { error: string } {
  if (typeof v === 'number') {
    return Number.isSafeInteger(v) ? v : { error: `must be an integer (got ${v})` };
  }
  if (typeof v === 'string') {
    if (!HEX_RE.test(v)) return { error: `must be a number or a "0x..." hex string (got ${JSON.stringify(v)})` };
    const n = parseInt(v.slice(2), 16);
    return Number.isSafeInteger(n) ? n : { error: `is too large (got ${v})` };
  }
  return { error: `must be a number or a "0x..." hex string (got ${describe(v)})` };
}

export function canonicalHexKey(n: number): string {
  return `0x${n.toString(16).toUpperCase()}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isPow2(n: number): boolean {
  return n > 0 && Number.isSafeInteger(n) && n.toString(2).lastIndexOf('1') === 0;
}

/** Parses a map key; returns the canonical key or an error message. */
function parseKey(kind: KeyKind, key: string): string | { error: string } {
  if (kind === 'bar') {
    if (!/^[0-5]$/.test(key)) return { error: 'BAR index must be 0..5' };
    if (Number(key) % 2 !== 0) return { error: 'BARs are 64-bit: a BAR takes an even index and the register after it' };
    return key;
  }
  if (!HEX_RE.test(key)) return { error: 'offset key must be a "0x..." hex string' };
  const off = parseInt(key.slice(2), 16);
  if (off % 4 !== 0) return { error: 'offset must be dword aligned' };
  if (kind === 'engineCap') {
    if (off < ENGINE_CAP_FIRST || off > ENGINE_CAP_LAST) {
      return { error: `engine capability offsets are ${canonicalHexKey(ENGINE_CAP_FIRST)}..${canonicalHexKey(ENGINE_CAP_LAST)}` };
    }
  } else {
    if (off >= VF_FUNCTIONAL_WINDOW) return { error: `reset values cover the functional window below ${canonicalHexKey(VF_FUNCTIONAL_WINDOW)}` };
    if (off >= CAP_REGS_FIRST && off <= ENGINE_CAP_LAST) {
      return { error: 'capability registers 0x3100..0x317C are set under "caps", not "resetValues"' };
    }
  }
  return canonicalHexKey(off);
}

function join2(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

/** Table-driven walk: checks types, ranges, keys and unknown fields; returns normalised data. */
function walk(spec: Spec, v: unknown, path: string, issues: ProfileIssue[]): unknown {
  const here = path === '' ? '(root)' : path;
  switch (spec.kind) {
    case 'int': {
      const n = toNumber(v);
      if (typeof n !== 'number') {
        issues.push({ path: here, message: n.error });
        return undefined;
      }
      if (n < spec.min || n > spec.max) {
        issues.push({ path: here, message: `must be between ${fmt(spec.min, spec.hex)} and ${fmt(spec.max, spec.hex)} (got ${fmt(n, spec.hex)})` });
        return undefined;
      }
      if (spec.pow2 && !isPow2(n)) {
        issues.push({ path: here, message: `must be a power of two (got ${fmt(n, spec.hex)})` });
        return undefined;
      }
      return n;
    }
    case 'enum':
      if (typeof v !== 'string' || !spec.values.includes(v)) {
        issues.push({ path: here, message: `must be one of ${spec.values.map((s) => `"${s}"`).join(', ')} (got ${describe(v)})` });
        return undefined;
      }
      return v;
    case 'name':
      if (typeof v !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,63}$/.test(v)) {
        issues.push({ path: here, message: `must be a lower-case file stem like "zip-v3" (got ${describe(v)})` });
        return undefined;
      }
      return v;
    case 'object': {
      if (!isPlainObject(v)) {
        issues.push({ path: here, message: `must be an object (got ${describe(v)})` });
        return undefined;
      }
      const out: Record<string, unknown> = {};
      for (const [k, sub] of Object.entries(spec.fields)) {
        if (!Object.hasOwn(v, k)) issues.push({ path: join2(path, k), message: 'missing' });
        else out[k] = walk(sub, v[k], join2(path, k), issues);
      }
      for (const k of Object.keys(v)) {
        if (!Object.hasOwn(spec.fields, k)) issues.push({ path: join2(path, k), message: 'unknown field' });
      }
      return out;
    }
    case 'map': {
      if (!isPlainObject(v)) {
        issues.push({ path: here, message: `must be an object (got ${describe(v)})` });
        return undefined;
      }
      const out: Record<string, unknown> = {};
      for (const [k, raw] of Object.entries(v)) {
        const key = parseKey(spec.key, k);
        if (typeof key !== 'string') {
          issues.push({ path: join2(path, k), message: key.error });
          continue;
        }
        if (Object.hasOwn(out, key)) {
          issues.push({ path: join2(path, k), message: `duplicates key ${key}` });
          continue;
        }
        out[key] = walk(spec.value, raw, join2(path, k), issues);
      }
      return out;
    }
  }
}

// ---- cross-field rules ------------------------------------------------------------------

type Rule = (p: DeviceProfile, issue: (path: string, message: string) => void) => void;

const hex = (n: number): string => `0x${n.toString(16)}`;

const IRQ_TYPE_FIELDS = ['eqIrqType', 'aeqIrqType', 'pf2vfIrqType', 'abnIrqType'] as const;
const CAP_FIELDS = ['funcCaps', 'xeqDepthCap', 'qpDepthCap', ...IRQ_TYPE_FIELDS, 'irqNumCap', 'extBarIndex'] as const;

const RULES: readonly Rule[] = [
  // The QM version the driver derives: revision, replaced by QM_SUB_VERSION_ID when it is 0x30.
  (p, issue) => {
    const { revision, subVersionId } = p.pci;
    if (p.hwVersion === 'v2' && subVersionId !== 0) {
      issue('pci.subVersionId', `V2 has no QM_SUB_VERSION_ID register: must be 0 (got ${hex(subVersionId)})`);
      return;
    }
    const effective = revision === 0x30 && subVersionId !== 0 ? subVersionId : revision;
    const want = QM_VERSION[p.hwVersion];
    if (effective !== want) {
      issue('pci.revision', `QM version ${hex(effective)} does not match hwVersion "${p.hwVersion}" (${hex(want)}) (got revision ${hex(revision)}, subVersionId ${hex(subVersionId)})`);
    }
  },
  (p, issue) => {
    if (p.pci.pfDeviceId === p.pci.vfDeviceId) issue('pci.vfDeviceId', `must differ from pci.pfDeviceId (got ${hex(p.pci.vfDeviceId)})`);
  },
  (p, issue) => {
    const pf2 = p.bars.pf['2'];
    const need = Math.max(PF_REGS_END, PF_MIG_WINDOW_BASE + p.sriov.totalVfs * PF_MIG_WINDOW_STRIDE);
    if (pf2 === undefined) issue('bars.pf.2', 'missing (BAR2 holds the QM registers)');
    else if (pf2 < need) issue('bars.pf.2', `must cover the PF registers up to ${hex(need)} (got ${hex(pf2)})`);
    const vf2 = p.bars.vf['2'];
    if (vf2 === undefined) issue('bars.vf.2', 'missing (BAR2 holds the QM registers)');
    else if (vf2 !== VF_BAR2_SIZE) issue('bars.vf.2', `must be ${hex(VF_BAR2_SIZE)}: VF BAR2 is 64 KiB (got ${hex(vf2)})`);
  },
  // Doorbell isolation (V3+): BAR4 must hold qn*0x10000+0x1000 for every queue a function can own.
  (p, issue) => {
    const isolation = p.hwVersion !== 'v2';
    const pfMax = Math.min(p.qm.maxQpsPerFunction, p.qm.totalQps) * DB_ISOLATION_STRIDE;
    const vfMax = Math.min(p.qm.maxQpsPerFunction, p.qm.totalQps - p.qm.pfQNum) * DB_ISOLATION_STRIDE;
    for (const [side, need] of [['pf', pfMax], ['vf', vfMax]] as const) {
      const size = p.bars[side]['4'];
      if (size === undefined) {
        if (isolation) issue(`bars.${side}.4`, `missing (${p.hwVersion} supports doorbell isolation in BAR4)`);
      } else if (size < need) {
        issue(`bars.${side}.4`, `must hold the isolated doorbells of ${need / DB_ISOLATION_STRIDE} queues (${hex(need)} bytes) (got ${hex(size)})`);
      }
    }
  },
  (p, issue) => {
    const last = p.sriov.vfOffset + p.sriov.vfStride * (p.sriov.totalVfs - 1);
    if (last > 0xff) issue('sriov', `VF ${p.sriov.totalVfs} would be ${last} functions after the PF: VFs of an integrated endpoint stay on the PF's bus (at most 255)`);
  },
  (p, issue) => {
    const q = p.qm;
    if (q.pfQNum >= q.totalQps) issue('qm.pfQNum', `must be less than qm.totalQps (${q.totalQps}) (got ${q.pfQNum})`);
    else if (q.totalQps - q.pfQNum < p.sriov.totalVfs) {
      issue('qm.totalQps', `leaves ${q.totalQps - q.pfQNum} queues for ${p.sriov.totalVfs} VFs: every VF needs at least one (got ${q.totalQps})`);
    }
    if (q.maxQpsPerFunction > q.totalQps) issue('qm.maxQpsPerFunction', `must not exceed qm.totalQps (${q.totalQps}) (got ${q.maxQpsPerFunction})`);
    else if (q.maxQpsPerFunction < q.pfQNum) issue('qm.maxQpsPerFunction', `must be at least qm.pfQNum (${q.pfQNum}) (got ${q.maxQpsPerFunction})`);
    const sqe = SQE_SIZE[p.engine];
    if (q.sqeSize !== sqe) issue('qm.sqeSize', `must be ${sqe} for ${p.engine} (got ${q.sqeSize})`);
  },
  (p, issue) => {
    const c = p.caps;
    const capVer = c.funcCaps & 0xff;
    if (p.hwVersion === 'v2') {
      // V2 has no capability registers: they read 0 and cap_ver 0 tells the driver to use defaults.
      for (const f of CAP_FIELDS) {
        if (c[f] !== 0) issue(`caps.${f}`, `V2 has no capability registers: must be 0 (got ${hex(c[f])})`);
      }
      if (Object.keys(c.engine).length !== 0) issue('caps.engine', 'V2 has no capability registers: must be empty');
      return;
    }
    if (capVer === 0) {
      issue('caps.funcCaps', `cap_ver (bits 7:0) must be non-zero on ${p.hwVersion} (got ${hex(c.funcCaps)})`);
      return;
    }
    const q = p.qm;
    const qpDepth = (q.sqDepth | (q.cqDepth << 16)) >>> 0;
    if (c.qpDepthCap !== qpDepth) issue('caps.qpDepthCap', `must be ${hex(qpDepth)} to match qm.sqDepth/qm.cqDepth (got ${hex(c.qpDepthCap)})`);
    const xeq = (q.eqDepth | (q.aeqDepth << 16)) >>> 0;
    if (c.xeqDepthCap !== xeq) issue('caps.xeqDepthCap', `must be ${hex(xeq)} to match qm.eqDepth/qm.aeqDepth (got ${hex(c.xeqDepthCap)})`);
    const irqNum = ((p.msi.pfVectors << 16) | p.msi.vfVectors) >>> 0;
    if (c.irqNumCap !== irqNum) issue('caps.irqNumCap', `must be ${hex(irqNum)} to match msi.pfVectors/msi.vfVectors (got ${hex(c.irqNumCap)})`);
    for (const f of IRQ_TYPE_FIELDS) {
      const v = c[f];
      if (v >>> 17 !== 0) {
        issue(`caps.${f}`, `bits 31:17 must be zero (got ${hex(v)})`);
        continue;
      }
      const present = (v >>> 16) & 1;
      const vector = v & 0xffff;
      if (!present) {
        if (f === 'eqIrqType' || f === 'aeqIrqType') issue(`caps.${f}`, `bit 16 (present) must be set: the QM needs this interrupt (got ${hex(v)})`);
        continue;
      }
      const limit = f === 'abnIrqType' ? p.msi.pfVectors : p.msi.vfVectors;
      const limitName = f === 'abnIrqType' ? 'msi.pfVectors' : 'msi.vfVectors';
      if (vector >= limit) issue(`caps.${f}`, `vector ${vector} must be below ${limitName} (${limit}) (got ${hex(v)})`);
    }
    if ((c.eqIrqType & 0xffff) === (c.aeqIrqType & 0xffff)) {
      issue('caps.aeqIrqType', `EQ and AEQ need different vectors (got ${hex(c.aeqIrqType)})`);
    }
  },
];

// ---- public API ------------------------------------------------------------------------------

/** Validates a parsed JSON value and returns the normalised profile; ProfileError otherwise. */
export function loadProfileFromJson(json: unknown, sourceName: string): DeviceProfile {
  const issues: ProfileIssue[] = [];
  const profile = walk(PROFILE_SCHEMA, json, '', issues) as DeviceProfile;
  if (issues.length === 0) {
    const issue = (path: string, message: string): void => {
      issues.push({ path, message });
    };
    for (const rule of RULES) rule(profile, issue);
  }
  if (issues.length > 0) throw new ProfileError(sourceName, issues);
  return profile;
}

let rootCache: string | undefined;

/** The package root: the nearest ancestor of this module with package.json and firmware/. */
export function packageRoot(): string {
  if (rootCache !== undefined) return rootCache;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && isDir(join(dir, 'firmware'))) {
      rootCache = dir;
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new ProfileError('firmware', [{ path: '(dir)', message: 'no package root with a firmware/ directory above ' + fileURLToPath(import.meta.url) }]);
    dir = up;
  }
}

export function firmwareDir(): string {
  return join(packageRoot(), 'firmware');
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Loads and validates `firmware/<name>.json`; the profile's `name` must equal the file stem.
 * `dir` overrides the directory (tests, out-of-tree profiles).
 */
export function loadProfile(name: string, dir: string = firmwareDir()): DeviceProfile {
  const source = `firmware/${name}.json`;
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new ProfileError(source, [{ path: '(file)', message: `bad profile name ${JSON.stringify(name)}` }]);
  }
  const file = join(dir, `${name}.json`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new ProfileError(source, [{ path: '(file)', message: `no such profile (known: ${listProfiles(dir).join(', ')})` }]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ProfileError(source, [{ path: '(file)', message: `invalid JSON: ${(e as Error).message}` }]);
  }
  const profile = loadProfileFromJson(json, source);
  if (profile.name !== name) {
    throw new ProfileError(source, [{ path: 'name', message: `must equal the file stem "${name}" (got ${JSON.stringify(profile.name)})` }]);
  }
  return profile;
}

/** Stems of every profile file, sorted. */
export function listProfiles(dir: string = firmwareDir()): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

/** The stock profile of an engine and hardware version, e.g. profileFor('zip', 'v3'). */
export function profileFor(engine: EngineKind, hw: HwVersion): DeviceProfile {
  return loadProfile(`${engine}-${hw}`);
}
