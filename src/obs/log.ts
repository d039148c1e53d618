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

let root: Logger | undefined;

export function rootLogger(): Logger {
  if (root) return root;
  const level = process.env.SWITCHYARD_LOG_LEVEL ?? "info";
  // Logs go to stderr so that commands printing results (bench, plan) keep stdout clean.
  root =
    logFormat(process.env, process.stderr.isTTY === true) === "pretty"
      ? pino({ level, base: undefined }, prettyStream())
      : pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
  return root;
}

export function logger(name: string): Logger {
  return rootLogger().child({ name });
}
