// cpuset lists ("0-3,6"): parsed, normalised, joined; bad lists are InvalidArgument naming the field (pure).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkCpuList, formatCpuList, parseCpuList, unionCpuLists } from '../src/bundle/index.js';
import { InvalidArgument } from '../src/errors/index.js';

describe('cpuset lists', () => {
  it('parses ids and ranges, sorted and unique', () => {
    assert.deepEqual(parseCpuList('0-3,6', 'f'), [0, 1, 2, 3, 6]);
    assert.deepEqual(parseCpuList(' 6, 2-3 ,2', 'f'), [2, 3, 6]);
  });

  it('writes lists as the kernel does', () => {
    assert.equal(formatCpuList([6, 0, 1, 2, 3]), '0-3,6');
    assert.equal(formatCpuList([1]), '1');
    assert.equal(checkCpuList('3,1,2,7', 'f'), '1-3,7');
    assert.equal(unionCpuLists(['0-1', '4', '1-2']), '0-2,4');
  });

  it('refuses what is not a list, naming the field', () => {
    for (const bad of ['', 'a', '1-', '3-1', '1,,2', '0-99999', '-1']) {
      assert.throws(
        () => parseCpuList(bad, 'resources.cpusetCpus'),
        (err: unknown) => err instanceof InvalidArgument && err.field === 'resources.cpusetCpus',
        bad,
      );
    }
  });
});
