// Metric families for the per-request series: children bound once per label set, so an update is one
// addition (prom-client hashes the label object on every inc/observe). They hold plain numbers and
// answer prom-client's `get()` at scrape; whoever owns one registers it on its prom-client registry
// (the router's metrics, cache-aware routing's decisions). Bounded: past MAX_SERIES label sets a family
// drops the least recently created. Here, below every caller, so any layer's hot path can use them.

/** Label sets one family keeps; past it the least recently created one is dropped (its series goes stale). */
const MAX_SERIES = 10_000;

interface PromValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

interface CounterChild<L extends string> {
  labels: Record<L, string>;
  value: number;
}

/** A level of a family's children by label value: the next level, or the child at the last label. */
type Level<L extends string> = Map<string, Level<L> | CounterChild<L>>;

/**
 * A counter family whose children are bound once per label set and then cost one addition. A child is
 * found by one map lookup per label value (no key string is built: joining the values cost a router
 * request about as much as the rest of its metrics).
 */
export class CounterFamily<L extends string> {
  readonly type = "counter";
  readonly aggregator = "sum";
  /** every child, oldest first (scrape order, and which is dropped past MAX_SERIES) */
  private readonly children = new Set<CounterChild<L>>();
  private readonly byValue: Level<L> = new Map();
  /** the child of a family without labels */
  private only: CounterChild<L> | undefined;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[],
  ) {}

  /** The child for these label values (in `labelNames` order); keep it and call `inc` on it. */
  child(...values: string[]): { value: number } {
    const n = this.labelNames.length;
    if (n === 0) return (this.only ??= this.make(values));
    let level = this.byValue;
    for (let i = 0; i < n - 1; i++) {
      const v = values[i] ?? "";
      let next = level.get(v) as Level<L> | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(v, next);
      }
      level = next;
    }
    const last = values[n - 1] ?? "";
    let c = level.get(last) as CounterChild<L> | undefined;
    if (c === undefined) {
      c = this.make(values);
      level.set(last, c);
    }
    return c;
  }

  private make(values: string[]): CounterChild<L> {
    if (this.children.size >= MAX_SERIES) this.drop(this.children.values().next().value!);
    const labels = {} as Record<L, string>;
    this.labelNames.forEach((n, i) => (labels[n] = values[i] ?? ""));
    const c = { labels, value: 0 };
    this.children.add(c);
    return c;
  }

  /** `c` forgotten, and the levels it leaves empty */
  private drop(c: CounterChild<L>): void {
    this.children.delete(c);
    if (this.only === c) {
      this.only = undefined;
      return;
    }
    const path: Level<L>[] = [];
    let level = this.byValue;
    const names = this.labelNames;
    for (let i = 0; i < names.length - 1; i++) {
      path.push(level);
      level = level.get(c.labels[names[i]!]) as Level<L>;
    }
    level.delete(c.labels[names[names.length - 1]!]);
    for (let i = path.length - 1; i >= 0 && level.size === 0; i--) {
      path[i]!.delete(c.labels[names[i]!]);
      level = path[i]!;
    }
  }

  inc(labels: Record<L, string>, by = 1): void {
    this.child(...this.labelNames.map((n) => labels[n])).value += by;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: PromValue[] } {
    const values: PromValue[] = [];
    for (const c of this.children) values.push({ labels: c.labels, value: c.value });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.children.clear();
    this.byValue.clear();
    this.only = undefined;
  }
}

/** One label set's histogram: bucket counts (non-cumulative; the last is +Inf), sum and count. */
export class HistogramChild {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    private readonly bounds: readonly number[],
    readonly labels: Record<string, string>,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

export class HistogramFamily {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly children = new Map<string, HistogramChild>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelName: string,
    readonly buckets: readonly number[],
  ) {}

  child(value: string): HistogramChild {
    let c = this.children.get(value);
    if (!c) {
      if (this.children.size >= MAX_SERIES) this.children.delete(this.children.keys().next().value!);
      c = new HistogramChild(this.buckets, { [this.labelName]: value });
      this.children.set(value, c);
    }
    return c;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: PromValue[] } {
    const values: PromValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const c of this.children.values()) {
      let acc = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        acc += c.counts[i]!;
        values.push({ labels: { ...c.labels, le: this.buckets[i]! }, value: acc, metricName: bucket });
      }
      values.push({ labels: { ...c.labels, le: "+Inf" }, value: c.count, metricName: bucket });
      values.push({ labels: c.labels, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: c.labels, value: c.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.children.clear();
  }
}
