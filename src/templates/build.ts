// Building one template: boot a VM with the share unmounted, wait for its agent, pause, save its state, and put
// the state and its manifest in place with one rename. Every name before that rename is a temp name.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Agent } from '../agent/index.js';
import type { GuestImagePaths, QemuHypervisor } from '../hypervisor/index.js';
import { fsyncPath, writeFileSynced } from '../store/index.js';
import { type TemplateIdentity, templateIdOf, templateVmConfig } from './identity.js';

/** File names inside a template dir. */
export const MANIFEST_FILE = 'manifest.json';
export const STATE_FILE = 'vmstate';
/** Prefixes of temp dirs in the templates dir: never read as templates, swept when their builder is gone. */
export const BUILD_PREFIX = '.build-';
export const TRASH_PREFIX = '.trash-';

/** What a template dir says about itself (manifest.json). */
export interface TemplateManifest {
  readonly id: string;
  readonly identity: TemplateIdentity;
  /** Bytes of the saved state (QEMU skips zero pages). */
  readonly stateBytes: number;
  readonly builtAt: string;
  /** Launch to the agent answering, then pause + save to the file, in ms. */
  readonly bootMs: number;
  readonly saveMs: number;
}

export interface BuildParts {
  readonly dir: string;
  readonly image: GuestImagePaths;
  readonly hypervisor: QemuHypervisor;
  readonly agent: Agent;
  readonly logger: Logger;
  readonly bootTimeoutMs: number;
}

/** The temp dir of a build by this process: its pid in the name tells a sweep whether the builder lives. */
export function buildDirName(id: string): string {
  return `${BUILD_PREFIX}${id}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** The pid in a temp dir's name (`.build-<id>-<pid>-<rand>`), if it has one. */
export function builderPidOf(name: string): number | undefined {
  const m = /^\.(?:build|trash)-[0-9a-f]+-(\d+)-[0-9a-f]+$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Boots, saves and installs the template of `identity` at `<dir>/<id>` (replacing one there). */
export async function buildTemplate(
  identity: TemplateIdentity,
  parts: BuildParts,
): Promise<TemplateManifest> {
  const { dir, hypervisor, agent } = parts;
  const id = templateIdOf(identity);
  const logger = parts.logger.child({ templateId: id });
  const tmp = join(dir, buildDirName(id));
  const vmDir = join(tmp, 'vm');
  const shareDir = join(tmp, 'share');
  // Not a sandbox id (ids have no ':'), so the agent's and hypervisor's tables cannot mix it up with one.
  const vmId = `template:${id}`;
  await mkdir(shareDir, { recursive: true });
  const started = Date.now();
  try {
    const config = templateVmConfig(identity, {
      sandboxId: vmId,
      stateDir: vmDir,
      sharedDir: shareDir,
      image: parts.image,
      incoming: false,
      vmGenerationId: randomUUID(),
    });
    const handle = await hypervisor.launch(config);
    logger.info({ step: 'template boot', pid: handle.pid }, 'template VM launched');
    await agent.connect(vmId, handle.agentSocket, {
      deadlineMs: parts.bootTimeoutMs,
      outputSocket: handle.outputSocket,
    });
    await agent.check(vmId);
    // The clone's host starts a new session with the resync handshake; nothing of this one is kept.
    await agent.disconnect(vmId);
    const bootMs = Date.now() - started;
    const stateFile = join(tmp, STATE_FILE);
    await hypervisor.saveState(vmId, stateFile);
    const saveMs = Date.now() - started - bootMs;
    await hypervisor.destroy(vmId, vmDir);
    await rm(shareDir, { recursive: true, force: true });
    await fsyncPath(stateFile);
    const manifest: TemplateManifest = {
      id,
      identity,
      stateBytes: (await stat(stateFile)).size,
      builtAt: new Date().toISOString(),
      bootMs,
      saveMs,
    };
    await writeFileSynced(join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    await fsyncPath(tmp);
    await install(tmp, join(dir, id), dir);
    logger.info(
      { step: 'template build', bootMs, saveMs, stateBytes: manifest.stateBytes },
      'template built',
    );
    return manifest;
  } catch (err) {
    await agent.disconnect(vmId).catch(() => undefined);
    await hypervisor
      .destroy(vmId, vmDir)
      .catch((e: unknown) => logger.warn({ err: e }, 'template VM cleanup'));
    await rm(tmp, { recursive: true, force: true });
    logger.warn({ step: 'template build', err }, 'template build failed; nothing installed');
    throw err;
  }
}

/**
 * Puts the finished dir `tmp` at `target`. A template already there (a forced rebuild) is moved aside first:
 * a reader sees the old template, none (it boots cold), or the new one, never a mix.
 */
async function install(tmp: string, target: string, dir: string): Promise<void> {
  const id = target.slice(dir.length + 1);
  const aside = join(dir, `${TRASH_PREFIX}${id}-${process.pid}-${randomBytes(4).toString('hex')}`);
  const moved = await rename(target, aside).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
  await rename(tmp, target);
  await fsyncPath(dir);
  if (moved) await rm(aside, { recursive: true, force: true });
}
