/**
 * PinSet: the pinned pages of a mapping as bits, which refill the dirty bitmap after a report
 * (vfio-type1-dirty.md section 3: "clear the internal bitmap and refill it with currently
 * pinned pages"). Checked against a plain Set of page numbers.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Bitmap } from '../src/mem/bitmap.js';
import { PinSet } from '../src/vfio/type1/pin-set.js';

describe('PinSet against a Set<number> model', () => {
  it('add/delete/has/size and orInto agree with the model over pages spanning many blocks', () => {
    const npages = 5000; // five 1024-page blocks, the last one partial
    const op = fc.tuple(fc.boolean(), fc.integer({ min: 0, max: npages - 1 }));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.array(fc.integer({ min: 0, max: npages - 1 }), { maxLength: 20 }), (ops, already) => {
        const ps = new PinSet();
        const model = new Set<number>();
        for (const [add, page] of ops) {
          if (add) expect(ps.add(page)).toBe(!model.has(page));
          else expect(ps.delete(page)).toBe(model.has(page));
          if (add) model.add(page);
          else model.delete(page);
        }
        expect(ps.size).toBe(model.size);
        for (let p = 0; p < npages; p += 37) expect(ps.has(p)).toBe(model.has(p));
        // refill ORs into bits that are already there (pages dirtied by dma_rw stay)
        const bm = new Bitmap(npages, undefined, { summary: true });
        for (const p of already) bm.set(p);
        ps.orInto(bm);
        const want = [...new Set([...model, ...already])].sort((a, b) => a - b);
        const got: number[] = [];
        bm.forEachSet((i) => got.push(i));
        expect(got).toEqual(want);
      }),
      { numRuns: 100 },
    );
  });

  it('clear empties it; pins in the last block of an odd-sized mapping stay inside nbits', () => {
    const ps = new PinSet();
    for (const p of [0, 1023, 1024, 2049]) ps.add(p);
    const bm = new Bitmap(2050, undefined, { summary: true });
    ps.orInto(bm);
    const got: number[] = [];
    bm.forEachSet((i) => got.push(i));
    expect(got).toEqual([0, 1023, 1024, 2049]);
    ps.clear();
    expect([ps.size, ps.has(0), ps.has(2049)]).toEqual([0, false, false]);
  });
});
