/**
 * VFIO_DEVICE_FEATURE (vfio-uapi-and-migration.md sections 2, 3 and 5; Linux
 * vfio_ioctl_device_feature / vfio_check_feature): header rules, PROBE/GET/SET, migration
 * features dispatched to a fake variant, DMA logging payload validation and reporting.
 */
import { describe, expect, it } from 'vitest';
import { Errno, fail } from '../src/uapi/errno.js';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT as REPORT,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START as START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP as STOP,
  VFIO_DEVICE_FEATURE_GET as GET,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
  VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
  VFIO_DEVICE_FEATURE_MIGRATION as MIGRATION,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE as DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE as DEVICE_STATE,
  VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
  VFIO_DEVICE_FEATURE_PROBE as PROBE,
  VFIO_DEVICE_FEATURE_SET as SET,
  VFIO_DEVICE_STATE_ERROR,
  VFIO_DEVICE_STATE_RUNNING,
  VFIO_DEVICE_STATE_STOP,
  VFIO_DEVICE_STATE_STOP_COPY,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from '../src/uapi/vfio.js';
import {
  vfio_device_feature_dma_logging_control,
  vfio_device_feature_dma_logging_range,
  vfio_device_feature_dma_logging_report,
  vfio_device_feature_mig_state,
} from '../src/uapi/structs.js';
import { encodeArray } from '../src/uapi/codec.js';
import { migGetNextState } from '../src/vfio/mig-fsm.js';
import { MigrationSaveFile } from '../src/vfio/pci-core/mig-file.js';
import { VfioPciCoreDevice } from '../src/vfio/pci-core/core-device.js';
import type { DmaLoggingRange, VfioPciVariantOps } from '../src/vfio/pci-core/ops.js';
import { combineIovaRanges } from '../src/vfio/pci-core/iova-ranges.js';
import { LOG_MAX_RANGES } from '../src/vfio/pci-core/feature.js';
import { accRig, feature, openCore, s32, u32, u64 } from './vfio-pcicore-helpers.js';

const FLAGS = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;

/** A fake migration driver: walks the core's FSM, opens a save file on STOP_COPY, can fail arcs. */
function fakeVariant() {
  const log = {
    started: [] as { ranges: DmaLoggingRange[]; pageSize: number }[],
    stops: 0,
    reports: [] as { iova: number; length: number; pageSize: number }[],
    /** iova of pages to report dirty */
    dirty: [] as number[],
    effectivePageSize: 0,
  };
  const st = { state: VFIO_DEVICE_STATE_RUNNING as number, failArc: -1, lastFile: null as MigrationSaveFile | null };
  const variant: VfioPciVariantOps = {
    name: 'fake-mig',
    migration: {
      flags: FLAGS,
      getState: () => st.state,
      getDataSize: () => 176,
      setState(_core, target) {
        let file: MigrationSaveFile | null = null;
        while (st.state !== target) {
          const next = migGetNextState(FLAGS, st.state, target);
          if (next === st.failArc) {
            st.state = VFIO_DEVICE_STATE_ERROR;
            fail('EIO', 'arc failed');
          }
          if (next === VFIO_DEVICE_STATE_STOP_COPY) {
            file = new MigrationSaveFile('stopcopy');
            file.append(Uint8Array.of(1, 2, 3));
            file.finish();
            st.lastFile = file;
          }
          st.state = next;
        }
        return file;
      },
    },
    log: {
      start(_core, ranges, pageSize) {
        log.started.push({ ranges: ranges.map((r) => ({ ...r })), pageSize });
        return log.effectivePageSize || pageSize;
      },
      stop() {
        log.stops++;
      },
      report(_core, iova, length, pageSize, out) {
        log.reports.push({ iova, length, pageSize });
        for (const d of log.dirty) {
          if (d >= iova && d < iova + length) {
            const bit = Math.floor((d - iova) / pageSize);
            out[bit >> 3] = out[bit >> 3]! | (1 << (bit & 7));
          }
        }
      },
    },
  };
  return { variant, log, st };
}

function open(variant?: VfioPciVariantOps) {
  const rig = accRig(1);
  return { rig, ...openCore(rig.acc.vf(1)!, rig.process, variant) };
}

const mig8 = (state: number, fd = 0x55) => vfio_device_feature_mig_state.encode({ device_state: state, data_fd: fd });

describe('header rules', () => {
  it('EFAULT without 8 readable bytes; EINVAL for argsz < 8, unknown flags, GET|SET without PROBE', () => {
    const { file } = open(fakeVariant().variant);
    expect(file.ioctl(0x3b00 + 117, new Uint8Array(6))).toBe(-Errno.EFAULT);
    expect(feature(file, GET | MIGRATION, new Uint8Array(8), 7).ret).toBe(-Errno.EINVAL);
    expect(feature(file, GET | MIGRATION | (1 << 19), new Uint8Array(8)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, GET | SET | DEVICE_STATE, mig8(1)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, GET | SET | PROBE | DEVICE_STATE, mig8(1)).ret).toBe(0);
  });

  it('PROBE answers 0 for supported operations and EINVAL for unsupported ones, touching nothing', () => {
    const { variant, st } = fakeVariant();
    const { file } = open(variant);
    const p = new Uint8Array(8).fill(0xaa);
    const r = feature(file, PROBE | GET | MIGRATION, p);
    expect(r.ret).toBe(0);
    expect([...r.payload]).toEqual(new Array(8).fill(0xaa));
    expect(feature(file, PROBE | SET | MIGRATION, p).ret).toBe(-Errno.EINVAL);
    expect(feature(file, PROBE | MIGRATION, new Uint8Array(0)).ret).toBe(0);
    expect(feature(file, PROBE | SET | DEVICE_STATE, mig8(VFIO_DEVICE_STATE_STOP)).ret).toBe(0);
    expect(st.state).toBe(VFIO_DEVICE_STATE_RUNNING);
    expect(feature(file, PROBE | START, new Uint8Array(0)).ret).toBe(0);
    expect(feature(file, PROBE | GET | START, new Uint8Array(0)).ret).toBe(-Errno.EINVAL);
  });

  it('neither GET nor SET (no PROBE) is EINVAL; a payload shorter than the feature struct is EINVAL', () => {
    const { file } = open(fakeVariant().variant);
    expect(feature(file, MIGRATION, new Uint8Array(8)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, GET | MIGRATION, new Uint8Array(4)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, SET | DEVICE_STATE, new Uint8Array(8), 12).ret).toBe(-Errno.EINVAL);
    // argsz claims 8 payload bytes the buffer does not have: the copy faults.
    expect(feature(file, GET | MIGRATION, new Uint8Array(4), 16).ret).toBe(-Errno.EFAULT);
  });

  it('features the core does not implement are ENOTTY (VF token, low power, unknown ids)', () => {
    const { file } = open(fakeVariant().variant);
    for (const id of [VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, 4, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, 10, 0xffff]) {
      expect(feature(file, GET | id, new Uint8Array(16)).ret).toBe(-Errno.ENOTTY);
    }
  });

  it('without migration or log ops every migration and logging feature is ENOTTY', () => {
    const { file } = open();
    for (const id of [MIGRATION, DEVICE_STATE, DATA_SIZE]) expect(feature(file, GET | id, new Uint8Array(16)).ret).toBe(-Errno.ENOTTY);
    for (const id of [START, STOP]) expect(feature(file, SET | id, new Uint8Array(24)).ret).toBe(-Errno.ENOTTY);
    expect(feature(file, GET | REPORT, new Uint8Array(32)).ret).toBe(-Errno.ENOTTY);
    expect(feature(file, PROBE | GET | MIGRATION, new Uint8Array(8)).ret).toBe(-Errno.ENOTTY);
  });
});

describe('migration features', () => {
  it('MIGRATION GET gives the flags; MIG_DATA_SIZE GET the size', () => {
    const { file } = open(fakeVariant().variant);
    const m = feature(file, GET | MIGRATION, new Uint8Array(8));
    expect(m.ret).toBe(0);
    expect(u64(m.payload, 0)).toBe(BigInt(FLAGS));
    const d = feature(file, GET | DATA_SIZE, new Uint8Array(8));
    expect(d.ret).toBe(0);
    expect(u64(d.payload, 0)).toBe(176n);
    expect(feature(file, SET | DATA_SIZE, new Uint8Array(8)).ret).toBe(-Errno.EINVAL);
  });

  it('MIG_DEVICE_STATE GET: state and data_fd -1', () => {
    const { file } = open(fakeVariant().variant);
    const r = feature(file, GET | DEVICE_STATE, mig8(0, 0x1234));
    expect(r.ret).toBe(0);
    expect(u32(r.payload, 0)).toBe(VFIO_DEVICE_STATE_RUNNING);
    expect(s32(r.payload, 4)).toBe(-1);
  });

  it('SET to STOP_COPY installs the returned data file and reports its fd; reading it drains the stream', () => {
    const { variant, st } = fakeVariant();
    const { file, rig } = open(variant);
    const r = feature(file, SET | DEVICE_STATE, mig8(VFIO_DEVICE_STATE_STOP_COPY));
    expect(r.ret).toBe(0);
    expect(u32(r.payload, 0)).toBe(VFIO_DEVICE_STATE_STOP_COPY);
    const dataFd = s32(r.payload, 4);
    expect(dataFd).toBeGreaterThanOrEqual(3);
    expect(rig.process.fds.get(dataFd)).toBe(st.lastFile);
    const buf = new Uint8Array(8);
    expect(rig.process.fds.get(dataFd)!.read(buf)).toBe(3);
    expect([...buf.subarray(0, 3)]).toEqual([1, 2, 3]);
    expect(rig.process.fds.get(dataFd)!.read(buf)).toBe(0);
    // Back to STOP: no file, data_fd -1.
    const back = feature(file, SET | DEVICE_STATE, mig8(VFIO_DEVICE_STATE_STOP));
    expect(back.ret).toBe(0);
    expect(s32(back.payload, 4)).toBe(-1);
  });

  it('a failed SET returns the driver errno with data_fd -1 and the requested state echoed', () => {
    const { variant, st } = fakeVariant();
    st.failArc = VFIO_DEVICE_STATE_STOP_COPY;
    const { file } = open(variant);
    const r = feature(file, SET | DEVICE_STATE, mig8(VFIO_DEVICE_STATE_STOP_COPY));
    expect(r.ret).toBe(-Errno.EIO);
    expect(u32(r.payload, 0)).toBe(VFIO_DEVICE_STATE_STOP_COPY);
    expect(s32(r.payload, 4)).toBe(-1);
    expect(u32(feature(file, GET | DEVICE_STATE, mig8(0)).payload, 0)).toBe(VFIO_DEVICE_STATE_ERROR);
  });

  it('data fds are disabled when the device is closed (ENODEV), though the fd stays open', () => {
    const { variant } = fakeVariant();
    const { file, rig } = open(variant);
    const r = feature(file, SET | DEVICE_STATE, mig8(VFIO_DEVICE_STATE_STOP_COPY));
    const dataFd = s32(r.payload, 4);
    file.close();
    expect(rig.process.fds.get(dataFd)!.read(new Uint8Array(4))).toBe(-Errno.ENODEV);
  });

  it('a variant whose migration flags lack STOP_COPY is refused (EINVAL)', () => {
    const rig = accRig(1);
    const bad: VfioPciVariantOps = {
      name: 'no-stop-copy',
      migration: { flags: VFIO_MIGRATION_P2P, setState: () => null, getState: () => 2, getDataSize: () => 0 },
    };
    let errno = 0;
    try {
      new VfioPciCoreDevice({ fn: rig.acc.vf(1)!, process: rig.process, variant: bad });
    } catch (e) {
      errno = (e as { errno: number }).errno;
    }
    expect(errno).toBe(Errno.EINVAL);
  });
});

// ---- DMA logging ----------------------------------------------------------------------------

function rangesAt(rig: ReturnType<typeof accRig>, ranges: { iova: bigint | number; length: bigint | number }[]): number {
  const ptr = rig.process.user.alloc(Math.max(16, ranges.length * 16));
  rig.process.user.copyToUser(
    ptr,
    encodeArray(vfio_device_feature_dma_logging_range, ranges.map((r) => ({ iova: BigInt(r.iova), length: BigInt(r.length) }))),
  );
  return ptr;
}

function control(pageSize: bigint | number, num: number, ptr: number): Uint8Array {
  return vfio_device_feature_dma_logging_control.encode({ page_size: BigInt(pageSize), num_ranges: num, ranges: BigInt(ptr) });
}

function report(iova: number, length: number, pageSize: number | bigint, bitmap: number): Uint8Array {
  return vfio_device_feature_dma_logging_report.encode({ iova: BigInt(iova), length: BigInt(length), page_size: BigInt(pageSize), bitmap: BigInt(bitmap) });
}

describe('DMA logging START validation (section 5)', () => {
  const MB = 0x100000;

  it('num_ranges 0 EINVAL, more than PAGE_SIZE/16 E2BIG, page size not a power of two >= 4096 EINVAL', () => {
    const { variant, log } = fakeVariant();
    const { file, rig } = open(variant);
    const ptr = rangesAt(rig, [{ iova: 0, length: MB }]);
    expect(feature(file, SET | START, control(4096, 0, ptr)).ret).toBe(-Errno.EINVAL);
    expect(LOG_MAX_RANGES).toBe(256);
    expect(feature(file, SET | START, control(4096, 257, ptr)).ret).toBe(-Errno.E2BIG);
    for (const ps of [0, 2048, 12288, 4097]) expect(feature(file, SET | START, control(ps, 1, ptr)).ret).toBe(-Errno.EINVAL);
    expect(log.started).toEqual([]);
  });

  it('unaligned, empty or overlapping ranges are EINVAL; an unreadable ranges pointer EFAULT; wrap EOVERFLOW', () => {
    const { variant, log } = fakeVariant();
    const { file, rig } = open(variant);
    const bad = [
      [{ iova: 0x800, length: 0x1000 }],
      [{ iova: 0x1000, length: 0x1800 }],
      [{ iova: 0x1000, length: 0 }],
      [{ iova: 0, length: 0x4000 }, { iova: 0x3000, length: 0x1000 }],
      [{ iova: 0x10000, length: 0x1000 }, { iova: 0, length: 0x20000 }],
    ];
    for (const r of bad) expect(feature(file, SET | START, control(4096, r.length, rangesAt(rig, r))).ret, JSON.stringify(r)).toBe(-Errno.EINVAL);
    expect(feature(file, SET | START, control(4096, 1, 0x1000)).ret).toBe(-Errno.EFAULT);
    // Readable first range, second range beyond the mapping: EFAULT on the copy of range 2.
    const page = rig.process.user.alloc(4096);
    rig.process.user.copyToUser(page + 4080, vfio_device_feature_dma_logging_range.encode({ iova: 0n, length: 0x1000n }));
    expect(feature(file, SET | START, control(4096, 2, page + 4080)).ret).toBe(-Errno.EFAULT);
    const wrap = rangesAt(rig, [{ iova: (1n << 64n) - 0x1000n, length: 0x2000 }]);
    expect(feature(file, SET | START, control(4096, 1, wrap)).ret).toBe(-Errno.EOVERFLOW);
    expect(log.started).toEqual([]);
  });

  it('a valid START hands sorted ranges to the driver and writes back its page size; a second START is EBUSY', () => {
    const { variant, log } = fakeVariant();
    log.effectivePageSize = 0x10000;
    const { file, rig, core } = open(variant);
    const ptr = rangesAt(rig, [{ iova: 0x40000000, length: 2 * MB }, { iova: 0, length: MB }]);
    const r = feature(file, SET | START, control(4096, 2, ptr));
    expect(r.ret).toBe(0);
    expect(log.started).toEqual([{ ranges: [{ iova: 0, length: MB }, { iova: 0x40000000, length: 2 * MB }], pageSize: 4096 }]);
    expect(u64(r.payload, 0)).toBe(0x10000n);
    expect(core.dmaLogging).toEqual([{ iova: 0, length: MB }, { iova: 0x40000000, length: 2 * MB }]);
    expect(feature(file, SET | START, control(4096, 1, ptr)).ret).toBe(-Errno.EBUSY);
    expect(feature(file, GET | START, control(4096, 1, ptr)).ret).toBe(-Errno.EINVAL);
  });

  it('256 ranges are accepted', () => {
    const { variant, log } = fakeVariant();
    const { file, rig } = open(variant);
    const ranges = Array.from({ length: 256 }, (_, i) => ({ iova: i * 0x2000, length: 0x1000 }));
    expect(feature(file, SET | START, control(4096, 256, rangesAt(rig, ranges))).ret).toBe(0);
    expect(log.started[0]!.ranges.length).toBe(256);
  });
});

describe('DMA logging REPORT and STOP', () => {
  function started() {
    const fake = fakeVariant();
    const o = open(fake.variant);
    const ptr = rangesAt(o.rig, [{ iova: 0x100000, length: 0x100000 }, { iova: 0x200000, length: 0x40000 }]);
    expect(feature(o.file, SET | START, control(4096, 2, ptr)).ret).toBe(0);
    return { ...fake, ...o };
  }

  it('bits go to the user bitmap as u64 words, ORed with what is there; one bit per page from iova', () => {
    const { file, rig, log } = started();
    log.dirty = [0x100000, 0x101000, 0x13f000, 0x200000, 0x23f000];
    const bm = rig.process.user.alloc(4096);
    rig.process.user.copyToUser(bm + 16, Uint8Array.of(0x80)); // a bit the user already had (word 2)
    rig.process.user.copyToUser(bm + 40, Uint8Array.of(0x80)); // past the 5-word bitmap
    // 0x100000..0x240000 = 0x140 pages = 320 bits = 5 words; the two ranges are adjacent.
    const r = feature(file, GET | REPORT, report(0x100000, 0x140000, 4096, bm));
    expect(r.ret).toBe(0);
    const words = rig.process.user.copyFromUser(bm, 48);
    const w = (i: number) => new DataView(words.buffer).getBigUint64(8 * i, true);
    // Pages 0, 1, 63 -> word 0; page 0x100 -> word 4 bit 0; page 0x13f -> word 4 bit 63.
    expect([w(0), w(1), w(2), w(3), w(4), w(5)]).toEqual([(1n << 63n) | 3n, 0n, 0x80n, 0n, 1n | (1n << 63n), 0x80n]);
    expect(log.reports).toEqual([{ iova: 0x100000, length: 0x140000, pageSize: 4096 }]);
  });

  it('EINVAL: bad page size, outside the logged ranges, empty; EFAULT before any bit is read', () => {
    const { file, rig, log } = started();
    const bm = rig.process.user.alloc(4096);
    expect(feature(file, GET | REPORT, report(0x100000, 0x1000, 1024, bm)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, GET | REPORT, report(0x100000, 0x1000, 6144, bm)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, GET | REPORT, report(0x0ff000, 0x2000, 4096, bm)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, GET | REPORT, report(0x230000, 0x20000, 4096, bm)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, GET | REPORT, report(0x100000, 0, 4096, bm)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, GET | REPORT, report(0x100000, 0x1000, 4096, 0x2000)).ret).toBe(-Errno.EFAULT);
    expect(feature(file, SET | REPORT, report(0x100000, 0x1000, 4096, bm)).ret).toBe(-Errno.EINVAL);
    expect(log.reports).toEqual([]);
  });

  it('STOP ends logging (driver told once); REPORT afterwards is EINVAL; STOP again is a no-op', () => {
    const { file, rig, log, core } = started();
    const bm = rig.process.user.alloc(4096);
    expect(feature(file, SET | STOP, new Uint8Array(0)).ret).toBe(0);
    expect(log.stops).toBe(1);
    expect(core.dmaLogging).toBe(null);
    expect(feature(file, GET | REPORT, report(0x100000, 0x1000, 4096, bm)).ret).toBe(-Errno.EINVAL);
    expect(feature(file, SET | STOP, new Uint8Array(0)).ret).toBe(0);
    expect(log.stops).toBe(1);
    expect(feature(file, GET | STOP, new Uint8Array(0)).ret).toBe(-Errno.EINVAL);
  });

  it('closing the device stops a running logging session', () => {
    const { file, log } = started();
    file.close();
    expect(log.stops).toBe(1);
  });

  it('a report larger than one window is produced in windows and lands at the right words', () => {
    const fake = fakeVariant();
    const o = open(fake.variant);
    const len = 3 * 2 ** 21 * 4096; // 3 M pages, 24 GiB, 384 KiB of bitmap
    expect(feature(o.file, SET | START, control(4096, 1, rangesAt(o.rig, [{ iova: 0, length: len }]))).ret).toBe(0);
    fake.log.dirty = [2 ** 21 * 4096 + 5 * 4096];
    const bytes = (3 * 2 ** 21) / 8;
    const bm = o.rig.process.user.alloc(bytes);
    expect(feature(o.file, GET | REPORT, report(0, len, 4096, bm)).ret).toBe(0);
    expect(fake.log.reports.length).toBe(3);
    const off = 2 ** 21 / 8;
    expect([...o.rig.process.user.copyFromUser(bm + off, 2)]).toEqual([0x20, 0]);
    expect(o.rig.process.user.copyFromUser(bm, off).every((b) => b === 0)).toBe(true);
  });
});

describe('combineIovaRanges (vfio_combine_iova_ranges)', () => {
  const r = (iova: number, length: number) => ({ iova, length });

  it('merges the smallest gap first, the first one on ties, until the count fits', () => {
    const ranges = [r(0, 0x1000), r(0x3000, 0x1000), r(0x6000, 0x1000), r(0x10000, 0x1000)];
    // gaps (start - previous last): 0x2001, 0x2001, 0x9001 -> the first tie merges 0 and 0x3000.
    expect(combineIovaRanges(ranges, 3)).toEqual([r(0, 0x4000), r(0x6000, 0x1000), r(0x10000, 0x1000)]);
    expect(combineIovaRanges(ranges, 2)).toEqual([r(0, 0x7000), r(0x10000, 0x1000)]);
    // A closer pair later in the list wins over the earlier one.
    const skew = [r(0, 0x1000), r(0x8000, 0x1000), r(0xa000, 0x1000)];
    expect(combineIovaRanges(skew, 2)).toEqual([r(0, 0x1000), r(0x8000, 0x3000)]);
    expect(combineIovaRanges(ranges, 4)).toEqual(ranges);
  });

  it('one slot spans lowest start to highest end; input order does not matter', () => {
    const ranges = [r(0x10000, 0x1000), r(0, 0x1000), r(0x8000, 0x2000)];
    expect(combineIovaRanges(ranges, 1)).toEqual([r(0, 0x11000)]);
    expect(combineIovaRanges(ranges, 2)).toEqual([r(0, 0x1000), r(0x8000, 0x9000)]);
  });
});
