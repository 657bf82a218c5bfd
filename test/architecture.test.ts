// The rooms of src/ as docs/architecture.md states them: imports go through a room's door, only to the rooms
// its table row allows, and the room graph has no cycle.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const src = join(repo, 'src');

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sources(path)));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

interface CrossImport {
  readonly from: string;
  readonly room: string;
  readonly target: string;
}

async function crossImports(): Promise<CrossImport[]> {
  const out: CrossImport[] = [];
  for (const file of await sources(src)) {
    const room = relative(src, file).split('/')[0]!;
    const text = await readFile(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)) {
      const target = relative(src, normalize(join(dirname(file), m[1]!)));
      const targetRoom = target.split('/')[0]!;
      if (!target.startsWith('..') && targetRoom !== room)
        out.push({ from: relative(repo, file), room, target });
    }
  }
  return out;
}

/** The "may import" column of docs/architecture.md's room table. */
async function allowedByDoc(): Promise<Map<string, Set<string>>> {
  const doc = await readFile(join(repo, 'docs', 'architecture.md'), 'utf8');
  const allowed = new Map<string, Set<string>>();
  for (const m of doc.matchAll(/^\| `([a-z]+)` \| [^|]+ \| ([^|]+) \|$/gm)) {
    const deps = m[2]!.trim() === '—' ? [] : m[2]!.split(',').map((d) => d.trim());
    allowed.set(m[1]!, new Set(deps));
  }
  return allowed;
}

describe('architecture', () => {
  it('gives every room of src/ a row in docs/architecture.md', async () => {
    const rooms = (await readdir(src, { withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    assert.deepEqual([...(await allowedByDoc()).keys()].sort(), rooms.sort());
  });

  it('imports another room only through its door', async () => {
    const around = (await crossImports()).filter((i) => !/^[a-z]+\/index\.js$/.test(i.target));
    assert.deepEqual(around, []);
  });

  it('imports only the rooms its row allows, and uses each it lists', async () => {
    const allowed = await allowedByDoc();
    const used = new Map<string, Set<string>>();
    for (const i of await crossImports()) {
      const to = i.target.split('/')[0]!;
      assert.ok(allowed.get(i.room)?.has(to), `${i.from} imports ${to}, which its row does not allow`);
      used.set(i.room, (used.get(i.room) ?? new Set()).add(to));
    }
    for (const [room, deps] of allowed)
      assert.deepEqual([...(used.get(room) ?? [])].sort(), [...deps].sort(), `the row of ${room} is stale`);
  });

  it('has no cycle between rooms', async () => {
    const allowed = await allowedByDoc();
    const state = new Map<string, 'open' | 'done'>();
    const visit = (room: string, path: string[]): void => {
      if (state.get(room) === 'done') return;
      assert.notEqual(state.get(room), 'open', `cycle: ${[...path, room].join(' → ')}`);
      state.set(room, 'open');
      for (const dep of allowed.get(room) ?? []) visit(dep, [...path, room]);
      state.set(room, 'done');
    };
    for (const room of allowed.keys()) visit(room, []);
  });
});
