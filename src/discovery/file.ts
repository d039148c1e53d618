// File discovery: a YAML or JSON file listing backends, re-read when it changes (the folder is
// watched, since editors and ConfigMap updates replace files by rename). Accepted shapes:
//   - http://e0:8000                        # a list of URLs or { url, weight, apiKey } entries
//   backends: [ http://e0:8000, { url: http://e1:8000, weight: 0.1 } ]
// An unreadable or invalid file is logged and the previous engine set is kept.
import { readFileSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { StaticDiscovery } from "./static.js";
import type { DiscoverySink, DiscoverySource, EngineSpec } from "./types.js";
import { logger } from "../obs/log.js";
import { InputFileError } from "../errors/index.js";

const log = logger("discovery.file");

const MAX_BACKENDS = 10_000;

const url = z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, ""));
const entry = z.union([
  url.transform((u) => ({ url: u, weight: 1 })),
  z.strictObject({
    url,
    weight: z.number().nonnegative().default(1),
    apiKey: z.string().optional(),
    role: z.string().optional(),
    kvEvents: z
      .string()
      .regex(/^tcp:\/\/.+/, "must be tcp://host:port")
      .optional(),
  }),
]);
const listSchema = z.array(entry).max(MAX_BACKENDS);
const mapSchema = z.strictObject({ backends: listSchema });

/** Reads and validates the file; throws with the field named on bad content. */
export function readBackendsFile(path: string): EngineSpec[] {
  const text = readFileSync(path, "utf8");
  const doc: unknown = path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  // one schema per shape, so errors name the field instead of "no union member matched"
  const r = Array.isArray(doc ?? []) ? listSchema.safeParse(doc ?? []) : mapSchema.safeParse(doc);
  if (!r.success) {
    const why = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    throw new InputFileError(`${path}: ${why}`);
  }
  const list = Array.isArray(r.data) ? r.data : r.data.backends;
  return list.map((b) => {
    const spec: EngineSpec = { url: b.url, weight: b.weight };
    if ("apiKey" in b && b.apiKey !== undefined) spec.apiKey = b.apiKey;
    if ("role" in b && b.role !== undefined) spec.role = b.role;
    if ("kvEvents" in b && b.kvEvents !== undefined) spec.kvEvents = { endpoint: b.kvEvents };
    spec.source = `file ${path}`;
    return spec;
  });
}

export class FileDiscovery implements DiscoverySource {
  readonly name = "file";
  private readonly inner = new StaticDiscovery([]);
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;

  constructor(
    readonly path: string,
    private readonly debounceMs = 100,
  ) {}

  start(sink: DiscoverySink): void {
    this.inner.start(sink);
    this.reload();
    const name = basename(this.path);
    this.watcher = watch(dirname(this.path), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name) return;
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => this.reload(), this.debounceMs);
    });
    this.watcher.on("error", (err) => log.warn({ err: err.message }, "backends file watch failed"));
  }

  /** Re-reads the file now (also done on change). */
  reload(): void {
    let specs: EngineSpec[];
    try {
      specs = readBackendsFile(this.path);
    } catch (err) {
      log.error(
        { err: (err as Error).message },
        "backends file unreadable or invalid; keeping the previous engines",
      );
      return;
    }
    this.inner.update(specs);
    log.info({ file: this.path, backends: specs.length }, "backends file applied");
  }

  stop(): void {
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.inner.stop();
  }
}
