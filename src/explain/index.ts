// Door of src/explain: an entity's life from its log (timeline, intent/outcome pairs, durations, who asked,
// why it ended), what is stuck, and transition durations. Pure: events in, data out (src/events, src/machines, src/errors only).
export { type HistogramSeries, Histograms, transitionBuckets } from './histogram.js';
export { explainFromLog, readEntity, type StreamReader } from './load.js';
export {
  type Operation,
  type OperationStep,
  OperationTracker,
  statePath,
  stepNames,
  type TrackedEvent,
  topOf,
  transitionalStates,
} from './operations.js';
export { correlation, describeOrigin, type Origin, originOf } from './origin.js';
export { describeExit, describeVmExit, whyEnded, worldSaid } from './reasons.js';
export {
  type EntityRef,
  formatEntityRef,
  namesLifeOf,
  ownsStream,
  parseEntityRef,
  streamPrefixOf,
} from './ref.js';
export {
  type Explanation,
  explainEntity,
  explainLife,
  incarnationOf,
  type Life,
  type TimelineEntry,
} from './timeline.js';
export { deadlinesFrom, type StuckIntent, TransitionWatch, type WatchOptions, watchLog } from './watch.js';
