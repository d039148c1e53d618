// The primary's account of one worker's in-flight counts while claims (claims.ts) are in flight.
// A worker reports its own counts without the picks it still waits on; a report also says up to
// which claim the worker had heard the answer when it wrote it. A claim the primary confirmed but the
// worker had not yet heard of is not in that report, so the primary adds it on top until a report
// covers it: the group's counts are exact at every step, whatever the order of reports and answers.
import type { LoadCounts } from "./protocol.js";
import { COUNTED, SHARED_FIELDS } from "./shared-load.js";

export class WorkerLedger {
  /** the worker's last report per engine (confirmed picks it had heard of included) */
  private readonly reported = new Map<string, number[]>();
  /** confirmed claims the worker's reports do not cover yet */
  private pending: { id: number; url: string }[] = [];

  /** Applies a report written after the worker heard answers up to claim `acked`; the rows to publish. */
  report(rows: readonly LoadCounts[], acked: number): LoadCounts[] {
    const touched = new Set<string>();
    for (const r of rows) {
      this.reported.set(r[0], r.slice(1) as number[]);
      touched.add(r[0]);
    }
    if (this.pending.some((p) => p.id <= acked)) {
      for (const p of this.pending) if (p.id <= acked) touched.add(p.url);
      this.pending = this.pending.filter((p) => p.id > acked);
    }
    return [...touched].map((url) => this.row(url));
  }

  /** A claim confirmed; the row to publish. */
  confirm(id: number, url: string): LoadCounts {
    this.pending.push({ id, url });
    return this.row(url);
  }

  /**
   * The worker's counts on the engine as the group should see them: a confirmed pick its reports do
   * not cover yet is one more in every count (a request just sent: in flight, awaiting its first
   * token); its prefill is in the worker's report already (its ledger learns a pick at the decision).
   */
  row(url: string): LoadCounts {
    const counts = [...(this.reported.get(url) ?? [])];
    for (let i = 0; i < SHARED_FIELDS.length; i++) counts[i] ??= 0;
    let extra = 0;
    for (const p of this.pending) if (p.url === url) extra++;
    return [url, ...counts.map((c, i) => (i < COUNTED ? c + extra : c))];
  }
}

/**
 * Whether a pick made reading `seen` (the others' counts on one engine) counted every other pick
 * that stands now (`current`): no count of requests above what it read. Counts that only fell are
 * requests that finished or got their first token meanwhile, news the deciding worker learns a moment
 * late. (Queued prefill rises only with such a pick, and a report may restate it: not checked.)
 */
export function countedEveryPick(seen: LoadCounts, current: LoadCounts): boolean {
  for (let i = 1; i <= COUNTED && i < current.length; i++)
    if ((current[i] as number) > ((seen[i] as number | undefined) ?? 0)) return false;
  return true;
}
