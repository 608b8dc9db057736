/**
 * Distribution summaries for the soak: nearest-rank percentiles and a text histogram with
 * logarithmic buckets (downtimes span two to three decades, so linear buckets would put
 * nearly everything in the first one).
 */

export interface Distribution {
  count: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of an ascending array: the smallest value with >= p% at or below it. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const rank = Math.min(n, Math.max(1, Math.ceil((p / 100) * n)));
  return sorted[rank - 1]!;
}

export function distribution(values: readonly number[]): Distribution {
  const s = Float64Array.from(values).sort();
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i]!;
  return {
    count: s.length,
    min: s.length ? s[0]! : 0,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    max: s.length ? s[s.length - 1]! : 0,
    mean: s.length ? sum / s.length : 0,
  };
}

export interface HistogramBucket {
  /** Inclusive lower and exclusive upper bound. */
  lo: number;
  hi: number;
  count: number;
}

/**
 * Buckets of `perDecade` logarithmic steps from the decade at or below the minimum to the
 * one above the maximum, with empty leading and trailing buckets trimmed. Values <= 0 go
 * into a bucket [0, first bound).
 */
export function logHistogram(values: readonly number[], perDecade = 4): HistogramBucket[] {
  const pos = values.filter((v) => v > 0);
  if (values.length === 0) return [];
  const zeros = values.length - pos.length;
  if (pos.length === 0) return [{ lo: 0, hi: 1, count: zeros }];
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of pos) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const e0 = Math.floor(Math.log10(lo));
  const e1 = Math.floor(Math.log10(hi)) + 1;
  const bounds: number[] = [];
  for (let e = e0; e < e1; e++) {
    for (let k = 0; k < perDecade; k++) bounds.push(Number((10 ** (e + k / perDecade)).toPrecision(3)));
  }
  bounds.push(10 ** e1);
  const buckets: HistogramBucket[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) buckets.push({ lo: bounds[i]!, hi: bounds[i + 1]!, count: 0 });
  for (const v of pos) {
    // the last bucket whose lower bound is <= v
    let a = 0;
    let b = buckets.length - 1;
    while (a < b) {
      const m = (a + b + 1) >> 1;
      if (buckets[m]!.lo <= v) a = m;
      else b = m - 1;
    }
    buckets[a]!.count++;
  }
  let first = 0;
  while (first < buckets.length && buckets[first]!.count === 0) first++;
  let last = buckets.length - 1;
  while (last > first && buckets[last]!.count === 0) last--;
  const out = buckets.slice(first, last + 1);
  if (zeros > 0) out.unshift({ lo: 0, hi: out[0]!.lo, count: zeros });
  return out;
}

/** One line per bucket: range, count and a bar of up to `width` characters. */
export function histogramText(buckets: readonly HistogramBucket[], fmt: (v: number) => string, width = 40): string[] {
  const max = buckets.reduce((m, b) => Math.max(m, b.count), 0);
  const labels = buckets.map((b) => `[${fmt(b.lo)}, ${fmt(b.hi)})`);
  const lw = labels.reduce((m, l) => Math.max(m, l.length), 0);
  const cw = String(max).length;
  return buckets.map((b, i) => {
    const bar = max === 0 ? 0 : Math.round((b.count / max) * width);
    return `${labels[i]!.padEnd(lw)} ${String(b.count).padStart(cw)} ${'#'.repeat(b.count > 0 ? Math.max(1, bar) : 0)}`;
  });
}

/** Counts of each distinct integer value, ascending. */
export function tally(values: readonly number[]): { value: number; count: number }[] {
  const m = new Map<number, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return [...m.entries()].sort((a, b) => a[0] - b[0]).map(([value, count]) => ({ value, count }));
}
