// The shim server's task table decides when the server may exit (idle): a start's reservation holds it up
// until a Create comes, and a Create in flight holds it up however long its VM takes to boot (pure).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TaskTable } from '../src/shim/index.js';

describe('shim task table: idle', () => {
  it('a reservation holds the server up and lapses by itself when no Create comes', async () => {
    const table = new TaskTable();
    assert.equal(table.idle, true);
    let lapsed = false;
    table.reserve(20, () => {
      lapsed = true;
    });
    assert.equal(table.idle, false);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(lapsed, true);
    assert.equal(table.idle, true);
  });

  it('a Create in flight holds the server up past its reservation, until it ends', async () => {
    const table = new TaskTable();
    let lapsed = false;
    table.reserve(20, () => {
      lapsed = true;
    });
    table.beginCreate();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(lapsed, false, 'the Create used the reservation up');
    assert.equal(table.idle, false, 'the slow Create keeps the server');
    table.endCreate();
    assert.equal(table.idle, true);
  });
});
