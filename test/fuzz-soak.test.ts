/**
 * The ping-pong migration soak (issue 6 item 3): a short fixed-seed slice of `npm run soak`,
 * the soak's own failure path (a broken stream must be reported and cost no job), and the
 * statistics it reports, checked against hand-computed values.
 */
import { describe, expect, it } from 'vitest';
import { runSoak } from '../src/fuzz/soak.js';
import { planMigration } from '../src/fuzz/soak-plan.js';
import { soakReproCommand, summarize, summaryText } from '../src/fuzz/soak-report.js';
import { distribution, histogramText, logHistogram, percentile, tally } from '../src/fuzz/soak-stats.js';

describe('soak: ping-pong live migrations of a busy guest', () => {
  // `npm run soak -- --seed 6 --migrations 10 --ram-mib 16 --region-pages 128 --drain-every 5`:
  // a smaller guest than the default soak's so the slice takes about a second
  it('a 10-migration slice (seed 6) moves the guest A->B->A... and verifies every migration', async () => {
    const r = await runSoak({ migrations: 10, seed: 6, drainEvery: 5, ramBytes: 16 * 2 ** 20, dirtyRegionPages: 128 });
    const t = r.totals;
    expect(r.records.map((m) => `${m.from}${m.to}`)).toEqual(['AB', 'BA', 'AB', 'BA', 'AB', 'BA', 'AB', 'BA', 'AB', 'BA']);
    expect(r.records.map((m) => m.problems)).toEqual(Array.from({ length: 10 }, () => []));
    expect(t).toMatchObject({
      migrations: 10, succeeded: 10, failed: 0, verified: 10, lostJobs: 0, duplicatedJobs: 0, wrongJobs: 0, failedJobs: 0,
      ramMismatches: 0, deviceStateMismatches: 0, lateWrites: 0, guestErrors: 0, drains: 2,
    });
    // the guest was busy: jobs ran through the migrations, some were in flight at a stop
    expect(t.jobsSubmitted).toBeGreaterThan(100);
    expect(t.jobsCompleted).toBe(t.jobsSubmitted);
    expect(t.jobsInFlightAtStops).toBeGreaterThan(0);
    for (const m of r.records) {
      expect(m.ok && m.ramOk && m.devicesOk).toBe(true);
      expect(m.protocol).toBe('v2');
      const d = m.downtimeParts;
      expect(d.sourceNs).toBeGreaterThan(0);
      expect(d.destinationNs).toBeGreaterThan(0);
      expect(d.sourceNs + d.transferNs + d.destinationNs).toBe(m.downtimeNs);
      expect(m.iterations).toBeGreaterThanOrEqual(1);
      // what the plan asked for is what ran
      expect(m.precopy).toBe(m.plan.precopy);
      expect(m.dirtyMode).toBe(m.plan.dirty);
      expect(m.iterations).toBeLessThanOrEqual(m.plan.maxIterations);
    }
    // the slice exercises both sides of the per-migration choices
    expect(new Set(r.records.map((m) => m.precopy)).size).toBe(2);
    expect(new Set(r.records.map((m) => m.dirtyMode)).size).toBe(2);
    expect(r.ok).toBe(true);
    const s = summarize(r);
    expect(s.downtimeNs.count).toBe(10);
    expect(s.downtimeConvergedNs.count + s.downtimeNotConvergedNs.count).toBe(10);
    expect(s.convergedOverLimit).toBe(r.records.filter((m) => m.converged && m.downtimeNs > m.plan.downtimeLimitNs).length);
    expect(s.iterations.reduce((a, x) => a + x.count, 0)).toBe(10);
    expect(s.findings).toEqual([]);
    expect(summaryText(s)).toMatch(/lost 0, duplicated 0/);
  }, 60_000);

  it('a migration whose stream is corrupted is a finding; the guest stays at the source and loses no job', async () => {
    // byte 100 lies in the stream header: the destination's checksum refuses it
    const r = await runSoak({ migrations: 3, seed: 3, drainEvery: 1, ramBytes: 16 * 2 ** 20, dirtyRegionPages: 128, faults: new Map([[1, { corruptAt: 100 }]]) });
    const [a, b, c] = r.records;
    expect([a!.ok, b!.ok, c!.ok]).toEqual([true, false, true]);
    expect(b!.failure).not.toBeNull();
    expect(b!.problems.some((p) => p.startsWith('migration failed'))).toBe(true);
    // A->B, then B->A fails so the guest is still on B, then B->A again
    expect(r.records.map((m) => `${m.from}${m.to}`)).toEqual(['AB', 'BA', 'BA']);
    expect(r.totals).toMatchObject({ migrations: 3, succeeded: 2, failed: 1, verified: 2, lostJobs: 0, duplicatedJobs: 0, wrongJobs: 0 });
    expect(r.totals.jobsCompleted).toBe(r.totals.jobsSubmitted);
    expect(r.ok).toBe(false);
    const s = summarize(r);
    expect(s.findings.map((f) => f.index)).toEqual([1]);
    expect(s.findings[0]!.reproduce).toBe('npm run soak -- --seed 3 --migrations 2 --ram-mib 16 --region-pages 128 --drain-every 1');
  }, 60_000);

  it('per-migration plans depend only on (seed, index)', () => {
    expect(planMigration(7, 3, 'zip')).toEqual(planMigration(7, 3, 'zip'));
    const plans = Array.from({ length: 200 }, (_, i) => planMigration(1, i, 'zip'));
    expect(new Set(plans.map((p) => JSON.stringify(p))).size).toBeGreaterThan(190);
    // every choice is taken somewhere in 200 migrations
    expect(new Set(plans.map((p) => p.precopy))).toEqual(new Set([true, false]));
    expect(new Set(plans.map((p) => p.dirty))).toEqual(new Set(['dma-logging', 'type1']));
    expect(new Set(plans.map((p) => p.dirtyPagesPerMs))).toEqual(new Set([0, 25, 100, 400, 1000, 2500]));
    expect(plans.filter((p) => !p.precopy).length).toBeGreaterThan(25);
    for (const p of plans) {
      if (p.dirty === 'type1') expect(p.maxIterations).toBeLessThanOrEqual(3);
      expect(p.warmupNs).toBeGreaterThanOrEqual(50_000);
      expect(p.warmupNs).toBeLessThanOrEqual(500_000);
    }
    expect(soakReproCommand({ migrations: 1000, seed: 5, engine: 'sec', hw: 'v3', protocol: 'v2', ramBytes: 32 * 2 ** 20, dirtyRegionPages: 512, drainEvery: 10 }, 41))
      .toBe('npm run soak -- --seed 5 --migrations 42 --engine sec');
  });
});

describe('soak statistics', () => {
  it('nearest-rank percentiles (hand-computed)', () => {
    const s = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentile(s, 50)).toBe(5);
    expect(percentile(s, 90)).toBe(9);
    expect(percentile(s, 99)).toBe(10);
    expect(percentile(s, 0)).toBe(1);
    expect(percentile([], 50)).toBe(0);
    const d = distribution([30, 10, 20, 40]);
    expect(d).toEqual({ count: 4, min: 10, p50: 20, p90: 40, p99: 40, max: 40, mean: 25 });
  });

  it('log histogram: 4 buckets per decade, every value in the bucket that bounds it', () => {
    const vals = [1000, 1500, 2000, 9999, 10000, 55000, 0];
    const h = logHistogram(vals);
    // bounds 1000, 1780, 3160, 5620, 10000, 17800, 31600, 56200, 100000; 0 gets its own bucket
    expect(h.map((b) => [b.lo, b.hi, b.count])).toEqual([
      [0, 1000, 1],
      [1000, 1780, 2],
      [1780, 3160, 1],
      [3160, 5620, 0],
      [5620, 10000, 1],
      [10000, 17800, 1],
      [17800, 31600, 0],
      [31600, 56200, 1],
    ]);
    expect(h.reduce((a, b) => a + b.count, 0)).toBe(vals.length);
    const lines = histogramText(h, String, 10);
    expect(lines[1]).toBe('[1000, 1780)   2 ##########');
    expect(lines[3]).toBe('[3160, 5620)   0 ');
    expect(tally([3, 1, 3, 2, 3])).toEqual([{ value: 1, count: 1 }, { value: 2, count: 1 }, { value: 3, count: 3 }]);
  });
});
