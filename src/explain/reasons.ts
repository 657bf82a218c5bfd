// What the world said in an event (QEMU exit, agent error, OOM, signal), and why an entity's life ended, in words.
import type { EventEnvelope } from '../events/index.js';

interface ExitData {
  readonly exitCode?: number;
  readonly signal?: string;
  readonly oomKilled?: boolean;
}

interface FailureData {
  readonly step?: string;
  readonly kind?: string;
  readonly message?: string;
}

/**
 * QEMU's exit as the hypervisor reported it. `shutdown: <reason>` comes from QMP's SHUTDOWN event
 * (host-signal: QEMU caught SIGTERM/SIGINT/SIGHUP; guest-shutdown; guest-panic; host-qmp-quit); a
 * process that vanished without one was killed by a signal it cannot catch (SIGKILL) or crashed.
 */
export function describeVmExit(reason: string): string {
  const shutdown = /^shutdown: (.*)$/.exec(reason);
  if (shutdown) {
    const why = shutdown[1];
    if (why === 'host-signal') return 'QEMU terminated by a signal (QMP SHUTDOWN host-signal)';
    if (why === 'guest-shutdown') return 'the guest powered off (QMP SHUTDOWN guest-shutdown)';
    if (why === 'guest-panic') return 'the guest kernel panicked (QMP SHUTDOWN guest-panic)';
    if (why === 'guest-reset') return 'the guest reset (QMP SHUTDOWN guest-reset)';
    if (why === 'host-qmp-quit') return 'QEMU quit on a QMP command (host-qmp-quit)';
    return `QEMU shut down (QMP SHUTDOWN ${why})`;
  }
  if (reason === 'QEMU process disappeared') return 'QEMU killed without a QMP SHUTDOWN (SIGKILL or a crash)';
  // The reaper's words (`QEMU killed by signal 9 (SIGKILL)`, `QEMU exited with status 1`) say it already.
  if (reason.startsWith('QEMU ')) return reason;
  return `QEMU: ${reason}`;
}

/** An exit status in words: `exited 3`, `killed by SIGTERM (exit 143)`, `OOM-killed (SIGKILL, exit 137)`. */
export function describeExit(exit: ExitData): string {
  const code = exit.exitCode ?? 255;
  if (exit.oomKilled) return `OOM-killed (${exit.signal ?? 'SIGKILL'}, exit ${code})`;
  if (exit.signal) return `killed by ${exit.signal} (exit ${code})`;
  return `exited ${code}`;
}

function describeFailure(f: FailureData | undefined): string {
  if (!f) return 'failed';
  const kind = f.kind === 'AgentError' ? 'agent error' : f.kind === 'Timeout' ? 'timed out' : f.kind;
  return `${f.step ?? '?'}: ${kind ? `${kind}: ` : ''}${f.message ?? ''}`.trim();
}

/** What the world (QEMU, the agent, the guest) said in this event, if anything. */
export function worldSaid(event: EventEnvelope): string | undefined {
  const data = (event.data ?? {}) as Record<string, unknown>;
  switch (event.type) {
    case 'VmExited':
      return describeVmExit(String(data.reason ?? 'unknown'));
    case 'SandboxLost':
    case 'ContainerLost':
    case 'ProcessLost':
      return String(data.reason ?? 'unknown');
    case 'ContainerOomKilled':
      return "the guest's cgroup OOM-killed the init";
    case 'ContainerExited':
    case 'ProcessExited':
      return describeExit(data as ExitData);
    case 'ContainerExitedWhileDown':
    case 'ProcessExitedWhileDaemonDown':
      return `${describeExit(data as ExitData)} while the daemon was down`;
    case 'AgentConnected':
      return `agent ${String(data.agentVersion ?? '?')}`;
    case 'VmLaunched': {
      const handle = data.handle as { pid?: number; accel?: string } | undefined;
      return handle ? `QEMU pid ${handle.pid} (${handle.accel})` : undefined;
    }
    default:
      if (event.type.endsWith('Failed')) return describeFailure(data.error as FailureData | undefined);
      return undefined;
  }
}

/**
 * Why a life ended, in one line, from its events in order (undefined while it has not ended):
 * `exited 3`, `OOM-killed (SIGKILL, exit 137)`, `VM lost: QEMU killed …`, `deleted by request`.
 */
export function whyEnded(events: readonly EventEnvelope[], state: string): string | undefined {
  const ended = ['stopped', 'failed', 'lost', 'exited', 'deleted'];
  if (!ended.includes(state)) return undefined;
  // The last event that ended it (an exit, a loss, a failure, a stop), before any delete.
  let end: string | undefined;
  let oom = false;
  for (const e of events) {
    const data = (e.data ?? {}) as Record<string, unknown>;
    switch (e.type) {
      case 'ContainerOomKilled':
        oom = true;
        break;
      case 'ContainerExited':
      case 'ProcessExited':
      case 'ContainerExitedWhileDown':
      case 'ProcessExitedWhileDaemonDown': {
        const exit = data as ExitData;
        end = worldSaid(e);
        if (oom && !exit.oomKilled) end = describeExit({ ...exit, oomKilled: true });
        break;
      }
      case 'VmExited':
        end = `VM lost: ${worldSaid(e)}`;
        break;
      case 'SandboxLost':
        end = `VM lost: ${String(data.reason ?? 'unknown')}`;
        break;
      case 'ContainerLost':
      case 'ProcessLost':
        end = `lost: ${String(data.reason ?? 'unknown')}`;
        break;
      case 'SandboxStopped':
        end = 'stopped by request';
        break;
      case 'SandboxStartRequested':
      case 'ContainerStartRequested':
      case 'ExecStartRequested':
        end = undefined;
        oom = false;
        break;
      default:
        if (e.type.endsWith('Failed') && !e.type.endsWith('DeleteFailed')) {
          const f = data.error as FailureData | undefined;
          // A failed pause or resume leaves the entity where it was: only start/create/stop failures end it.
          if (/Start|Create|Stop/.test(e.type)) end = `failed: ${describeFailure(f)}`;
        }
    }
  }
  if (state === 'deleted') {
    const del = [...events]
      .reverse()
      .find((e) => e.type.endsWith('DeleteRequested') || e.type === 'ExecDeleted');
    const force = (del?.data as { force?: boolean } | undefined)?.force === true;
    const how = force ? 'deleted by request (--force)' : 'deleted by request';
    return end ? `${end}; then ${how}` : how;
  }
  return end ?? state;
}
