// What the interop `kubernetes` group's checks share: running the tools, HTTPS requests to the real API
// server, the recording relay between a router and it, a ServiceAccount's token and the audit log's
// verdict on what that account did (kubernetes.mjs, kubernetes-epp.mjs).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { request as httpsRequest } from "node:https";
import { delimiter, join } from "node:path";

export function which(cmd, extra = []) {
  for (const dir of [...(process.env.PATH ?? "").split(delimiter), ...extra]) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 120_000, ...opts });
  if (r.status !== 0)
    throw new Error(
      `${cmd} ${args.slice(0, 6).join(" ")} failed (${r.status}): ${(r.stderr || r.stdout || String(r.error)).slice(-1500)}`,
    );
  return r.stdout;
}

/** An HTTPS request to the API server (its self-signed serving certificate is not checked). */
export function api(port, token, method, path, body, contentType = "application/json") {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        rejectUnauthorized: false,
        headers: {
          authorization: `Bearer ${token}`,
          accept: "application/json",
          ...(data !== undefined ? { "content-type": contentType } : {}),
        },
      },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode, text, json: () => JSON.parse(text) }));
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

/**
 * A loopback HTTP → HTTPS relay in front of the API server for the discovery under test: it records
 * every request's path and credential (the RBAC check reads them), can hold the next watch request
 * (so the test can compact its resourceVersion away first) and can cut the watches in flight.
 */
export function relay(apiPort) {
  const seen = [];
  const watches = new Set();
  let hold;
  let down = false;
  const server = createHttpServer((req, res) => {
    // as the kubernetes Service does, an API server that is not ready gets no traffic
    if (down) {
      res.writeHead(503, { "content-type": "text/plain" }).end("API server not ready\n");
      return;
    }
    const entry = { method: req.method, url: req.url, auth: req.headers.authorization ?? "", status: 0 };
    seen.push(entry);
    const isWatch = /[?&]watch=true/.test(req.url ?? "");
    const forward = () => {
      const up = httpsRequest(
        {
          host: "127.0.0.1",
          port: apiPort,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: `127.0.0.1:${apiPort}` },
          rejectUnauthorized: false,
        },
        (r) => {
          entry.status = r.statusCode ?? 0;
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
          // the API server went away mid-response (a restart): the client sees its connection close
          r.on("close", () => {
            if (!r.complete) res.destroy();
          });
          if (isWatch) {
            watches.add(res);
            res.on("close", () => watches.delete(res));
          }
        },
      );
      up.on("error", (err) => {
        if (!res.headersSent) res.writeHead(503, { "content-type": "text/plain" });
        res.end(String(err.message));
      });
      req.pipe(up);
    };
    if (isWatch && hold) {
      const h = hold;
      hold = undefined;
      h.arrived();
      void h.released.then(forward);
    } else forward();
  });
  return {
    seen,
    listen: () => new Promise((r) => server.listen(0, "127.0.0.1", () => r(server.address().port))),
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))),
    /** Holds the next watch request; resolves `arrived` when it comes, forwards it on `release()`. */
    holdNextWatch() {
      let arrived;
      let release;
      const h = {
        arrivedP: new Promise((r) => (arrived = r)),
        released: new Promise((r) => (release = r)),
      };
      hold = { arrived, released: h.released };
      return { arrived: h.arrivedP, release };
    },
    /** while true, requests are answered 503 (the API server behind is restarting) */
    setDown(v) {
      down = v;
    },
    cutWatches() {
      for (const w of watches) w.destroy();
    },
  };
}

/** The audit log's verdict on every request one ServiceAccount made: allowed, and by the chart's Role. */
export async function auditedByRole(dir, ns, sa, sleep) {
  const user = `system:serviceaccount:${ns}:${sa}`;
  await sleep(1000); // the audit backend writes in batches
  const events = readFileSync(join(dir, "audit.log"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => e.user?.username === user && e.stage === "ResponseComplete");
  const denied = events.filter((e) => e.annotations?.["authorization.k8s.io/decision"] !== "allow");
  if (denied.length)
    throw new Error(
      `${denied.length} denied: ${denied[0].verb} ${denied[0].requestURI} (${denied[0].annotations?.["authorization.k8s.io/reason"]})`,
    );
  const role = `of Role "${sa}" to ServiceAccount "${sa}/${ns}"`;
  const byOther = events.filter((e) => !e.annotations?.["authorization.k8s.io/reason"]?.includes(role));
  if (byOther.length)
    throw new Error(
      `allowed by something else than the chart's Role: ${byOther[0].annotations?.["authorization.k8s.io/reason"]}`,
    );
  if (events.length === 0) throw new Error("no audit events for the ServiceAccount");
  return { user, events };
}

/** A token of the router ServiceAccount the chart made in `ns`. */
export function routerToken(kube, ns) {
  const sa = kube([
    "get",
    "serviceaccount",
    "-n",
    ns,
    "-l",
    "app.kubernetes.io/component=router",
    "-o",
    "jsonpath={.items[0].metadata.name}",
  ]).trim();
  return { sa, token: kube(["create", "token", sa, "-n", ns, "--duration=1h"]).trim() };
}
