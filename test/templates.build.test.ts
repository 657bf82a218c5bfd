// Template build under real QEMU: boot with the share unmounted, agent ready, pause, save; list, no-op rebuild,
// remove; a build killed -9 midway leaves nothing that would be used, and the sweep ends its QEMU.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { createGrpcAgent, type GrpcAgent } from '../src/agent/index.js';
import type { ApiClient } from '../src/api/index.js';
import { NotFound } from '../src/errors/index.js';
import { createQemuHypervisor, type GuestImagePaths, type QemuHypervisor } from '../src/hypervisor/index.js';
import { ensureGuestImage } from '../src/image/index.js';
import {
  MANIFEST_FILE,
  STATE_FILE,
  type TemplateShape,
  TemplateStore,
  templateIdOf,
} from '../src/templates/index.js';
import { refused, withApi } from './support/api-harness.js';
import { exited } from './support/processes.js';
import { exists, qemuPidsUsing, until } from './support/vm.js';

const logger = pino({ level: 'silent' });
const CHILD = fileURLToPath(new URL('./support/template-build-child.js', import.meta.url));
const shape: TemplateShape = { vcpus: 1, maxVcpus: 2, memoryMiB: 256, maxMemoryMiB: 512, network: 'none' };

describe('template build (real QEMU, TCG here)', { timeout: 600_000 }, () => {
  let image: GuestImagePaths;
  let work: string;
  let hypervisor: QemuHypervisor;
  let agent: GrpcAgent;
  let store: TemplateStore;

  before(async () => {
    image = await ensureGuestImage({ logger });
    work = await mkdtemp(join(tmpdir(), 'sbx-tpl-'));
    hypervisor = createQemuHypervisor({ logger });
    agent = createGrpcAgent({ logger });
    store = new TemplateStore({
      dir: join(work, 'templates'),
      image: async () => image,
      agent,
      accel: () => hypervisor.accel(),
      logger,
    });
  });

  after(async () => {
    const left = await qemuPidsUsing(work);
    for (const pid of left) process.kill(pid, 'SIGKILL');
    await store.close();
    await agent.close();
    await hypervisor.close();
    await rm(work, { recursive: true, force: true });
    assert.deepEqual(left, [], 'no QEMU left behind');
  });

  it('builds a manifest and a state file, lists it, keeps it on a second build, removes it', async () => {
    const { template, built } = await store.build(shape);
    assert.equal(built, true);
    const identity = await store.identity(shape);
    assert.equal(template.id, templateIdOf(identity));
    assert.deepEqual(template.identity, identity);
    assert.equal(identity.imageVersion, image.version);
    assert.match(identity.qemuVersion, /^\d+\.\d+/);
    const dir = join(store.dir, template.id);
    const manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8'));
    assert.equal(manifest.id, template.id);
    const size = (await stat(join(dir, STATE_FILE))).size;
    assert.equal(size, manifest.stateBytes);
    // Zero pages are skipped: well below the guest's 256 MiB, but a real memory image.
    assert.ok(size > 10e6 && size < 256 * 2 ** 20, `state of ${size} bytes`);
    assert.ok(template.bootMs > 0 && template.saveMs > 0);
    // The save itself proves the share was not mounted: QEMU refuses to migrate with a 9p export mounted.
    // Only the finished template is in the dir: no temp dir, no sockets, no QEMU.
    assert.deepEqual(await readdir(store.dir), [template.id]);
    assert.deepEqual((await readdir(dir)).sort(), [MANIFEST_FILE, STATE_FILE].sort());
    assert.deepEqual(await qemuPidsUsing(work), []);

    const listed = await store.list();
    assert.deepEqual(
      listed.map((t) => t.id),
      [template.id],
    );
    assert.equal((await store.find(shape))?.id, template.id);

    const again = await store.build(shape);
    assert.equal(again.built, false, 'same identity: no second boot');
    assert.equal(again.template.builtAt, template.builtAt);

    await store.remove(template.id);
    assert.deepEqual(await store.list(), []);
    assert.equal(await store.find(shape), undefined);
    assert.deepEqual(await readdir(store.dir), []);
    await assert.rejects(store.remove(template.id), (err: unknown) => err instanceof NotFound);
  });

  it('a build killed -9 midway leaves no template; the sweep ends its QEMU and temp dir', async () => {
    const child = spawn(process.execPath, [CHILD, store.dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ended = exited(child);
    try {
      // Midway: QEMU runs (its pidfile is in the build's temp dir), the agent is not up yet or just is.
      const pidFile = await until('the build QEMU', 120_000, async () => {
        for (const name of await readdir(store.dir).catch(() => [] as string[])) {
          const file = join(store.dir, name, 'vm', 'qemu.pid');
          if (await exists(file)) return file;
        }
        return undefined;
      });
      await until('QEMU running', 30_000, async () =>
        (await qemuPidsUsing(work)).length > 0 ? true : undefined,
      );
      assert.ok(await exists(pidFile));
    } finally {
      child.kill('SIGKILL');
      await ended;
    }
    // QEMU is daemonized: it outlives its builder. Nothing it left is a template.
    assert.equal((await qemuPidsUsing(work)).length, 1);
    assert.deepEqual(await store.list(), []);
    assert.equal(await store.find(shape), undefined);
    const names = await readdir(store.dir);
    assert.equal(names.length, 1);
    assert.match(names[0]!, /^\.build-/);

    assert.equal(await store.sweep(), 1);
    assert.deepEqual(await qemuPidsUsing(work), []);
    assert.deepEqual(await readdir(store.dir), []);
  });
});

describe('template API: typed errors naming the field, nothing changed', () => {
  const dir = join(tmpdir(), `sbx-tpl-api-${process.pid}`);
  const hypervisor = createQemuHypervisor({ logger, accel: 'tcg' });
  const templates = new TemplateStore({
    dir,
    image: () => ensureGuestImage({ logger }),
    agent: createGrpcAgent({ logger }),
    accel: () => hypervisor.accel(),
    logger,
  });
  let c: ApiClient;
  withApi(
    (api) => {
      c = api.c;
    },
    { server: { templates } },
  );
  after(() => rm(dir, { recursive: true, force: true }));

  it('lists none, refuses a malformed id and a bad shape naming the field, says NotFound for an unknown id', async () => {
    assert.deepEqual(await c.call('template.list', {}), { templates: [] });
    const malformed = await refused(c.call('template.remove', { id: '../x' }));
    assert.equal(malformed.data.code, 'InvalidArgument');
    assert.equal(malformed.data.field, 'id');
    const shape = await refused(c.call('template.build', { vcpus: 0 }));
    assert.equal(shape.data.code, 'InvalidArgument');
    assert.equal(shape.data.field, 'vcpus');
    const network = await refused(c.call('template.build', { network: 'netns' }));
    assert.equal(network.data.field, 'network');
    const unknown = await refused(c.call('template.remove', { id: '0123456789abcdef' }));
    assert.equal(unknown.data.code, 'NotFound');
    assert.equal(await exists(dir), false, 'nothing was created');
  });
});
