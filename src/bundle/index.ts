// Door of src/bundle: OCI bundles read, checked and translated for a VM (pure rules every client shares),
// and the host side of OCI hooks.
export { checkCpuList, formatCpuList, parseCpuList, unionCpuLists } from './cpus.js';
export { type HookState, runHooks } from './hooks.js';
export { type BundleSummary, validateBundle } from './load.js';
export { type ApiProcess, apiProcessOf } from './process.js';
export * from './spec.js';
export {
  bindSourcePlaceholder,
  type GuestTranslation,
  type HostBind,
  type TranslationNote,
  translateForGuest,
} from './translate.js';
