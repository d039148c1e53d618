// The `autoscaling:` section of the router config: the SLO the fleet is sized for, the replica bounds,
// an engine's start-up time and the loop's period. On, the router runs the SLO autoscaling decision
// (src/autoscale) on a timer over what it observes and exports it (../autoscale, docs/autoscaling.md);
// it scales nothing itself: KEDA, an HPA or `switchyard up --autoscale` carry the decision out.
import { z } from "zod";
import { duration } from "../../config/values.js";
import { flag } from "../../config/schema-flags.js";

export const autoscalingConfigSchema = z
  .strictObject({
    enabled: flag(z.boolean().default(false), {
      flag: "autoscale",
      help: "run the SLO autoscaling decision every --autoscale-interval and export it (switchyard_autoscale_desired_replicas, GET /autoscale)",
    }),
    /** the SLO the pools are sized for: time to first token, 90th percentile */
    ttftP90Ms: flag(z.number().positive().default(2_000), {
      flag: "autoscale-ttft-p90-ms",
      help: "autoscaling SLO: time to first token, 90th percentile, milliseconds",
    }),
    /** the SLO the pools are sized for: time per output token, 90th percentile */
    tpotP90Ms: flag(z.number().positive().default(100), {
      flag: "autoscale-tpot-p90-ms",
      help: "autoscaling SLO: time per output token, 90th percentile, milliseconds",
    }),
    minReplicas: flag(z.number().int().min(0).default(1), {
      flag: "autoscale-min",
      help: "autoscaling: the fewest replicas a pool is asked for",
    }),
    maxReplicas: flag(z.number().int().min(1).default(8), {
      flag: "autoscale-max",
      help: "autoscaling: the most replicas a pool is asked for",
    }),
    /** from asking for a replica until it serves (image pull, weights, warm-up): the forecast's horizon */
    startup: flag(duration.default(120_000), {
      flag: "autoscale-startup",
      help: "autoscaling: how long a new engine takes to serve (image, weights, warm-up); the decision looks this far ahead",
      kind: "duration",
    }),
    /** a scale-down follows the highest count asked for over this window */
    scaleDownWindow: flag(duration.default(300_000), {
      flag: "autoscale-scale-down-window",
      help: "autoscaling: a scale-down follows the highest count asked for over this window",
      kind: "duration",
    }),
    /** how often the decision runs (a timer; nothing per request) */
    interval: flag(duration.default(15_000), {
      flag: "autoscale-interval",
      help: "autoscaling: how often the decision runs",
      kind: "duration",
    }),
    /** the GPU profile replicas are sized with (the engine model's catalogue); default: the predictive policy's, else h100 */
    gpu: flag(z.string().min(1).optional(), {
      flag: "autoscale-gpu",
      help: "autoscaling: the GPU profile replicas are sized with (default: --predictive-gpu, else h100)",
    }),
    /** how much arrival-rate history the trend is fitted over */
    trendWindow: duration.default(600_000),
    /** spare capacity kept above the forecast rate, as a fraction, beyond the SLO margin; default the decision's (none) */
    headroom: z.number().min(0).max(10).optional(),
  })
  .refine((a) => a.maxReplicas >= a.minReplicas, {
    message: "maxReplicas must be at least minReplicas",
    path: ["maxReplicas"],
  })
  .prefault({});

export type AutoscalingConfig = z.output<typeof autoscalingConfigSchema>;
