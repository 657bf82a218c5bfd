// The agents' events (process exits, OOM kills) as one Observable per sandbox, fed by StreamEvents while connected.
import { type Observable, Subject } from 'rxjs';
import type { AgentConnections, Connection } from './connection.js';
import { toExit } from './convert.js';
import type { AgentEvent } from './types.js';
import type { WireAgentEvent } from './wire.js';

/** Where the event stream of a sandbox stands; kept across disconnects so a reconnect resumes, not replays. */
interface EventCursor {
  bootId: string;
  lastSeq: number;
}

/**
 * Follows each connected sandbox's StreamEvents and hands every event on once: an event stream that dropped is
 * opened again after the last seq seen, and an agent that restarted (a new boot id) is followed from its start.
 */
export class AgentEventFeed {
  readonly #connections: AgentConnections;
  /** Check of the sandbox; it notes the agent's boot id (noteBoot) before the stream is opened again. */
  readonly #check: (sandboxId: string) => Promise<unknown>;
  readonly #subjects = new Map<string, Subject<AgentEvent>>();
  readonly #cursors = new Map<string, EventCursor>();

  constructor(connections: AgentConnections, check: (sandboxId: string) => Promise<unknown>) {
    this.#connections = connections;
    this.#check = check;
  }

  /** The events of `sandboxId`, across its connections; nothing is replayed to a late subscriber. */
  events(sandboxId: string): Observable<AgentEvent> {
    return this.#subjectOf(sandboxId).asObservable();
  }

  /** A different boot id means a new agent process: its event numbers start over. */
  noteBoot(sandboxId: string, bootId: string): void {
    const cursor = this.#cursors.get(sandboxId);
    if (!cursor || cursor.bootId !== bootId) this.#cursors.set(sandboxId, { bootId, lastSeq: 0 });
  }

  /** Keeps StreamEvents open while connected, resuming after the last seq seen. */
  follow(connection: Connection): void {
    if (connection.closed) return;
    const { sandboxId } = connection;
    const subject = this.#subjectOf(sandboxId);
    const cursor = this.#cursors.get(sandboxId) ?? { bootId: '', lastSeq: 0 };
    this.#cursors.set(sandboxId, cursor);
    const call = this.#connections.stream(connection, 'StreamEvents', { afterSeq: cursor.lastSeq });
    connection.eventsCall = call;
    call.on('data', (message: WireAgentEvent) => {
      const current = this.#cursors.get(sandboxId)!;
      if (message.bootId !== current.bootId) {
        current.bootId = message.bootId;
        current.lastSeq = 0;
      }
      if (message.seq <= current.lastSeq) return;
      current.lastSeq = message.seq;
      if (message.processExited) {
        subject.next({
          type: 'processExited',
          containerId: message.processExited.containerId,
          execId: message.processExited.execId,
          status: toExit(message.processExited.status),
        });
      } else if (message.oom) {
        subject.next({ type: 'oom', containerId: message.oom.containerId });
      }
    });
    // Learn the boot id first (Check) before following again: a restarted agent numbers its events from 1 again.
    const followAgain = (delayMs: number) => {
      if (connection.closed) return;
      connection.retryTimer = setTimeout(() => {
        this.#check(sandboxId).then(
          () => this.follow(connection),
          () => followAgain(1000),
        );
      }, delayMs);
    };
    const dropped = () => {
      if (connection.closed || connection.eventsCall !== call) return;
      connection.eventsCall = undefined;
      followAgain(500);
    };
    call.on('error', dropped);
    call.on('end', dropped);
  }

  #subjectOf(sandboxId: string): Subject<AgentEvent> {
    let subject = this.#subjects.get(sandboxId);
    if (!subject) {
      subject = new Subject<AgentEvent>();
      this.#subjects.set(sandboxId, subject);
    }
    return subject;
  }
}
