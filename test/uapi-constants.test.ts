import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import * as vfio from '../src/uapi/vfio.js';
import { HeaderEvaluator, parseHeader } from './uapi-header.js';

const HEADER_PATH = '/usr/include/linux/vfio.h';
const HEADER_SRC = existsSync(HEADER_PATH) ? readFileSync(HEADER_PATH, 'utf8') : null;
const exported = vfio as unknown as Record<string, unknown>;

function hasGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Header names left out on purpose, by family (see the comment at the top of vfio.ts). */
const EXCLUDED: ReadonlyArray<[RegExp, string]> = [
  [/^VFIO_H$/, 'include guard'],
  [/^VFIO_CCW_/, 'ccw bus'],
  [/^VFIO_REGION_SUBTYPE_CCW_/, 'ccw bus'],
  [/^VFIO_DEVICE_API_(PLATFORM|AMBA|CCW|AP)_STRING$/, 'other bus types'],
  [/^VFIO_DEVICE_INFO_CAP_ZPCI_/, 's390 zpci'],
  [/^VFIO_IOMMU_SPAPR_/, 'ppc spapr'],
  [/^VFIO_EEH_PE_/, 'ppc eeh'],
  [/^VFIO_GFX_PLANE_TYPE_/, 'graphics planes'],
  [/^VFIO_DEVICE_QUERY_GFX_PLANE$/, 'graphics planes'],
  [/^VFIO_DEVICE_GET_GFX_DMABUF$/, 'dmabuf'],
  [/^VFIO_DEVICE_GFX_LINK_STATE_/, 'graphics EDID'],
  [/^VFIO_REGION_SUBTYPE_GFX_EDID$/, 'graphics EDID'],
  [/^VFIO_REGION_SUBTYPE_INTEL_IGD_/, 'igd'],
];

const excludedFamily = (name: string) => EXCLUDED.find(([re]) => re.test(name))?.[1] ?? null;

/*
 * Values written down in the specs (vfio-type1-dirty.md section 1, vfio-uapi-and-migration.md
 * sections 1-4), hand-computed where the spec gives a formula: _IO(';', n) = 0x3b00 + n.
 * These hold with or without the system header.
 */
const SPEC_VALUES: ReadonlyArray<[string, number]> = [
  ['VFIO_TYPE', 0x3b],
  ['VFIO_BASE', 100],
  ['VFIO_IOMMU_GET_INFO', 0x3b70],
  ['VFIO_IOMMU_MAP_DMA', 0x3b71],
  ['VFIO_IOMMU_UNMAP_DMA', 0x3b72],
  ['VFIO_IOMMU_DIRTY_PAGES', 0x3b75],
  ['VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP', 1],
  ['VFIO_DMA_UNMAP_FLAG_ALL', 2],
  ['VFIO_DMA_UNMAP_FLAG_VADDR', 4],
  ['VFIO_IOMMU_DIRTY_PAGES_FLAG_START', 1],
  ['VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP', 2],
  ['VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP', 4],
  ['VFIO_IOMMU_INFO_PGSIZES', 1],
  ['VFIO_IOMMU_INFO_CAPS', 2],
  ['VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE', 1],
  ['VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION', 2],
  ['VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL', 3],
  ['VFIO_DEVICE_GET_INFO', 0x3b6b],
  ['VFIO_DEVICE_GET_REGION_INFO', 0x3b6c],
  ['VFIO_DEVICE_GET_IRQ_INFO', 0x3b6d],
  ['VFIO_DEVICE_SET_IRQS', 0x3b6e],
  ['VFIO_DEVICE_RESET', 0x3b6f],
  ['VFIO_DEVICE_GET_PCI_HOT_RESET_INFO', 0x3b70],
  ['VFIO_DEVICE_IOEVENTFD', 0x3b74],
  ['VFIO_DEVICE_FEATURE', 0x3b75],
  ['VFIO_MIG_GET_PRECOPY_INFO', 0x3b79],
  ['VFIO_REGION_INFO_FLAG_READ', 1],
  ['VFIO_REGION_INFO_FLAG_WRITE', 2],
  ['VFIO_REGION_INFO_FLAG_MMAP', 4],
  ['VFIO_REGION_INFO_FLAG_CAPS', 8],
  ['VFIO_REGION_INFO_CAP_SPARSE_MMAP', 1],
  ['VFIO_REGION_INFO_CAP_TYPE', 2],
  ['VFIO_PCI_BAR0_REGION_INDEX', 0],
  ['VFIO_PCI_BAR5_REGION_INDEX', 5],
  ['VFIO_PCI_ROM_REGION_INDEX', 6],
  ['VFIO_PCI_CONFIG_REGION_INDEX', 7],
  ['VFIO_PCI_VGA_REGION_INDEX', 8],
  ['VFIO_PCI_NUM_REGIONS', 9],
  ['VFIO_PCI_INTX_IRQ_INDEX', 0],
  ['VFIO_PCI_MSI_IRQ_INDEX', 1],
  ['VFIO_PCI_MSIX_IRQ_INDEX', 2],
  ['VFIO_DEVICE_FEATURE_MASK', 0xffff],
  ['VFIO_DEVICE_FEATURE_GET', 0x10000],
  ['VFIO_DEVICE_FEATURE_SET', 0x20000],
  ['VFIO_DEVICE_FEATURE_PROBE', 0x40000],
  ['VFIO_DEVICE_FEATURE_MIGRATION', 1],
  ['VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE', 2],
  ['VFIO_DEVICE_FEATURE_DMA_LOGGING_START', 6],
  ['VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP', 7],
  ['VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT', 8],
  ['VFIO_DEVICE_FEATURE_MIG_DATA_SIZE', 9],
  ['VFIO_MIGRATION_STOP_COPY', 1],
  ['VFIO_MIGRATION_P2P', 2],
  ['VFIO_MIGRATION_PRE_COPY', 4],
  ['VFIO_DEVICE_STATE_ERROR', 0],
  ['VFIO_DEVICE_STATE_STOP', 1],
  ['VFIO_DEVICE_STATE_RUNNING', 2],
  ['VFIO_DEVICE_STATE_STOP_COPY', 3],
  ['VFIO_DEVICE_STATE_RESUMING', 4],
  ['VFIO_DEVICE_STATE_RUNNING_P2P', 5],
  ['VFIO_DEVICE_STATE_PRE_COPY', 6],
  ['VFIO_DEVICE_STATE_PRE_COPY_P2P', 7],
  ['VFIO_REGION_TYPE_MIGRATION', 3],
  ['VFIO_REGION_TYPE_MIGRATION_DEPRECATED', 3],
  ['VFIO_REGION_SUBTYPE_MIGRATION', 1],
  ['VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED', 1],
  ['VFIO_DEVICE_STATE_V1_STOP', 0],
  ['VFIO_DEVICE_STATE_V1_RUNNING', 1],
  ['VFIO_DEVICE_STATE_V1_SAVING', 2],
  ['VFIO_DEVICE_STATE_V1_RESUMING', 4],
  ['VFIO_PCI_OFFSET_SHIFT', 40],
];

/** Names the 6.1 header cannot know (6.2+) or dropped (pre-5.18 spellings). */
const NOT_IN_6_1 = [
  'VFIO_DEVICE_STATE_PRE_COPY',
  'VFIO_DEVICE_STATE_PRE_COPY_P2P',
  'VFIO_MIGRATION_PRE_COPY',
  'VFIO_MIG_GET_PRECOPY_INFO',
  'VFIO_DEVICE_FEATURE_MIG_DATA_SIZE',
  'VFIO_REGION_TYPE_MIGRATION',
  'VFIO_REGION_SUBTYPE_MIGRATION',
];

function assertSpecValues(): number {
  for (const [name, value] of SPEC_VALUES) {
    expect(exported[name], name).toBe(value);
  }
  return SPEC_VALUES.length;
}

describe('vfio.h constants: spec-documented values (vfio-type1-dirty.md 1, vfio-uapi-and-migration.md 1-4)', () => {
  it('match the values written in the specs', () => {
    expect(assertSpecValues()).toBeGreaterThan(60);
  });

  it('_IO(type, nr) = (type << 8) | nr, the asm-generic encoding with direction NONE and size 0', () => {
    expect(vfio._IO(0x3b, 100)).toBe(0x3b64);
    expect(vfio._IO(';'.charCodeAt(0), 121)).toBe(0x3b79);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), (t, n) => {
        expect(vfio._IO(t, n)).toBe(t * 256 + n);
      }),
    );
  });

  it('VFIO_PCI_INDEX_TO_OFFSET is index << 40 exactly, and OFFSET_TO_INDEX inverts it (spec 1)', () => {
    expect(vfio.VFIO_PCI_INDEX_TO_OFFSET(7)).toBe(0x70000000000);
    expect(vfio.VFIO_PCI_INDEX_TO_OFFSET(9)).toBe(9 * 1099511627776);
    expect(vfio.VFIO_PCI_OFFSET_MASK).toBe(0xffffffffff);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8191 }), fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }), (idx, within) => {
        const off = vfio.VFIO_PCI_INDEX_TO_OFFSET(idx);
        expect(BigInt(off)).toBe(BigInt(idx) << 40n);
        const full = (BigInt(idx) << 40n) | within;
        expect(vfio.VFIO_PCI_OFFSET_TO_INDEX(Number(full))).toBe(idx);
        expect(BigInt(vfio.vfioPciOffsetInRegion(Number(full)))).toBe(within);
      }),
    );
  });

  it('migStateName names the v2 FSM states (spec 3) and flags anything else', () => {
    const names = ['ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'];
    names.forEach((n, i) => {
      expect(vfio.migStateName(i)).toBe(n);
      expect(exported[`VFIO_DEVICE_STATE_${n}`]).toBe(i);
      expect(vfio.VfioMigState[n as vfio.VfioMigStateName]).toBe(i);
      expect(vfio.isMigState(i)).toBe(true);
    });
    expect(Object.keys(vfio.VfioMigState)).toEqual(names);
    expect(vfio.VFIO_DEVICE_NUM_STATES).toBe(8);
    for (const bad of [-1, 8, 9, 2.5, Number.NaN, 0x100000002]) {
      expect(vfio.migStateName(bad)).toBe(`INVALID(${bad})`);
      expect(vfio.isMigState(bad)).toBe(false);
    }
  });

  it('v1 state helpers: RESUMING only alone, SAVING|RESUMING is the error state (spec 4)', () => {
    const valid = [0, 1, 2, 3, 4];
    for (let s = 0; s < 8; s++) {
      expect(vfio.VFIO_DEVICE_STATE_VALID(s), `valid ${s}`).toBe(valid.includes(s));
      expect(vfio.VFIO_DEVICE_STATE_IS_ERROR(s), `error ${s}`).toBe(s === 6);
      expect(vfio.VFIO_DEVICE_STATE_SET_ERROR(s)).toBe(6);
    }
    expect(vfio.VFIO_DEVICE_STATE_SET_ERROR(0xfffffff9)).toBe(0xfffffffe);
    expect(vfio.VFIO_DEVICE_STATE_MASK).toBe(7);
  });
});

describe('vfio.h constants against /usr/include/linux/vfio.h (Linux 6.1)', () => {
  const parsed = HEADER_SRC ? parseHeader(HEADER_SRC) : null;
  const ev = parsed ? new HeaderEvaluator(parsed) : null;

  it('every header constant is exported with the same value, or belongs to an excluded family', () => {
    if (!parsed || !ev) {
      // No header on this machine: the spec table is the whole check.
      expect(assertSpecValues()).toBeGreaterThan(60);
      return;
    }
    const shared: string[] = [];
    const missing: string[] = [];
    const mismatched: string[] = [];
    for (const name of parsed.names) {
      if (parsed.defines.get(name)?.params) continue; // function-like, checked below
      const family = excludedFamily(name);
      if (!(name in exported)) {
        if (family === null) missing.push(name);
        continue;
      }
      const want = ev.value(name);
      const got = exported[name];
      const same =
        typeof want === 'string' ? got === want : typeof got === 'number' && BigInt(got) === want;
      if (!same) mismatched.push(`${name}: header ${String(want)}, exported ${String(got)}`);
      shared.push(name);
    }
    expect(missing).toEqual([]);
    expect(mismatched).toEqual([]);
    // 6.1 has 190 names: 3 function-like, 51 in the excluded families, 136 shared.
    expect(shared.length).toBeGreaterThanOrEqual(136);
  });

  it('every excluded family matches some header name, and excluded names are really absent', () => {
    if (!parsed) {
      expect(assertSpecValues()).toBeGreaterThan(60);
      return;
    }
    for (const [re, why] of EXCLUDED) {
      expect(parsed.names.some((n) => re.test(n)), `${why}: ${re}`).toBe(true);
    }
    const leaked = parsed.names.filter((n) => excludedFamily(n) !== null && n in exported);
    expect(leaked).toEqual([]);
  });

  it('the header lacks exactly the post-6.1 / pre-5.18 names, which the spec table pins', () => {
    if (!parsed) {
      expect(assertSpecValues()).toBeGreaterThan(60);
      return;
    }
    const specNames = new Set(SPEC_VALUES.map(([n]) => n));
    for (const n of NOT_IN_6_1) {
      expect(parsed.names.includes(n), n).toBe(false);
      expect(specNames.has(n), n).toBe(true);
    }
    // The 6.2 ioctl shares its number with EEH_PE_OP (different fd types), so _IO arithmetic
    // from the header pins it too.
    expect(vfio.VFIO_MIG_GET_PRECOPY_INFO).toBe(Number(ev!.value('VFIO_EEH_PE_OP')));
  });

  it('function-like macros are exported as functions that agree with the macro bodies', () => {
    if (!parsed || !ev) {
      expect(vfio.VFIO_DEVICE_STATE_IS_ERROR(6)).toBe(true);
      return;
    }
    const fns = parsed.names.filter((n) => parsed.defines.get(n)?.params);
    expect(fns).toEqual(['VFIO_DEVICE_STATE_VALID', 'VFIO_DEVICE_STATE_IS_ERROR', 'VFIO_DEVICE_STATE_SET_ERROR']);
    const states = [...Array(16).keys(), 0x80000007, 0xfffffff9];
    for (const name of fns) {
      const f = exported[name] as (s: number) => number | boolean;
      expect(typeof f).toBe('function');
      for (const s of states) {
        const want = BigInt.asUintN(32, ev.call(name, [BigInt(s)]));
        expect(BigInt(Number(f(s))), `${name}(${s})`).toBe(want);
      }
    }
  });

  it('the header reader agrees with gcc on every numeric name it evaluates', () => {
    if (!parsed || !ev || !hasGcc()) {
      expect(assertSpecValues()).toBeGreaterThan(60);
      return;
    }
    const numeric = parsed.names.filter(
      (n) => n !== 'VFIO_H' && !parsed.defines.get(n)?.params && typeof ev.value(n) === 'bigint',
    );
    const fnCalls: string[] = [];
    for (const s of [0, 1, 2, 4, 5, 6, 7, 9, 0x80000007]) {
      for (const f of ['VFIO_DEVICE_STATE_VALID', 'VFIO_DEVICE_STATE_IS_ERROR', 'VFIO_DEVICE_STATE_SET_ERROR']) {
        fnCalls.push(`${f}(${s}u)`);
      }
    }
    const lines = [...numeric, ...fnCalls].map(
      (e) => `  printf("%s %llu\\n", ${JSON.stringify(e)}, (unsigned long long)(__u32)(${e}));`,
    );
    const prog = `#include <stdio.h>\n#include <linux/vfio.h>\nint main(void) {\n${lines.join('\n')}\n  return 0;\n}\n`;
    const dir = mkdtempSync(join(tmpdir(), 'uapi-consts-'));
    try {
      writeFileSync(join(dir, 'c.c'), prog);
      execFileSync('gcc', ['-o', join(dir, 'c'), join(dir, 'c.c')], { stdio: 'pipe' });
      const out = execFileSync(join(dir, 'c'), { encoding: 'utf8' }).trim().split('\n');
      expect(out.length).toBe(numeric.length + fnCalls.length);
      const byName = new Map(out.map((l) => l.split(' ') as [string, string]));
      for (const n of numeric) {
        expect(BigInt(byName.get(n)!), n).toBe(BigInt.asUintN(32, ev.value(n) as bigint));
      }
      for (const call of fnCalls) {
        const [, f, arg] = /^(\w+)\((\d+)u\)$/.exec(call)!;
        const ours = (exported[f!] as (s: number) => number | boolean)(Number(arg));
        expect(BigInt(Number(ours)), call).toBe(BigInt(byName.get(call)!));
      }
      expect(numeric.length).toBeGreaterThan(175);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
