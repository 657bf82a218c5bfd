// Door of src/actors.
export * from './types.js';
