// Structured logs: JSON lines (pino) for machines, a compact line format on a TTY for people.
// Level from SWITCHYARD_LOG_LEVEL (default info); SWITCHYARD_LOG_FORMAT=json|pretty forces a format,
// otherwise a terminal on stderr gets pretty lines and anything else (a file, a pipe, a log shipper)
// gets JSON. Pretty lines colour the level unless NO_COLOR is set, and print an error's stack below
// its line instead of one escaped JSON string.
import pino, { type Logger } from "pino";
import { Writable } from "node:stream";

export type { Logger };

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};

/** ANSI colours per level: dim, dim, plain, yellow, red, red. */
const LEVEL_COLOURS: Record<number, string> = { 10: "2", 20: "2", 40: "33", 50: "31", 60: "31" };

export type LogFormat = "json" | "pretty";

/** The format for these settings: SWITCHYARD_LOG_FORMAT when it names one, else pretty on a terminal. */
export function logFormat(env: NodeJS.ProcessEnv, stderrIsTty: boolean): LogFormat {
  const f = env.SWITCHYARD_LOG_FORMAT?.toLowerCase();
  if (f === "json" || f === "pretty") return f;
  return stderrIsTty ? "pretty" : "json";
}

function isErrorObject(v: unknown): v is { message?: unknown; stack?: unknown; type?: unknown } {
  return typeof v === "object" && v !== null && ("stack" in v || "message" in v) && "type" in v;
}

/** One pino record as a line for people: `12:03:04.567 WARN  [router] message  key=value ...`. */
export function formatPretty(rec: Record<string, unknown>, colour: boolean): string {
  const { level, time, msg, pid: _pid, hostname: _h, name, ...rest } = rec;
  const t = new Date(Number(time)).toISOString().slice(11, 23);
  const lv = Number(level);
  let label = (LEVEL_NAMES[lv] ?? String(level)).padEnd(5);
  const c = LEVEL_COLOURS[lv];
  if (colour && c) label = `\x1b[${c}m${label}\x1b[0m`;
  const stacks: string[] = [];
  const extra = Object.entries(rest)
    .map(([k, v]) => {
      if (isErrorObject(v)) {
        if (typeof v.stack === "string") stacks.push(v.stack);
        return `${k}=${typeof v.message === "string" ? JSON.stringify(v.message) : JSON.stringify(v)}`;
      }
      return `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`;
    })
    .join(" ");
  const head = `${t} ${label} ${name ? `[${String(name)}] ` : ""}${String(msg ?? "")}${extra ? "  " + extra : ""}`;
  return stacks.length ? `${head}\n${stacks.map((s) => s.replace(/^/gm, "    ")).join("\n")}` : head;
}

function prettyStream(): Writable {
  const colour = process.stderr.isTTY === true && !process.env.NO_COLOR;
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      try {
        process.stderr.write(
          `${formatPretty(JSON.parse(chunk.toString("utf8")) as Record<string, unknown>, colour)}\n`,
        );
      } catch {
        process.stderr.write(chunk);
      }
      cb();
    },
  });
}

/**
 * The JSON-lines destination: sonic-boom (pino's own) writing asynchronously to stderr.
 * - Given each line as bytes: in its text mode sonic-boom measures the UTF-8 length of the whole batch
 *   waiting to be written on every line it is given, and under load (a write in flight, lines piling
 *   up) that re-reads up to 16 KiB per line: ~2 µs of a router's ~45 µs per tiny request, with an
 *   access line each. Given bytes it adds lengths instead.
 * - Info lines in batches of at least 8 KiB, or every 100 ms, or at exit (pino flushes it then): one
 *   write per line or few lines cost a two-worker router ~10 µs more per tiny request at 256
 *   connections (its workers append to one file). An info line may so reach the file up to 100 ms
 *   late, and a process killed outright loses at most that much; a warning or an error starts a write
 *   at once.
 * - At most 32 MiB held when stderr stops taking lines (a stuck log reader): later lines are dropped
 *   rather than the router's memory growing without bound.
 */
function jsonStream(): {
  write(line: string): void;
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
} {
  const out = pino.destination({
    fd: 2,
    sync: false,
    contentMode: "buffer",
    minLength: 8192,
    periodicFlush: 100,
    maxLength: 32 << 20,
  });
  return {
    write: (line) => {
      out.write(Buffer.from(line, "utf8") as unknown as string);
      // a warning or an error is read when it happens: written at once ({"level":40 and up)
      if (line.charCodeAt(9) >= 0x34) out.flush();
    },
    flush: (cb) => out.flush(cb),
    flushSync: () => out.flushSync(),
  };
}

// process-wide: one root logger per process writes stderr, whichever part of the stack logs
const logRoot = {
  root: undefined as Logger | undefined,
  rootStream: undefined as { write(line: string): unknown } | undefined,
  /** what every line of the root logger carries after level and time (`"pid":N,` in JSON) */
  rootBase: "",
};

export function rootLogger(): Logger {
  if (logRoot.root) return logRoot.root;
  const level = process.env.SWITCHYARD_LOG_LEVEL ?? "info";
  // Logs go to stderr so that commands printing results (bench, plan) keep stdout clean.
  if (logFormat(process.env, process.stderr.isTTY === true) === "pretty") {
    logRoot.rootStream = prettyStream();
    logRoot.root = pino({ level, base: undefined }, logRoot.rootStream);
  } else {
    logRoot.rootStream = jsonStream();
    logRoot.rootBase = `"pid":${process.pid},`;
    logRoot.root = pino({ level, base: { pid: process.pid } }, logRoot.rootStream);
  }
  return logRoot.root;
}

export function logger(name: string): Logger {
  return rootLogger().child({ name });
}

/**
 * An info line serialised by the caller, for a line written per request on the hot path (the access
 * log): pino's generic serialiser costs more than the line's own fields. `fields` is a run of
 * `"key":json,` pairs (each ending with a comma); the line reads exactly as the named child logger's
 * `info(fields, msg)` would, so a reader (or the pretty printer) cannot tell them apart.
 */
export function infoLineWriter(name: string): {
  enabled(): boolean;
  write(fields: string, msg: string): void;
} {
  const log = logger(name);
  const head = `,${logRoot.rootBase}"name":${JSON.stringify(name)},`;
  return {
    enabled: () => log.isLevelEnabled("info"),
    write: (fields, msg) => {
      logRoot.rootStream!.write(
        `{"level":30,"time":${Date.now()}${head}${fields}"msg":${JSON.stringify(msg)}}\n`,
      );
    },
  };
}
