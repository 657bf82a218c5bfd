// docs/api.md is generated from the method table: it lists every method and matches the generator's output.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { methods, renderApiDocs } from '../src/api/index.js';

const DOC = fileURLToPath(new URL('../../docs/api.md', import.meta.url));

describe('api docs', () => {
  it('documents every method with a summary, a result and a params schema', () => {
    const text = renderApiDocs();
    for (const m of methods) {
      assert.ok(text.includes(`### ${m.name}\n`), m.name);
      assert.ok(m.summary.length > 10 && m.result.length > 2, m.name);
    }
    assert.ok(!text.includes('(see source)'), 'every params schema renders as JSON Schema');
  });

  it('is what docs/api.md holds (regenerate with `sandboxctl api-docs > docs/api.md`)', async () => {
    assert.equal(await readFile(DOC, 'utf8'), `${renderApiDocs()}\n`);
  });

  it('covers the methods the issue lists', () => {
    const names = new Set(methods.map((m) => m.name));
    for (const n of [
      'daemon.info',
      ...['create', 'start', 'stop', 'pause', 'resume', 'delete', 'status', 'list', 'stats'].map(
        (v) => `sandbox.${v}`,
      ),
      ...[
        'create',
        'start',
        'kill',
        'delete',
        'state',
        'list',
        'pause',
        'resume',
        'stats',
        'update',
        'ps',
      ].map((v) => `container.${v}`),
      ...['start', 'wait', 'kill', 'resize', 'output', 'writeStdin', 'closeStdin'].map((v) => `exec.${v}`),
      'events.read',
      'events.subscribe',
      'events.unsubscribe',
      'guest.details',
      'guest.interfaces',
      'guest.routes',
      'guest.copyFile',
      'guest.metrics',
    ]) {
      assert.ok(names.has(n), n);
    }
  });
});
