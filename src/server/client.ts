/// <reference lib="dom" />
/**
 * The status page's script, run in the browser: it draws each timeline with uPlot (served by the
 * daemon itself) and writes times in the reader's local time beside UTC, with relative durations
 * kept current. The page is whole without it (UTC times, tables): this only adds.
 *
 * It is sent as this function's source (assets.ts), so it may use nothing from outside but its
 * parameters and the browser's globals.
 */

/** The uPlot global of uPlot.iife.min.js, as much of it as is used here. */
interface UPlotGlobal {
  new (opts: Record<string, unknown>, data: unknown[], target: HTMLElement): { ctx: CanvasRenderingContext2D; bbox: { left: number; top: number; width: number; height: number }; valToPos(v: number, scale: string, canvas?: boolean): number; setSize(s: { width: number; height: number }): void };
}

interface Chart {
  startMs: number;
  bucketMs: number;
  states: Array<number | null>;
  runs: number[];
}

export function statusClient(durationWords: (ms: number) => string): void {
  const STATES = ['ok', 'degraded', 'blocked', 'unknown'];
  const COLOURS = ['#2da44e', '#d4a72c', '#cf222e', '#8c959f'];
  const pad = (n: number): string => String(n).padStart(2, '0');
  const local = (d: Date): string => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;

  function localTimes(): void {
    const now = Date.now();
    for (const el of Array.from(document.querySelectorAll<HTMLTimeElement>('time[datetime]'))) {
      const d = new Date(el.dateTime);
      if (Number.isNaN(d.getTime())) continue;
      const utc = `${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 16)} UTC`;
      el.textContent = `${local(d)} local (${utc})`;
      el.title = d.toString();
    }
    for (const el of Array.from(document.querySelectorAll<HTMLElement>('[data-for]'))) el.textContent = durationWords(now - Date.parse(el.dataset.for!));
    for (const el of Array.from(document.querySelectorAll<HTMLElement>('[data-ago]'))) el.textContent = `${durationWords(now - Date.parse(el.dataset.ago!))} ago`;
  }

  /** Hatching for blocked and stripes for degraded, so that colour is not the only signal. */
  function pattern(ctx: CanvasRenderingContext2D, state: number): CanvasPattern | string {
    if (state === 0 || state === 3) return COLOURS[state]!;
    const tile = document.createElement('canvas');
    tile.width = tile.height = 8;
    const t = tile.getContext('2d')!;
    t.fillStyle = COLOURS[state]!;
    t.fillRect(0, 0, 8, 8);
    t.strokeStyle = 'rgba(255,255,255,0.7)';
    t.lineWidth = 2;
    t.beginPath();
    if (state === 2) {
      t.moveTo(0, 8);
      t.lineTo(8, 0);
    } else {
      t.moveTo(0, 4);
      t.lineTo(8, 4);
    }
    t.stroke();
    return ctx.createPattern(tile, 'repeat') ?? COLOURS[state]!;
  }

  function draw(el: HTMLElement, chart: Chart, UPlot: UPlotGlobal): void {
    const xs = chart.states.map((_, k) => (chart.startMs + k * chart.bucketMs) / 1000);
    const ys = chart.states.map((s) => (s === null ? null : 1));
    const width = Math.max(240, el.clientWidth || 600);
    const hourly = chart.bucketMs < 3_600_000;
    new UPlot(
      {
        width,
        height: 90,
        scales: { x: { time: true }, y: { range: [0, 1] } },
        axes: [
          {
            stroke: '#424a53',
            grid: { show: false },
            // Local time, 24-hour (hours for the last day, dates for the week), as the page's times.
            values: (_u: unknown, splits: number[]) =>
              splits.map((v) => {
                const d = new Date(v * 1000);
                return hourly ? `${pad(d.getHours())}:${pad(d.getMinutes())}` : `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
              }),
          },
          { show: false },
        ],
        cursor: { y: false, points: { show: false } },
        legend: { show: true, live: true, markers: { show: false } },
        series: [
          { label: 'time', value: (_u: unknown, v: number | null) => (v === null ? '—' : `${local(new Date(v * 1000))}`) },
          {
            label: 'state',
            paths: () => null,
            points: { show: false },
            value: (_u: unknown, _v: unknown, _s: number, i: number | null) => {
              if (i === null) return '—';
              const s = chart.states[i];
              return s === null || s === undefined ? 'no runs' : `${STATES[s]} (${chart.runs[i]} runs)`;
            },
          },
        ],
        hooks: {
          draw: [
            (u: InstanceType<UPlotGlobal>) => {
              const { ctx, bbox } = u;
              ctx.save();
              chart.states.forEach((s, k) => {
                if (s === null) return;
                const x0 = u.valToPos(xs[k]!, 'x', true);
                const x1 = u.valToPos(xs[k]! + chart.bucketMs / 1000, 'x', true);
                ctx.fillStyle = pattern(ctx, s);
                ctx.fillRect(x0, bbox.top, Math.max(1, x1 - x0), bbox.height);
              });
              ctx.restore();
            },
          ],
        },
      },
      [xs, ys],
      el,
    );
  }

  function charts(): void {
    const UPlot = (window as unknown as { uPlot?: UPlotGlobal }).uPlot;
    const holder = document.getElementById('page-data');
    if (!UPlot || !holder) return;
    const data = JSON.parse(holder.textContent ?? '{}') as { charts?: Record<string, Chart> };
    for (const el of Array.from(document.querySelectorAll<HTMLElement>('[data-chart]'))) {
      const chart = data.charts?.[el.dataset.chart!];
      if (chart) draw(el, chart, UPlot);
    }
  }

  localTimes();
  setInterval(localTimes, 30_000);
  charts();
}
