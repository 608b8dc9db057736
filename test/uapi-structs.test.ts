import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { KernelError } from '../src/uapi/errno.js';
import {
  decodeArray,
  defineStruct,
  encodeArray,
  flex,
  offsetofend,
  readU64Number,
} from '../src/uapi/codec.js';
import type { AnyStructCodec, FieldLayout } from '../src/uapi/codec.js';
import * as S from '../src/uapi/structs.js';
import { parseHeader } from './uapi-header.js';

const HEADER_PATH = '/usr/include/linux/vfio.h';
const HEADER_SRC = existsSync(HEADER_PATH) ? readFileSync(HEADER_PATH, 'utf8') : null;
const ALL = Object.entries(S.VFIO_STRUCTS) as [string, AnyStructCodec][];

/** Structs newer than the 6.1 header; checked against the spec only. */
const POST_6_1_STRUCTS = new Set(['vfio_precopy_info', 'vfio_device_feature_mig_data_size']);
/** Members spelled out after 6.1 (tail padding in 6.1, so sizeof is unchanged). */
const POST_6_1_FIELDS = new Set(['vfio_iommu_type1_info.pad']);

function hasGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/*
 * Layouts written in the specs (vfio-type1-dirty.md 1, vfio-uapi-and-migration.md 1-5),
 * plus hand-derived natural-alignment layouts for the rest of the required structs.
 */
const SPEC_LAYOUTS: ReadonlyArray<[AnyStructCodec, number, Record<string, number>]> = [
  [S.vfio_info_cap_header, 8, { id: 0, version: 2, next: 4 }],
  [S.vfio_group_status, 8, { argsz: 0, flags: 4 }],
  [S.vfio_device_info, 20, { num_regions: 8, num_irqs: 12, cap_offset: 16 }],
  [S.vfio_region_info, 32, { argsz: 0, flags: 4, index: 8, cap_offset: 12, size: 16, offset: 24 }],
  [S.vfio_region_sparse_mmap_area, 16, { offset: 0, size: 8 }],
  [S.vfio_region_info_cap_sparse_mmap, 16, { header: 0, 'header.next': 4, nr_areas: 8, reserved: 12, areas: 16 }],
  [S.vfio_region_info_cap_type, 16, { type: 8, subtype: 12 }],
  [S.vfio_device_migration_info, 32, { device_state: 0, reserved: 4, pending_bytes: 8, data_offset: 16, data_size: 24 }],
  [S.vfio_irq_info, 16, { index: 8, count: 12 }],
  [S.vfio_irq_set, 20, { index: 8, start: 12, count: 16, data: 20 }],
  [S.vfio_pci_dependent_device, 8, { group_id: 0, segment: 4, bus: 6, devfn: 7 }],
  [S.vfio_pci_hot_reset_info, 12, { count: 8, devices: 12 }],
  [S.vfio_pci_hot_reset, 12, { count: 8, group_fds: 12 }],
  [S.vfio_device_ioeventfd, 32, { offset: 8, data: 16, fd: 24 }],
  [S.vfio_device_feature, 8, { argsz: 0, flags: 4, data: 8 }],
  [S.vfio_device_feature_migration, 8, { flags: 0 }],
  [S.vfio_device_feature_mig_state, 8, { device_state: 0, data_fd: 4 }],
  [S.vfio_device_feature_dma_logging_control, 24, { page_size: 0, num_ranges: 8, __reserved: 12, ranges: 16 }],
  [S.vfio_device_feature_dma_logging_range, 16, { iova: 0, length: 8 }],
  [S.vfio_device_feature_dma_logging_report, 32, { iova: 0, length: 8, page_size: 16, bitmap: 24 }],
  [S.vfio_device_feature_mig_data_size, 8, { stop_copy_length: 0 }],
  [S.vfio_precopy_info, 24, { argsz: 0, flags: 4, initial_bytes: 8, dirty_bytes: 16 }],
  [S.vfio_iommu_type1_info, 24, { argsz: 0, flags: 4, iova_pgsizes: 8, cap_offset: 16, pad: 20 }],
  [S.vfio_iova_range, 16, { start: 0, end: 8 }],
  [S.vfio_iommu_type1_info_cap_iova_range, 16, { nr_iovas: 8, reserved: 12, iova_ranges: 16 }],
  [S.vfio_iommu_type1_info_cap_migration, 32, { flags: 8, pgsize_bitmap: 16, max_dirty_bitmap_size: 24 }],
  [S.vfio_iommu_type1_info_dma_avail, 12, { avail: 8 }],
  [S.vfio_iommu_type1_dma_map, 32, { vaddr: 8, iova: 16, size: 24 }],
  [S.vfio_bitmap, 24, { pgsize: 0, size: 8, data: 16 }],
  [S.vfio_iommu_type1_dma_unmap, 24, { argsz: 0, flags: 4, iova: 8, size: 16, data: 24 }],
  [S.vfio_iommu_type1_dirty_bitmap, 8, { argsz: 0, flags: 4, data: 8 }],
  [S.vfio_iommu_type1_dirty_bitmap_get, 40, { iova: 0, size: 8, bitmap: 16, 'bitmap.pgsize': 16, 'bitmap.data': 32 }],
];

describe('struct layouts documented in the specs', () => {
  it.each(SPEC_LAYOUTS.map(([c, size, offs]) => [c.name, c, size, offs] as const))(
    '%s has the spec size and offsets',
    (_n, codec, size, offs) => {
      expect(codec.size).toBe(size);
      for (const [path, off] of Object.entries(offs)) expect(codec.offsetOf(path), path).toBe(off);
    },
  );

  it('covers every exported struct', () => {
    expect(new Set(SPEC_LAYOUTS.map(([c]) => c.name))).toEqual(
      new Set(ALL.map(([n]) => n).filter((n) => n !== 'vfio_device_low_power_entry_with_wakeup')),
    );
    expect(S.vfio_device_low_power_entry_with_wakeup.size).toBe(8);
  });

  it('minsz constants are the kernel offsetofend values (type1 spec 1-2, uapi spec 1-3)', () => {
    expect(S.VFIO_GROUP_STATUS_MINSZ).toBe(8);
    expect(S.VFIO_DEVICE_INFO_MINSZ).toBe(16);
    expect(S.VFIO_DEVICE_INFO_CAPSZ).toBe(20);
    expect(S.VFIO_REGION_INFO_MINSZ).toBe(32);
    expect(S.VFIO_IRQ_INFO_MINSZ).toBe(16);
    expect(S.VFIO_IRQ_SET_MINSZ).toBe(20);
    expect(S.VFIO_PCI_HOT_RESET_INFO_MINSZ).toBe(12);
    expect(S.VFIO_PCI_HOT_RESET_MINSZ).toBe(12);
    expect(S.VFIO_DEVICE_IOEVENTFD_MINSZ).toBe(28);
    expect(S.VFIO_DEVICE_FEATURE_MINSZ).toBe(8);
    expect(S.VFIO_PRECOPY_INFO_MINSZ).toBe(24);
    expect(S.VFIO_IOMMU_TYPE1_INFO_MINSZ).toBe(16);
    expect(S.VFIO_IOMMU_TYPE1_DMA_MAP_MINSZ).toBe(32);
    expect(S.VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ).toBe(24);
    expect(S.VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ).toBe(8);
    expect(S.VFIO_IOMMU_TYPE1_DMA_UNMAP_BITMAP_MINSZ).toBe(48);
    expect(S.VFIO_IOMMU_TYPE1_DIRTY_BITMAP_GET_MINSZ).toBe(48);
    expect(offsetofend(S.vfio_iommu_type1_dirty_bitmap_get, 'bitmap.size')).toBe(32);
  });
});

/** Every member path of a codec, nested structs expanded ("bitmap.pgsize"). */
function memberPaths(c: AnyStructCodec, prefix = ''): { path: string; f: FieldLayout }[] {
  const out: { path: string; f: FieldLayout }[] = [];
  for (const f of c.fields) {
    const path = prefix + f.name;
    out.push({ path, f });
    if (f.struct && f.flexOf === null) out.push(...memberPaths(f.struct, `${path}.`));
  }
  return out;
}

describe('struct layouts against Linux 6.1 <linux/vfio.h>', () => {
  it('member names and order match the header declarations', () => {
    if (!HEADER_SRC) {
      expect(S.vfio_region_info.fields.map((f) => f.name)).toEqual(['argsz', 'flags', 'index', 'cap_offset', 'size', 'offset']);
      return;
    }
    const structs = parseHeader(HEADER_SRC).structs;
    let checked = 0;
    for (const [name, codec] of ALL) {
      if (POST_6_1_STRUCTS.has(name)) {
        expect(structs.has(name), name).toBe(false);
        continue;
      }
      const ours = codec.fields.map((f) => f.name).filter((n) => !POST_6_1_FIELDS.has(`${name}.${n}`));
      expect(ours, name).toEqual(structs.get(name));
      checked++;
    }
    expect(checked).toBe(ALL.length - POST_6_1_STRUCTS.size);
  });

  it('sizeof, alignment, offsetof and member sizes equal what gcc computes', () => {
    if (!hasGcc() || !HEADER_SRC) {
      expect(S.vfio_iommu_type1_dirty_bitmap_get.offsetOf('bitmap.data')).toBe(32);
      return;
    }
    const lines: string[] = [];
    const expected = new Map<string, number>();
    for (const [name, codec] of ALL) {
      if (POST_6_1_STRUCTS.has(name)) continue;
      lines.push(`P("${name} sizeof", sizeof(struct ${name}));`);
      lines.push(`P("${name} align", _Alignof(struct ${name}));`);
      expected.set(`${name} sizeof`, codec.size);
      expected.set(`${name} align`, codec.align);
      for (const { path, f } of memberPaths(codec)) {
        if (POST_6_1_FIELDS.has(`${name}.${path}`)) continue;
        lines.push(`P("${name}.${path} offset", offsetof(struct ${name}, ${path}));`);
        expected.set(`${name}.${path} offset`, codec.offsetOf(path));
        if (f.flexOf === null) {
          lines.push(`P("${name}.${path} size", sizeof(((struct ${name} *)0)->${path}));`);
          expected.set(`${name}.${path} size`, codec.sizeOf(path));
        }
      }
    }
    const prog = [
      '#include <stdio.h>',
      '#include <stddef.h>',
      '#include <linux/vfio.h>',
      '#define P(k, v) printf("%s=%zu\\n", k, (size_t)(v))',
      'int main(void) {',
      ...lines,
      'return 0; }',
    ].join('\n');
    const dir = mkdtempSync(join(tmpdir(), 'uapi-structs-'));
    try {
      writeFileSync(join(dir, 's.c'), prog);
      execFileSync('gcc', ['-o', join(dir, 's'), join(dir, 's.c')], { stdio: 'pipe' });
      const out = execFileSync(join(dir, 's'), { encoding: 'utf8' }).trim().split('\n');
      const got = new Map(out.map((l) => [l.slice(0, l.lastIndexOf('=')), Number(l.slice(l.lastIndexOf('=') + 1))]));
      expect(got.size).toBe(expected.size);
      for (const [k, v] of expected) expect(got.get(k), k).toBe(v);
      expect(expected.size).toBeGreaterThan(200);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/* ---------- round trips ---------- */

const U64_EDGES = [0n, 1n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n), (1n << 64n) - 1n];

function arbFor(codec: AnyStructCodec): fc.Arbitrary<Record<string, unknown>> {
  const rec: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of codec.fields) {
    if (f.flexOf !== null) continue;
    switch (f.scalar) {
      case 'u8':
        rec[f.name] = fc.integer({ min: 0, max: 0xff });
        break;
      case 'u16':
        rec[f.name] = fc.integer({ min: 0, max: 0xffff });
        break;
      case 'u32':
        rec[f.name] = fc.integer({ min: 0, max: 0xffffffff });
        break;
      case 's32':
        rec[f.name] = fc.integer({ min: -0x80000000, max: 0x7fffffff });
        break;
      case 'u64':
        rec[f.name] = fc.oneof(fc.constantFrom(...U64_EDGES), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));
        break;
      default:
        rec[f.name] = arbFor(f.struct!);
    }
  }
  return fc.record(rec);
}

describe('encode/decode', () => {
  it.each(ALL)('%s: decode(encode(x)) == x, also at an offset inside a larger buffer', (_n, codec) => {
    fc.assert(
      fc.property(arbFor(codec), fc.integer({ min: 0, max: 13 }), (value, off) => {
        const obj = value as Parameters<typeof codec.encode>[0];
        expect(codec.decode(codec.encode(obj))).toEqual(obj);
        const big = new Uint8Array(off + codec.size + 5).fill(0xa5);
        codec.encode(obj, big, off);
        expect(codec.decode(big, off)).toEqual(obj);
        // bytes outside the struct are untouched
        expect(big.subarray(0, off).every((b) => b === 0xa5)).toBe(true);
        expect(big.subarray(off + codec.size).every((b) => b === 0xa5)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it.each(ALL)('%s: decoding arbitrary bytes is stable under re-encoding', (_n, codec) => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: codec.size, maxLength: codec.size }), (bytes) => {
        const once = codec.decode(bytes);
        expect(codec.decode(codec.encode(once))).toEqual(once);
      }),
      { numRuns: 40 },
    );
  });

  it('u64 fields match DataView little-endian at the spec offsets (dirty_bitmap_get, type1 spec 1)', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (iova, size, data) => {
          const buf = new Uint8Array(40);
          const dv = new DataView(buf.buffer);
          dv.setBigUint64(0, iova, true);
          dv.setBigUint64(8, size, true);
          dv.setBigUint64(16, 4096n, true);
          dv.setBigUint64(24, size >> 3n, true);
          dv.setBigUint64(32, data, true);
          expect(S.vfio_iommu_type1_dirty_bitmap_get.decode(buf)).toEqual({
            iova,
            size,
            bitmap: { pgsize: 4096n, size: size >> 3n, data },
          });
          const enc = S.vfio_iommu_type1_dirty_bitmap_get.encode({ iova, size, bitmap: { pgsize: 4096, size: size >> 3n, data } });
          expect(enc).toEqual(buf);
        },
      ),
    );
  });

  it('s32 and u32 fields match DataView (mig_state data_fd, ioeventfd)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: -0x80000000, max: 0x7fffffff }), (st, fd) => {
        const buf = new Uint8Array(8);
        const dv = new DataView(buf.buffer);
        dv.setUint32(0, st, true);
        dv.setInt32(4, fd, true);
        expect(S.vfio_device_feature_mig_state.decode(buf)).toEqual({ device_state: st, data_fd: fd });
        expect(S.vfio_device_feature_mig_state.encode({ device_state: st, data_fd: fd })).toEqual(buf);
      }),
    );
    const io = S.vfio_device_ioeventfd.encode({ argsz: 32, flags: 4, offset: 0x70000000010n, data: 0xdeadbeefn, fd: -1 });
    const dv = new DataView(io.buffer);
    expect(dv.getBigUint64(8, true)).toBe(0x70000000010n);
    expect(dv.getInt32(24, true)).toBe(-1);
    expect(io.subarray(28)).toEqual(new Uint8Array(4)); // tail padding is zero
  });

  it('writes truncate like C assignment; u64 accepts safe-integer numbers', () => {
    const b = new Uint8Array(S.vfio_region_info.size);
    S.vfio_region_info.write(b, 'flags', -1);
    expect(S.vfio_region_info.read(b, 'flags')).toBe(0xffffffff);
    S.vfio_region_info.write(b, 'index', 0x1_0000_0005);
    expect(S.vfio_region_info.read(b, 'index')).toBe(5);
    S.vfio_region_info.write(b, 'size', Number.MAX_SAFE_INTEGER);
    expect(S.vfio_region_info.read(b, 'size')).toBe(BigInt(Number.MAX_SAFE_INTEGER));
    S.vfio_region_info.write(b, 'offset', -1n);
    expect(S.vfio_region_info.read(b, 'offset')).toBe((1n << 64n) - 1n);
    S.vfio_region_info.write(b, 'offset', 1n << 64n);
    expect(S.vfio_region_info.read(b, 'offset')).toBe(0n);
    expect(readU64Number(b, 16)).toBe(Number.MAX_SAFE_INTEGER);
    const st = S.vfio_device_feature_mig_state.encode({ data_fd: 0xffffffff });
    expect(S.vfio_device_feature_mig_state.read(st, 'data_fd')).toBe(-1);
    expect(() => S.vfio_region_info.write(b, 'size', 2 ** 60)).toThrow(RangeError);
    expect(() => S.vfio_region_info.write(b, 'flags', 1.5)).toThrow(RangeError);
    expect(() => S.vfio_region_info.write(b, 'flags', Number.NaN)).toThrow(RangeError);
  });

  it('flexible arrays: element decode/encode after the fixed part (sparse mmap areas)', () => {
    const areas = [
      { offset: 0n, size: 0x1000n },
      { offset: 0x3000n, size: (1n << 60n) + 0x1000n },
    ];
    const fixed = S.vfio_region_info_cap_sparse_mmap.size;
    const buf = new Uint8Array(fixed + areas.length * S.vfio_region_sparse_mmap_area.size);
    S.vfio_region_info_cap_sparse_mmap.encode({ header: { id: 1, version: 1 }, nr_areas: 2 }, buf);
    encodeArray(S.vfio_region_sparse_mmap_area, areas, buf, S.vfio_region_info_cap_sparse_mmap.offsetOf('areas'));
    const dv = new DataView(buf.buffer);
    expect(dv.getBigUint64(16 + 16 + 8, true)).toBe((1n << 60n) + 0x1000n);
    expect(decodeArray(S.vfio_region_sparse_mmap_area, buf, 16, 2)).toEqual(areas);
    expect(() => decodeArray(S.vfio_region_sparse_mmap_area, buf, 16, 3)).toThrow(KernelError);
    expect(() => decodeArray(S.vfio_region_sparse_mmap_area, buf, 16, -1)).toThrow(KernelError);
  });
});

function kernelErrno(fn: () => unknown): number | string {
  try {
    fn();
    return 'no error';
  } catch (e) {
    return e instanceof KernelError ? e.errno : `non-kernel ${String(e)}`;
  }
}

describe('short and out-of-range buffers give EFAULT, never another exception', () => {
  it.each(ALL)('%s', (_n, codec) => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: codec.size + 8 }), fc.integer({ min: -4, max: 12 }), (len, off) => {
        const buf = new Uint8Array(len).fill(0x5a);
        const fits = off >= 0 && off + codec.size <= len;
        if (fits) {
          expect(kernelErrno(() => codec.decode(buf, off))).toBe('no error');
        } else {
          expect(kernelErrno(() => codec.decode(buf, off))).toBe(14);
          expect(kernelErrno(() => codec.encode({}, buf, off))).toBe(14);
          expect(buf.every((b) => b === 0x5a)).toBe(true); // nothing written
        }
        const first = codec.fields[0]!;
        if (first.flexOf === null) {
          const fieldFits = off >= 0 && off + first.offset + first.size <= len;
          expect(kernelErrno(() => codec.read(buf, first.name, off))).toBe(fieldFits ? 'no error' : 14);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('non-integer offsets are EFAULT too', () => {
    const buf = new Uint8Array(64);
    expect(kernelErrno(() => S.vfio_bitmap.decode(buf, 0.5))).toBe(14);
    expect(kernelErrno(() => S.vfio_bitmap.decode(buf, Number.NaN))).toBe(14);
  });

  it('unknown field names are programming errors (RangeError), not errnos', () => {
    expect(() => S.vfio_bitmap.offsetOf('nope')).toThrow(RangeError);
    expect(() => S.vfio_bitmap.offsetOf('pgsize.x')).toThrow(RangeError);
    expect(() => defineStruct('bad', [['a', flex('u8')], ['b', 'u32']])).toThrow(RangeError);
    expect(() => defineStruct('dup', [['a', 'u8'], ['a', 'u32']])).toThrow(RangeError);
  });

  it('natural alignment: a u8 then u64 pads to 8; a trailing u32 after u64 pads sizeof to 16', () => {
    const a = defineStruct('a', [['x', 'u8'], ['y', 'u64']]);
    expect([a.offsetOf('y'), a.size, a.align]).toEqual([8, 16, 8]);
    const b = defineStruct('b', [['y', 'u64'], ['z', 'u32']]);
    expect([b.offsetOf('z'), b.size]).toEqual([8, 16]);
    const c = defineStruct('c', [['h', 'u16'], ['d', flex('u64')]]);
    expect([c.offsetOf('d'), c.size, c.align]).toEqual([8, 8, 8]);
  });
});
