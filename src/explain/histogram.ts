// Transition durations as Prometheus histograms, keyed by entity kind and from/to state.

/** Upper bounds in seconds: TCG boots take 5–20 s, container steps milliseconds. */
export const transitionBuckets: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
];

export interface HistogramSeries {
  readonly labels: Readonly<Record<string, string>>;
  /** Cumulative counts per bound of `transitionBuckets` (le), then the +Inf count. */
  readonly buckets: readonly number[];
  readonly count: number;
  readonly sum: number;
}

/** Histograms of one metric, one series per label set. */
export class Histograms {
  private readonly series = new Map<
    string,
    { labels: Record<string, string>; counts: number[]; sum: number }
  >();

  constructor(readonly bounds: readonly number[] = transitionBuckets) {}

  observe(labels: Record<string, string>, seconds: number): void {
    const key = JSON.stringify(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: new Array(this.bounds.length + 1).fill(0), sum: 0 };
      this.series.set(key, s);
    }
    const i = this.bounds.findIndex((b) => seconds <= b);
    s.counts[i === -1 ? this.bounds.length : i]! += 1;
    s.sum += seconds;
  }

  /** Every series with cumulative bucket counts, sorted by labels. */
  snapshot(): HistogramSeries[] {
    return [...this.series.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([, s]) => {
        let running = 0;
        const buckets = s.counts.map((c) => {
          running += c;
          return running;
        });
        return { labels: { ...s.labels }, buckets, count: running, sum: s.sum };
      });
  }
}
