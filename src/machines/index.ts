// Door of src/machines: the pure lifecycle machines and the fold/check helpers built on them.
export * from './common.js';
export * from './compiled.js';
export * from './container.js';
export * from './exec.js';
export * from './replay.js';
export * from './sandbox.js';
export * from './tags.js';
