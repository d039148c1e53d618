// Structured logs: JSON lines (pino) for machines, a compact line format on a TTY for people.
// Level from SWITCHYARD_LOG_LEVEL (default info); SWITCHYARD_LOG_FORMAT=json|pretty forces a format.
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

function prettyStream(): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      try {
        const rec = JSON.parse(chunk.toString("utf8")) as Record<string, unknown>;
        const { level, time, msg, pid: _pid, hostname: _h, name, ...rest } = rec;
        const t = new Date(Number(time)).toISOString().slice(11, 23);
        const extra = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
          .join(" ");
        process.stderr.write(
          `${t} ${(LEVEL_NAMES[Number(level)] ?? String(level)).padEnd(5)} ${name ? `[${String(name)}] ` : ""}${String(msg ?? "")}${extra ? "  " + extra : ""}\n`,
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
  const format = process.env.SWITCHYARD_LOG_FORMAT ?? (process.stderr.isTTY ? "pretty" : "json");
  // Logs go to stderr so that commands printing results (bench, plan) keep stdout clean.
  root =
    format === "pretty"
      ? pino({ level, base: undefined }, prettyStream())
      : pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
  return root;
}

export function logger(name: string): Logger {
  return rootLogger().child({ name });
}
