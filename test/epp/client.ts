// Drives switchyard-epp-client (test/epp/client/main.go: Envoy's published ext_proc Go bindings and
// grpc-go) from the tests: ext_proc messages are written in protojson, the canonical JSON of the
// published protos, and the Go side does the binary encoding. The binary is built by
// .ci/install-tools.sh into the tools cache, stamped with the hash of its sources; a stale or
// missing one is rebuilt here when Go is at hand (offline, from the module cache the install filled).
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { TestContext } from "node:test";
import { findTool, repoRoot, skipForTool, TOOLS_BIN } from "../deploy/tools.js";

const SOURCES = ["main.go", "go.mod", "go.sum"];

/** The hash .ci/install-tools.sh writes beside the binary: sha256 over the sources, in this order. */
export function clientSourceHash(): string {
  const dir = join(repoRoot(), "test", "epp", "client");
  const h = createHash("sha256");
  for (const f of SOURCES) h.update(readFileSync(join(dir, f)));
  return h.digest("hex");
}

/** The client binary, built here when the cached one is missing or stale; undefined = skip. */
export function clientBinary(t: TestContext): string | undefined {
  const bin = join(TOOLS_BIN, "switchyard-epp-client");
  const stamp = `${bin}.sum`;
  const want = clientSourceHash();
  if (existsSync(bin) && existsSync(stamp) && readFileSync(stamp, "utf8").trim() === want) return bin;
  const go = findTool("go") ?? (existsSync("/usr/local/go/bin/go") ? "/usr/local/go/bin/go" : undefined);
  if (go) {
    const r = spawnSync("bash", [join(repoRoot(), ".ci", "build-epp-client.sh")], {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, PATH: `${join(go, "..")}:${process.env.PATH ?? ""}` },
    });
    if (r.status === 0 && existsSync(bin)) return bin;
    skipForTool(t, `building switchyard-epp-client failed:\n${r.stdout}${r.stderr}`);
    return undefined;
  }
  skipForTool(
    t,
    `switchyard-epp-client not built and no Go toolchain: run .ci/install-tools.sh (cache ${join(homedir(), ".cache")})`,
  );
  return undefined;
}

export interface Reply {
  seq: number;
  ok?: boolean;
  eof?: boolean;
  timeout?: boolean;
  status?: string;
  error?: { code?: string; message: string };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  msg?: any;
}

export class EppClient {
  private seq = 0;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  private stderr = "";

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on("line", (line) => {
      const r = JSON.parse(line) as Reply;
      this.waiting.get(r.seq)?.(r);
      this.waiting.delete(r.seq);
    });
    child.stderr.on("data", (b: Buffer) => (this.stderr += b.toString()));
  }

  static start(bin: string, target: string): EppClient {
    return new EppClient(spawn(bin, [target], { stdio: ["pipe", "pipe", "pipe"] }));
  }

  private call(cmd: Record<string, unknown>): Promise<Reply> {
    const seq = ++this.seq;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no reply to ${JSON.stringify(cmd)}; client stderr: ${this.stderr}`)),
        120_000, // a hang guard, beyond any recv's own timeout
      );
      this.waiting.set(seq, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.child.stdin.write(JSON.stringify({ ...cmd, seq }) + "\n");
    });
  }

  async open(id: string): Promise<void> {
    const r = await this.call({ op: "open", id });
    if (!r.ok) throw new Error(`open ${id}: ${JSON.stringify(r.error)}`);
  }

  async send(id: string, msg: unknown): Promise<void> {
    const r = await this.call({ op: "send", id, msg });
    if (!r.ok) throw new Error(`send ${id}: ${JSON.stringify(r.error)}`);
  }

  /** the default is a hang guard; a short `timeoutMs` checks that nothing comes */
  recv(id: string, timeoutMs = 60_000): Promise<Reply> {
    return this.call({ op: "recv", id, timeoutMs });
  }

  async close(id: string): Promise<void> {
    await this.call({ op: "close", id });
  }

  async cancel(id: string): Promise<void> {
    await this.call({ op: "cancel", id });
  }

  health(service: string): Promise<Reply> {
    return this.call({ op: "health", service });
  }

  async stop(): Promise<void> {
    this.child.stdin.end();
    if (this.child.exitCode === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
        this.child.once("exit", () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

// ---- ext_proc messages in protojson ------------------------------------------------------------------

const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");

export function requestHeaders(
  headers: Record<string, string>,
  opts: { endOfStream?: boolean; subset?: unknown; protocolConfig?: Record<string, string> } = {},
): Record<string, unknown> {
  const msg: Record<string, unknown> = {
    requestHeaders: {
      headers: { headers: Object.entries(headers).map(([key, v]) => ({ key, rawValue: b64(v) })) },
      endOfStream: opts.endOfStream ?? false,
    },
  };
  if (opts.subset !== undefined)
    msg.metadataContext = {
      filterMetadata: { "envoy.lb.subset_hint": { "x-gateway-destination-endpoint-subset": opts.subset } },
    };
  if (opts.protocolConfig) msg.protocolConfig = opts.protocolConfig;
  return msg;
}

export function requestBody(body: string | Buffer, endOfStream = true): Record<string, unknown> {
  return { requestBody: { body: b64(body), endOfStream } };
}

export function responseHeaders(
  headers: Record<string, string>,
  opts: { endOfStream?: boolean; served?: string } = {},
): Record<string, unknown> {
  const msg: Record<string, unknown> = {
    responseHeaders: {
      headers: { headers: Object.entries(headers).map(([key, v]) => ({ key, rawValue: b64(v) })) },
      endOfStream: opts.endOfStream ?? false,
    },
  };
  if (opts.served)
    msg.metadataContext = {
      filterMetadata: { "envoy.lb": { "x-gateway-destination-endpoint-served": opts.served } },
    };
  return msg;
}

export function responseBody(body: string | Buffer, endOfStream = true): Record<string, unknown> {
  return { responseBody: { body: b64(body), endOfStream } };
}

/** The header a response mutation sets, decoded from protojson. */
export function setHeader(
  common: {
    headerMutation?: { setHeaders?: Array<{ header: { key: string; rawValue?: string; value?: string } }> };
  },
  name: string,
): string | undefined {
  for (const o of common?.headerMutation?.setHeaders ?? []) {
    if (o.header.key.toLowerCase() === name)
      return o.header.rawValue !== undefined
        ? Buffer.from(o.header.rawValue, "base64").toString()
        : o.header.value;
  }
  return undefined;
}
