import uPlot from 'uplot';

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

/** The stylesheet's colour for each series class (the legend's squares use the same variables). */
const COLOURS: Record<string, string> = { allow: '--allow', deny: '--deny', spend: '--accent' };
const MAX_WIDTH = 720;

/**
 * A small uPlot line chart: y from zero to the largest value, the first and last x labels
 * among a few ticks, our own legend with each series' total. uPlot draws on a canvas and sets
 * its element sizes through the CSSOM, which `style-src 'self'` allows; its stylesheet is
 * bundled into app.css. The chart is an image with the summary as its accessible name, and
 * static (no cursor, no selection) so it adds nothing to the tab order.
 */
export function lineChart(spec: ChartSpec): HTMLElement {
  const width = spec.width ?? 640;
  const height = spec.height ?? 200;
  const frame = document.createElement('div');
  frame.className = 'chart';
  frame.setAttribute('role', 'img');
  frame.setAttribute('aria-label', `${spec.title}: ${spec.summary}`);
  const css = getComputedStyle(document.documentElement);
  const colour = (name: string) => css.getPropertyValue(name).trim() || 'currentColor';
  const axis = { stroke: colour('--muted'), grid: { stroke: colour('--line'), width: 1 }, ticks: { show: false } };
  const last = spec.labels.length - 1;
  const plot = new uPlot(
    {
      width,
      height,
      padding: [12, 36, 0, 0], // room for the last x label, which uPlot centres on its tick
      legend: { show: false },
      cursor: { show: false },
      select: { show: false, left: 0, top: 0, width: 0, height: 0 },
      scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      // The x axis shows the first and last labels, as the summary names the whole span.
      axes: [
        { ...axis, size: 30, splits: () => [0, Math.max(0, last)], values: (_u, ticks) => ticks.map((i) => spec.labels[i] ?? '') },
        axis,
      ],
      series: [{}, ...spec.series.map((s) => ({ label: s.name, stroke: colour(COLOURS[s.className] ?? '--accent'), width: 2 }))],
    },
    [spec.labels.map((_, i) => i), ...spec.series.map((s) => s.values)],
    frame,
  );
  // uPlot draws at a fixed size: follow the figure's width, up to the stylesheet's maximum.
  // Leaving the page removes the shown chart (its size drops to zero): then let go of both.
  let shown = false;
  const resize = new ResizeObserver(() => {
    if (!frame.isConnected) {
      if (shown) {
        resize.disconnect();
        plot.destroy();
      }
      return;
    }
    shown = true;
    const fit = Math.min(MAX_WIDTH, frame.clientWidth);
    if (fit > 0 && fit !== plot.width) plot.setSize({ width: fit, height });
  });
  resize.observe(frame);
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
  figure.append(caption, frame, legend);
  return figure;
}
