/**
 * Dirty-page patterns shared by the type1 and IOMMU dirty benchmarks, and the cheap ways to
 * put one back into a bitmap (and to clear what a report wrote) between iterations.
 *
 * - dense: every page; 50%: random words (tiled from a 1 MiB tile).
 * - 0.1% / 0.001%: that fraction of pages, uniformly random over the whole range.
 * - 0.1% clustered: the same number of pages in runs of 64 (one u64 word each), as a guest
 *   that rewrites a few buffers produces.
 *
 * Sparse patterns are kept as (word index, value) lists, so restoring one and clearing the
 * output words it produced cost what the dirty pages cost; that way a benchmark iteration
 * measures the report, not the bench's own bookkeeping.
 */
import type { Bitmap } from '../src/mem/bitmap.js';
import { Rng } from '../src/sim/scheduler.js';

export type Density = 'dense' | '50%' | '0.1%' | '0.001%' | '0.1% clustered';

const TILE_WORDS = 1 << 18;

export interface Pattern {
  density: Density;
  /** 50%: a tile repeated over the bitmap. */
  tile: Uint32Array | null;
  /** Sparse: sorted distinct word indexes and their values. */
  idx: Uint32Array | null;
  val: Uint32Array | null;
}

export function isSparse(d: Density): boolean {
  return d === '0.1%' || d === '0.001%' || d === '0.1% clustered';
}

/** A pattern for a bitmap of `nwords` u32 words (nbits = 32 * nwords, whole u64 words). */
export function makePattern(nwords: number, density: Density): Pattern {
  const rng = new Rng(0x5eed);
  if (density === 'dense') return { density, tile: null, idx: null, val: null };
  if (density === '50%') {
    const t = new Uint32Array(Math.min(TILE_WORDS, nwords));
    for (let i = 0; i < t.length; i++) t[i] = rng.u32();
    return { density, tile: t, idx: null, val: null };
  }
  const bits = nwords * 32;
  const words = new Map<number, number>();
  if (density === '0.1% clustered') {
    // runs of 64 pages = one whole u64 word = two u32 words
    for (let n = Math.floor(bits / 1000 / 64); n > 0; n--) {
      const k = rng.int(nwords >>> 1) * 2;
      words.set(k, 0xffffffff);
      words.set(k + 1, 0xffffffff);
    }
  } else {
    const frac = density === '0.1%' ? 1000 : 100000;
    for (let n = Math.floor(bits / frac); n > 0; n--) {
      const b = rng.int(bits);
      const k = b >>> 5;
      words.set(k, ((words.get(k) ?? 0) | (1 << (b & 31))) >>> 0);
    }
  }
  const idx = Uint32Array.from(words.keys()).sort();
  const val = new Uint32Array(idx.length);
  for (let i = 0; i < idx.length; i++) val[i] = words.get(idx[i]!)!;
  return { density, tile: null, idx, val };
}

/** ORs the pattern into bm (dense: setRange over everything). */
export function restore(bm: Bitmap, p: Pattern): void {
  if (p.density === 'dense') {
    bm.setRange(0, bm.nbits);
  } else if (p.tile !== null) {
    const w = bm.words;
    const t = p.tile;
    for (let k = 0; k < w.length; k += t.length) w.set(t.length <= w.length - k ? t : t.subarray(0, w.length - k), k);
    bm.noteWordsWritten(0, w.length);
  } else {
    bm.orScattered(p.idx!, p.val!);
  }
}

/**
 * Zeroes what a report of the pattern wrote into `out` (u32 words, bitmap k at word
 * base + k): only the pattern's words when it is sparse, everything otherwise.
 */
export function resetOutput(out32: Uint32Array, p: Pattern, base = 0, nwords = out32.length - base): void {
  if (p.idx === null) {
    out32.fill(0, base, base + nwords);
    return;
  }
  const idx = p.idx;
  for (let i = 0; i < idx.length; i++) out32[base + idx[i]!] = 0;
}

/** Pages the pattern marks dirty (for the table: cost per dirty page). */
export function dirtyPages(nwords: number, p: Pattern): number {
  if (p.density === 'dense') return nwords * 32;
  if (p.density === '50%') return nwords * 16;
  let n = 0;
  for (const v of p.val!) {
    let x = v;
    while (x !== 0) {
      x &= x - 1;
      n++;
    }
  }
  return n;
}

/**
 * Throws unless every word of a sparse pattern reached `out32` (at base + k): a guard that a
 * benchmarked report really delivered the bits it claims to have reported.
 */
export function verifyDelivered(out32: Uint32Array, p: Pattern, base = 0): void {
  if (p.idx === null) return;
  for (let i = 0; i < p.idx.length; i++) {
    const k = base + p.idx[i]!;
    if ((out32[k]! & p.val![i]!) >>> 0 !== p.val![i]) throw new Error(`pattern word ${k} missing from the report`);
  }
}
