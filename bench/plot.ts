// A hand-written SVG of latency distributions, foreman against the direct path: one panel per
// measurement, latency (ms) against percentile on a tail-stretching axis (50, 90, 99, 99.9).

import { quantile, sortedQuantile } from "./stats.ts";

export interface Panel {
  title: string;
  series: { label: string; color: string; samples: number[] }[];
}

const W = 420;
const H = 260;
const M = { left: 52, right: 14, top: 30, bottom: 40 };
/** Percentile ticks and the axis position of q: -log10(1 − q), so each "nine" gets equal room. */
const TICKS = [0, 0.5, 0.9, 0.99, 0.999];
const pos = (q: number) => -Math.log10(1 - q);
const MAX_POS = pos(0.999);

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function panel(p: Panel, x0: number, y0: number): string {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const top = Math.max(...p.series.map((s) => quantile(s.samples, 0.999)).filter(Number.isFinite));
  const ymax = niceMax(top);
  const px = (q: number) => x0 + M.left + (pos(q) / MAX_POS) * pw;
  const py = (ms: number) => y0 + M.top + ph - (Math.min(ms, ymax) / ymax) * ph;
  const out: string[] = [];
  out.push(
    `<text x="${x0 + W / 2}" y="${y0 + 18}" text-anchor="middle" font-weight="bold">${
      esc(p.title)
    }</text>`,
  );
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    const y = py(v);
    out.push(
      `<line x1="${x0 + M.left}" y1="${y}" x2="${x0 + W - M.right}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${x0 + M.left - 6}" y="${y + 4}" text-anchor="end">${+v.toFixed(2)}</text>`,
    );
  }
  for (const q of TICKS) {
    const x = px(q);
    out.push(
      `<line x1="${x}" y1="${y0 + M.top}" x2="${x}" y2="${y0 + M.top + ph}" stroke="#eee"/>`,
      `<text x="${x}" y="${y0 + H - M.bottom + 16}" text-anchor="middle">p${+(q * 100).toFixed(
        1,
      )}</text>`,
    );
  }
  out.push(
    `<text x="${x0 + 14}" y="${y0 + M.top + ph / 2}" transform="rotate(-90 ${x0 + 14} ${
      y0 + M.top + ph / 2
    })" text-anchor="middle">ms</text>`,
  );
  p.series.forEach((s, i) => {
    if (s.samples.length === 0) return;
    const sorted = [...s.samples].sort((a, b) => a - b);
    const pts: string[] = [];
    for (let k = 0; k <= 200; k++) {
      const q = 1 - 10 ** (-(k / 200) * MAX_POS);
      const v = sortedQuantile(sorted, q);
      pts.push(`${px(q).toFixed(1)},${py(v).toFixed(1)}`);
    }
    out.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.join(" ")}"/>`,
      `<rect x="${x0 + M.left + 8}" y="${
        y0 + M.top + 6 + i * 16
      }" width="12" height="3" fill="${s.color}"/>`,
      `<text x="${x0 + M.left + 24}" y="${y0 + M.top + 11 + i * 16}">${esc(s.label)} (p50 ${
        quantile(s.samples, 0.5).toFixed(2)
      }, p99 ${quantile(s.samples, 0.99).toFixed(2)} ms)</text>`,
    );
  });
  out.push(
    `<rect x="${x0 + M.left}" y="${
      y0 + M.top
    }" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
  );
  return out.join("\n");
}

/** The whole figure: panels two to a row, a caption under them. */
export function latencySvg(panels: Panel[], caption: string): string {
  const cols = 2;
  const rows = Math.ceil(panels.length / cols);
  const width = W * cols;
  const height = H * rows + 30;
  const body = panels.map((p, i) => panel(p, (i % cols) * W, Math.floor(i / cols) * H));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...body,
    `<text x="${width / 2}" y="${height - 10}" text-anchor="middle" fill="#555">${
      esc(caption)
    }</text>`,
    `</svg>`,
    "",
  ].join("\n");
}
