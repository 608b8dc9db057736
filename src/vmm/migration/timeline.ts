/**
 * The migration laid out on one simulated time axis, as text lines and as an SVG picture.
 *
 * Source phases are on the source's clock; the destination's load and switchover follow the
 * modelled link transfer of the stopped phase, so the picture reads left to right as the
 * guest experienced it (the two hosts need not share a clock). Pre-copy passes are bars
 * whose height is the number of pages sent in the pass.
 */
import type { PhaseRecord, SourceReport } from './report-types.js';

export interface TimelineSpan {
  name: string;
  lane: 'source' | 'link' | 'destination';
  startNs: number;
  endNs: number;
}

export interface TimelineBar {
  index: number;
  startNs: number;
  endNs: number;
  pages: number;
  bytes: number;
  dirtyAfter: number;
}

export interface Timeline {
  spans: TimelineSpan[];
  bars: TimelineBar[];
  /** Downtime window (vCPU stop to destination RUNNING), if the migration got that far. */
  downtime: { startNs: number; endNs: number } | null;
  endNs: number;
}

export function buildTimeline(r: SourceReport): Timeline {
  const t0 = r.phases.length ? Math.min(...r.phases.map((p) => p.startNs)) : 0;
  const rel = (ns: number) => ns - t0;
  const spans: TimelineSpan[] = [];
  for (const p of r.phases) {
    if (p.name === 'transfer') continue;
    spans.push({ name: p.name, lane: 'source', startNs: rel(p.startNs), endNs: rel(p.endNs) });
  }
  const stop = r.phases.find((p) => p.name === 'stop');
  const copy = r.phases.find((p) => p.name === 'stop-copy');
  let downtime: Timeline['downtime'] = null;
  let end = spans.reduce((m, s) => Math.max(m, s.endNs), 0);
  if (stop && copy && r.downtime) {
    const linkStart = rel(copy.endNs);
    const linkEnd = linkStart + r.downtime.transferNs;
    spans.push({ name: 'transfer', lane: 'link', startNs: linkStart, endNs: linkEnd });
    let at = linkEnd;
    const dest = r.destination?.phases.filter((p: PhaseRecord) => p.name === 'load' || p.name === 'switchover') ?? [];
    for (const p of dest) {
      const d = p.endNs - p.startNs;
      spans.push({ name: p.name, lane: 'destination', startNs: at, endNs: at + d });
      at += d;
    }
    downtime = { startNs: rel(stop.startNs), endNs: at };
    end = Math.max(end, at);
  }
  const bars = r.iterations.map((it) => ({
    index: it.index,
    startNs: rel(it.startNs),
    endNs: rel(it.endNs),
    pages: it.pages,
    bytes: it.bytes,
    dirtyAfter: it.dirtyAfter,
  }));
  return { spans, bars, downtime, endNs: end };
}

const COLORS: Record<string, string> = {
  setup: '#9e9e9e',
  precopy: '#4c8bf5',
  stop: '#e53935',
  'stop-copy': '#fb8c00',
  transfer: '#8e24aa',
  load: '#43a047',
  switchover: '#00897b',
  cleanup: '#bdbdbd',
  recover: '#6d4c41',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function fmtNs(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(3)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(3)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(1)} us`;
  return `${Math.round(ns)} ns`;
}

/** A self-contained SVG of the timeline. */
export function timelineSvg(r: SourceReport, title = 'live migration'): string {
  const tl = buildTimeline(r);
  const W = 960;
  const left = 110;
  const right = 30;
  const plotW = W - left - right;
  const span = Math.max(1, tl.endNs);
  // phases shorter than a pixel would vanish: give each a minimum width, keep order
  const x = (ns: number) => left + (ns / span) * plotW;
  const lanes: TimelineSpan['lane'][] = ['source', 'link', 'destination'];
  const laneY = (l: TimelineSpan['lane']) => 60 + lanes.indexOf(l) * 34;
  const barTop = 190;
  const barH = 140;
  const zoomTop = barTop + barH + 80;
  const H = tl.downtime ? zoomTop + 70 : barTop + barH + 70;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${left}" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`);
  const summary = !r.ok
    ? `FAILED at ${r.failure?.step ?? '?'}: ${r.failure?.message ?? ''}`
    : r.handover === 'unconfirmed'
      ? `handover UNCONFIRMED (no result from the destination, which owns the guest); downtime at least ${fmtNs(r.downtime?.totalNs ?? 0)}, total ${fmtNs(r.totalNs)}`
      : `downtime ${fmtNs(r.downtime?.totalNs ?? 0)} (limit ${fmtNs(r.downtimeLimitNs)}), total ${fmtNs(r.totalNs)}, ${r.iterations.length} pre-copy pass(es), ${r.dirtyMode ?? ''}`;
  out.push(`<text x="${left}" y="42" fill="#444">${esc(summary)}</text>`);
  for (const l of lanes) {
    out.push(`<text x="${left - 8}" y="${laneY(l) + 17}" text-anchor="end">${l}</text>`);
    out.push(`<line x1="${left}" x2="${W - right}" y1="${laneY(l) + 26}" y2="${laneY(l) + 26}" stroke="#eee"/>`);
  }
  if (tl.downtime) {
    const a = x(tl.downtime.startNs);
    const b = Math.max(a + 2, x(tl.downtime.endNs));
    out.push(`<rect x="${a}" y="52" width="${b - a}" height="${3 * 34 + 4}" fill="#e53935" fill-opacity="0.08" stroke="#e53935" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${b}" y="${52 + 3 * 34 + 18}" text-anchor="end" fill="#e53935">downtime ${esc(fmtNs(tl.downtime.endNs - tl.downtime.startNs))}</text>`);
  }
  for (const s of tl.spans) {
    const a = x(s.startNs);
    const w = Math.max(2, x(s.endNs) - a);
    const y = laneY(s.lane);
    out.push(`<rect x="${a.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="24" fill="${COLORS[s.name] ?? '#777'}"><title>${esc(`${s.name}: ${fmtNs(s.endNs - s.startNs)}`)}</title></rect>`);
    if (w > 40) out.push(`<text x="${(a + 4).toFixed(2)}" y="${y + 16}" fill="#fff">${esc(s.name)}</text>`);
  }
  const maxPages = Math.max(1, ...tl.bars.map((b) => b.pages));
  out.push(`<text x="${left - 8}" y="${barTop + 12}" text-anchor="end">pages / pass</text>`);
  out.push(`<line x1="${left}" x2="${W - right}" y1="${barTop + barH}" y2="${barTop + barH}" stroke="#999"/>`);
  for (const b of tl.bars) {
    const a = x(b.startNs);
    const w = Math.max(3, x(b.endNs) - a - 1);
    const h = Math.max(1, (b.pages / maxPages) * barH);
    out.push(`<rect x="${a.toFixed(2)}" y="${(barTop + barH - h).toFixed(2)}" width="${w.toFixed(2)}" height="${h.toFixed(2)}" fill="#4c8bf5"><title>${esc(`pass ${b.index}: ${b.pages} pages, ${b.bytes} bytes, ${b.dirtyAfter} dirty after`)}</title></rect>`);
    out.push(`<text x="${(a + w / 2).toFixed(2)}" y="${(barTop + barH - h - 4).toFixed(2)}" text-anchor="middle" font-size="10">${b.pages}</text>`);
  }
  if (r.final && tl.downtime) {
    const a = x(tl.downtime.startNs);
    const h = Math.max(1, (r.final.pages / maxPages) * barH);
    out.push(`<rect x="${a.toFixed(2)}" y="${(barTop + barH - h).toFixed(2)}" width="4" height="${h.toFixed(2)}" fill="#fb8c00"><title>${esc(`final pass: ${r.final.pages} pages`)}</title></rect>`);
  }
  // time axis
  const axisY = barTop + barH + 22;
  for (let i = 0; i <= 5; i++) {
    const ns = (span * i) / 5;
    out.push(`<line x1="${x(ns)}" x2="${x(ns)}" y1="${axisY - 16}" y2="${axisY - 10}" stroke="#999"/>`);
    out.push(`<text x="${x(ns)}" y="${axisY + 2}" text-anchor="middle" fill="#555">${esc(fmtNs(ns))}</text>`);
  }
  out.push(`<text x="${left + plotW / 2}" y="${axisY + 22}" text-anchor="middle" fill="#555">simulated time</text>`);
  if (tl.downtime) {
    // the downtime is a sliver of the whole: draw it again on its own scale
    const d0 = tl.downtime.startNs;
    const dw = Math.max(1, tl.downtime.endNs - d0);
    const zx = (ns: number) => left + ((ns - d0) / dw) * plotW;
    out.push(`<text x="${left - 8}" y="${zoomTop + 17}" text-anchor="end" fill="#e53935">downtime</text>`);
    out.push(`<text x="${left - 8}" y="${zoomTop + 31}" text-anchor="end" fill="#e53935" font-size="10">(zoomed)</text>`);
    for (const sp of tl.spans) {
      if (sp.endNs <= d0 || sp.startNs >= tl.downtime.endNs || sp.name === 'cleanup') continue;
      const a = zx(Math.max(sp.startNs, d0));
      const w = Math.max(2, zx(Math.min(sp.endNs, tl.downtime.endNs)) - a);
      out.push(`<rect x="${a.toFixed(2)}" y="${zoomTop}" width="${w.toFixed(2)}" height="24" fill="${COLORS[sp.name] ?? '#777'}"><title>${esc(`${sp.name} (${sp.lane}): ${fmtNs(sp.endNs - sp.startNs)}`)}</title></rect>`);
      if (w > 60) out.push(`<text x="${(a + 4).toFixed(2)}" y="${zoomTop + 16}" fill="#fff">${esc(`${sp.name} ${fmtNs(sp.endNs - sp.startNs)}`)}</text>`);
    }
    out.push(`<text x="${left}" y="${zoomTop + 42}" fill="#555">${esc(fmtNs(0))}</text>`);
    out.push(`<text x="${W - right}" y="${zoomTop + 42}" text-anchor="end" fill="#555">${esc(fmtNs(dw))}</text>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
