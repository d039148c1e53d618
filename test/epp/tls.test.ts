// The endpoint picker's own transport: with `tlsCertFile`/`tlsKeyFile` it speaks TLS, and with
// `tlsClientCaFile` it admits only callers holding a certificate that CA signed (mutual TLS), so a
// picker reachable beyond the gateway still answers nobody else. Certificates are made with the
// openssl command line at test time (skipped where it is missing); the caller is @grpc/grpc-js,
// asking the standard health service.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { parseConfig } from "../../src/router/config/config.js";
import type { RunningRouter } from "../../src/router/index.js";
import { startFakeEngine, type FakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { skipForTool } from "../deploy/tools.js";
import { routerFor } from "../helpers/router.js";

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

function openssl(dir: string, args: string[]): void {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
  assert.equal(r.status, 0, `openssl ${args.join(" ")}: ${r.stderr}`);
}

/** A CA, a certificate it signs for `cn` (with the SANs given), under `dir`. */
function ca(dir: string, name: string): void {
  openssl(
    dir,
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${name}`].concat([
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
    ]),
  );
}

function signed(dir: string, caName: string, name: string, san: string): void {
  openssl(
    dir,
    ["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`, "-keyout", `${name}.key`].concat([
      "-out",
      `${name}.csr`,
    ]),
  );
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
  openssl(
    dir,
    ["x509", "-req", "-in", `${name}.csr`, "-CA", `${caName}.pem`, "-CAkey", `${caName}.key`].concat([
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.pem`,
    ]),
  );
}

/** grpc.health.v1 Check over the given credentials: the serving status, or the gRPC error's code. */
function check(port: number, creds: grpc.ChannelCredentials): Promise<number | string> {
  // by name: Node refuses an IP address as the TLS server name
  const client = new grpc.Client(`127.0.0.1:${port}`, creds, {
    "grpc.ssl_target_name_override": "localhost",
  });
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      { deadline: Date.now() + 20_000 },
      (err, res) => {
        client.close();
        // HealthCheckResponse: field 1 (status) as a varint
        resolve(err ? grpc.status[err.code] : res![1]!);
      },
    );
  });
}

describe("endpoint picker over TLS, with client certificates required when a CA is given", () => {
  let dir: string;
  let engine: FakeEngine;
  const routers: RunningRouter[] = [];
  const file = (n: string) => readFileSync(join(dir, n));

  before(() => {
    if (!hasOpenssl) return;
    dir = mkdtempSync(join(tmpdir(), "epp-tls-"));
    ca(dir, "ca");
    ca(dir, "rogue");
    signed(dir, "ca", "server", "DNS:localhost,IP:127.0.0.1");
    signed(dir, "ca", "gateway", "DNS:gateway");
    signed(dir, "rogue", "intruder", "DNS:intruder");
  });

  after(async () => {
    for (const r of routers) await r.close(500);
    await engine?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function picker(clientCa: boolean): Promise<number> {
    engine ??= await startFakeEngine();
    const r = await routerFor([engine.url], {
      epp: {
        port: 0,
        tlsCertFile: join(dir, "server.pem"),
        tlsKeyFile: join(dir, "server.key"),
        tlsClientCaFile: clientCa ? join(dir, "ca.pem") : undefined,
      },
    });
    routers.push(r);
    return r.eppPort!;
  }

  it("a client CA: the gateway's certificate is served; none, or one from another CA, is refused", async (t) => {
    if (!hasOpenssl) return skipForTool(t, "no openssl to make certificates");
    const port = await picker(true);
    const root = file("ca.pem");
    const SERVING = 1;
    assert.equal(
      await check(port, grpc.credentials.createSsl(root, file("gateway.key"), file("gateway.pem"))),
      SERVING,
    );
    assert.equal(await check(port, grpc.credentials.createSsl(root)), "UNAVAILABLE");
    assert.equal(
      await check(port, grpc.credentials.createSsl(root, file("intruder.key"), file("intruder.pem"))),
      "UNAVAILABLE",
    );
    assert.equal(await check(port, grpc.credentials.createInsecure()), "UNAVAILABLE", "no plaintext");
  });

  it("TLS without a client CA: any TLS caller is served, plaintext is not", async (t) => {
    if (!hasOpenssl) return skipForTool(t, "no openssl to make certificates");
    const port = await picker(false);
    assert.equal(await check(port, grpc.credentials.createSsl(file("ca.pem"))), 1);
    assert.equal(await check(port, grpc.credentials.createInsecure()), "UNAVAILABLE");
  });

  it("a client CA without a server certificate is a configuration error", () => {
    assert.throws(
      () => parseConfig({ backends: ["http://127.0.0.1:1"], epp: { port: 0, tlsClientCaFile: "/ca.pem" } }),
      /tlsClientCaFile needs tlsCertFile/,
    );
  });
});
