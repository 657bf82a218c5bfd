// Sets of machine states the kernel and commands ask about (one place, so a new state is added once).

/** A VM exists (it may be paused or on its way up or down). */
export const vmStates: ReadonlySet<string> = new Set([
  'starting',
  'running',
  'pausing',
  'paused',
  'resuming',
  'stopping',
]);
/** The sandbox's VM is gone or going for good. */
export const downStates: ReadonlySet<string> = new Set(['stopped', 'lost', 'failed', 'deleting']);
/** The container's init no longer runs. */
export const containerEnded: ReadonlySet<string> = new Set(['stopped', 'failed', 'deleting', 'deleted']);
export const execEnded: ReadonlySet<string> = new Set(['exited', 'failed']);
/** States an effect is in flight in: not worth a snapshot, recovery settles them from the log. */
export const transitional: ReadonlySet<string> = new Set([
  'starting',
  'pausing',
  'resuming',
  'stopping',
  'deleting',
  'creating',
]);
