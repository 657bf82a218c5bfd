// Door of src/store.
export * from './types.js';
