// API methods: Guest calls (the seeds' agent interface a user needs).
import { z } from 'zod';
import {
  absolutePathSchema,
  base64Schema,
  cidrSchema,
  idSchema,
  ipAddressSchema,
  isoTimeSchema,
} from '../schemas.js';
import { type MethodSpec, method, sandboxIdRef } from './spec.js';

export const guestMethods = [
  method({
    name: 'guest.details',
    summary: "The guest's agent version, kernel, CPUs, memory and memory block size.",
    when: 'sandbox running.',
    params: sandboxIdRef,
    result: 'GuestDetails',
    handler: (p, { runtime }) => runtime.guestDetails(p.sandboxId),
  }),
  method({
    name: 'guest.interfaces',
    summary: "The guest's network interfaces.",
    when: 'sandbox running.',
    params: sandboxIdRef,
    result: 'NetInterface[]',
    handler: (p, { runtime }) => runtime.listInterfaces(p.sandboxId),
  }),
  method({
    name: 'guest.routes',
    summary: "The guest's routes.",
    when: 'sandbox running.',
    params: sandboxIdRef,
    result: 'NetRoute[]',
    handler: (p, { runtime }) => runtime.listRoutes(p.sandboxId),
  }),
  method({
    name: 'guest.updateInterface',
    summary:
      'Changes a guest interface: addresses (CIDR, replacing the old ones), MTU, MAC, up/down. Recorded as GuestNetworkUpdateRequested, then GuestNetworkUpdated (or GuestNetworkUpdateFailed) once the guest answered; lasts as long as this VM.',
    when: 'sandbox running; the interface exists in the guest (guest.interfaces).',
    params: z.strictObject({
      sandboxId: idSchema,
      interface: z.strictObject({
        name: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, { error: 'must be an interface name' }),
        addresses: z.array(cidrSchema).max(32).optional(),
        mtu: z.number().int().min(68).max(65535).optional(),
        mac: z
          .string()
          .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, { error: 'must be a MAC address' })
          .optional(),
        up: z.boolean().optional(),
      }),
    }),
    result: 'NetInterface (as the guest reports it after the change)',
    handler: (p, { runtime }) =>
      runtime.updateInterface(p.sandboxId, { ...p.interface, addresses: p.interface.addresses ?? [] }),
  }),
  method({
    name: 'guest.updateRoutes',
    summary:
      'Adds or replaces guest routes (dest "default" or a CIDR). Recorded as GuestNetworkUpdateRequested, then GuestNetworkUpdated (or GuestNetworkUpdateFailed) once the guest answered; lasts as long as this VM.',
    when: 'sandbox running.',
    params: z.strictObject({
      sandboxId: idSchema,
      routes: z
        .array(
          z.strictObject({
            dest: z.union([z.literal('default'), cidrSchema]),
            gateway: ipAddressSchema.optional(),
            device: z
              .string()
              .regex(/^[A-Za-z0-9_.:-]{1,15}$/, { error: 'must be an interface name' })
              .optional(),
            source: ipAddressSchema.optional(),
          }),
        )
        .min(1)
        .max(64),
    }),
    result: 'NetRoute[] (the whole table after the change)',
    handler: (p, { runtime }) => runtime.updateRoutes(p.sandboxId, p.routes),
  }),
  method({
    name: 'guest.setTime',
    summary: "Sets the guest's clock (default: the host's time now), e.g. after a long pause.",
    when: 'sandbox running.',
    params: z.strictObject({ sandboxId: idSchema, time: isoTimeSchema.optional() }),
    result: '{ time: ISO time set }',
    handler: async (p, { runtime }) => ({
      time: (await runtime.setGuestTime(p.sandboxId, p.time ? new Date(p.time) : undefined)).toISOString(),
    }),
  }),
  method({
    name: 'guest.reseedRandom',
    summary:
      "Mixes bytes into the guest's entropy pool (default: 64 random bytes from the host), e.g. after restoring a VM.",
    when: 'sandbox running.',
    params: z.strictObject({ sandboxId: idSchema, data: base64Schema.optional() }),
    result: '{ bytes: number }',
    handler: async (p, { runtime }) => ({
      bytes: await runtime.reseedGuestRandom(
        p.sandboxId,
        p.data === undefined ? undefined : Buffer.from(p.data, 'base64'),
      ),
    }),
  }),
  method({
    name: 'guest.copyFile',
    summary:
      'Copies bytes (base64) to a file in the guest (the agent refuses paths outside the sandbox dirs).',
    when: 'sandbox running.',
    params: z.strictObject({
      sandboxId: idSchema,
      path: absolutePathSchema,
      data: base64Schema,
      mode: z.number().int().min(0).max(0o7777).optional(),
    }),
    result: '{ copied: bytes }',
    handler: async (p, { runtime }) => {
      const data = Buffer.from(p.data, 'base64');
      await runtime.copyFile(p.sandboxId, p.path, data, p.mode);
      return { copied: data.length };
    },
  }),
  method({
    name: 'guest.metrics',
    summary: "The guest agent's metrics (Prometheus text).",
    when: 'sandbox running.',
    params: sandboxIdRef,
    result: '{ metrics: string }',
    handler: async (p, { runtime }) => ({ metrics: await runtime.metrics(p.sandboxId) }),
  }),
] as const satisfies readonly MethodSpec[];
