// /metrics of a router process group: every worker's registry and the primary's, merged the way
// prom-client's cluster registry does (AggregatorRegistry.aggregate). Counters and histograms add
// up. Gauges that count a process's own things (requests in flight, queue depth) add up too; gauges
// that say what the group shares (an engine's health, its scraped load, the routing indexes every
// worker holds a full copy of) are the same in every worker and are taken once, not multiplied.
import { AggregatorRegistry } from "prom-client";

/** Gauges each process counts for itself: summed over the group. */
const OWN_GAUGES = new Set([
  "switchyard_engine_in_flight",
  "switchyard_requests_in_flight",
  "switchyard_queue_depth",
  "switchyard_epp_streams",
]);

interface MetricJson {
  name: string;
  type: string;
  aggregator?: string;
  values: unknown[];
}

/** How the group reports one metric (prom-client aggregator names). */
export function aggregatorFor(m: MetricJson): string {
  if (m.type === "gauge" && m.name.startsWith("switchyard_") && !OWN_GAUGES.has(m.name)) return "max";
  return m.aggregator ?? "sum";
}

/** The Prometheus text of the group from each process's `getMetricsAsJSON()`. */
export async function aggregateMetrics(
  perProcess: readonly unknown[][],
): Promise<{ text: string; contentType: string }> {
  const fixed = perProcess.map((list) =>
    (list as MetricJson[]).map((m) => ({ ...m, aggregator: aggregatorFor(m) })),
  );
  const reg = AggregatorRegistry.aggregate(fixed as Parameters<typeof AggregatorRegistry.aggregate>[0]);
  return { text: await reg.metrics(), contentType: reg.contentType };
}
