/**
 * Fixed-seed slices of the DMA-logging and v1-region fuzz campaigns (issue 6 item 1; `npm run
 * fuzz -- --campaign dmalog,v1region` runs the full ones). Each slice must end with zero
 * invariant violations and show that it reached the deep paths: reports that returned pages
 * the device wrote (checked bit for bit against the record taken at the VF's DMA port), every
 * errno class of uAPI section 5, saved v1 streams, genuine loads, and guest jobs completing.
 */
import { describe, expect, it } from 'vitest';
import { dmalogCampaign } from '../src/fuzz/dmalog-campaign.js';
import { v1regionCampaign } from '../src/fuzz/v1region-campaign.js';
import { CAMPAIGNS } from '../src/fuzz/campaigns.js';
import { type CampaignResult, reproCommand, runCampaign } from '../src/fuzz/runner.js';

function noViolations(r: CampaignResult): void {
  const text = r.violations.map((v) => `${v.kind}: ${v.message}\n  at ${v.call}\n  ${reproCommand(v)}`).join('\n');
  expect(r.violations, text).toHaveLength(0);
}

describe('fuzz campaign slices (seed 1): DMA logging and the v1 region', () => {
  it('both are registered for npm run fuzz with >= 10^5 default inputs', () => {
    for (const c of [dmalogCampaign, v1regionCampaign]) {
      expect(CAMPAIGNS.map((x) => x.name)).toContain(c.name);
      expect(c.defaultInputs).toBeGreaterThanOrEqual(100_000);
    }
  });

  it('dmalog: START/STOP/REPORT errnos per uAPI section 5, reports equal the device-write record', () => {
    const r = runCampaign(dmalogCampaign, { inputs: 2000, seed: 1, shrink: false });
    noViolations(r);
    for (const e of ['DMA_LOGGING_START', 'DMA_LOGGING_REPORT', 'DMA_LOGGING_STOP', 'job']) expect(r.entryPoints[e] ?? 0, e).toBeGreaterThan(50);
    for (const e of ['EINVAL', 'E2BIG', 'EFAULT', 'EOVERFLOW', 'EBUSY']) expect(r.errnos[e] ?? 0, e).toBeGreaterThan(0);
    // the oracle compared non-empty reports, empty ones, and multi-range sessions
    expect(r.outcomes['report: ok with dirty pages'] ?? 0).toBeGreaterThan(10);
    expect(r.outcomes['report: ok, clean'] ?? 0).toBeGreaterThan(10);
    expect(r.outcomes['start: several ranges'] ?? 0).toBeGreaterThan(5);
    expect(r.outcomes['device state 2 -> 1: ok'] ?? 0).toBeGreaterThan(0);
    expect(r.outcomes['guest job ok'] ?? 0).toBeGreaterThan(50);
    for (const w of ['PF', 'VF3 (hisi-acc-vfio-pci)']) expect(r.outcomes[`witness ok: ${w}`], w).toBe(r.checkpoints);
  });

  it('v1region: header rules, state arcs, saved streams, loads and mmap refusals per spec section 7', () => {
    const r = runCampaign(v1regionCampaign, { inputs: 3000, seed: 1, shrink: false });
    noViolations(r);
    for (const e of ['v1 region read', 'v1 region write', 'v1 region mmap', 'reset', 'job']) expect(r.entryPoints[e] ?? 0, e).toBeGreaterThan(20);
    for (const e of ['EINVAL', 'EFAULT']) expect(r.errnos[e] ?? 0, e).toBeGreaterThan(20);
    for (const o of ['saved stream 40 bytes', 'saved stream 176 bytes', 'match check: ok', 'match check: EINVAL', 'mmap: EINVAL']) {
      expect(r.outcomes[o] ?? 0, o).toBeGreaterThan(0);
    }
    expect(Object.keys(r.outcomes).filter((k) => /^load of (40|176) bytes \(genuine\): ok$/.test(k)).length).toBeGreaterThan(0);
    expect(Object.keys(r.outcomes).filter((k) => /^state [0-4] -> invalid: EINVAL$/.test(k)).length).toBeGreaterThanOrEqual(3);
    // refused arcs of the driver (pre-copy not from RUNNING, no save while resuming)
    expect(Object.keys(r.outcomes).filter((k) => /^state (0|2|4) -> 3: EINVAL$|^state 4 -> 2: EINVAL$/.test(k)).length).toBeGreaterThan(0);
    expect(r.outcomes['load of 0 bytes: EINVAL'] ?? 0).toBeGreaterThan(0);
    // spec section 5: fewer than 176 bytes that are not exactly the 40 match bytes never load
    expect(r.outcomes['load of other bytes: EINVAL'] ?? 0).toBeGreaterThan(0);
    expect(r.outcomes['guest job ok in state 1'] ?? 0).toBeGreaterThan(20);
    expect(r.outcomes['guest job ok in state 3'] ?? 0).toBeGreaterThan(0);
    for (const w of ['PF', 'VF3 (hisi-acc-vfio-pci)']) expect(r.outcomes[`witness ok: ${w}`], w).toBe(r.checkpoints);
  });
});
