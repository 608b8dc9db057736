/**
 * vfio_combine_iova_ranges: a device tracker with fewer slots than the user asked for merges
 * ranges, always closing the smallest gap first (the first one on ties), until the count fits.
 * With one slot the answer is the span from the lowest start to the highest end. Merged
 * ranges also cover their gaps, so tracking them over-reports, never under-reports.
 */
import type { DmaLoggingRange } from './ops.js';

export function combineIovaRanges(ranges: readonly DmaLoggingRange[], max: number): DmaLoggingRange[] {
  const starts: number[] = [];
  const lasts: number[] = [];
  const sorted = [...ranges].sort((a, b) => a.iova - b.iova);
  for (const r of sorted) {
    starts.push(r.iova);
    lasts.push(r.iova + r.length - 1);
  }
  const want = Math.max(1, Math.floor(max));
  if (starts.length > 1 && want === 1) {
    return [{ iova: starts[0]!, length: Math.max(...lasts) - starts[0]! + 1 }];
  }
  while (starts.length > want) {
    let best = -1;
    let minGap = Infinity;
    for (let i = 1; i < starts.length; i++) {
      const gap = starts[i]! - lasts[i - 1]!;
      if (gap < minGap) {
        minGap = gap;
        best = i;
      }
    }
    lasts[best - 1] = lasts[best]!;
    starts.splice(best, 1);
    lasts.splice(best, 1);
  }
  return starts.map((s, i) => ({ iova: s, length: lasts[i]! - s + 1 }));
}
