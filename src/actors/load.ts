import { type EntityKind, type EventEnvelope, entityOfEventType } from '../events/index.js';
import { statePath } from '../explain/index.js';
import {
  type ContextOf,
  initialSnapshot,
  type PersistedEntity,
  restoreSnapshot,
  type SnapshotOf,
  stepLogged,
} from '../machines/index.js';
import { type AnyEntity, ContainerActor, ExecActor, lifeKey, SandboxActor } from './entity.js';
import type { Kernel } from './kernel.js';

export interface LoadResult {
  readonly eventsReplayed: number;
  readonly snapshotsUsed: number;
}

/** Creates the entity a stream's first event introduces, under its parent (undefined: parent gone). */
function entityFor(rt: Kernel, first: EventEnvelope): AnyEntity | undefined {
  const d = first.data as {
    sandboxId?: string;
    containerId?: string;
    execId?: string;
    incarnation?: number;
    sandboxIncarnation?: number;
    containerIncarnation?: number;
  };
  switch (first.type) {
    case 'SandboxCreated': {
      rt.lives.note(lifeKey.sandbox(d.sandboxId!), d.incarnation);
      const s = new SandboxActor(d.sandboxId!, initialSnapshot('sandbox'), d.incarnation);
      rt.sandboxes.set(s.id, s);
      return s;
    }
    case 'ContainerCreateRequested': {
      rt.lives.note(
        lifeKey.container(d.sandboxId!, d.sandboxIncarnation ?? 1, d.containerId!),
        d.incarnation,
      );
      const parent = rt.sandboxes.get(d.sandboxId!);
      // A container of an earlier life of its sandbox id belongs to nobody now.
      if (!parent || parent.incarnation !== (d.sandboxIncarnation ?? 1)) return undefined;
      const c = new ContainerActor(parent, d.containerId!, initialSnapshot('container'), d.incarnation);
      parent.containers.set(c.id, c);
      return c;
    }
    case 'ExecRequested':
    case 'ExecCreated': {
      const sandboxLife = d.sandboxIncarnation ?? 1;
      const containerLife = d.containerIncarnation ?? 1;
      rt.lives.note(
        lifeKey.exec(d.sandboxId!, sandboxLife, d.containerId!, containerLife, d.execId!),
        d.incarnation,
      );
      const parent = rt.sandboxes.get(d.sandboxId!)?.containers.get(d.containerId!);
      if (!parent || parent.sandbox.incarnation !== sandboxLife || parent.incarnation !== containerLife) {
        return undefined;
      }
      const e = new ExecActor(parent, d.execId!, initialSnapshot('exec'), d.incarnation);
      parent.execs.set(e.id, e);
      return e;
    }
    default:
      rt.logger.warn(
        { stream: first.stream, type: first.type },
        'stream does not start with a creation event',
      );
      return undefined;
  }
}

/** One pass over the whole log in seq order: parents always come before their children. */
async function foldWholeLog(rt: Kernel): Promise<LoadResult> {
  const byStream = new Map<string, AnyEntity | null>();
  let events = 0;
  for await (const envelope of rt.store.readAll()) {
    let entity = byStream.get(envelope.stream);
    if (entity === undefined) {
      entity = entityFor(rt, envelope) ?? null;
      byStream.set(envelope.stream, entity);
    }
    if (entity) rt.apply(entity, envelope, false);
    events += 1;
  }
  return { eventsReplayed: events, snapshotsUsed: 0 };
}

interface Folded {
  readonly kind: EntityKind;
  /** A machine snapshot when a tail was folded, else the stored one (restored lazily by the entity). */
  state: SnapshotOf<EntityKind> | PersistedEntity;
  version: number;
  savedVersion: number;
}

const kindOfStream = (stream: string): EntityKind | undefined =>
  stream.startsWith('sandbox-')
    ? 'sandbox'
    : stream.startsWith('container-')
      ? 'container'
      : stream.startsWith('exec-')
        ? 'exec'
        : undefined;

/** Per stream: its snapshot (if any) then the events after it. Streams load in parallel, in chunks. */
async function foldFromSnapshots(rt: Kernel): Promise<LoadResult> {
  const streams = await rt.store.listStreams();
  const snapshots = await rt.store.loadSnapshots<PersistedEntity>();
  const folded: Folded[] = [];
  let events = 0;
  let snapshotsUsed = 0;
  const loadOne = async (stream: string, version: number): Promise<void> => {
    let kind = kindOfStream(stream);
    let current: Folded | undefined;
    const stored = kind ? snapshots.get(stream) : undefined;
    if (kind && stored && stored.version <= version) {
      current = { kind, state: stored.state, version: stored.version, savedVersion: stored.version };
      snapshotsUsed += 1;
    }
    if (!current || current.version < version) {
      let snapshot =
        current && kind
          ? (restoreSnapshot(kind, current.state as PersistedEntity) as SnapshotOf<EntityKind>)
          : undefined;
      for await (const envelope of rt.store.readStream(stream, (current?.version ?? 0) + 1)) {
        if (!current || !snapshot) {
          kind = entityOfEventType(envelope.type);
          if (!kind) return;
          snapshot = initialSnapshot(kind);
          current = { kind, state: snapshot, version: 0, savedVersion: 0 };
        }
        snapshot = stepLogged(current.kind, snapshot, envelope).snapshot;
        current.state = snapshot;
        current.version = envelope.version;
        events += 1;
      }
    }
    if (current) folded.push(current);
  };
  const chunk = 256;
  for (let i = 0; i < streams.length; i += chunk) {
    await Promise.all(streams.slice(i, i + chunk).map((s) => loadOne(s.stream, s.version)));
  }
  // Attach parents first; an entity whose parent was deleted (or never existed) is dropped.
  const order: EntityKind[] = ['sandbox', 'container', 'exec'];
  const inFlight: AnyEntity[] = [];
  for (const kind of order) {
    for (const f of folded) {
      if (f.kind !== kind || f.state.value === 'absent') continue;
      noteLife(rt, f);
      if (f.state.value === 'deleted') continue;
      const entity = attach(rt, f);
      if (!entity) continue;
      entity.version = f.version;
      entity.savedVersion = f.savedVersion;
      if (entity.is('transitional')) inFlight.push(entity);
    }
  }
  // Folding by snapshot feeds no transition watch, so an intent in flight at the crash would be unknown to
  // `events stuck` online (a retried effect that hangs after recovery): its stream is read again for it.
  for (const entity of inFlight) await watchStream(rt, entity);
  return { eventsReplayed: events, snapshotsUsed };
}

/** Feeds one stream's whole history to the transition watch, as a cold fold of the log does. */
async function watchStream(rt: Kernel, entity: AnyEntity): Promise<void> {
  let snapshot = initialSnapshot(entity.kind) as SnapshotOf<EntityKind>;
  for await (const event of rt.store.readStream(entity.stream)) {
    const from = statePath(snapshot.value);
    const next = stepLogged(entity.kind, snapshot, event);
    snapshot = next.snapshot;
    rt.transitions.feed(
      entity.stream,
      entity.kind,
      { event, from, to: statePath(snapshot.value), effects: next.effects },
      false,
    );
  }
}

type AnyContext = ContextOf<'exec'> & ContextOf<'container'> & ContextOf<'sandbox'>;

/** Counts the life a folded stream is (deleted ones included): the next create of its id gets the one after. */
function noteLife(rt: Kernel, f: Folded): void {
  const ctx = f.state.context as AnyContext;
  const key =
    f.kind === 'sandbox'
      ? lifeKey.sandbox(ctx.sandboxId)
      : f.kind === 'container'
        ? lifeKey.container(ctx.sandboxId, ctx.sandboxIncarnation ?? 1, ctx.containerId)
        : lifeKey.exec(
            ctx.sandboxId,
            ctx.sandboxIncarnation ?? 1,
            ctx.containerId,
            ctx.containerIncarnation ?? 1,
            ctx.execId,
          );
  rt.lives.note(key, ctx.incarnation);
}

/** Puts a loaded entity under its parent; one of an earlier life of its parent's id (or of a gone one) is dropped. */
function attach(rt: Kernel, f: Folded): AnyEntity | undefined {
  const ctx = f.state.context as AnyContext;
  if (f.kind === 'sandbox') {
    const s = new SandboxActor(ctx.sandboxId, f.state as SnapshotOf<'sandbox'>, ctx.incarnation);
    rt.sandboxes.set(s.id, s);
    return s;
  }
  const sandbox = rt.sandboxes.get(ctx.sandboxId);
  if (!sandbox || sandbox.incarnation !== (ctx.sandboxIncarnation ?? 1)) return undefined;
  if (f.kind === 'container') {
    const c = new ContainerActor(
      sandbox,
      ctx.containerId,
      f.state as SnapshotOf<'container'>,
      ctx.incarnation,
    );
    sandbox.containers.set(c.id, c);
    return c;
  }
  const container = sandbox.containers.get(ctx.containerId);
  if (!container || container.incarnation !== (ctx.containerIncarnation ?? 1)) return undefined;
  const e = new ExecActor(container, ctx.execId, f.state as SnapshotOf<'exec'>, ctx.incarnation);
  container.execs.set(e.id, e);
  return e;
}

/** Rebuilds the runtime's entities from the store; runs no effect and appends nothing. */
export function loadEntities(rt: Kernel, useSnapshots: boolean): Promise<LoadResult> {
  return useSnapshots ? foldFromSnapshots(rt) : foldWholeLog(rt);
}
