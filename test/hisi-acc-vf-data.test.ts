/**
 * struct acc_vf_data codec (hisi-acc-vfio-pci.md section 3): byte-exact against buffers
 * built with DataView at the spec's offsets, round trips, V1 streams, and rejection of bad
 * magic, major version and lengths.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ACC_VF_DATA_SIZE, QM_MATCH_SIZE, accVfLayout, decodeAccVfData, emptyAccVfData, encodeAccVfData,
} from '../src/drivers/hisi-acc/acc-vf-data.js';
import { KernelError } from '../src/uapi/errno.js';
import { ACC_DEV_MAGIC_V1, ACC_DEV_MAGIC_V2, handStream } from './hisi-acc-helpers.js';

function errnoOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return 'none';
}

describe('acc_vf_data layout (spec 3)', () => {
  it('is 176 bytes with 40 bytes of match data and the magics of the spec', () => {
    expect(ACC_VF_DATA_SIZE).toBe(176);
    expect(QM_MATCH_SIZE).toBe(40);
    expect(ACC_DEV_MAGIC_V2).toBe(0xaaccfeeddecadeden);
    expect(encodeAccVfData(emptyAccVfData()).length).toBe(176);
  });

  it('places every field at the offset of the spec table', () => {
    const want: Record<string, [number, number, number]> = {
      acc_magic: [0, 8, 1], qp_num: [8, 4, 1], dev_id: [12, 4, 1], que_iso_cfg: [16, 4, 1], qp_base: [20, 4, 1],
      vf_qm_state: [24, 4, 1], major_ver: [28, 2, 1], minor_ver: [30, 2, 1], qm_rsv_state: [32, 4, 2],
      aeq_int_mask: [40, 4, 1], eq_int_mask: [44, 4, 1], ifc_int_source: [48, 4, 1], ifc_int_mask: [52, 4, 1],
      ifc_int_set: [56, 4, 1], page_size: [60, 4, 1], qm_eqc_dw: [64, 4, 7], qm_aeqc_dw: [92, 4, 7],
      qm_rsv_regs: [120, 4, 5], padding: [140, 4, 1], eqe_dma: [144, 8, 1], aeqe_dma: [152, 8, 1],
      sqc_dma: [160, 8, 1], cqc_dma: [168, 8, 1],
    };
    const got = Object.fromEntries(accVfLayout('v2').map((f) => [f.name, [f.offset, f.size, f.count]]));
    expect(got).toEqual(want);
    // V1 streams: qm_rsv_state[3] where the versions are.
    const v1 = accVfLayout('v1').find((f) => f.name === 'qm_rsv_state')!;
    expect([v1.offset, v1.count]).toEqual([28, 3]);
    expect(accVfLayout('v1').some((f) => f.name === 'major_ver')).toBe(false);
  });

  it('encodes byte for byte what a DataView at the spec offsets writes', () => {
    const d = emptyAccVfData();
    Object.assign(d, {
      qp_num: 15, dev_id: 0xa251, que_iso_cfg: 1, qp_base: 0x3c1, vf_qm_state: 0, minor_ver: 3,
      qm_rsv_state: [0x11111111, 0x22222222], aeq_int_mask: 1, eq_int_mask: 0, ifc_int_source: 0x5,
      ifc_int_mask: 0x7, ifc_int_set: 0x9, page_size: 2,
      qm_eqc_dw: [0x00030001, 0x10001000, 0x00000002, 4, 5, 6, 0x000107ff],
      qm_aeqc_dw: [0x00020000, 0x10002000, 0x00000002, 14, 15, 16, 0x000103ff],
      qm_rsv_regs: [21, 22, 23, 24, 25], padding: 0xabcdef01,
      eqe_dma: 0x210001000n, aeqe_dma: 0x210002000n, sqc_dma: 0xfedcba9876543210n, cqc_dma: 0x1234n,
    });
    const b = new Uint8Array(176);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, ACC_DEV_MAGIC_V2, true);
    v.setUint32(8, 15, true);
    v.setUint32(12, 0xa251, true);
    v.setUint32(16, 1, true);
    v.setUint32(20, 0x3c1, true);
    v.setUint32(24, 0, true);
    v.setUint16(28, 1, true);
    v.setUint16(30, 3, true);
    v.setUint32(32, 0x11111111, true);
    v.setUint32(36, 0x22222222, true);
    [1, 0, 5, 7, 9, 2].forEach((x, i) => v.setUint32(40 + 4 * i, x, true));
    d.qm_eqc_dw.forEach((x, i) => v.setUint32(64 + 4 * i, x, true));
    d.qm_aeqc_dw.forEach((x, i) => v.setUint32(92 + 4 * i, x, true));
    [21, 22, 23, 24, 25].forEach((x, i) => v.setUint32(120 + 4 * i, x, true));
    v.setUint32(140, 0xabcdef01, true);
    v.setBigUint64(144, 0x210001000n, true);
    v.setBigUint64(152, 0x210002000n, true);
    v.setBigUint64(160, 0xfedcba9876543210n, true);
    v.setBigUint64(168, 0x1234n, true);
    expect(Buffer.from(encodeAccVfData(d)).toString('hex')).toBe(Buffer.from(b).toString('hex'));
    expect(Buffer.from(encodeAccVfData(d, 40)).toString('hex')).toBe(Buffer.from(b.subarray(0, 40)).toString('hex'));
  });

  it('round-trips any V2 content (property)', () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
    fc.assert(
      fc.property(
        fc.record({
          qp_num: u32, dev_id: u32, que_iso_cfg: u32, qp_base: u32, vf_qm_state: u32, minor_ver: fc.integer({ min: 0, max: 0xffff }),
          rsv: fc.array(u32, { minLength: 2, maxLength: 2 }), regs: fc.array(u32, { minLength: 6, maxLength: 6 }),
          eqc: fc.array(u32, { minLength: 7, maxLength: 7 }), aeqc: fc.array(u32, { minLength: 7, maxLength: 7 }),
          rsvRegs: fc.array(u32, { minLength: 5, maxLength: 5 }), pad: u32, dmas: fc.array(u64, { minLength: 4, maxLength: 4 }),
        }),
        (r) => {
          const d = emptyAccVfData();
          Object.assign(d, {
            qp_num: r.qp_num, dev_id: r.dev_id, que_iso_cfg: r.que_iso_cfg, qp_base: r.qp_base, vf_qm_state: r.vf_qm_state,
            minor_ver: r.minor_ver, qm_rsv_state: r.rsv, aeq_int_mask: r.regs[0], eq_int_mask: r.regs[1],
            ifc_int_source: r.regs[2], ifc_int_mask: r.regs[3], ifc_int_set: r.regs[4], page_size: r.regs[5],
            qm_eqc_dw: r.eqc, qm_aeqc_dw: r.aeqc, qm_rsv_regs: r.rsvRegs, padding: r.pad,
            eqe_dma: r.dmas[0], aeqe_dma: r.dmas[1], sqc_dma: r.dmas[2], cqc_dma: r.dmas[3],
          });
          const back = decodeAccVfData(encodeAccVfData(d));
          expect(back.length).toBe(176);
          expect(back.data).toEqual(d);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('decodes a V1-magic stream: rsv_state[3] at offset 28 and DMA addresses from DW2<<32|DW1 (spec 3)', () => {
    const b = handStream({
      magic: ACC_DEV_MAGIC_V1, qpNum: 4, devId: 0xa256, iso: 0, qpBase: 100, state: 0,
      eqc: [0, 0x1000, 0x2, 0, 0, 0, 0x107ff], aeqc: [0, 0x3000, 0x4, 0, 0, 0, 0x103ff],
      // The wrong values an old driver wrote (DW1<<32|DW2).
      eqe: 0x100000002n, aeqe: 0x300000004n, sqc: 0x5000n, cqc: 0x6000n,
    });
    const dv = new DataView(b.buffer);
    dv.setUint32(28, 0xaaaa, true);
    dv.setUint32(32, 0xbbbb, true);
    dv.setUint32(36, 0xcccc, true);
    const { data } = decodeAccVfData(b);
    expect(data.kind).toBe('v1');
    expect(data.qm_rsv_state).toEqual([0xaaaa, 0xbbbb, 0xcccc]);
    expect(data.eqe_dma).toBe(0x2_0000_1000n);
    expect(data.aeqe_dma).toBe(0x4_0000_3000n);
    expect(data.sqc_dma).toBe(0x5000n);
    // The encoder always writes V2.
    expect(new DataView(encodeAccVfData(data).buffer).getBigUint64(0, true)).toBe(ACC_DEV_MAGIC_V2);
  });

  it('rejects bad magic, a foreign major version and wrong lengths with EINVAL', () => {
    const good = handStream({ qpNum: 1, devId: 0xa251, iso: 0, qpBase: 64, state: 0 });
    expect(decodeAccVfData(good).length).toBe(176);
    expect(decodeAccVfData(good.subarray(0, 40)).length).toBe(40);
    const bad = good.slice();
    bad[0] ^= 1;
    expect(errnoOf(() => decodeAccVfData(bad))).toBe('EINVAL');
    const major = good.slice();
    new DataView(major.buffer).setUint16(28, 2, true);
    expect(errnoOf(() => decodeAccVfData(major))).toBe('EINVAL');
    const minor = good.slice();
    new DataView(minor.buffer).setUint16(30, 7, true);
    expect(decodeAccVfData(minor).data.minor_ver).toBe(7); // informational only
    for (const n of [0, 39, 41, 100, 175, 177]) expect(errnoOf(() => decodeAccVfData(new Uint8Array(n)))).toBe('EINVAL');
  });

  it('refuses to encode values that do not fit their fields', () => {
    const d = emptyAccVfData();
    d.qp_num = 2 ** 32;
    expect(errnoOf(() => encodeAccVfData(d))).toBe('EINVAL');
    const e = emptyAccVfData();
    e.qm_eqc_dw = [1, 2, 3];
    expect(errnoOf(() => encodeAccVfData(e))).toBe('EINVAL');
    expect(errnoOf(() => encodeAccVfData(emptyAccVfData(), 100))).toBe('EINVAL');
  });
});
