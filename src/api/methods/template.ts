// API methods: VM templates (issue 18): build, list and remove the saved VMs sandboxes may be restored from.
import { z } from 'zod';
import { vmShapeOf } from '../../actors/index.js';
import { SandboxdError } from '../../errors/index.js';
import type { TemplateStore } from '../../templates/index.js';
import { type MethodContext, type MethodSpec, method } from './spec.js';

const templateIdSchema = z.string().regex(/^[0-9a-f]{16}$/, 'a template id: 16 hex digits');

function templatesOf(ctx: MethodContext): TemplateStore {
  if (!ctx.templates) {
    throw new SandboxdError('InvalidState', 'FAILED_PRECONDITION', 'this daemon has no template store', {
      field: 'templates',
    });
  }
  return ctx.templates;
}

export const templateMethods = [
  method({
    name: 'template.build',
    summary:
      'Boots a VM of this shape with the sandbox share unmounted, waits for its agent, pauses it and saves its state in the image cache (temp names, then one rename). The id hashes the image, QEMU version, accelerator, shape and network mode; a template already there is kept unless force.',
    when: 'any time; slow (a cold boot, ~15–60 s under TCG).',
    params: z
      .strictObject({
        vcpus: z.number().int().min(1).max(255).optional(),
        maxVcpus: z.number().int().min(1).max(255).optional(),
        memoryMiB: z.number().int().min(64).optional(),
        maxMemoryMiB: z.number().int().min(64).optional(),
        network: z.enum(['none', 'user']).optional(),
        force: z.boolean().optional(),
      })
      .optional(),
    result: '{ template: { id, identity, stateBytes, builtAt, bootMs, saveMs, stateFile }, built }',
    handler: async (p, ctx) => {
      const shape = { ...vmShapeOf(p ?? {}), network: p?.network ?? 'none' };
      return templatesOf(ctx).build(shape, { force: p?.force ?? false });
    },
  }),
  method({
    name: 'template.list',
    summary:
      'The templates in the image cache, newest first (temp dirs of builds in progress are not listed).',
    params: z.strictObject({}).optional(),
    result: '{ templates: Template[] }',
    handler: async (_p, ctx) => ({ templates: await templatesOf(ctx).list() }),
  }),
  method({
    name: 'template.remove',
    summary: 'Removes a template (one rename, then the files); sandboxes started from it are not affected.',
    params: z.strictObject({ id: templateIdSchema }),
    result: '{ removed: id }',
    handler: async (p, ctx) => {
      await templatesOf(ctx).remove(p.id);
      return { removed: p.id };
    },
  }),
] as const satisfies readonly MethodSpec[];
