// Door of src/timing: the one sleep and the one deadline, both tied to an AbortSignal.
export { type DeadlineOptions, withDeadline } from './deadline.js';
export { sleep } from './sleep.js';
