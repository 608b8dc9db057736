/**
 * Known bugs found by the dmalog and v1region campaigns (src/fuzz/known-bugs.ts, appended
 * entries): each is reproduced from its shrunk reproduction and must be caught by its
 * matcher. When a bug gets fixed its test here fails: remove the entry and its test.
 */
import { describe, expect, it } from 'vitest';
import { KNOWN_BUGS } from '../src/fuzz/known-bugs.js';
import { dmalogCampaign } from '../src/fuzz/dmalog-campaign.js';
import { Recorder } from '../src/fuzz/runner.js';

function entry(id: string) {
  const e = KNOWN_BUGS.find((b) => b.id === id);
  if (!e) throw new Error(`known bug ${id} is not listed`);
  return e;
}

describe('known bugs found by the dmalog/v1region campaigns still reproduce', () => {
  it('dmalog-report-unbounded-scratch: a 128-byte REPORT bitmap over a logged 2^40-byte range holds 32 MiB (uAPI section 5)', () => {
    const ctx = dmalogCampaign.setup();
    const rec = new Recorder();
    const ps = 2n ** 30n;
    // START one range [0, 2^40) at 1 GiB pages, then REPORT all of it: 1024 bits, a 128-byte bitmap
    dmalogCampaign.apply(ctx, { op: 'start', hdr: { flags: 0x20006, argsz: 32, bufLen: 32 }, w: [ps, 1n, BigInt(ctx.rw)], arr: { off: 0, words: [0n, 2n ** 40n] } }, rec);
    expect(rec.pending).toEqual([]);
    expect(ctx.logging).toEqual([{ iova: 0, length: 2 ** 40 }]);
    dmalogCampaign.apply(ctx, { op: 'report', hdr: { flags: 0x10008, argsz: 40, bufLen: 40 }, w: [0n, 2n ** 40n, ps, BigInt(ctx.rw + 4096)], prefill: 0 }, rec);
    // the report itself is right (returns 0, no oracle complaint): only its memory is unbounded
    expect(rec.pending.map((p) => p.kind)).toEqual(['resource']);
    expect(rec.pending[0]!.message).toMatch(/held (3[0-9]|[4-9][0-9]) MiB .* 128-byte bitmap over 1099511627776 bytes/);
    expect(entry('dmalog-report-unbounded-scratch').matches({ ...rec.pending[0]!, call: '' })).toBe(true);
  });

  it('every entry of these campaigns has a test above', () => {
    const mine = KNOWN_BUGS.filter((b) => b.campaigns.some((c) => c === 'dmalog' || c === 'v1region')).map((b) => b.id);
    expect(mine.sort()).toEqual(['dmalog-report-unbounded-scratch']);
  });
});
