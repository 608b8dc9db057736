/**
 * Benchmark runner: `npm run bench [-- --quick] [--json FILE] [--filter TEXT]`.
 * Loads every bench/*.bench.ts, runs each suite with benny, prints a table and optionally
 * writes a JSON array of {suite, name, hz, baseline?, ratio?}.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import b from 'benny';
import type { BenchResult, BenchSuite } from './harness.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    filter: { type: 'string' },
  },
});

const here = dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here).filter((f) => f.endsWith('.bench.ts')).sort();
const caseOptions = values.quick ? { minSamples: 5, maxTime: 0.5 } : { minSamples: 10, maxTime: 3 };
const results: BenchResult[] = [];

for (const file of files) {
  const mod = (await import(pathToFileURL(join(here, file)).href)) as { suites?: BenchSuite[] };
  for (const s of mod.suites ?? []) {
    if (values.quick && !s.quick) continue;
    if (values.filter && !s.suite.includes(values.filter)) continue;
    await s.setup?.();
    const summary = await b.suite(
      s.suite,
      ...s.cases.map((c) =>
        // A case returns void (timed synchronously) or a promise (timed as deferred).
        b.add(c.name, () => c.fn(), caseOptions),
      ),
      b.cycle(),
    );
    await s.teardown?.();
    const hz = new Map(summary.results.map((r) => [r.name, r.ops]));
    for (const c of s.cases) {
      const r: BenchResult = { suite: s.suite, name: c.name, hz: hz.get(c.name) ?? 0 };
      if (c.baseline) {
        r.baseline = c.baseline;
        const base = hz.get(c.baseline);
        if (base) r.ratio = r.hz / base;
      }
      results.push(r);
    }
  }
}

console.log('\n| suite | case | ops/s | vs baseline |\n|---|---|---:|---:|');
for (const r of results) {
  const ratio = r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x of ${r.baseline}`;
  console.log(`| ${r.suite} | ${r.name} | ${r.hz.toPrecision(4)} | ${ratio} |`);
}
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2) + '\n');
