// Agent benchmark: Check round trip, container create+start, exec round trip and stdout throughput over the serial
// channel, each next to the same work done directly in the guest (a shell pipe; crun's own wall time) in the same VM.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Table from 'cli-table3';
import pino from 'pino';
import { lastValueFrom, reduce } from 'rxjs';
import { createGrpcAgent, type GrpcAgent } from '../src/agent/index.js';
import { createQemuHypervisor, type VmConfig } from '../src/hypervisor/index.js';
import { createBusyboxBundle, ensureGuestImage } from '../src/image/index.js';
import { ProcessLogWriter } from '../src/logs/index.js';

const quick = process.argv.includes('--quick');
const checks = quick ? 30 : 200;
const containerRuns = quick ? 3 : 8;
const execs = quick ? 5 : 20;
const pipeRounds = quick ? 30 : 100;
const streamMiB = quick ? 4 : 16;
const SB = 'agentbench';
const MiB = 1024 * 1024;

const logger = pino({ level: 'silent' });

function stats(samples: number[]): { mean: number; p50: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return {
    mean: samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length),
    p50: at(0.5),
    p99: at(0.99),
  };
}

/** Runs a shell snippet in the bench container and returns its stdout. */
async function shell(agent: GrpcAgent, execId: string, script: string): Promise<string> {
  await agent.execProcess(SB, { containerId: 'box', execId, process: { args: ['sh', '-c', script] } });
  const out = await lastValueFrom(
    agent
      .readStdout(SB, 'box', execId)
      .pipe(reduce((all, chunk) => Buffer.concat([all, chunk]), Buffer.alloc(0))),
  );
  await agent.waitProcess(SB, 'box', execId);
  return out.toString('utf8').trim();
}

// Microseconds in the guest: adjtimex (µs clock) when present, else /proc/uptime (10 ms resolution).
const NOW = `now() { t=$(adjtimex 2>/dev/null | awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{if (s) printf "%d%06d", s, u}'); [ -n "$t" ] || t=$(awk '{printf "%.0f", $1*1000000}' /proc/uptime); echo $t; }`;

async function crunSeconds(agent: GrpcAgent, op: 'run' | 'exec'): Promise<{ sum: number; count: number }> {
  const text = await agent.getMetrics(SB);
  const value = (kind: string) =>
    Number(
      new RegExp(`^sandboxd_agent_crun_seconds_${kind}\\{op="${op}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0,
    );
  return { sum: value('sum'), count: value('count') };
}

async function main(): Promise<void> {
  const image = await ensureGuestImage({ logger });
  const work = await mkdtemp(join(tmpdir(), 'sbx-agent-bench-'));
  const sharedDir = join(work, 'shared');
  await mkdir(sharedDir);
  const config: VmConfig = {
    sandboxId: SB,
    stateDir: join(work, 'state'),
    sharedDir,
    image,
    vcpus: 1,
    maxVcpus: 1,
    memoryMiB: 512,
    maxMemoryMiB: 512,
  };
  const hypervisor = createQemuHypervisor({ logger });
  const agent = createGrpcAgent({ logger, callDeadlineMs: 120_000 });
  try {
    const bootStart = performance.now();
    const handle = await hypervisor.launch(config);
    await agent.connect(SB, handle.agentSocket, { deadlineMs: 180_000, outputSocket: handle.outputSocket });
    const readyMs = performance.now() - bootStart;

    await createBusyboxBundle(join(sharedDir, 'box'), { args: ['sleep', '36000'] });
    await createBusyboxBundle(join(sharedDir, 'true'), { args: ['true'] });
    await agent.createContainer(SB, { containerId: 'box', bundle: 'box' });
    await agent.startContainer(SB, 'box');

    // 1. Check round trip vs a pipe round trip in the guest (echo | cat).
    for (let i = 0; i < 5; i++) await agent.check(SB);
    const checkSamples: number[] = [];
    for (let i = 0; i < checks; i++) {
      const t0 = performance.now();
      await agent.check(SB);
      checkSamples.push(performance.now() - t0);
    }
    const pipeNs = Number(
      await shell(
        agent,
        'pipe',
        `${NOW}; s=$(now); i=0; while [ $i -lt ${pipeRounds} ]; do echo x | cat >/dev/null; i=$((i+1)); done; e=$(now); echo $(((e-s)*1000/${pipeRounds}))`,
      ),
    );

    // 2. Container create + start + exit through the agent vs crun's own wall time in the guest.
    const runBefore = await crunSeconds(agent, 'run');
    const containerSamples: number[] = [];
    for (let i = 0; i < containerRuns; i++) {
      const id = `t${i}`;
      const t0 = performance.now();
      await agent.createContainer(SB, { containerId: id, bundle: 'true' });
      await agent.startContainer(SB, id);
      await agent.waitProcess(SB, id, '');
      containerSamples.push(performance.now() - t0);
      await agent.removeContainer(SB, id);
    }
    const runAfter = await crunSeconds(agent, 'run');
    const guestRunMs =
      ((runAfter.sum - runBefore.sum) / Math.max(1, runAfter.count - runBefore.count)) * 1000;

    // 3. Exec round trip (exec echo, read its output, wait) vs crun exec's own wall time.
    const execBefore = await crunSeconds(agent, 'exec');
    const execSamples: number[] = [];
    for (let i = 0; i < execs; i++) {
      const t0 = performance.now();
      const execId = `x${i}`;
      await agent.execProcess(SB, { containerId: 'box', execId, process: { args: ['echo', 'hi'] } });
      await lastValueFrom(agent.readStdout(SB, 'box', execId));
      await agent.waitProcess(SB, 'box', execId);
      execSamples.push(performance.now() - t0);
    }
    const execAfter = await crunSeconds(agent, 'exec');
    const guestExecMs =
      ((execAfter.sum - execBefore.sum) / Math.max(1, execAfter.count - execBefore.count)) * 1000;

    // 4. stdout throughput over the output port, then in the gRPC stream (a connection without the port), vs a
    // shell pipe in the guest.
    const blocks = (streamMiB * MiB) / 65536;
    // Each chunk also goes into a host log (CRI format, rotated), as the daemon's output keeper does.
    const streamOnce = async (execId: string): Promise<number> => {
      const log = await ProcessLogWriter.open(join(work, 'logs', execId));
      let logged: Promise<void> = Promise.resolve();
      // dd waits for a line on stdin, so the reader is attached before the first byte (no reader: bounded + dropped).
      await agent.execProcess(SB, {
        containerId: 'box',
        execId,
        process: { args: ['sh', '-c', `read go; exec dd if=/dev/zero bs=65536 count=${blocks} 2>/dev/null`] },
      });
      const receiving = lastValueFrom(
        agent.readStdout(SB, 'box', execId).pipe(
          reduce((n, chunk) => {
            logged = log.append('stdout', chunk);
            return n + chunk.length;
          }, 0),
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      const t0 = performance.now();
      await agent.writeStdin(SB, 'box', execId, Buffer.from('go\n'));
      const received = await receiving;
      await logged;
      await agent.waitProcess(SB, 'box', execId);
      const ms = performance.now() - t0;
      await log.close();
      if (received !== streamMiB * MiB)
        throw new Error(`stdout: received ${received} of ${streamMiB * MiB} bytes`);
      return ms;
    };
    const cpu0 = process.cpuUsage();
    const streamMs = await streamOnce('stream');
    const cpu1 = process.cpuUsage(cpu0);
    const hostCpuMsPerMiB = (cpu1.user + cpu1.system) / 1000 / streamMiB;
    await agent.disconnect(SB);
    await agent.connect(SB, handle.agentSocket, { deadlineMs: 60_000 });
    const grpcMs = await streamOnce('stream-grpc');
    const received = streamMiB * MiB;
    const guestPipeNs = Number(
      await shell(
        agent,
        'guestpipe',
        `${NOW}; s=$(now); dd if=/dev/zero bs=65536 count=${blocks} 2>/dev/null | cat >/dev/null; e=$(now); echo $(((e-s)*1000))`,
      ),
    );
    const agentMiBps = streamMiB / (streamMs / 1000);
    const grpcMiBps = streamMiB / (grpcMs / 1000);
    const guestMiBps = streamMiB / (guestPipeNs / 1e9);

    await agent.destroySandbox(SB);

    const check = stats(checkSamples);
    const container = stats(containerSamples);
    const exec = stats(execSamples);
    const pipeMs = pipeNs / 1e6;
    const table = new Table({ head: ['operation', 'through agent', 'directly in guest', 'ratio', 'note'] });
    const fmt = (ms: number) => `${ms.toFixed(2)} ms`;
    table.push(
      [
        'Check round trip',
        fmt(check.mean),
        fmt(pipeMs),
        (check.mean / pipeMs).toFixed(1),
        `p50 ${fmt(check.p50)}, p99 ${fmt(check.p99)}; guest: echo|cat pipe`,
      ],
      [
        'container create+start+exit',
        fmt(container.mean),
        fmt(guestRunMs),
        (container.mean / guestRunMs).toFixed(2),
        `${containerRuns} runs of "true"; guest: crun run wall time`,
      ],
      [
        'exec round trip (echo)',
        fmt(exec.mean),
        fmt(guestExecMs),
        (exec.mean / guestExecMs).toFixed(2),
        `${execs} execs; guest: crun exec wall time`,
      ],
      [
        'stdout throughput (output port)',
        `${agentMiBps.toFixed(2)} MiB/s`,
        `${guestMiBps.toFixed(1)} MiB/s`,
        (agentMiBps / guestMiBps).toFixed(2),
        `${streamMiB} MiB; guest: dd | cat (ratio = agent/guest); host CPU ${hostCpuMsPerMiB.toFixed(1)} ms/MiB read + logged`,
      ],
      [
        'stdout throughput (gRPC stream)',
        `${grpcMiBps.toFixed(2)} MiB/s`,
        `${guestMiBps.toFixed(1)} MiB/s`,
        (grpcMiBps / guestMiBps).toFixed(2),
        'the same over a connection without the port (older VMs)',
      ],
    );
    console.log(
      `agent bench (${quick ? 'quick' : 'full'}), accel ${handle.accel}, VM ready in ${readyMs.toFixed(0)} ms`,
    );
    console.log(table.toString());
    console.log(
      JSON.stringify({
        bench: 'agent',
        quick,
        accel: handle.accel,
        readyMs: Math.round(readyMs),
        check: {
          agentMs: check.mean,
          p50Ms: check.p50,
          p99Ms: check.p99,
          guestPipeMs: pipeMs,
          ratio: check.mean / pipeMs,
        },
        container: { agentMs: container.mean, guestCrunMs: guestRunMs, ratio: container.mean / guestRunMs },
        exec: { agentMs: exec.mean, guestCrunMs: guestExecMs, ratio: exec.mean / guestExecMs },
        stdout: {
          portMiBps: agentMiBps,
          grpcMiBps,
          guestPipeMiBps: guestMiBps,
          ratio: agentMiBps / guestMiBps,
          grpcRatio: grpcMiBps / guestMiBps,
          hostCpuMsPerMiB,
          bytes: received,
        },
      }),
    );
  } finally {
    await agent.close();
    await hypervisor.destroy(SB, config.stateDir).catch(() => {});
    await hypervisor.close();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
