// Door of src/store.

export { fsyncPath, writeFileDurably, writeFileSynced } from './durable-file.js';
export {
  LevelEventStore,
  type LevelEventStoreOptions,
  openLevelEventStore,
  repairEventLog,
} from './level.js';
export { catchUpThenLive } from './live.js';
export { createMemoryEventStore, type MemoryEventStoreOptions } from './memory.js';
export { type PreparedEvent, prepareEvents } from './prepare.js';
export * from './types.js';
