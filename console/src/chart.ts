const SVG = 'http://www.w3.org/2000/svg';

/** One line of a chart: its name (legend), CSS class (colour) and a value per x. */
export interface Series {
  name: string;
  className: string;
  values: number[];
}

/** What `lineChart` draws: x labels (one per point), the series, and a text summary for screen readers. */
export interface ChartSpec {
  title: string;
  labels: string[];
  series: Series[];
  summary: string;
  width?: number;
  height?: number;
}

const PAD = { left: 44, right: 12, top: 12, bottom: 28 };

/**
 * A small SVG line chart: y from zero to the largest value, a few gridlines, first and last
 * x labels, a legend. Colours come from the stylesheet (no inline styles, as the CSP wants).
 * The figure is an image with the summary as its accessible name.
 */
export function lineChart(spec: ChartSpec): HTMLElement {
  const width = spec.width ?? 640;
  const height = spec.height ?? 200;
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `${spec.title}: ${spec.summary}`, class: 'chart' });
  const max = Math.max(1, ...spec.series.flatMap((s) => s.values));
  const n = Math.max(1, spec.labels.length - 1);
  const x = (i: number) => PAD.left + (i / n) * (width - PAD.left - PAD.right);
  const y = (v: number) => height - PAD.bottom - (v / max) * (height - PAD.top - PAD.bottom);
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    svg.append(el('line', { x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(text(String(v), PAD.left - 6, y(v) + 4, 'end'));
  }
  if (spec.labels.length > 0) {
    svg.append(text(spec.labels[0]!, PAD.left, height - 8, 'start'));
    svg.append(text(spec.labels[spec.labels.length - 1]!, width - PAD.right, height - 8, 'end'));
  }
  for (const s of spec.series) {
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    svg.append(el('polyline', { points: points || `${PAD.left},${y(0)}`, class: `line ${s.className}` }));
  }
  const figure = document.createElement('figure');
  const caption = document.createElement('figcaption');
  caption.textContent = spec.title;
  const legend = document.createElement('ul');
  legend.className = 'legend';
  for (const s of spec.series) {
    const item = document.createElement('li');
    item.className = s.className;
    item.textContent = `${s.name}: ${s.values.reduce((a, b) => a + b, 0)}`;
    legend.append(item);
  }
  figure.append(caption, svg, legend);
  return figure;
}

function el(tag: string, attrs: Record<string, string | number>): SVGElement {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function text(content: string, x: number, y: number, anchor: 'start' | 'end'): SVGElement {
  const node = el('text', { x, y, 'text-anchor': anchor, class: 'axis' });
  node.textContent = content;
  return node;
}
