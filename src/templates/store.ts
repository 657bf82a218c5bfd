// The templates in the image cache: list, find the one for a shape, build (one at a time per id), remove, and
// sweep what a killed build left (its temp dir, its QEMU).
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { Agent } from '../agent/index.js';
import { NotFound } from '../errors/index.js';
import { type Accel, type GuestImagePaths, isProcessAlive, QemuHypervisor } from '../hypervisor/index.js';
import {
  BUILD_PREFIX,
  builderPidOf,
  buildTemplate,
  MANIFEST_FILE,
  STATE_FILE,
  type TemplateManifest,
  TRASH_PREFIX,
} from './build.js';
import {
  identityOf,
  qemuVersionOf,
  TEMPLATE_KERNEL_PARAMS,
  type TemplateIdentity,
  type TemplateShape,
  templateIdOf,
} from './identity.js';

export interface TemplateStoreOptions {
  /** Where templates live: `<dir>/<id>/{manifest.json,vmstate}` (the daemon: `<image cache>/templates`). */
  readonly dir: string;
  readonly image: () => Promise<GuestImagePaths>;
  /** The agent client the build waits for the guest with. */
  readonly agent: Agent;
  readonly accel: () => Promise<Accel>;
  readonly logger?: Logger;
  readonly qemuBinary?: string;
  /** How long a template VM may take to boot to its agent. Default 180 s (TCG on a loaded host). */
  readonly bootTimeoutMs?: number;
}

/** What a clone is launched with: the state file and what its command line must share with the template's. */
export interface RestorableTemplate {
  readonly id: string;
  readonly stateFile: string;
  readonly imageVersion: string;
  readonly kernelParams: readonly string[];
}

/** A template as listed: its manifest and where its state file is. */
export interface TemplateInfo extends TemplateManifest {
  readonly stateFile: string;
}

export class TemplateStore {
  readonly dir: string;
  readonly #options: TemplateStoreOptions;
  readonly #logger: Logger;
  readonly #building = new Map<string, Promise<TemplateInfo>>();
  #hypervisor: QemuHypervisor | undefined;

  constructor(options: TemplateStoreOptions) {
    this.dir = options.dir;
    this.#options = options;
    this.#logger = (options.logger ?? pino({ level: 'info' })).child({ component: 'templates' });
  }

  /** The identity `shape` has on this host now (the image is built if needed). */
  async identity(shape: TemplateShape): Promise<TemplateIdentity> {
    const [image, qemuVersion, accel] = await Promise.all([
      this.#options.image(),
      qemuVersionOf(this.#options.qemuBinary ?? 'qemu-system-x86_64'),
      this.#options.accel(),
    ]);
    return identityOf(shape, image, qemuVersion, accel);
  }

  /** Every complete template, newest first. Temp dirs and dirs without a readable manifest are not templates. */
  async list(): Promise<TemplateInfo[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const found: TemplateInfo[] = [];
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const info = await this.#read(name);
      if (info) found.push(info);
    }
    return found.sort((a, b) => b.builtAt.localeCompare(a.builtAt));
  }

  /** The template for `shape` on this host, if one is built. */
  async find(shape: TemplateShape): Promise<TemplateInfo | undefined> {
    return this.#read(templateIdOf(await this.identity(shape)));
  }

  /** What a sandbox start restores from for `shape` (the runtime's VmTemplates port), if a template is built. */
  async restorable(shape: TemplateShape): Promise<RestorableTemplate | undefined> {
    const found = await this.find(shape);
    if (!found) return undefined;
    return {
      id: found.id,
      stateFile: found.stateFile,
      imageVersion: found.identity.imageVersion,
      kernelParams: TEMPLATE_KERNEL_PARAMS,
    };
  }

  /**
   * The template for `shape`: the one there (`built: false`) unless `force`, else booted, saved and installed
   * atomically. Concurrent builds of one id share the first.
   */
  async build(
    shape: TemplateShape,
    options: { force?: boolean } = {},
  ): Promise<{ template: TemplateInfo; built: boolean }> {
    const identity = await this.identity(shape);
    const id = templateIdOf(identity);
    const running = this.#building.get(id);
    if (running) return { template: await running, built: true };
    if (!options.force) {
      const there = await this.#read(id);
      if (there) return { template: there, built: false };
    }
    const pending = this.#build(identity, id);
    this.#building.set(id, pending);
    try {
      return { template: await pending, built: true };
    } finally {
      this.#building.delete(id);
    }
  }

  async #build(identity: TemplateIdentity, id: string): Promise<TemplateInfo> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const manifest = await buildTemplate(identity, {
      dir: this.dir,
      image: await this.#options.image(),
      hypervisor: await this.#qemu(),
      agent: this.#options.agent,
      logger: this.#logger,
      bootTimeoutMs: this.#options.bootTimeoutMs ?? 180_000,
    });
    return { ...manifest, stateFile: join(this.dir, id, STATE_FILE) };
  }

  /** Removes template `id` (moved aside by one rename, then deleted). Throws NotFound('template', id). */
  async remove(id: string): Promise<void> {
    if (!(await this.#read(id))) throw new NotFound('template', id);
    const aside = join(this.dir, `${TRASH_PREFIX}${id}-${process.pid}-${Date.now().toString(16)}`);
    await rename(join(this.dir, id), aside);
    await rm(aside, { recursive: true, force: true });
    this.#logger.info({ templateId: id, step: 'template remove' }, 'template removed');
  }

  /**
   * Removes what builds that are gone left: temp dirs whose builder pid is dead, and the QEMU a build killed
   * mid-boot left running (found by the pidfile in its temp dir). Returns how many dirs it removed.
   */
  async sweep(): Promise<number> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    let removed = 0;
    for (const name of names) {
      if (!name.startsWith(BUILD_PREFIX) && !name.startsWith(TRASH_PREFIX)) continue;
      const pid = builderPidOf(name);
      if (pid !== undefined && pid !== process.pid && (await isProcessAlive(pid))) continue;
      if (pid === process.pid && this.#building.size > 0) continue;
      const path = join(this.dir, name);
      // destroy trusts the pidfile only if it names a live QEMU serving that very dir.
      await (await this.#qemu()).destroy(`template-sweep:${name}`, join(path, 'vm'));
      await rm(path, { recursive: true, force: true });
      this.#logger.info({ step: 'template sweep', dir: name }, 'removed what a dead template build left');
      removed++;
    }
    return removed;
  }

  /** Forgets the template VMs' QMP sessions (none outlive a build). */
  async close(): Promise<void> {
    await this.#hypervisor?.close();
  }

  async #qemu(): Promise<QemuHypervisor> {
    this.#hypervisor ??= new QemuHypervisor({
      logger: this.#logger,
      accel: await this.#options.accel(),
      ...(this.#options.qemuBinary ? { qemuBinary: this.#options.qemuBinary } : {}),
    });
    return this.#hypervisor;
  }

  async #read(id: string): Promise<TemplateInfo | undefined> {
    if (!/^[0-9a-f]{16}$/.test(id)) return undefined;
    const dir = join(this.dir, id);
    try {
      const manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as TemplateManifest;
      const stateFile = join(dir, STATE_FILE);
      // A state file of another size than the manifest says is not one this build wrote: not a template.
      if (manifest.id !== id || (await stat(stateFile)).size !== manifest.stateBytes) return undefined;
      return { ...manifest, stateFile };
    } catch {
      return undefined;
    }
  }
}
