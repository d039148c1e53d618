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
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { api, auditedByRole, relay, routerToken, sh, which } from "./kube-api.mjs";
import { eppChecks } from "./kubernetes-epp.mjs";

const HERE = import.meta.dirname;

/**
 * CRDs the chart renders objects of: the published ones from deploy/ci/fetch-crds.sh's cache (fetched
 * here when missing; KEDA's ScaledObject among them, so ci/autoscale-slo-values.yaml's SLO-mode
 * ScaledObject is checked by its real schema), a minimal schema for the rest (the Prometheus Operator's).
 */
const CRDS = [
  { group: "inference.networking.k8s.io", version: "v1", kind: "InferencePool", plural: "inferencepools" },
  { group: "gateway.networking.k8s.io", version: "v1", kind: "HTTPRoute", plural: "httproutes" },
  { group: "leaderworkerset.x-k8s.io", version: "v1", kind: "LeaderWorkerSet", plural: "leaderworkersets" },
  { group: "ray.io", version: "v1", kind: "RayCluster", plural: "rayclusters" },
  { group: "monitoring.coreos.com", version: "v1", kind: "ServiceMonitor", plural: "servicemonitors" },
  { group: "monitoring.coreos.com", version: "v1", kind: "PrometheusRule", plural: "prometheusrules" },
  { group: "keda.sh", version: "v1alpha1", kind: "ScaledObject", plural: "scaledobjects" },
];

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

export async function kubernetesChecks(h) {
  const { start, stop, check, until, freePort, log, RUN, ROOT, PEERS } = h;
  const dir = join(RUN, "kube");
  mkdirSync(join(dir, "certs"), { recursive: true });
  const toolsBin = process.env.SWITCHYARD_TOOLS_BIN ?? join(homedir(), ".cache", "switchyard-tools", "bin");
  const kubectl = which("kubectl", [toolsBin]);
  // helm and the published CRDs come from the Go module proxy, as the deploy tests' tools do
  // (deploy/ci/install-helm.sh, deploy/ci/fetch-crds.sh), each built or fetched once into a cache
  let helm = process.env.HELM ?? which("helm", [toolsBin]);
  await check("helm v3 (built once from the Go module proxy where none is installed)", async () => {
    if (!helm) {
      const t0 = Date.now();
      helm = sh("bash", [join(ROOT, "deploy", "ci", "install-helm.sh")], { timeout: 3600_000 })
        .trim()
        .split("\n")
        .pop();
      log(`built helm in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
    return sh(helm, ["version", "--short"]).trim();
  });
  const crdDir = process.env.SWITCHYARD_CRD_DIR ?? join(homedir(), ".cache", "switchyard-tools", "crds");
  await check(
    "the published LeaderWorkerSet, RayCluster, InferencePool, HTTPRoute and KEDA ScaledObject CRDs fetched from the Go module proxy (once)",
    async () => {
      sh("bash", [join(ROOT, "deploy", "ci", "fetch-crds.sh")], {
        timeout: 1800_000,
        env: { ...process.env, SWITCHYARD_CRD_DIR: crdDir },
      });
      return readFileSync(join(crdDir, "SOURCES"), "utf8").trim().split("\n").join("; ");
    },
  );

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
      const cacheDir = crdDir;
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
          metadata: {
            name: `${c.plural}.${c.group}`,
            // the API server refuses a CRD in a Kubernetes-owned group (*.k8s.io, *.kubernetes.io)
            // without this annotation; published CRDs carry their API review's URL
            ...(/(^|\.)(k8s|kubernetes)\.io$/.test(c.group)
              ? { annotations: { "api-approved.kubernetes.io": "unapproved, a minimal schema for a test" } }
              : {}),
          },
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
