// The interop `kubernetes` group: a real etcd and kube-apiserver (built from the Go module proxy by
// build-kube.sh, never committed) on loopback with RBAC on, and against them the chart's
// `helm install` / `upgrade` / `rollback` (default values and every ci/*-values.yaml, each object
// accepted server-side) and the router's Kubernetes discovery (src/discovery/kubernetes.ts) with a
// token of the chart's own ServiceAccount: engines appearing, turning unready, deleted, across an
// API-server restart and a watch whose resourceVersion has been compacted away (410 Gone, re-list),
// with every request it made allowed by the chart's Role (the audit log says so) and nothing more
// granted; then the endpoint picker of a router run with the chart's gateway args, naming the pods an
// InferencePool selects through the same changes and a forced re-list. There is no controller-manager
// or scheduler: the test writes pods and their status itself.
import { spawnSync } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { request as httpsRequest } from "node:https";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";

const HERE = import.meta.dirname;

/** CRDs the chart renders objects of; real ones are taken from deploy/ci/fetch-crds.sh's cache when there. */
const CRDS = [
  { group: "inference.networking.k8s.io", version: "v1", kind: "InferencePool", plural: "inferencepools" },
  { group: "gateway.networking.k8s.io", version: "v1", kind: "HTTPRoute", plural: "httproutes" },
  { group: "leaderworkerset.x-k8s.io", version: "v1", kind: "LeaderWorkerSet", plural: "leaderworkersets" },
  { group: "ray.io", version: "v1", kind: "RayCluster", plural: "rayclusters" },
  { group: "monitoring.coreos.com", version: "v1", kind: "ServiceMonitor", plural: "servicemonitors" },
  { group: "monitoring.coreos.com", version: "v1", kind: "PrometheusRule", plural: "prometheusrules" },
  { group: "keda.sh", version: "v1alpha1", kind: "ScaledObject", plural: "scaledobjects" },
];

function which(cmd, extra = []) {
  for (const dir of [...(process.env.PATH ?? "").split(delimiter), ...extra]) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 120_000, ...opts });
  if (r.status !== 0)
    throw new Error(
      `${cmd} ${args.slice(0, 6).join(" ")} failed (${r.status}): ${(r.stderr || r.stdout || String(r.error)).slice(-1500)}`,
    );
  return r.stdout;
}

/** The pair of binaries, built once into the peers cache. */
function binaries(peers, log) {
  const t0 = Date.now();
  const out = sh("bash", [join(HERE, "build-kube.sh"), join(peers, "kube")], { timeout: 3600_000 })
    .trim()
    .split("\n");
  const [etcd, apiserver] = out.slice(-2);
  const secs = (Date.now() - t0) / 1000;
  if (secs > 5) log(`built etcd and kube-apiserver in ${secs.toFixed(0)} s`);
  return { etcd, apiserver };
}

/** An HTTPS request to the API server (its self-signed serving certificate is not checked). */
function api(port, token, method, path, body, contentType = "application/json") {
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
function relay(apiPort) {
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

export async function kubernetesChecks(h) {
  const { start, stop, check, until, freePort, log, RUN, ROOT, PEERS } = h;
  const dir = join(RUN, "kube");
  mkdirSync(join(dir, "certs"), { recursive: true });
  const toolsBin = join(homedir(), ".cache", "switchyard-tools", "bin");
  const helm = process.env.HELM ?? which("helm", [toolsBin]);
  const kubectl = which("kubectl", [toolsBin]);

  let bins;
  await check(
    "etcd v3.6 and kube-apiserver v1.34 built from the Go module proxy (once, into the peers cache)",
    async () => {
      bins = binaries(PEERS, log);
      const ev = sh(bins.etcd, ["--version"]).split("\n")[0];
      const kv = sh(bins.apiserver, ["--version"]).trim();
      return `${ev}; ${kv}`;
    },
  );
  if (!bins) return;

  // credentials made at run time: the service-account signing key and the test's admin token
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(join(dir, "sa.key"), privateKey.export({ type: "pkcs8", format: "pem" }));
  writeFileSync(join(dir, "sa.pub"), publicKey.export({ type: "spki", format: "pem" }));
  const admin = randomBytes(24).toString("hex");
  writeFileSync(join(dir, "tokens.csv"), `${admin},switchyard-admin,1,"system:masters"\n`);
  writeFileSync(
    join(dir, "audit-policy.yaml"),
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n",
  );
  const [etcdPort, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcdArgs = [
    "--name",
    "switchyard-interop",
    "--data-dir",
    join(dir, "etcd"),
    "--listen-client-urls",
    `http://127.0.0.1:${etcdPort}`,
    "--advertise-client-urls",
    `http://127.0.0.1:${etcdPort}`,
    "--listen-peer-urls",
    `http://127.0.0.1:${etcdPeer}`,
    "--initial-advertise-peer-urls",
    `http://127.0.0.1:${etcdPeer}`,
    "--initial-cluster",
    `switchyard-interop=http://127.0.0.1:${etcdPeer}`,
  ];
  const apiArgs = [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    `--secure-port=${apiPort}`,
    `--cert-dir=${join(dir, "certs")}`,
    "--authorization-mode=RBAC,Node",
    `--token-auth-file=${join(dir, "tokens.csv")}`,
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    `--service-account-key-file=${join(dir, "sa.pub")}`,
    `--service-account-signing-key-file=${join(dir, "sa.key")}`,
    "--service-cluster-ip-range=10.96.0.0/16",
    `--audit-log-path=${join(dir, "audit.log")}`,
    `--audit-policy-file=${join(dir, "audit-policy.yaml")}`,
  ];
  const kube = (args, opts = {}) => sh(kubectl, ["--kubeconfig", join(dir, "kubeconfig"), ...args], opts);
  writeFileSync(
    join(dir, "kubeconfig"),
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "t", cluster: { server: `https://127.0.0.1:${apiPort}`, "insecure-skip-tls-verify": true } },
      ],
      users: [{ name: "admin", user: { token: admin } }],
      contexts: [{ name: "t", context: { cluster: "t", user: "admin" } }],
      "current-context": "t",
    }),
  );
  const ready = async () => (await api(apiPort, admin, "GET", "/readyz")).status === 200;
  let etcd;
  let apiserver;
  const startApi = () => (apiserver = start("kube-apiserver", bins.apiserver, apiArgs));

  const ok = await (async () => {
    let up = false;
    await check("etcd + kube-apiserver serve on loopback with RBAC,Node authorization", async () => {
      etcd = start("etcd", bins.etcd, etcdArgs);
      startApi();
      const t0 = Date.now();
      await until("kube-apiserver /readyz", ready, 180_000, apiserver);
      const v = (await api(apiPort, admin, "GET", "/version")).json();
      up = true;
      return `ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${v.gitVersion}`;
    });
    return up;
  })();
  if (!ok) return;

  try {
    await check("the CRDs the chart uses are applied and established", async () => {
      const cacheDir =
        process.env.SWITCHYARD_CRD_DIR ?? join(homedir(), ".cache", "switchyard-tools", "crds");
      const real = existsSync(cacheDir) ? readdirSync(cacheDir).filter((f) => f.endsWith(".yaml")) : [];
      const used = [];
      for (const c of CRDS) {
        const file = real.find((f) => f.startsWith(`${c.group}_${c.plural}.`));
        if (file) {
          kube(["apply", "--server-side", "-f", join(cacheDir, file)]);
          used.push(`${c.kind} (published)`);
          continue;
        }
        const crd = {
          apiVersion: "apiextensions.k8s.io/v1",
          kind: "CustomResourceDefinition",
          metadata: { name: `${c.plural}.${c.group}` },
          spec: {
            group: c.group,
            scope: "Namespaced",
            names: {
              plural: c.plural,
              singular: c.kind.toLowerCase(),
              kind: c.kind,
              listKind: `${c.kind}List`,
            },
            versions: [
              {
                name: c.version,
                served: true,
                storage: true,
                schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
              },
            ],
          },
        };
        const f = join(dir, `crd-${c.plural}.json`);
        writeFileSync(f, JSON.stringify(crd));
        kube(["apply", "--server-side", "-f", f]);
        used.push(`${c.kind} (minimal)`);
      }
      kube(["wait", "--for=condition=Established", "crd", "--all", "--timeout=120s"]);
      return used.join(", ");
    });

    // the chart: default values, then every ci/*-values.yaml, each its own release and namespace
    const chart = join(ROOT, "deploy", "helm", "switchyard");
    const valueSets = [
      ["default", undefined],
      ...readdirSync(join(chart, "ci"))
        .filter((f) => f.endsWith("-values.yaml"))
        .sort()
        .map((f) => [f.replace(/-values\.yaml$/, ""), join(chart, "ci", f)]),
    ];
    const helmEnv = {
      ...process.env,
      KUBECONFIG: join(dir, "kubeconfig"),
      HELM_CACHE_HOME: join(dir, "helm-cache"),
      HELM_CONFIG_HOME: join(dir, "helm-config"),
      HELM_DATA_HOME: join(dir, "helm-data"),
    };
    const helmRun = (args) => sh(helm, args, { env: helmEnv, timeout: 300_000 });
    for (const [name, file] of valueSets) {
      await check(
        `helm install, upgrade and rollback of the chart with ${name === "default" ? "its default values" : `ci/${name}-values.yaml`}: every object accepted server-side`,
        async () => {
          if (!helm) throw new Error("helm not found (deploy/ci/install-k8s-tools.sh installs it)");
          const ns = `sy-${name}`.slice(0, 40);
          const rel = "sy";
          kube(["create", "namespace", ns]);
          kube(["create", "serviceaccount", "default", "-n", ns]);
          // Secrets the ci values name (a user creates them before installing)
          if (file && readFileSync(file, "utf8").includes("hf-token"))
            kube(["create", "secret", "generic", "hf-token", "-n", ns, "--from-literal=token=x"]);
          const f = file ? ["-f", file] : [];
          helmRun(["install", rel, chart, "-n", ns, ...f]);
          const manifest = helmRun(["get", "manifest", rel, "-n", ns]);
          const objects = (manifest.match(/^kind: /gm) ?? []).length;
          // every object the release holds exists on the server
          writeFileSync(join(dir, `${name}-manifest.yaml`), manifest);
          const got = kube(["get", "-n", ns, "-f", join(dir, `${name}-manifest.yaml`), "-o", "name"])
            .trim()
            .split("\n").length;
          if (got !== objects) throw new Error(`${objects} objects rendered, ${got} on the server`);
          helmRun(["upgrade", rel, chart, "-n", ns, ...f, "--set", "router.engineDrainSeconds=29"]);
          helmRun(["rollback", rel, "1", "-n", ns]);
          const hist = JSON.parse(helmRun(["history", rel, "-n", ns, "-o", "json"]));
          const statuses = hist.map((r) => `${r.revision}:${r.status}`).join(" ");
          if (hist.length !== 3 || hist[2].status !== "deployed") throw new Error(`history ${statuses}`);
          return `${objects} objects; history ${statuses}`;
        },
      );
    }

    const withApi = {
      ...h,
      dir,
      kube,
      apiPort,
      admin,
      etcdPort,
      restartApi: async () => {
        await stop(apiserver);
        startApi();
        await until("kube-apiserver /readyz after restart", ready, 180_000, apiserver);
      },
    };
    await discoveryChecks(withApi);
    await eppChecks(withApi);
  } finally {
    if (apiserver) await stop(apiserver);
    if (etcd) await stop(etcd);
  }
}

async function discoveryChecks(h) {
  const { check, until, ROOT, dir, kube, apiPort, admin, etcdPort, restartApi, sleep } = h;
  const ns = "sy-default";
  const rel = "sy";
  const { KubernetesDiscovery } = await import(join(ROOT, "dist/src/discovery/kubernetes.js"));
  const { sa, token } = routerToken(kube, ns);
  writeFileSync(join(dir, "router-token"), token);
  const r = relay(apiPort);
  const restart = async () => {
    r.setDown(true);
    await restartApi();
    r.setDown(false);
  };
  const relayPort = await r.listen();
  // what the router holds: every add and removal, to tell a lost or duplicated engine
  const held = new Map();
  const trace = [];
  const sink = {
    upsert(spec) {
      trace.push(`+${spec.url}`);
      held.set(spec.url, spec);
    },
    remove(url) {
      trace.push(`-${url}`);
      held.delete(url);
    },
  };
  const d = new KubernetesDiscovery({
    apiUrl: `http://127.0.0.1:${relayPort}`,
    namespace: ns,
    // the chart's own selector (templates/router.yaml)
    selector: `switchyard.dev/engine=true,app.kubernetes.io/instance=${rel}`,
    tokenFile: join(dir, "router-token"),
    minBackoff: 100,
    maxBackoff: 1000,
  });
  const pod = (i) => ({
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: `engine-${i}`,
      namespace: ns,
      labels: {
        "switchyard.dev/engine": "true",
        "app.kubernetes.io/instance": rel,
        "switchyard.dev/model": "m",
      },
    },
    spec: {
      automountServiceAccountToken: false,
      containers: [{ name: "engine", image: "engine:test", ports: [{ name: "http", containerPort: 8000 }] }],
    },
  });
  const setReady = async (i, ready) => {
    const res = await api(
      apiPort,
      admin,
      "PATCH",
      `/api/v1/namespaces/${ns}/pods/engine-${i}/status`,
      {
        status: {
          phase: "Running",
          podIP: `127.0.1.${i}`,
          podIPs: [{ ip: `127.0.1.${i}` }],
          conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
        },
      },
      "application/merge-patch+json",
    );
    if (res.status !== 200) throw new Error(`status patch ${res.status}: ${res.text.slice(0, 300)}`);
  };
  const create = async (i) => {
    const res = await api(apiPort, admin, "POST", `/api/v1/namespaces/${ns}/pods`, pod(i));
    if (res.status !== 201) throw new Error(`create pod ${res.status}: ${res.text.slice(0, 300)}`);
    await setReady(i, true);
  };
  const del = async (i) => {
    const res = await api(
      apiPort,
      admin,
      "DELETE",
      `/api/v1/namespaces/${ns}/pods/engine-${i}?gracePeriodSeconds=0`,
    );
    if (res.status !== 200) throw new Error(`delete pod ${res.status}: ${res.text.slice(0, 300)}`);
  };
  const urls = () => [...held.keys()].sort().join(" ");
  const expect = async (what, ips) => {
    const want = ips
      .map((i) => `http://127.0.1.${i}:8000`)
      .sort()
      .join(" ");
    await until(what, async () => urls() === want, 60_000);
  };
  /** removals since trace index `from` of engines that stayed ready all along: a lost engine */
  const lost = (from, kept) =>
    trace.slice(from).filter((t) => kept.some((i) => t === `-http://127.0.1.${i}:8000`));

  try {
    d.start(sink);
    await check(
      "discovery with the chart's ServiceAccount token: 3 engines appear, one turns unready, one is deleted",
      async () => {
        await d.whenSynced();
        for (const i of [1, 2, 3]) await create(i);
        await expect("3 engines", [1, 2, 3]);
        await setReady(2, false);
        await expect("engine 2 unready", [1, 3]);
        await del(3);
        await expect("engine 3 deleted", [1]);
        return `engines: ${urls()}; ${d.stats.lists} lists, ${d.stats.watches} watches, ${d.stats.events} events`;
      },
    );
    await check("discovery across a kube-apiserver restart: no engine lost or duplicated", async () => {
      const lists = d.stats.lists;
      const from = trace.length;
      await restart();
      await setReady(2, true);
      await create(4);
      await expect("engines 1, 2, 4 after the restart", [1, 2, 4]);
      const bad = lost(from, [1]);
      if (bad.length) throw new Error(`an engine that stayed ready was dropped: ${bad.join(", ")}`);
      return `engines: ${urls()}; re-listed ${d.stats.lists - lists} time(s), ${d.stats.errors} failed attempts while it was down`;
    });
    await check(
      "discovery after a watch from a compacted resourceVersion (410 Gone): re-lists, no engine lost or duplicated",
      async () => {
        const expired = d.stats.expired;
        const from = trace.length;
        const held1 = r.holdNextWatch();
        r.cutWatches(); // the discovery re-lists, then asks to watch from that list's resourceVersion
        await held1.arrived;
        // meanwhile: changes the held watch would miss, and etcd compacted past its resourceVersion
        await del(1);
        await create(5);
        await setReady(4, false);
        await restart(); // the new watch cache starts after the list's resourceVersion
        const rev = JSON.parse(
          await (
            await fetch(`http://127.0.0.1:${etcdPort}/v3/kv/range`, {
              method: "POST",
              body: JSON.stringify({ key: Buffer.from("/").toString("base64") }),
            })
          ).text(),
        ).header.revision;
        const comp = await fetch(`http://127.0.0.1:${etcdPort}/v3/kv/compaction`, {
          method: "POST",
          body: JSON.stringify({ revision: rev, physical: true }),
        });
        if (!comp.ok) throw new Error(`etcd compaction: ${comp.status}`);
        held1.release();
        await until("the 410 and the re-list", async () => d.stats.expired > expired, 60_000);
        await expect("engines 2 and 5", [2, 5]);
        const bad = lost(from, [2]);
        if (bad.length) throw new Error(`an engine that stayed ready was dropped: ${bad.join(", ")}`);
        return `watch expired ${d.stats.expired - expired} time(s) (etcd compacted at revision ${rev}); engines: ${urls()}`;
      },
    );
  } finally {
    await d.stop();
    await r.close();
  }

  await check(
    "every request of the router's discovery carried the chart's ServiceAccount token and was allowed by its Role; nothing more is granted",
    async () => {
      const bearer = `Bearer ${token}`;
      const other = r.seen.filter((s) => s.auth !== bearer);
      if (other.length) throw new Error(`${other.length} requests with another credential: ${other[0].url}`);
      const refused = r.seen.filter((x) => x.status === 401 || x.status === 403);
      if (refused.length)
        throw new Error(`${refused.length} answered ${refused[0].status}: ${refused[0].url}`);
      const { user, events } = await auditedByRole(dir, ns, sa, sleep);
      // what the Role does not grant is refused
      const secrets = await api(apiPort, token, "GET", `/api/v1/namespaces/${ns}/secrets`);
      const other_ns = await api(apiPort, token, "GET", "/api/v1/namespaces/default/pods");
      const patch = await api(
        apiPort,
        token,
        "PATCH",
        `/api/v1/namespaces/${ns}/pods/engine-2`,
        { metadata: { labels: { x: "y" } } },
        "application/merge-patch+json",
      );
      const answers = [secrets.status, other_ns.status, patch.status];
      if (answers.some((s) => s !== 403)) throw new Error(`expected 403s, got ${answers.join(", ")}`);
      return `${r.seen.length} requests through the relay, ${events.length} audit events for ${user}, all allowed (${[...new Set(events.map((e) => e.verb))].join(", ")}); secrets, another namespace's pods and a pod patch answered 403`;
    },
  );
}

/** The audit log's verdict on every request one ServiceAccount made: allowed, and by the chart's Role. */
async function auditedByRole(dir, ns, sa, sleep) {
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
function routerToken(kube, ns) {
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

/**
 * The endpoint picker (`--epp-port`) of a router process run with the args of the Deployment the
 * chart installed with ci/gateway-values.yaml, against the real API server with that release's
 * ServiceAccount token. The picker's endpoints are the router's Kubernetes discovery's engines (it
 * does not read the InferencePool object: the chart gives the pool the discovery's selector); the test
 * writes an InferencePool with that selector and a targetPort, engine pods on loopback addresses
 * serving simulated engines there, and checks after each change that the picker (asked through the
 * ext_proc client built from Envoy's published protos, one subset hint per endpoint) names exactly the
 * ready pods the pool selects, across a forced re-list (410 Gone), never dropping or duplicating one.
 */
async function eppChecks(h) {
  const {
    start,
    stop,
    check,
    until,
    freePort,
    sleep,
    ROOT,
    dir,
    kube,
    apiPort,
    admin,
    etcdPort,
    restartApi,
  } = h;
  const ns = "sy-gateway";
  const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
  const { startSim } = await import(join(ROOT, "dist/src/sim/app.js"));
  const { parseSimArgs } = await import(join(ROOT, "dist/src/sim/config/config.js"));
  const { EppClient, requestHeaders, requestBody, setHeader } = await import(
    join(ROOT, "dist/test/epp/client.js")
  );
  const { sa, token } = routerToken(kube, ns);
  writeFileSync(join(dir, "epp-router-token"), token);
  const r = relay(apiPort);
  const relayPort = await r.listen();
  const [httpPort, eppPort, target] = [await freePort(), await freePort(), await freePort()];
  // pod i is at 127.0.0.(10+i): distinct addresses on loopback, all serving on the pool's targetPort
  const ip = (i) => `127.0.0.${10 + i}`;
  const ep = (i) => `${ip(i)}:${target}`;
  const sims = new Map();
  let router;
  let client;
  const restart = async () => {
    r.setDown(true);
    await restartApi();
    r.setDown(false);
  };

  const chartPool = JSON.parse(kube(["get", "inferencepool", "-n", ns, "-o", "json"])).items[0];
  const deploy = JSON.parse(
    kube(["get", "deployment", "-n", ns, "-l", "app.kubernetes.io/component=router", "-o", "json"]),
  ).items[0];
  const container =
    deploy.spec.template.spec.containers.find((c) => c.name === "router") ??
    deploy.spec.template.spec.containers[0];
  const selectorArg = container.args.find((a) => a.startsWith("--k8s-selector="))?.slice(15);
  const poolLabels = chartPool.spec.selector.matchLabels;
  const poolSelector = Object.entries(poolLabels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  const pool = {
    apiVersion: "inference.networking.k8s.io/v1",
    kind: "InferencePool",
    metadata: { name: "epp-check", namespace: ns },
    spec: {
      selector: { matchLabels: poolLabels },
      targetPorts: [{ number: target }],
      endpointPickerRef: chartPool.spec.endpointPickerRef,
    },
  };

  const pod = (i) => ({
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: `engine-${i}`,
      namespace: ns,
      labels: { ...poolLabels, "switchyard.dev/model": "llama-3-1-8b" },
    },
    spec: {
      automountServiceAccountToken: false,
      containers: [
        { name: "engine", image: "engine:test", ports: [{ name: "http", containerPort: target }] },
      ],
    },
  });
  const setReady = async (i, ready) => {
    const res = await api(
      apiPort,
      admin,
      "PATCH",
      `/api/v1/namespaces/${ns}/pods/engine-${i}/status`,
      {
        status: {
          phase: "Running",
          podIP: ip(i),
          podIPs: [{ ip: ip(i) }],
          conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
        },
      },
      "application/merge-patch+json",
    );
    if (res.status !== 200) throw new Error(`status patch ${res.status}: ${res.text.slice(0, 300)}`);
  };
  const create = async (i) => {
    if (!sims.has(i))
      sims.set(
        i,
        await startSim(
          parseSimArgs([MODEL, "--host", ip(i), "--port", String(target), "--time-scale", "0.05"], {}),
        ),
      );
    const res = await api(apiPort, admin, "POST", `/api/v1/namespaces/${ns}/pods`, pod(i));
    if (res.status !== 201) throw new Error(`create pod ${res.status}: ${res.text.slice(0, 300)}`);
    await setReady(i, true);
  };
  const del = async (i) => {
    const res = await api(
      apiPort,
      admin,
      "DELETE",
      `/api/v1/namespaces/${ns}/pods/engine-${i}?gracePeriodSeconds=0`,
    );
    if (res.status !== 200) throw new Error(`delete pod ${res.status}: ${res.text.slice(0, 300)}`);
  };

  /** the ready pods the InferencePool selects, as the gateway would address them: ip:targetPort */
  const poolEndpoints = async () => {
    const p = (
      await api(
        apiPort,
        admin,
        "GET",
        `/apis/inference.networking.k8s.io/v1/namespaces/${ns}/inferencepools/epp-check`,
      )
    ).json();
    const sel = encodeURIComponent(
      Object.entries(p.spec.selector.matchLabels)
        .map(([k, v]) => `${k}=${v}`)
        .join(","),
    );
    const pods = (
      await api(apiPort, admin, "GET", `/api/v1/namespaces/${ns}/pods?labelSelector=${sel}`)
    ).json();
    return pods.items
      .filter(
        (x) =>
          x.status?.podIP && x.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
      )
      .map((x) => `${x.status.podIP}:${p.spec.targetPorts[0].number}`)
      .sort();
  };
  let probes = 0;
  /** whether the picker names endpoint `e` when the gateway's subset hint allows only it */
  const picks = async (e) => {
    const id = `p${++probes}`;
    await client.open(id);
    await client.send(
      id,
      requestHeaders(
        { ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json" },
        { subset: [e] },
      ),
    );
    await client.send(
      id,
      requestBody(
        JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hello" }], max_tokens: 1 }),
      ),
    );
    const reply = await client.recv(id);
    await client.cancel(id);
    const common = reply.msg?.requestHeaders?.response;
    if (common) {
      const got = setHeader(common, "x-gateway-destination-endpoint");
      if (got !== e) throw new Error(`subset [${e}] answered ${got}`);
      return true;
    }
    if (reply.msg?.immediateResponse?.status?.code === "ServiceUnavailable") return false;
    throw new Error(`unexpected picker reply ${JSON.stringify(reply).slice(0, 300)}`);
  };
  const pickerSet = async () => {
    const out = [];
    for (let i = 1; i <= 5; i++) if (await picks(ep(i))) out.push(ep(i));
    return out.sort();
  };
  /** the router's engines not draining, as ip:port (its GET /engines) */
  const routerEngines = async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/engines`);
    const list = (await res.json()).engines.filter((e) => e.state !== "draining" && e.healthy);
    return list.map((e) => new URL(e.url).host).sort();
  };
  let last = "";
  /** waits until the picker, the router's engines and the pool's ready pods all equal `ips` */
  const expect = async (what, ids) => {
    const want = ids.map(ep).sort().join(" ");
    await until(
      what,
      async () => {
        const [p, e, k] = [await pickerSet(), await routerEngines(), await poolEndpoints()];
        last = `picker [${p.join(" ")}], router [${e.join(" ")}], pool [${k.join(" ")}]`;
        return p.join(" ") === want && e.join(" ") === want && k.join(" ") === want;
      },
      60_000,
    ).catch((err) => {
      throw new Error(`${err.message}: ${last}`);
    });
  };
  // a watch over the router's /engines meanwhile: an engine that stayed ready must never go missing,
  // and none may be listed twice
  const watchEngines = (kept) => {
    let on = true;
    const bad = [];
    let samples = 0;
    const done = (async () => {
      while (on) {
        try {
          const res = await fetch(`http://127.0.0.1:${httpPort}/engines`);
          const urls = (await res.json()).engines.map((e) => new URL(e.url).host);
          samples++;
          if (new Set(urls).size !== urls.length) bad.push(`duplicated: ${urls.join(" ")}`);
          for (const i of kept) if (!urls.includes(ep(i))) bad.push(`${ep(i)} missing`);
        } catch (err) {
          bad.push(`GET /engines: ${err.message}`);
        }
        await sleep(100);
      }
    })();
    return async () => {
      on = false;
      await done;
      return { bad, samples };
    };
  };

  try {
    await check(
      "the endpoint picker (router --epp-port, the chart's gateway args and ServiceAccount token): names the pods an InferencePool selects as 3 appear, one turns unready, one is deleted",
      async () => {
        const sorted = (sel) => (sel ?? "").split(",").sort().join(",");
        if (sorted(selectorArg) !== sorted(poolSelector))
          throw new Error(`the chart's pool selects ${poolSelector}, its router discovers ${selectorArg}`);
        const wrote = await api(
          apiPort,
          admin,
          "POST",
          `/apis/inference.networking.k8s.io/v1/namespaces/${ns}/inferencepools`,
          pool,
        );
        if (wrote.status !== 201)
          throw new Error(`create InferencePool ${wrote.status}: ${wrote.text.slice(0, 300)}`);
        sh("bash", [join(ROOT, ".ci", "build-epp-client.sh")], { timeout: 600_000 });
        const bin = join(homedir(), ".cache", "switchyard-tools", "bin", "switchyard-epp-client");
        const args = container.args
          .filter((a) => !/^--(host|port|epp-port|k8s-namespace)=/.test(a))
          .concat([
            "--host=127.0.0.1",
            `--port=${httpPort}`,
            `--epp-port=${eppPort}`,
            `--k8s-namespace=${ns}`,
            `--k8s-api-url=http://127.0.0.1:${relayPort}`,
            `--k8s-token-file=${join(dir, "epp-router-token")}`,
          ]);
        const env = Object.fromEntries(
          (container.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value]),
        );
        router = start("epp-router", process.execPath, [join(ROOT, "dist/src/cli/main.js"), ...args], {
          ...env,
          SWITCHYARD_LOG_LEVEL: "info", // its discovery logs the 410 it re-lists on
        });
        await until(
          "the router's HTTP port",
          async () => (await fetch(`http://127.0.0.1:${httpPort}/engines`)).ok,
          60_000,
          router,
        );
        client = EppClient.start(bin, `127.0.0.1:${eppPort}`);
        for (const i of [1, 2, 3]) await create(i);
        await expect("3 endpoints", [1, 2, 3]);
        await setReady(2, false);
        await expect("endpoint 2 unready", [1, 3]);
        await del(3);
        await expect("endpoint 3 deleted", [1]);
        return `selector ${poolSelector}, targetPort ${target}; ${last}`;
      },
    );
    await check(
      "the endpoint picker after a watch from a compacted resourceVersion (410 Gone): re-lists, names the pool's ready pods, none lost or duplicated",
      async () => {
        if (!client) throw new Error("no picker (the previous check failed)");
        await setReady(2, true);
        await create(4);
        await expect("endpoints 1, 2, 4", [1, 2, 4]);
        const watching = watchEngines([2]);
        const held1 = r.holdNextWatch();
        r.cutWatches(); // the discovery re-lists, then asks to watch from that list's resourceVersion
        await held1.arrived;
        await del(1);
        await create(5);
        await setReady(4, false);
        await restart(); // the new watch cache starts after the list's resourceVersion
        const rev = JSON.parse(
          await (
            await fetch(`http://127.0.0.1:${etcdPort}/v3/kv/range`, {
              method: "POST",
              body: JSON.stringify({ key: Buffer.from("/").toString("base64") }),
            })
          ).text(),
        ).header.revision;
        const comp = await fetch(`http://127.0.0.1:${etcdPort}/v3/kv/compaction`, {
          method: "POST",
          body: JSON.stringify({ revision: rev, physical: true }),
        });
        if (!comp.ok) throw new Error(`etcd compaction: ${comp.status}`);
        const lists = r.seen.filter((s) => s.method === "GET" && !/[?&]watch=true/.test(s.url)).length;
        held1.release();
        await expect("endpoints 2 and 5", [2, 5]);
        const relists =
          r.seen.filter((s) => s.method === "GET" && !/[?&]watch=true/.test(s.url)).length - lists;
        const { bad, samples } = await watching();
        if (bad.length) throw new Error(`${bad.length} bad samples of ${samples}: ${bad[0]}`);
        if (relists < 1) throw new Error("no re-list after the compacted watch");
        const gone = /"reason":"(too old resource version[^"]*)","msg":"watch expired/.exec(router.log());
        if (!gone) throw new Error("the router's discovery logged no expired watch");
        return `etcd compacted at revision ${rev}, the watch expired (${gone[1]}), ${relists} re-list(s); ${last}; ${samples} samples of GET /engines, endpoint 2 never missing, none duplicated`;
      },
    );
  } finally {
    if (client) await client.stop();
    if (router) await stop(router);
    for (const s of sims.values()) await s.close();
    await r.close();
  }

  await check(
    "every request of the picker's router carried the gateway release's ServiceAccount token and was allowed by its Role",
    async () => {
      const bearer = `Bearer ${token}`;
      const other = r.seen.filter((s) => s.auth !== bearer);
      if (other.length) throw new Error(`${other.length} requests with another credential: ${other[0].url}`);
      const refused = r.seen.filter((x) => x.status === 401 || x.status === 403);
      if (refused.length)
        throw new Error(`${refused.length} answered ${refused[0].status}: ${refused[0].url}`);
      const { user, events } = await auditedByRole(dir, ns, sa, sleep);
      return `${r.seen.length} requests through the relay, ${events.length} audit events for ${user}, all allowed (${[...new Set(events.map((e) => e.verb))].join(", ")})`;
    },
  );
}
