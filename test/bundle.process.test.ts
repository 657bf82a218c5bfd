// An OCI process (containerd's exec spec, runc's --process file) as the API's process, and the API's checks of it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { processSchema } from '../src/api/schemas.js';
import { apiProcessOf } from '../src/bundle/index.js';

// What containerd 1.6 sends for `ctr task exec` on a default spec (trimmed to the members that matter).
const containerdExec = {
  args: ['sh', '-c', 'id'],
  env: ['PATH=/usr/bin:/bin'],
  cwd: '/',
  terminal: false,
  consoleSize: { height: 0, width: 0 },
  user: { uid: 1000, gid: 1000, additionalGids: [5, 6] },
  capabilities: { bounding: ['CAP_CHOWN', 'CAP_KILL'], effective: ['CAP_CHOWN'], permitted: ['CAP_CHOWN'] },
  rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
  noNewPrivileges: true,
  oomScoreAdj: 100,
  apparmorProfile: 'cri-containerd.apparmor.d',
  selinuxLabel: '',
};

describe('an OCI process as the API process', () => {
  it('keeps what crun applies, drops what the guest cannot enforce, and the API takes the result', () => {
    const p = apiProcessOf(containerdExec);
    assert.deepEqual(p, {
      args: ['sh', '-c', 'id'],
      env: ['PATH=/usr/bin:/bin'],
      cwd: '/',
      user: { uid: 1000, gid: 1000, additionalGids: [5, 6] },
      capabilities: containerdExec.capabilities,
      rlimits: containerdExec.rlimits,
      noNewPrivileges: true,
      oomScoreAdj: 100,
    });
    // The API takes it as it is: what is logged and shown is what was asked.
    assert.deepEqual(processSchema.parse(p), p);
    assert.equal(processSchema.parse({ args: ['id'], user: '1000:5' }).user, '1000:5');
  });

  it('keeps a console size only for a terminal with both sides set', () => {
    const size = { height: 40, width: 120 };
    assert.equal(apiProcessOf({ args: ['sh'], consoleSize: size }).consoleSize, undefined);
    assert.equal(
      apiProcessOf({ args: ['sh'], terminal: true, consoleSize: { height: 0, width: 0 } }).consoleSize,
      undefined,
    );
    assert.deepEqual(apiProcessOf({ args: ['sh'], terminal: true, consoleSize: size }).consoleSize, size);
  });

  it('refuses a bad member naming it', () => {
    const cases: [unknown, string][] = [
      [{ args: ['id'], rlimits: [{ type: 'NOFILE', hard: 1, soft: 1 }] }, 'rlimits.0.type'],
      [{ args: ['id'], capabilities: { effective: ['chown'] } }, 'capabilities.effective.0'],
      [{ args: ['id'], capabilities: { sometimes: [] } }, 'capabilities'],
      [{ args: ['id'], oomScoreAdj: 1001 }, 'oomScoreAdj'],
      [{ args: ['id'], user: { uid: -1, gid: 0 } }, 'user'],
      [{ args: ['id'], apparmorProfile: 'x' }, ''],
    ];
    for (const [input, path] of cases) {
      const r = processSchema.safeParse(input);
      assert.equal(r.success, false, JSON.stringify(input));
      const paths = r.error!.issues.map((i) => i.path.join('.'));
      assert.ok(
        paths.some((p) => p === path || p.startsWith(`${path}.`)),
        `${JSON.stringify(input)}: ${paths}`,
      );
    }
  });
});
