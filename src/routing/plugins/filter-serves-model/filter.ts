// The `servesModel` filter: engines that serve the request's model. A registry adapter may go to any
// engine serving its base model: the caller loads it there. Its stage emptying the set means
// `unknown-model`.
import { keepEngines } from "../../policy/filter-chain.js";
import type { Filter } from "../../policy/policy.js";
import type { EngineView, RequestView } from "../../policy/views.js";

// a registry adapter may go to any engine serving its base model: the caller loads it there
const serves = (e: EngineView, req: RequestView): boolean =>
  e.models.has(req.model) || (req.lora !== undefined && e.models.has(req.lora.base));

export const servesModel: Filter = (req, engines) => keepEngines(engines, serves, req);
