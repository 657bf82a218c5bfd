// Property test over every API method (fake world): any params get a result or a typed error, refusals change nothing.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { z } from 'zod';
import { type ApiClient, connectApi, methodTable, RpcCallError } from '../src/api/index.js';
import { jsonRpcCodeOf } from '../src/errors/index.js';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, rawClient, startHarness } from './support/api-harness.js';
import {
  type FieldOverrides,
  garbageParams,
  garbageValue,
  mutated,
  nearValid,
  ref,
  resolveRefs,
  wellFormedId,
} from './support/arbitraries.js';

/** Runs per method for each of near-valid and garbage params (FUZZ_RUNS=… for a longer hunt). */
const RUNS = Number(process.env.FUZZ_RUNS ?? 40);
/** Any single call must be answered within this. */
const CALL_BOUND_MS = 5000;
/** Kinds an answer may carry in data.code (never Internal). */
const STABLE_KINDS = new Set([
  'InvalidArgument',
  'NotFound',
  'AlreadyExists',
  'InvalidState',
  'Conflict',
  'Timeout',
  'HypervisorError',
  'AgentError',
]);
/**
 * A failure that may be recorded: a sandbox.start that failed in the hypervisor or agent leaves the sandbox
 * failed (SandboxStartRequested, SandboxStartFailed). Every other refusal must append nothing.
 */
const mayRecord = (method: string, kind: unknown) =>
  method === 'sandbox.start' && (kind === 'HypervisorError' || kind === 'AgentError');
/** Methods that wait for a process; the fuzzer bounds them with a short timeoutMs. */
const WAITS = new Set(['container.wait', 'exec.wait', 'exec.output']);

/**
 * The entities kept alive for the fuzzer, by role. A call that changes one of them (stop, delete, kill…)
 * makes the test build a new generation under fresh ids; the old ones stay behind in their new states.
 */
interface Fixture {
  /** running sandbox */
  sb: string;
  /** created, never started sandbox */
  idle: string;
  /** created sandbox on the user network forwarding a host port that something else holds */
  net: string;
  /** running container in sb */
  c: string;
  /** created container in sb */
  cc: string;
  /** stopped (exited) container in sb */
  cx: string;
  /** running exec (terminal) in c */
  e: string;
  /** exited exec in c */
  ex: string;
  /** An OCI bundle, a path that does not exist, a file, a dir without config.json, a bad config.json. */
  bundle: string;
  noBundle: string;
  fileBundle: string;
  emptyBundle: string;
  badBundle: string;
}

const sandboxRoles = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(ref('sb'), ref('idle'), ref('net'), ref('old_sb')) },
  { weight: 1, arbitrary: fc.constantFrom('nope', '') },
  { weight: 2, arbitrary: wellFormedId },
);
const containerRoles = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(ref('c'), ref('cc'), ref('cx')) },
  { weight: 1, arbitrary: fc.constantFrom('nope', '') },
  { weight: 2, arbitrary: wellFormedId },
);
const execRoles = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(ref('e'), ref('ex'), '') },
  { weight: 1, arbitrary: fc.constantFrom('nope') },
  { weight: 2, arbitrary: wellFormedId },
);
const absolutePath = fc
  .array(fc.oneof(fc.stringMatching(/^[a-z0-9._-]{1,8}$/), fc.constantFrom('.', '..', '', 'run', 'tmp')), {
    maxLength: 4,
  })
  .map((segments) => `/${segments.join('/')}`);
const base64 = fc.oneof(
  fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b).toString('base64')),
  fc.string({ maxLength: 16 }),
);

const time = fc.oneof(
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom('yesterday', '2026-13-45', '1', ''),
);

/** Field overrides for one method: ids from the fixture's roles, real and broken bundles, paths, streams. */
function overridesFor(method: string): FieldOverrides {
  const isSandboxMethod = method.startsWith('sandbox.');
  // The fixture sandbox boots with 1 vCPU / 512 MiB and may grow to 2 / 1024: sizes around those.
  const sizes: FieldOverrides =
    method === 'sandbox.update'
      ? {
          vcpus: fc.integer({ min: 0, max: 3 }),
          memoryMiB: fc.constantFrom(127, 512, 600, 640, 768, 1024, 1152),
        }
      : {};
  return {
    ...sizes,
    id: isSandboxMethod ? sandboxRoles : containerRoles,
    sandboxId: sandboxRoles,
    containerId: containerRoles,
    execId: execRoles,
    bundle: fc.oneof(
      { weight: 4, arbitrary: fc.constant(ref('bundle')) },
      fc.constantFrom(ref('noBundle'), ref('fileBundle'), ref('emptyBundle'), ref('badBundle')),
      absolutePath,
    ),
    path: absolutePath,
    cwd: absolutePath,
    data: base64,
    since: time,
    time,
    stream:
      method === 'events.read' || method === 'events.subscribe'
        ? fc.oneof(fc.constant(`sandbox-${ref('sb')}`), fc.string({ maxLength: 12 }))
        : fc.constantFrom('stdout', 'stderr', 'both', 'stdin', ''),
    subscription: fc.oneof(fc.constantFrom('events-1-1', 'output-1-2', 'events-999-1'), fc.string()),
    signal: fc.oneof(
      fc.constantFrom('SIGTERM', 'SIGKILL', 'KILL', 'HUP', 'SIGUSR1', 'SIGFOO', 9, 15, 0, 65),
      garbageValue,
    ),
  };
}

/**
 * Seeds: fixed by default, so `npm test` is repeatable (each property gets the next one); FUZZ_SEED=<n> to
 * replay a reported failure, FUZZ_SEED=random to explore (with FUZZ_RUNS=… for longer).
 */
const BASE_SEED =
  process.env.FUZZ_SEED === 'random'
    ? (Date.now() ^ (Math.random() * 2 ** 31)) | 0
    : Number(process.env.FUZZ_SEED ?? 20261126);

/** A property's seed: the base plus a hash of its name, so one property replays alone (--test-name-pattern). */
function seedOf(name: string): number {
  let hash = 0;
  for (const ch of name) hash = (Math.imul(hash, 31) + (ch.codePointAt(0) ?? 0)) | 0;
  return (BASE_SEED + hash) | 0;
}

/** Runs a property; on failure reports seed, path, the (shortened) counterexample and why it failed. */
async function holds<T>(name: string, property: fc.IAsyncProperty<[T]>): Promise<void> {
  const seed = seedOf(name);
  const details = await fc.check(property, { numRuns: RUNS, seed });
  if (!details.failed) return;
  const example = JSON.stringify(details.counterexample?.[0]) ?? 'undefined';
  const shown = example.length > 600 ? `${example.slice(0, 600)}… (${example.length} chars)` : example;
  const why =
    details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  assert.fail(
    `property failed: { seed: ${details.seed} from FUZZ_SEED=${BASE_SEED}, path: "${'path' in details ? details.path : ''}" } after ${details.numRuns} runs\n` +
      `counterexample: ${shown}\n${why}`,
  );
}

let phase: 'valid' | 'garbage' = 'valid';
/** FUZZ_STATS=1 prints, per method, how the answers were distributed (to see the deep paths are reached). */
const stats = new Map<string, Map<string, number>>();
function tally(method: string, outcome: Outcome): void {
  if (!process.env.FUZZ_STATS) return;
  const key =
    (phase === 'garbage' ? 'g:' : 'v:') +
    (outcome.ok
      ? 'ok'
      : outcome.error instanceof RpcCallError
        ? `${outcome.error.rpcCode}/${String(outcome.error.data.code)}/${String(outcome.error.data.field ?? '')}`
        : 'other');
  const perMethod = stats.get(method) ?? new Map<string, number>();
  perMethod.set(key, (perMethod.get(key) ?? 0) + 1);
  stats.set(method, perMethod);
}

/**
 * Ids that belong together (a container of that sandbox, an exec of that container): independent picks
 * would almost never reach a live exec. Only fields the generated params have are replaced.
 */
function coherentIds(method: string): fc.Arbitrary<Record<string, string>> | undefined {
  const fresh = wellFormedId;
  if (method.startsWith('exec.')) {
    return fc
      .oneof(
        fc.constantFrom(
          [ref('sb'), ref('c'), ref('e')],
          [ref('sb'), ref('c'), ref('ex')],
          [ref('sb'), ref('c'), ''],
          [ref('sb'), ref('cx'), ''],
          [ref('sb'), ref('cc'), ''],
          [ref('old_sb'), ref('c'), ref('e')],
        ),
        fresh.map((id) => [ref('sb'), ref('c'), id]),
      )
      .map(([sandboxId, containerId, execId]) => ({
        sandboxId: sandboxId!,
        containerId: containerId!,
        execId: execId!,
      }));
  }
  if (method.startsWith('container.')) {
    return fc
      .oneof(
        fc.constantFrom(
          [ref('sb'), ref('c')],
          [ref('sb'), ref('cc')],
          [ref('sb'), ref('cx')],
          [ref('old_sb'), ref('c')],
          [ref('idle'), ref('c')],
        ),
        fresh.map((id) => [ref('sb'), id]),
      )
      .map(([sandboxId, id]) => ({ sandboxId: sandboxId!, id: id! }));
  }
  return undefined;
}

/** Near-valid params for a method: its schema's shape, with coherent ids most of the time. */
function nearValidFor(method: string, schema: z.ZodType): fc.Arbitrary<unknown> {
  const base = nearValid(schema, overridesFor(method));
  const ids = coherentIds(method);
  if (!ids) return base;
  return fc.tuple(base, fc.nat(3), ids).map(([params, dice, coherent]) => {
    if (dice === 0 || typeof params !== 'object' || params === null) return params;
    const out = { ...(params as Record<string, unknown>) };
    for (const [k, v] of Object.entries(coherent)) if (k in out) out[k] = v;
    return out;
  });
}

type Outcome = { ok: true; result: unknown } | { ok: false; error: unknown };

describe('api fuzz: every method, arbitrary params, over the actor runtime (fake world)', () => {
  let h: Harness;
  let socket: string;
  let client: ApiClient;
  let clientClosed = false;
  let generation = 0;
  let fixture: Fixture;
  let expected = '';
  let oldSandbox = 'never-created';
  /** A host port held open by the test, which the `net` sandbox asks to forward. */
  let portHolder: Server;
  let takenPort = 0;
  const paths = { bundle: '', noBundle: '', fileBundle: '', emptyBundle: '', badBundle: '' };

  const connect = async () => {
    client = await connectApi(socket);
    clientClosed = false;
    client.onClose(() => {
      clientClosed = true;
    });
  };

  /** A call that must be answered within CALL_BOUND_MS; a dropped connection comes back as its error. */
  const call = async (method: string, params: unknown): Promise<Outcome> => {
    if (clientClosed) await connect();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${CALL_BOUND_MS} ms (hang)`)),
        CALL_BOUND_MS,
      );
    });
    try {
      return { ok: true, result: await Promise.race([client.call(method, params), bound]) };
    } catch (error) {
      return { ok: false, error };
    } finally {
      clearTimeout(timer);
    }
  };

  /** A setup call that must succeed. */
  const must = async (method: string, params: unknown) => {
    const outcome = await call(method, params);
    if (!outcome.ok) throw outcome.error;
    return outcome.result;
  };

  /**
   * Waits until background work (exits after a kill, a start's follow-ups) stopped appending events: the
   * runtime idle, then a turn of the event loop (the fake world ends processes on the next one), until a
   * round appends nothing.
   */
  const quiesce = async () => {
    for (;;) {
      const seq = h.store.lastSeq();
      await h.runtime.idle();
      await new Promise((r) => setImmediate(r));
      await h.runtime.idle();
      if (h.store.lastSeq() === seq) return;
    }
  };

  /** The states of the fixture's entities (what the fuzzer may have changed). */
  const signature = (f: Fixture): string => {
    const r = h.runtime;
    const of = (get: () => { state: string }) => {
      try {
        return get().state;
      } catch {
        return 'missing';
      }
    };
    return [
      of(() => r.getSandbox(f.sb)),
      of(() => r.getSandbox(f.idle)),
      of(() => r.getSandbox(f.net)),
      of(() => r.getContainer(f.sb, f.c)),
      of(() => r.getContainer(f.sb, f.cc)),
      of(() => r.getContainer(f.sb, f.cx)),
      of(() => r.getExec(f.sb, f.c, f.e)),
      of(() => r.getExec(f.sb, f.c, f.ex)),
    ].join(' ');
  };

  const buildFixture = async (): Promise<void> => {
    generation++;
    if (fixture) oldSandbox = fixture.sb;
    const sb = `fuzz-fixture-${generation}`;
    const f: Fixture = {
      ...paths,
      sb,
      idle: `fuzz-fixture-${generation}-idle`,
      net: `fuzz-fixture-${generation}-net`,
      c: 'c1',
      cc: 'c-created',
      cx: 'c-exited',
      e: 'e1',
      ex: 'e-exited',
    };
    await must('sandbox.create', {
      id: sb,
      config: { vcpus: 1, maxVcpus: 2, memoryMiB: 512, maxMemoryMiB: 1024 },
    });
    await must('sandbox.start', { id: sb });
    await must('sandbox.create', { id: f.idle });
    await must('sandbox.create', {
      id: f.net,
      config: { network: 'user', ports: [{ hostPort: takenPort, guestPort: 80 }] },
    });
    for (const id of [f.c, f.cc, f.cx])
      await must('container.create', { sandboxId: sb, id, bundle: f.bundle });
    await must('container.start', { sandboxId: sb, id: f.c });
    await must('container.start', { sandboxId: sb, id: f.cx });
    await must('container.kill', { sandboxId: sb, id: f.cx, signal: 'SIGKILL' });
    await must('container.wait', { sandboxId: sb, id: f.cx, timeoutMs: 3000 });
    await must('exec.start', {
      sandboxId: sb,
      containerId: f.c,
      execId: f.e,
      process: { args: ['sh'], terminal: true },
    });
    await must('exec.start', { sandboxId: sb, containerId: f.c, execId: f.ex, process: { args: ['true'] } });
    await must('exec.kill', { sandboxId: sb, containerId: f.c, execId: f.ex, signal: 'SIGKILL' });
    await must('exec.wait', { sandboxId: sb, containerId: f.c, execId: f.ex, timeoutMs: 3000 });
    await quiesce();
    fixture = f;
    expected = signature(f);
  };

  const lookup = (name: string): string => {
    if (name === 'old_sb') return oldSandbox;
    const value = (fixture as unknown as Record<string, string>)[name];
    if (value === undefined) throw new Error(`unknown role ${name}`);
    return value;
  };

  /** The fuzzer never waits on a process that may never end: waits get a short timeoutMs when valid. */
  const boundWaits = (method: string, params: unknown): unknown => {
    if (!WAITS.has(method) || typeof params !== 'object' || params === null || Array.isArray(params))
      return params;
    if (!methodTable.get(method)!.params.safeParse(params).success) return params;
    const p = params as Record<string, unknown>;
    if (p.follow === true) return params;
    const ms = typeof p.timeoutMs === 'number' ? Math.min(p.timeoutMs, 200) : 200;
    return { ...p, timeoutMs: ms };
  };

  /** Checks one answer against the promise of the API; returns a description of what is wrong, or undefined. */
  const problemWith = (params: unknown, outcome: Outcome): string | undefined => {
    if (outcome.ok) return undefined;
    const err = outcome.error;
    if (!(err instanceof RpcCallError)) return `not a JSON-RPC error answer: ${String(err)}`;
    const data = err.data as Record<string, unknown>;
    const kind = data.code;
    if (err.rpcCode === -32603 || kind === 'Internal') return `internal error: ${err.message}`;
    if (err.rpcCode === -32600) {
      // JSON-RPC 2.0: params that are not a structured value make the request itself invalid.
      const structured = typeof params === 'object' && params !== null;
      if (structured) return `-32600 for structured params: ${err.message}`;
      return data.field === 'params' ? undefined : `-32600 not naming params: ${err.message}`;
    }
    if (err.rpcCode === -32602) {
      if (kind !== 'InvalidArgument') return `-32602 with data.code ${String(kind)}`;
      if (typeof data.field !== 'string' || data.field === '')
        return `-32602 without data.field: ${err.message}`;
      if (!err.message.includes(data.field))
        return `message does not name field ${data.field}: ${err.message}`;
      return undefined;
    }
    if (err.rpcCode > -32000 || err.rpcCode < -32099)
      return `code ${err.rpcCode} out of range: ${err.message}`;
    if (typeof kind !== 'string' || !STABLE_KINDS.has(kind)) return `data.code ${String(kind)} not stable`;
    if (jsonRpcCodeOf[kind as keyof typeof jsonRpcCodeOf] !== err.rpcCode)
      return `code ${err.rpcCode} does not match kind ${kind}`;
    return undefined;
  };

  /** One fuzzed call: the answer is typed, a refusal appended nothing, the fixture is rebuilt if it moved. */
  const exercise = async (method: string, generated: unknown, rebuild = true): Promise<void> => {
    const params = boundWaits(method, resolveRefs(generated, lookup));
    const before = h.store.lastSeq();
    const effectsBefore = h.world.effects.length;
    const statesBefore = signature(fixture);
    const outcome = await call(method, params);
    const shown = () => JSON.stringify(params)?.slice(0, 400);
    const problem = problemWith(params, outcome);
    tally(method, outcome);
    assert.equal(problem, undefined, `${method} ${shown()}: ${problem}`);
    if (!outcome.ok && !mayRecord(method, (outcome.error as RpcCallError).data.code)) {
      assert.equal(h.store.lastSeq(), before, `${method} ${shown()} was refused but appended events`);
      assert.equal(
        h.world.effects.length,
        effectsBefore,
        `${method} ${shown()} was refused but acted on the VM`,
      );
      assert.equal(signature(fixture), statesBefore, `${method} ${shown()} was refused but changed a state`);
    }
    if (outcome.ok) keptAsGiven(method, params, outcome.result);
    if (rebuild) await settle([outcome]);
    else await endSubscriptions([outcome]);
  };

  /** What a create accepted is what it recorded: nothing given is silently dropped or changed. */
  const keptAsGiven = (method: string, params: unknown, result: unknown) => {
    const given = params as Record<string, unknown>;
    const view = result as Record<string, unknown>;
    const shown = JSON.stringify(params)?.slice(0, 400);
    if (method === 'sandbox.create') assert.deepEqual(view.config, given.config ?? {}, `${method} ${shown}`);
    if (method === 'exec.start') assert.deepEqual(view.process, given.process, `${method} ${shown}`);
  };

  /** A run of calls on one fresh fixture, which is not rebuilt in between: later calls meet what earlier ones did. */
  const exerciseSequence = async (calls: readonly { method: string; params: unknown }[]) => {
    await buildFixture();
    for (const c of calls) await exercise(c.method, c.params, false);
    await settle([]);
  };

  /** After calls: ends subscriptions they opened, waits for their aftermath, rebuilds the fixture if it moved. */
  const settle = async (outcomes: readonly Outcome[]) => {
    await endSubscriptions(outcomes);
    if (signature(fixture) !== expected) await buildFixture();
  };

  /** Ends the subscriptions calls opened (events.subscribe, exec.output follow), then waits for their aftermath. */
  const endSubscriptions = async (outcomes: readonly Outcome[]) => {
    for (const outcome of outcomes) {
      const subscription = outcome.ok
        ? (outcome.result as { subscription?: unknown } | null)?.subscription
        : undefined;
      if (typeof subscription === 'string') await must('events.unsubscribe', { subscription });
    }
    await quiesce();
  };

  /** Several near-valid calls at once (in parallel, or as one JSON-RPC batch): every answer still typed. */
  const exerciseTogether = async (
    calls: readonly { method: string; params: unknown }[],
    asBatch: boolean,
  ) => {
    const resolved = calls.map((c) => ({
      method: c.method,
      params: boundWaits(c.method, resolveRefs(c.params, lookup)),
    }));
    let outcomes: Outcome[];
    if (asBatch) {
      if (clientClosed) await connect();
      const answers = await client.batch(resolved);
      outcomes = answers.map((a, i) =>
        'result' in a
          ? { ok: true, result: a.result }
          : { ok: false, error: new RpcCallError(resolved[i]!.method, a.error) },
      );
    } else {
      outcomes = await Promise.all(resolved.map((c) => call(c.method, c.params)));
    }
    outcomes.forEach((outcome, i) => {
      const { method, params } = resolved[i]!;
      tally(method, outcome);
      const problem = problemWith(params, outcome);
      assert.equal(problem, undefined, `${method} ${JSON.stringify(params)?.slice(0, 400)}: ${problem}`);
    });
    await settle(outcomes);
  };

  before(async () => {
    h = await startHarness({ server: { checkTransitions } });
    socket = h.socketPath;
    await connect();
    portHolder = createServer();
    await new Promise<void>((resolve) => portHolder.listen({ port: 0, host: '127.0.0.1' }, resolve));
    takenPort = (portHolder.address() as AddressInfo).port;
    paths.bundle = h.apiBundle;
    paths.noBundle = join(h.dir, 'no-such-bundle');
    paths.fileBundle = join(paths.bundle, 'config.json');
    paths.emptyBundle = join(h.dir, 'empty-bundle');
    await mkdir(paths.emptyBundle);
    paths.badBundle = join(h.dir, 'bad-bundle');
    await mkdir(join(paths.badBundle, 'rootfs'), { recursive: true });
    await writeFile(join(paths.badBundle, 'config.json'), '{"ociVersion": 3, "process": ');
    await buildFixture();
  });

  after(async () => {
    for (const [method, counts] of stats)
      console.log(method.padEnd(24), JSON.stringify(Object.fromEntries(counts)));
    client.close();
    await h.close();
    await new Promise((resolve) => portHolder.close(resolve));
  });

  for (const [name, spec] of methodTable) {
    it(`${name}: near-valid params get a result or a typed error, and a refusal appends nothing`, async () => {
      const valid = nearValidFor(name, spec.params);
      const arb = fc.oneof({ weight: 3, arbitrary: valid }, { weight: 1, arbitrary: mutated(valid) });
      phase = 'valid';
      await holds(
        `${name} near-valid`,
        fc.asyncProperty(arb, (p) => exercise(name, p)),
      );
    });
  }

  for (const [name, spec] of methodTable) {
    it(`${name}: garbage params are refused with a typed error naming the field, and change nothing`, async () => {
      const shape = (spec.params as unknown as { _zod: { def: { innerType?: unknown; shape?: object } } })
        ._zod.def;
      const inner = (shape.innerType as typeof spec.params | undefined) ?? spec.params;
      const fields = Object.keys(
        (inner as unknown as { _zod: { def: { shape?: object } } })._zod.def.shape ?? {},
      );
      phase = 'garbage';
      await holds(
        `${name} garbage`,
        fc.asyncProperty(garbageParams(fields), (p) => exercise(name, p)),
      );
    });
  }

  it('answers calls made at once, in parallel and in batches, each with a result or a typed error', async () => {
    const one = fc
      .constantFrom(...methodTable.keys())
      .chain((method) =>
        nearValidFor(method, methodTable.get(method)!.params).map((params) => ({ method, params })),
      );
    phase = 'valid';
    await holds(
      'at once',
      fc.asyncProperty(
        fc.tuple(fc.array(one, { minLength: 2, maxLength: 5 }), fc.boolean()),
        ([calls, asBatch]) => exerciseTogether(calls, asBatch),
      ),
    );
  });

  it('answers runs of calls on one fixture (paused, stopped, deleted things met later) the same way', async () => {
    const one = fc
      .constantFrom(...methodTable.keys())
      .chain((method) =>
        nearValidFor(method, methodTable.get(method)!.params).map((params) => ({ method, params })),
      );
    phase = 'valid';
    await holds('runs', fc.asyncProperty(fc.array(one, { minLength: 2, maxLength: 8 }), exerciseSequence));
  });

  it('leaves a log the machines agree with, and a fake world that saw no effect twice', async () => {
    const verify = (await must('events.verify', {})) as {
      ok: boolean;
      transitions: { problems: unknown[] };
    };
    assert.deepEqual(verify.transitions.problems, []);
    assert.equal(verify.ok, true);
    assert.deepEqual(h.world.violations, []);
  });

  describe('raw protocol garbage on one connection', () => {
    it('answers each per JSON-RPC 2.0 and keeps serving the next valid request', async () => {
      const raw = await rawClient(socket);
      type Line = {
        jsonrpc?: string;
        id?: unknown;
        result?: unknown;
        error?: { code: number; data?: object };
      };
      try {
        let nextId = 1000;
        /** The next `n` lines (answers may come in any order; each within the call bound). */
        const answers = async (n: number): Promise<Line[]> => {
          const lines: Line[] = [];
          for (let i = 0; i < n; i++) lines.push((await raw.next(CALL_BOUND_MS)) as Line);
          return lines;
        };
        /** A valid request after the garbage: it is served, and nothing else arrived before its answer. */
        const stillServes = async (what: string) => {
          const id = nextId++;
          raw.send(`${JSON.stringify({ jsonrpc: '2.0', id, method: 'daemon.info' })}\n`);
          const [line] = await answers(1);
          assert.equal(
            line?.id,
            id,
            `${what}: next answer is the valid request's, not ${JSON.stringify(line)}`,
          );
          assert.ok(line?.result, `${what}: the valid request got a result`);
        };
        const oneError = async (code: number, id: unknown, what: string) => {
          const [answer] = await answers(1);
          assert.equal(answer?.jsonrpc, '2.0', what);
          assert.deepEqual(
            [answer?.id, answer?.error?.code],
            [id, code],
            `${what}: ${JSON.stringify(answer)}`,
          );
          await stillServes(what);
        };

        raw.send('{"jsonrpc": "2.0", "id": 1, "method": \n');
        await oneError(-32700, null, 'invalid JSON');
        raw.send('not json at all ü 😀\n');
        await oneError(-32700, null, 'text');

        raw.send(`${JSON.stringify([1, 'x', null, {}, [], { jsonrpc: '2.0' }])}\n`);
        const [batch] = (await answers(1)) as unknown as Line[][];
        assert.ok(Array.isArray(batch), 'a batch is answered with an array');
        assert.equal(batch.length, 6, 'one error per junk item');
        for (const a of batch) assert.equal(a.error?.code, -32600);
        await stillServes('junk batch');

        raw.send('[]\n');
        await oneError(-32600, null, 'empty batch');

        raw.send('\n\n   \n');
        await stillServes('empty lines get no answer');

        raw.send(
          `${JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'x', params: 'y'.repeat(2 * 1024 * 1024) })}\n`,
        );
        await oneError(-32600, null, '2 MiB line');

        raw.send(`${JSON.stringify({ jsonrpc: '2.0', method: 'sandbox.status', params: { id: 'nope' } })}\n`);
        raw.send(`${JSON.stringify({ jsonrpc: '2.0', method: 'sandbox.create', params: { id: 7 } })}\n`);
        raw.send(
          `${JSON.stringify([
            { jsonrpc: '2.0', method: 'daemon.info' },
            { jsonrpc: '2.0', method: 'x' },
          ])}\n`,
        );
        await stillServes('notifications (alone or batched, failing or not) get no answer');

        for (const method of ['no.such.method', '__proto__', 'constructor', 'toString', '']) {
          raw.send(`${JSON.stringify({ jsonrpc: '2.0', id: method, method })}\n`);
          await oneError(-32601, method, `method ${JSON.stringify(method)}`);
        }
        for (const id of [1.5, -7, 0, '', 'ü😀', 2 ** 53]) {
          raw.send(
            `${JSON.stringify({ jsonrpc: '2.0', id, method: 'sandbox.status', params: { id: 'absent.raw-protocol-test' } })}\n`,
          );
          await oneError(-32001, id, `id ${JSON.stringify(id)} echoed`);
        }
        raw.send(`${JSON.stringify({ jsonrpc: '2.0', id: { a: 1 }, method: 'daemon.info' })}\n`);
        await oneError(-32600, null, 'object id');
        raw.send(`${JSON.stringify({ jsonrpc: '1.0', id: 3, method: 'daemon.info' })}\n`);
        await oneError(-32600, 3, 'jsonrpc 1.0');
        raw.send(`${JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'daemon.info', params: 'x' })}\n`);
        await oneError(-32600, 4, 'params a string');
      } finally {
        raw.close();
      }
    });
  });
});
