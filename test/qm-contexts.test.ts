import { describe, expect, it } from 'vitest';
import {
  aeqeValue, cqcDw3, decodeCqc, decodeSqc, decodeXeqcDwords, encodeCqc, encodeSqc, encodeXeqc,
  eqeValue, sqcDw3, sqcW13, xeqcDw6,
} from '../src/hw/qm/contexts.js';

/** Layouts of qm-hardware.md 3, checked against hand-placed bytes. */
describe('context codecs (qm-hardware.md 3)', () => {
  it('qm_sqc: fields at their byte offsets, dw3 V2+ = (depth-1) | log2(sqe)<<12', () => {
    const f = {
      head: 0x0102, tail: 0x0304, baseL: 0x05060708, baseH: 0x090a0b0c, dw3: sqcDw3(1024, 128),
      w8: 0, pasid: 0x1112, w11: 0x40, cqNum: 0x1516, w13: sqcW13(1, 0, 1),
    };
    const b = encodeSqc(f);
    const hand = new Uint8Array(32);
    hand.set([0x02, 0x01, 0x04, 0x03, 0x08, 0x07, 0x06, 0x05, 0x0c, 0x0b, 0x0a, 0x09]);
    hand.set([0xff, 0x73, 0x00, 0x00], 12); // 1023 | 7<<12 = 0x73ff
    hand.set([0x12, 0x11, 0x40, 0x00, 0x16, 0x15, 0x01, 0x01], 20);
    expect(Array.from(b)).toEqual(Array.from(hand));
    expect(decodeSqc(b)).toEqual(f);
  });

  it('qm_cqc: dw3 = (depth-1) | 4<<12, dw6 phase bit0 and c_flag bit1 at byte 24', () => {
    const f = { head: 1, tail: 2, baseL: 3, baseH: 4, dw3: cqcDw3(16), w8: 0, pasid: 0, w11: 0, dw6: 3 };
    const b = encodeCqc(f);
    expect(b[12]).toBe(15);
    expect(b[13]).toBe(0x40);
    expect(b[24]).toBe(3);
    expect(decodeCqc(b)).toEqual(f);
  });

  it('qm_eqc: 7 dwords, dw6 = (depth-1) | 1<<16', () => {
    const f = { head: 5, tail: 6, baseL: 0xdeadbeef, baseH: 1, dw3: 2 << 12, dw6: xeqcDw6(2048) };
    const b = encodeXeqc(f);
    expect(b.length).toBe(28);
    const dw = Array.from(new Uint32Array(b.buffer.slice(0)));
    expect(dw).toEqual([5 | (6 << 16), 0xdeadbeef, 1, 0x2000, 0, 0, 2047 | 0x10000]);
    expect(decodeXeqcDwords(dw)).toEqual(f);
  });

  it('EQE and AEQE encodings', () => {
    expect(eqeValue(0x1234, 1)).toBe(0x11234);
    expect(aeqeValue(7, 1, 2)).toBe(7 | (1 << 16) | (2 << 17));
    expect(aeqeValue(0xffff, 0, 1)).toBe(0xffff | (1 << 17));
  });
});
