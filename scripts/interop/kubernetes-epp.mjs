// The interop `kubernetes` group's endpoint-picker checks (kubernetes.mjs runs them once the chart is
// installed): a router run with the chart's gateway args and ServiceAccount token against the real API
// server, its picker naming the pods an InferencePool selects.
import { writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { api, auditedByRole, relay, routerToken, sh } from "./kube-api.mjs";

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
export async function eppChecks(h) {
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
        router = start(
          "epp-router",
          process.execPath,
          [join(ROOT, "dist", "src", "cli", "main.js"), ...args],
          {
            ...env,
            SWITCHYARD_LOG_LEVEL: "info", // its discovery logs the 410 it re-lists on
          },
        );
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
