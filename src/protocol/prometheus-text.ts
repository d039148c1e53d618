// The Prometheus text exposition format as every reader of a /metrics page needs it: each sample with
// its labels (escapes in label values undone), or the samples summed per metric name. Shared by the
// bench's before/after scrapes, `switchyard status` and tests; the router reads the few engine gauges
// it routes by with its own line-skipping reader (src/router/engines/scrape.ts).

/** One sample of a Prometheus text page. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every sample of a Prometheus text exposition page, with its labels (escapes in values undone). */
export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const nameEnd = line.search(/[{\s]/);
    if (nameEnd < 0) continue;
    const labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === "{") {
      // label values may hold spaces, braces, commas and escaped quotes
      i++;
      for (;;) {
        while (line[i] === " " || line[i] === ",") i++;
        if (i >= line.length || line[i] === "}") break;
        const eq = line.indexOf("=", i);
        if (eq < 0 || line[eq + 1] !== '"') break;
        const key = line.slice(i, eq).trim();
        let v = "";
        let j = eq + 2;
        for (; j < line.length && line[j] !== '"'; j++) {
          if (line[j] === "\\") {
            j++;
            v += line[j] === "n" ? "\n" : (line[j] ?? "");
          } else v += line[j];
        }
        labels[key] = v;
        i = j + 1;
      }
      i++;
    }
    const value = Number(line.slice(i).trim().split(/\s+/)[0]);
    if (!Number.isFinite(value)) continue;
    out.push({ name: line.slice(0, nameEnd), labels, value });
  }
  return out;
}

/** Sums sample values by metric name (labels dropped) from Prometheus text exposition. */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of parseSamples(text)) out.set(s.name, (out.get(s.name) ?? 0) + s.value);
  return out;
}
