// Engine views for the routing tests: an idle, healthy engine serving model "m", with overrides.
import { idleEngineView, type EngineView } from "../../src/routing/index.js";

export const eng = (id: string, over: Partial<EngineView> = {}): EngineView => ({
  ...idleEngineView(id, new Set(["m"])),
  ...over,
});
