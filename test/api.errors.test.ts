// Application errors: each SandboxdError kind reaches the client with its stable number and data.code.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ApiClient, type RpcCallError, toRpcError } from '../src/api/index.js';
import {
  AgentError,
  ConcurrencyConflict,
  HypervisorError,
  InvalidArgument,
  jsonRpcCodeOf,
  Timeout,
} from '../src/errors/index.js';
import { type Harness, refused, withApi } from './support/api-harness.js';

describe('api errors', () => {
  let h: Harness;
  let c: ApiClient;
  withApi((api) => {
    ({ h, c } = api);
  });

  it('maps NotFound to -32001 with data.code NotFound', async () => {
    const e = await refused(c.call('sandbox.status', { id: 'ghost' }));
    assert.equal(e.rpcCode, -32001);
    assert.equal(e.data.code, 'NotFound');
    assert.equal(e.kind, 'NotFound');
  });

  it('maps AlreadyExists to -32002', async () => {
    await c.call('sandbox.create', { id: 'dup' });
    const e = await refused(c.call('sandbox.create', { id: 'dup' }));
    assert.equal(e.rpcCode, -32002);
    assert.equal(e.data.code, 'AlreadyExists');
  });

  it('maps InvalidState to -32003 naming the state and command', async () => {
    const e = await refused(c.call('sandbox.pause', { id: 'dup' }));
    assert.equal(e.rpcCode, -32003);
    assert.equal(e.data.code, 'InvalidState');
    assert.equal(e.data.state, 'created');
  });

  it('lets exactly one of two concurrent starts of one sandbox win; the other is refused', async () => {
    await c.call('sandbox.create', { id: 'race' });
    const results = await Promise.allSettled([
      c.call('sandbox.start', { id: 'race' }),
      c.call('sandbox.start', { id: 'race' }),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.equal((lost.reason as RpcCallError).data.code, 'InvalidState');
  });

  it('maps a wait that outlives timeoutMs to Timeout (-32005)', async () => {
    await c.call('sandbox.create', { id: 'tw' });
    await c.call('sandbox.start', { id: 'tw' });
    // The fake world's processes run until the test ends them.
    await c.call('container.create', { sandboxId: 'tw', id: 'c', bundle: h.apiBundle });
    await c.call('container.start', { sandboxId: 'tw', id: 'c' });
    const e = await refused(c.call('container.wait', { sandboxId: 'tw', id: 'c', timeoutMs: 50 }));
    assert.equal(e.rpcCode, -32005);
    assert.equal(e.data.code, 'Timeout');
  });

  it('gives every error kind its own stable number', () => {
    const cases = [
      [new ConcurrencyConflict('s', 1, 2), 'Conflict'],
      [new Timeout('boot', 10), 'Timeout'],
      [new HypervisorError('qmp connect', 'refused'), 'HypervisorError'],
      [new AgentError('Check', 'no answer'), 'AgentError'],
      [new InvalidArgument('a.b', 'bad'), 'InvalidArgument'],
    ] as const;
    for (const [err, kind] of cases) {
      const e = toRpcError(err);
      assert.equal(e.code, jsonRpcCodeOf[kind]);
      assert.equal(e.data?.code, kind);
    }
    assert.equal(toRpcError(new InvalidArgument('a.b', 'bad')).data?.field, 'a.b');
    const plain = toRpcError(new TypeError('boom'));
    assert.equal(plain.code, -32000);
    assert.equal(plain.data?.code, 'Internal');
    assert.equal(new Set(Object.values(jsonRpcCodeOf)).size, Object.keys(jsonRpcCodeOf).length);
  });
});
