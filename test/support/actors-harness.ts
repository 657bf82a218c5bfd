// Test harness for the actor runtime: a fake world, its two fake ports, a store, a state dir and a bundle.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import {
  createRuntime,
  type RuntimeHandle,
  type RuntimeOptions,
  unmountAllUnder,
} from '../../src/actors/index.js';
import type { EventEnvelope } from '../../src/events/index.js';
import { createMemoryEventStore, type EventStore } from '../../src/store/index.js';
import { FakeAgent, FakeHypervisor, FakeWorld } from './fake-world.js';

export const silent = pino({ level: 'silent' });

export const fakeImage = async () => ({
  kernel: '/fake/vmlinuz',
  initrd: '/fake/initrd',
  rootDir: '/fake/root',
  version: 'fake',
});

export interface Harness {
  readonly dir: string;
  readonly stateDir: string;
  /** An OCI bundle (config.json + rootfs/) on the host. */
  readonly bundle: string;
  readonly world: FakeWorld;
  store: EventStore;
  hypervisor: FakeHypervisor;
  agent: FakeAgent;
  runtime: RuntimeHandle;
  /** Starts a runtime over the same store and world, as a restarted daemon would. */
  restart(options?: Partial<RuntimeOptions>): Promise<RuntimeHandle>;
  events(): Promise<EventEnvelope[]>;
  cleanup(): Promise<void>;
}

export async function makeHarness(
  options: Partial<RuntimeOptions> & { store?: EventStore } = {},
): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'sandboxd-actors-'));
  const stateDir = join(dir, 'state');
  const bundle = join(dir, 'bundle');
  await mkdir(join(bundle, 'rootfs', 'bin'), { recursive: true });
  await writeFile(
    join(bundle, 'config.json'),
    JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { args: ['sh'] } }),
  );
  await writeFile(join(bundle, 'rootfs', 'bin', 'sh'), '#!fake\n');
  const world = new FakeWorld();
  const store = options.store ?? createMemoryEventStore();
  const start = (extra: Partial<RuntimeOptions> = {}) => {
    h.hypervisor = new FakeHypervisor(world);
    h.agent = new FakeAgent(world);
    return createRuntime({
      store: h.store,
      hypervisor: h.hypervisor,
      agent: h.agent,
      stateDir,
      image: fakeImage,
      logger: silent,
      // The fake world keys what it did by intent (to catch an effect run twice for one).
      traceIntents: true,
      ...options,
      ...extra,
    });
  };
  const h: Harness = {
    dir,
    stateDir,
    bundle,
    world,
    store,
    hypervisor: new FakeHypervisor(world),
    agent: new FakeAgent(world),
    runtime: undefined as unknown as RuntimeHandle,
    async restart(extra) {
      h.runtime = await start(extra);
      return h.runtime;
    },
    async events() {
      const out: EventEnvelope[] = [];
      for await (const e of h.store.readAll()) out.push(e);
      return out;
    },
    async cleanup() {
      await h.runtime?.shutdown().catch(() => undefined);
      // Bundles are bind-mounted into the share: unmounted first, or the remove would reach through them.
      await unmountAllUnder(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
  h.runtime = await start();
  return h;
}
