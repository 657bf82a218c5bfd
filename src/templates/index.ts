// Door of src/templates: VM templates (issue 18): a booted VM saved to a file in the image cache, keyed by what
// its state depends on (image, QEMU, accelerator, shape, network mode), for sandboxes to be restored from.
export { MANIFEST_FILE, STATE_FILE, type TemplateManifest } from './build.js';
export {
  identityOf,
  qemuVersionOf,
  TEMPLATE_KERNEL_PARAMS,
  TEMPLATE_RECIPE,
  type TemplateIdentity,
  type TemplateNetwork,
  type TemplateShape,
  templateIdOf,
  templateVmConfig,
} from './identity.js';
export {
  type RestorableTemplate,
  type TemplateInfo,
  TemplateStore,
  type TemplateStoreOptions,
} from './store.js';
