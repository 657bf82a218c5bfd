// Door of src/agent.
export * from './types.js';
