// Starts from a template over the fake world (a fake hypervisor whose restore succeeds or is refused): the choice
// is in the intent, a clone's identity steps come before SandboxStarted, a refused restore boots cold and says so.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { VmTemplateRef, VmTemplateShape } from '../src/actors/index.js';
import { HypervisorError } from '../src/errors/index.js';
import type { VmConfig } from '../src/hypervisor/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

const template: VmTemplateRef = {
  id: '0123456789abcdef',
  stateFile: '/fake/templates/0123456789abcdef/vmstate',
  imageVersion: 'fake',
  kernelParams: ['sandboxd.share=defer'],
};

describe('sandbox start from a template (fake world)', () => {
  let h: Harness;
  const asked: VmTemplateShape[] = [];
  const launched: VmConfig[] = [];
  const restores: string[] = [];
  let refuse: string | undefined;
  let offer: VmTemplateRef | undefined;

  beforeEach(async () => {
    asked.length = 0;
    launched.length = 0;
    restores.length = 0;
    refuse = undefined;
    offer = template;
    h = await makeHarness({
      templates: {
        find: async (shape) => {
          asked.push(shape);
          if (offer === undefined) throw new Error('the template store is unreadable');
          return offer;
        },
      },
    });
    const fake = h.hypervisor;
    const launch = fake.launch.bind(fake);
    Object.assign(fake, {
      launch: (config: VmConfig, signal?: AbortSignal) => {
        launched.push(config);
        return launch(config, signal);
      },
      restoreState: async (sandboxId: string, file: string) => {
        restores.push(`${sandboxId} ${file}`);
        if (refuse) throw new HypervisorError('restore state', refuse, { file });
      },
    });
  });
  afterEach(() => h.cleanup());

  async function types(id: string): Promise<string[]> {
    return (await h.events()).filter((e) => e.stream === `sandbox-${id}`).map((e) => e.type);
  }

  it('restores: the template in the intent, restore and identity events in order, the view says which', async () => {
    await h.runtime.createSandbox('a', { memoryMiB: 256, network: 'user' });
    const view = await h.runtime.startSandbox('a');
    assert.equal(view.state, 'running');
    assert.equal(view.template, template.id);
    assert.equal(view.templateError, undefined);
    assert.deepEqual(asked, [{ vcpus: 1, maxVcpus: 4, memoryMiB: 256, maxMemoryMiB: 4096, network: 'user' }]);
    assert.equal(launched.length, 1);
    assert.equal(launched[0]!.incoming, true);
    assert.deepEqual(launched[0]!.kernelParams, template.kernelParams);
    assert.match(launched[0]!.vmGenerationId ?? '', /^[0-9a-f-]{36}$/);
    assert.deepEqual(restores, [`a ${template.stateFile}`]);
    const log = (await h.events()).filter((e) => e.stream === 'sandbox-a');
    assert.deepEqual(
      (log.find((e) => e.type === 'SandboxStartRequested')?.data as { template?: unknown } | undefined)
        ?.template,
      {
        ...template,
      },
    );
    const t = log.map((e) => e.type);
    assert.deepEqual(
      t.filter((x) =>
        [
          'SandboxRestored',
          'VmLaunched',
          'AgentConnected',
          'SandboxIdentityRefreshed',
          'SandboxStarted',
        ].includes(x),
      ),
      ['SandboxRestored', 'VmLaunched', 'AgentConnected', 'SandboxIdentityRefreshed', 'SandboxStarted'],
    );
    const steps =
      (
        log.find((e) => e.type === 'SandboxIdentityRefreshed')?.data as
          | { steps: { step: string }[] }
          | undefined
      )?.steps ?? [];
    assert.deepEqual(
      steps.map((s) => s.step),
      ['reseed', 'clock'],
      'no hostname step: the config has none',
    );
  });

  it('a refused restore boots cold: SandboxRestoreFailed, a launch without -incoming, the view says cold and why', async () => {
    refuse = 'Not a migration stream';
    await h.runtime.createSandbox('b', {});
    const view = await h.runtime.startSandbox('b');
    assert.equal(view.state, 'running');
    assert.equal(view.template, 'cold');
    assert.match(view.templateError ?? '', /^0123456789abcdef: .*Not a migration stream/);
    assert.equal(launched.length, 2);
    assert.equal(launched[1]!.incoming, undefined);
    assert.equal(launched[1]!.vmGenerationId, undefined);
    const t = await types('b');
    assert.ok(t.indexOf('SandboxRestoreFailed') < t.indexOf('VmLaunched'));
    assert.ok(!t.includes('SandboxRestored') && !t.includes('SandboxIdentityRefreshed'));
    assert.deepEqual(h.world.violations, []);
  });

  it('a template of another image is not restored: cold, and the reason names both images', async () => {
    offer = { ...template, imageVersion: 'older' };
    await h.runtime.createSandbox('c', {});
    const view = await h.runtime.startSandbox('c');
    assert.equal(view.template, 'cold');
    assert.match(view.templateError ?? '', /image older; this is fake/);
    assert.deepEqual(restores, []);
    assert.equal(launched.length, 1);
  });

  it('a failed lookup boots cold with no template in the intent; a stop and start again looks up again', async () => {
    offer = undefined;
    await h.runtime.createSandbox('d', {});
    assert.equal((await h.runtime.startSandbox('d')).template, 'cold');
    const requested = (await h.events()).find(
      (e) => e.stream === 'sandbox-d' && e.type === 'SandboxStartRequested',
    );
    assert.deepEqual(requested?.data, {});
    await h.runtime.stopSandbox('d');
    offer = template;
    const again = await h.runtime.startSandbox('d');
    assert.equal(again.template, template.id, 'the second VM is a clone');
    assert.equal(again.templateError, undefined);
    assert.equal(asked.length, 2);
  });
});
