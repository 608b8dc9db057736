/**
 * QM_CACHE_WB_START (qm-hardware.md section 1): the cached SQC/CQC go back to their array
 * slots. The model streams consecutive cached contexts as one burst; a slot whose context is
 * not cached is never written, and a burst the IOMMU refuses writes none of its slots.
 */
import { describe, expect, it } from 'vitest';
import { GuestDriver, makeRig } from './qm-harness.js';

function setup() {
  const r = makeRig({ numVfs: 1 });
  const m = r.mem.get(1)!;
  const g = new GuestDriver(r.fn(1), m, r.sched, { sqDepth: 8, cqDepth: 8, qps: 6 });
  g.start();
  for (const qn of [0, 1, 2, 4]) g.startQp(qn);
  for (const qn of [0, 1, 2, 4]) g.submit(qn, 10 + qn);
  r.sched.runUntilIdle();
  for (const qn of [0, 1, 2, 4]) g.consumeCq(qn);
  return { r, m, g };
}

describe('context write-back bursts (QM_CACHE_WB_START)', () => {
  it('cached contexts land in their own slots; an uncached slot between them keeps its bytes', () => {
    const { r, m, g } = setup();
    // A sentinel in qp 3's slots (never loaded) and past the last qp.
    for (const base of [g.sqcBase, g.cqcBase]) {
      m.bytes.fill(0xa5, base - m.base + 3 * 32, base - m.base + 4 * 32);
      m.bytes.fill(0x5a, base - m.base + 5 * 32, base - m.base + 6 * 32);
    }
    m.logWrites = true;
    g.w32(0x204, 1);
    expect(g.r32(0x208)).toBe(1);
    // Runs 0-2 and 4 of each array: two bursts per array (hand-counted), SQC array first.
    expect(m.writeLog).toEqual([
      { addr: g.sqcBase, len: 96 }, { addr: g.sqcBase + 128, len: 32 },
      { addr: g.cqcBase, len: 96 }, { addr: g.cqcBase + 128, len: 32 },
    ]);
    for (const qn of [0, 1, 2, 4]) {
      expect(m.u16(g.sqcBase + qn * 32 + 2)).toBe(1); // sq tail after one SQE
      expect(m.u16(g.sqcBase + qn * 32)).toBe(1); // sq head
      expect(m.u16(g.cqcBase + qn * 32 + 2)).toBe(1); // cq tail
      expect(m.u16(g.sqcBase + qn * 32 + 24)).toBe(qn); // cq_num = qp id, from the load
    }
    for (const base of [g.sqcBase, g.cqcBase]) {
      expect([...m.bytes.subarray(base - m.base + 96, base - m.base + 128)].every((b) => b === 0xa5)).toBe(true);
      expect([...m.bytes.subarray(base - m.base + 160, base - m.base + 192)].every((b) => b === 0x5a)).toBe(true);
    }
    expect(r.fn(1).debugSnapshot().writebackDone).toBe(true);
  });

  it('a burst the IOMMU refuses writes none of its slots; the other bursts still land', () => {
    const { m, g } = setup();
    m.faultAt(g.sqcBase + 32, 4); // inside qp 1's SQC slot
    const before = m.bytes.slice(g.sqcBase - m.base, g.sqcBase - m.base + 96);
    const faults = m.faults;
    g.w32(0x204, 1);
    expect(g.r32(0x208)).toBe(1); // WB_DONE still rises (the fault is the IOMMU's record)
    expect(m.faults - faults).toBe(1);
    expect(m.bytes.slice(g.sqcBase - m.base, g.sqcBase - m.base + 96)).toEqual(before);
    expect(m.u16(g.sqcBase + 4 * 32 + 2)).toBe(1);
    expect(m.u16(g.cqcBase + 1 * 32 + 2)).toBe(1);
  });
});
