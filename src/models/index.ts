// The model and GPU profiles' public surface. See README.md in this folder.
export type { GpuProfile, ModelProfile } from "./types.js";
export { kvBytesPerToken, kvHeadsPerRank } from "./kv-shape.js";
export { GPUS, GPU_IDS_TEXT, MODELS, resolveGpu, resolveModel, loadProfilesFile } from "./profiles.js";
export {
  isModelFolder,
  loadModelFolder,
  profileFromConfig,
  withDtype,
  type FolderProfile,
} from "./profiles-hf.js";
