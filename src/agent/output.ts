// Following one output stream of a guest process across dropped connections, by byte offset.
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { Observable } from 'rxjs';
import { AgentError } from '../errors/index.js';
import { agentErrorOf, GRPC_STATUS } from './grpc-errors.js';
import type { AgentOutputChunk } from './types.js';
import type { OutputChunk } from './wire.js';

/** Transport failures in a row after which a stream gives up (each retry waits 300 ms). */
const MAX_STREAM_FAILURES = 50;

/**
 * Output from `from` (or the oldest byte the agent still buffers); `open(offset)` starts the RPC at an offset, or
 * gives undefined once the sandbox is no longer connected. Resumes at the next offset across dropped connections;
 * a chunk's offset past the previous end means the agent dropped the bytes in between.
 */
export function followOutput(
  rpc: 'ReadStdout' | 'ReadStderr',
  sandboxId: string,
  from: number,
  open: (offset: number) => ClientReadableStream<OutputChunk> | undefined,
): Observable<AgentOutputChunk> {
  return new Observable<AgentOutputChunk>((subscriber) => {
    let offset = from;
    let call: ClientReadableStream<OutputChunk> | undefined;
    let stopped = false;
    let failures = 0;
    const follow = () => {
      if (stopped) return;
      call = open(offset);
      if (!call) {
        subscriber.error(new AgentError(`agent ${rpc}`, 'not connected', { sandboxId }));
        return;
      }
      let errored = false;
      call.on('data', (chunk: OutputChunk) => {
        failures = 0;
        const end = chunk.offset + chunk.data.length;
        if (end <= offset) return;
        const skip = Math.max(0, offset - chunk.offset);
        const fresh = chunk.data.subarray(skip);
        const at = chunk.offset + skip;
        offset = end;
        subscriber.next({ offset: at, data: new Uint8Array(fresh.buffer, fresh.byteOffset, fresh.length) });
      });
      call.on('error', (err: ServiceError) => {
        errored = true;
        if (stopped) return;
        const transient =
          err.code === GRPC_STATUS.UNAVAILABLE ||
          err.code === GRPC_STATUS.INTERNAL ||
          err.code === GRPC_STATUS.CANCELLED;
        // A retry re-opens through `open`, which says so when the sandbox disconnected meanwhile.
        if (transient && failures++ < MAX_STREAM_FAILURES) {
          setTimeout(follow, 300);
          return;
        }
        subscriber.error(agentErrorOf(err, rpc, sandboxId, 0));
      });
      call.on('end', () => {
        if (!errored && !stopped) subscriber.complete();
      });
    };
    follow();
    return () => {
      stopped = true;
      call?.cancel();
    };
  });
}
