// The `peers:` section of the router config: active-active router replicas that tell each other
// their in-flight counts and routing picks over ZMQ, so replicas behind one Service route as one
// (../cluster/peers.ts). Parsed by the router's schema (config.ts).
import { z } from "zod";
import { duration } from "../../config/values.js";
import { flag } from "../../config/schema-flags.js";

/** Requests one replica may report in flight on one engine unless `peers.maxReportedInFlight` says. */
export const DEFAULT_MAX_REPORTED_IN_FLIGHT = 4096;

const endpoint = z.string().regex(/^(tcp|ipc):\/\/.+/, "must be a ZMQ endpoint like tcp://router-0:5590");

export const peersConfigSchema = z
  .strictObject({
    /** where this replica publishes its reports (e.g. tcp://*:5590); absent: no peers */
    bind: flag(endpoint.optional(), {
      flag: "peers-bind",
      help: "active-active replicas: publish this replica's load and routing picks here (e.g. tcp://*:5590)",
    }),
    /** the other replicas' endpoints (tcp://host:port); this replica's own is recognised and skipped */
    endpoints: flag(z.array(endpoint).default([]), {
      flag: "peer",
      help: "another replica's --peers-bind endpoint (tcp://host:5590), repeatable",
    }),
    /**
     * host:port of a DNS name whose addresses are the replicas (a Kubernetes headless Service),
     * resolved every `resolveInterval`; each address is reached on the port
     */
    dns: flag(
      z
        .string()
        .regex(/^[^\s:]+:\d{1,5}$/, "must be host:port, e.g. switchyard-router-peers:5590")
        .optional(),
      {
        flag: "peers-dns",
        help: "host:port of a DNS name whose addresses are the replicas (a headless Service), re-resolved every 10 s",
      },
    ),
    resolveInterval: duration.default(10_000),
    /** how often a replica reports (the staleness of another replica's load is at most about this) */
    interval: duration.default(100),
    /** a replica silent this long is forgotten (its load no longer counts) */
    expireAfter: duration.default(1_000),
    /** this replica's name in the reports (default: host name and process id) */
    id: z.string().min(1).max(200).optional(),
    /**
     * requests one replica may report in flight on one engine; more is cut to this (and counted): a
     * replica claiming more than an engine can hold would take that engine out of everyone's rotation
     */
    maxReportedInFlight: z.number().int().min(1).default(DEFAULT_MAX_REPORTED_IN_FLIGHT),
    /**
     * the replicas' shared secret (16 characters or more), or a file holding it (a mounted Secret): each
     * report is signed with HMAC-SHA256 under it and a report without a valid signature is dropped.
     * With tenancy on, stored responses' owners are taken only from signed reports.
     */
    secret: z.string().min(16).optional(),
    secretFile: flag(z.string().min(1).optional(), {
      flag: "peers-secret-file",
      help: "file holding the replicas' shared secret: reports are signed with it, unsigned ones dropped (with tenancy on, stored responses' owners cross replicas only so)",
    }),
    /** largest report accepted from a peer */
    maxMessageBytes: z
      .number()
      .int()
      .min(1024)
      .default(4 * 2 ** 20),
  })
  .superRefine((p, ctx) => {
    if ((p.endpoints.length > 0 || p.dns) && !p.bind)
      ctx.addIssue({
        code: "custom",
        path: ["bind"],
        message: "peers need this replica's own endpoint too (peers.bind, e.g. tcp://*:5590)",
      });
    if (p.secret !== undefined && p.secretFile !== undefined)
      ctx.addIssue({
        code: "custom",
        path: ["secretFile"],
        message: "give peers.secret or peers.secretFile, not both",
      });
    if (p.expireAfter <= p.interval)
      ctx.addIssue({
        code: "custom",
        path: ["expireAfter"],
        message: "must be longer than peers.interval",
      });
  })
  .prefault({});

export type PeersConfig = z.output<typeof peersConfigSchema>;
