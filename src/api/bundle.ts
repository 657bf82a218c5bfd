// The bundle checks the API runs before it accepts a container: they live with the bundle rules, in src/bundle.
export { type BundleSummary, validateBundle } from '../bundle/index.js';
