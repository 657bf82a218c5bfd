// Sandboxes started from a VM template under real QEMU (TCG here): each clone gets its own randomness, clock and
// hostname before anything runs in it; exec and pause/resume work on a clone; a template whose state QEMU refuses
// falls back to a cold boot, said in the view and the log; after delete nothing is left.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createRuntime, type RuntimeHandle, unmountAllUnder } from '../src/actors/index.js';
import { createGrpcAgent, type GrpcAgent } from '../src/agent/index.js';
import { type EventEnvelope, streamOf } from '../src/events/index.js';
import { createQemuHypervisor, type QemuHypervisor } from '../src/hypervisor/index.js';
import { createBusyboxBundle, ensureGuestImage } from '../src/image/index.js';
import { type LevelEventStore, openLevelEventStore } from '../src/store/index.js';
import { type TemplateInfo, TemplateStore } from '../src/templates/index.js';
import { exists, qemuPidsUsing } from './support/vm.js';

const logger = pino({ level: 'silent' });
/** The sandboxes' shape: small, so the template boots and saves quickly under TCG. */
const config = { vcpus: 1, maxVcpus: 2, memoryMiB: 256, maxMemoryMiB: 512 } as const;

describe('sandboxes started from a template (real QEMU, TCG here)', { timeout: 900_000 }, () => {
  let work: string;
  let state: string;
  let bundle: string;
  let store: LevelEventStore;
  let hypervisor: QemuHypervisor;
  let agent: GrpcAgent;
  let templates: TemplateStore;
  let template: TemplateInfo;
  let runtime: RuntimeHandle;
  const startMs: Record<string, unknown> = {};

  async function events(sandboxId: string): Promise<EventEnvelope[]> {
    const out: EventEnvelope[] = [];
    for await (const e of store.readStream(streamOf.sandbox(sandboxId))) out.push(e);
    return out;
  }

  async function start(id: string, hostname: string): Promise<void> {
    await runtime.createSandbox(id, { ...config, hostname });
    const t0 = performance.now();
    await runtime.startSandbox(id);
    const ms = Math.round(performance.now() - t0);
    const log = await events(id);
    const restore = log.find((e) => e.type === 'SandboxRestored')?.data;
    const t = Date.parse(log[0]?.at ?? '');
    const steps = log.map((e) => `${e.type}+${Date.parse(e.at ?? '') - t}`).join(' ');
    startMs[id] = restore ? { ms, ...restore, steps } : { ms, steps };
    // A container in the guest's own UTS namespace, so `hostname` there is the sandbox's.
    await runtime.createContainer({ sandboxId: id, id: 'box', bundle });
    await runtime.startContainer(id, 'box');
  }

  async function sh(sandboxId: string, execId: string, script: string): Promise<string> {
    await runtime.startExec(sandboxId, 'box', execId, { args: ['sh', '-c', script] });
    const chunks: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      runtime.output(sandboxId, 'box', execId, 'stdout').subscribe({
        next: (chunk) => chunks.push(Buffer.from(chunk)),
        complete: () => resolve(),
        error: reject,
      });
    });
    const [status] = await Promise.all([runtime.waitExec(sandboxId, 'box', execId), done]);
    assert.equal(status.exitCode, 0, `${script} in ${sandboxId}`);
    return Buffer.concat(chunks).toString('utf8').trim();
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sbx-tplstart-'));
    state = join(work, 'state');
    await mkdir(state, { recursive: true });
    bundle = join(work, 'box');
    await createBusyboxBundle(bundle, { args: ['sleep', '100000'] });
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
    spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'uts');
    delete spec.hostname;
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));

    const image = await ensureGuestImage({ logger });
    hypervisor = createQemuHypervisor({ logger });
    agent = createGrpcAgent({ logger });
    templates = new TemplateStore({
      dir: join(work, 'templates'),
      image: async () => image,
      agent,
      accel: () => hypervisor.accel(),
      logger,
    });
    template = (await templates.build({ ...config, network: 'none' })).template;
    store = await openLevelEventStore(join(state, 'events'));
    runtime = await createRuntime({
      store,
      hypervisor,
      agent,
      stateDir: state,
      image: async () => image,
      templates: { find: (shape) => templates.restorable(shape) },
      logger,
    });
  });

  after(async () => {
    for (const s of runtime?.listSandboxes() ?? []) {
      await runtime.deleteSandbox(s.id, { force: true }).catch(() => undefined);
    }
    await runtime?.shutdown().catch(() => undefined);
    await templates?.close();
    await hypervisor?.close();
    await agent?.close();
    await store?.close();
    const left = await qemuPidsUsing(work);
    for (const pid of left) process.kill(pid, 'SIGKILL');
    await unmountAllUnder(work).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
    process.stderr.write(`# start ms: ${JSON.stringify(startMs)}\n`);
    assert.deepEqual(left, [], 'no QEMU left behind');
  });

  it('two clones of one template: each restored (recorded), with its own random bytes, clock and hostname', async () => {
    await start('clone-a', 'clone-a');
    await start('clone-b', 'clone-b');
    for (const id of ['clone-a', 'clone-b']) {
      const view = runtime.getSandbox(id);
      assert.equal(view.state, 'running');
      assert.equal(view.template, template.id, `${id} came from the template`);
      assert.equal(view.templateError, undefined);
      const log = await events(id);
      const types = log.map((e) => e.type);
      const restored = log.find((e) => e.type === 'SandboxRestored')?.data as { templateId: string };
      assert.equal(restored.templateId, template.id);
      assert.ok(types.indexOf('SandboxRestored') < types.indexOf('VmLaunched'));
      const refreshed = log.find((e) => e.type === 'SandboxIdentityRefreshed')?.data as {
        steps: { step: string; ms: number }[];
      };
      assert.deepEqual(
        refreshed.steps.map((s) => s.step),
        ['reseed', 'clock', 'hostname'],
      );
      assert.ok(types.indexOf('SandboxIdentityRefreshed') < types.indexOf('SandboxStarted'));
      const requested = log.find((e) => e.type === 'SandboxStartRequested')?.data as {
        template?: { id: string };
      };
      assert.equal(requested.template?.id, template.id, 'the choice is in the intent');
    }
    const [a, b] = await Promise.all(
      ['clone-a', 'clone-b'].map((id) =>
        sh(id, 'rand', 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"'),
      ),
    );
    assert.match(a!, /^[0-9a-f]{64}$/);
    assert.notEqual(a, b, 'two clones read different bytes from /dev/urandom');
    for (const id of ['clone-a', 'clone-b']) {
      const guest = Number(await sh(id, 'date', 'date +%s'));
      assert.ok(Math.abs(guest - Date.now() / 1000) <= 5, `${id}'s clock is the host's (${guest})`);
      assert.equal(await sh(id, 'hostname', 'hostname'), id);
    }
  });

  it('exec and pause/resume work on a clone', async () => {
    assert.equal(await sh('clone-a', 'hello', 'echo hello; cat /proc/uptime >/dev/null'), 'hello');
    assert.equal((await runtime.pauseSandbox('clone-a')).state, 'paused');
    assert.equal(await hypervisor.status('clone-a'), 'paused');
    assert.equal((await runtime.resumeSandbox('clone-a')).state, 'running');
    assert.equal(await sh('clone-a', 'again', 'echo again'), 'again');
  });

  it('a template whose state QEMU refuses: the sandbox boots cold, said in the view and the log', async () => {
    // Same size (so the store still lists it), but no longer a migration stream: its header is zeroed.
    const file = await open(template.stateFile, 'r+');
    await file.write(Buffer.alloc(4096), 0, 4096, 0);
    await file.close();
    await start('fallback', 'fallback');
    const view = runtime.getSandbox('fallback');
    assert.equal(view.state, 'running');
    assert.equal(view.template, 'cold');
    assert.match(view.templateError ?? '', new RegExp(`^${template.id}: `));
    const types = (await events('fallback')).map((e) => e.type);
    assert.ok(types.includes('SandboxRestoreFailed'));
    assert.ok(!types.includes('SandboxRestored') && !types.includes('SandboxIdentityRefreshed'));
    assert.equal(await sh('fallback', 'hostname', 'hostname'), 'fallback');
  });

  it('after delete no QEMU, socket or sandbox dir is left', async () => {
    await runtime.stopSandbox('clone-a');
    for (const id of ['clone-a', 'clone-b', 'fallback']) await runtime.deleteSandbox(id, { force: true });
    assert.deepEqual(await qemuPidsUsing(work), []);
    assert.deepEqual(await readdir(join(state, 'sandboxes')).catch(() => []), []);
    assert.equal(await exists(join(state, 'sandboxes', 'clone-a')), false);
    // Only the template remains in the templates dir: no clone wrote there.
    assert.deepEqual(await readdir(templates.dir), [template.id]);
  });
});
