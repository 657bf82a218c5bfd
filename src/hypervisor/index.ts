// Door of src/hypervisor.
export * from './types.js';
