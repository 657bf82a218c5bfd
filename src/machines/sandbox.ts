// The sandbox lifecycle machine: which facts are legal in which state; effects are only named here.
import { assign, setup } from 'xstate';
import type { SandboxEvent, SandboxEventData } from '../events/index.js';
import type { Fed, LastFailure } from './common.js';

type VmHandleData = SandboxEventData['VmLaunched']['handle'];

export interface SandboxContext {
  readonly sandboxId: string;
  /** Which life of the id this is (absent: the first; see lifeOf). */
  readonly incarnation?: number;
  readonly config: SandboxEventData['SandboxCreated']['config'];
  readonly createdAt: string;
  /** The running VM, from VmLaunched / SandboxReattached; cleared once the VM is known gone. */
  readonly handle?: VmHandleData;
  readonly agentVersion?: string;
  readonly error?: LastFailure;
  /** Why the VM ended on its own (VmExited / SandboxLost). */
  readonly lostReason?: string;
  /** The running VM's size once SandboxResized said so; absent: the size the config booted it with. */
  readonly size?: SandboxEventData['SandboxResized'];
  /** A resize asked for (SandboxResizeRequested) whose outcome is not in the log yet: recovery runs it again. */
  readonly resizing?: SandboxEventData['SandboxResizeRequested'];
  /** What clients changed in this VM's network (GuestNetworkUpdated): the latest per interface and per route. */
  readonly guestNetwork?: GuestNetworkChanges;
  /** A guest network change asked for (GuestNetworkUpdateRequested) whose outcome is not in the log yet. */
  readonly networkUpdating?: GuestNetworkData;
  /** How this VM is plugged into its network namespace (SandboxNetworkAttached), for the guest's setup. */
  readonly netns?: SandboxEventData['SandboxNetworkAttached']['wiring'];
  /** The template this VM was restored from (SandboxRestored); absent: it booted cold. */
  readonly restored?: SandboxEventData['SandboxRestored'];
  /** Why this VM booted cold although a template was asked for (SandboxRestoreFailed). */
  readonly restoreFailed?: SandboxEventData['SandboxRestoreFailed'];
  /** A clone's guest was given its own randomness, clock and hostname (SandboxIdentityRefreshed). */
  readonly identityRefreshed?: boolean;
  /** A refresh of the netns wiring asked for (SandboxNetworkRefreshRequested) without an outcome in the log yet. */
  readonly netnsRefreshing?: true;
}

type GuestNetworkData = SandboxEventData['GuestNetworkUpdated'];
export interface GuestNetworkChanges {
  readonly interfaces: Readonly<Record<string, NonNullable<GuestNetworkData['interface']>>>;
  readonly routes: Readonly<Record<string, NonNullable<GuestNetworkData['routes']>[number]>>;
}

function withNetworkChange(
  before: GuestNetworkChanges | undefined,
  change: GuestNetworkData,
): GuestNetworkChanges {
  const interfaces = { ...before?.interfaces };
  if (change.interface) interfaces[change.interface.name] = change.interface;
  const routes = { ...before?.routes };
  for (const route of change.routes ?? []) routes[route.dest] = route;
  return { interfaces, routes };
}

export type SandboxMachineEvent = Fed<SandboxEvent>;

/**
 * Effects the runtime binds by name (see src/actors/sandbox-effects.ts); each ends in an outcome event:
 * launchVm → VmLaunched | SandboxStartFailed; connectAgent → AgentConnected | SandboxStartFailed;
 * initGuest → SandboxStarted | SandboxStartFailed; releaseVm (best effort, no outcome);
 * pauseVm → SandboxPaused | SandboxPauseFailed; resumeVm → SandboxResumed | SandboxResumeFailed;
 * stopVm → SandboxStopped | SandboxStopFailed; destroyVm → SandboxDeleted | SandboxDeleteFailed;
 * updateGuestNetwork → GuestNetworkUpdated | GuestNetworkUpdateFailed;
 * refreshNetwork → SandboxNetworkRefreshed | SandboxNetworkRefreshFailed;
 * resizeVm → SandboxResized (what QEMU took) and, when it stopped short, SandboxResizeFailed.
 */
export const sandboxEffects = [
  'launchVm',
  'connectAgent',
  'initGuest',
  'releaseVm',
  'pauseVm',
  'resumeVm',
  'stopVm',
  'destroyVm',
  'updateGuestNetwork',
  'resizeVm',
  'refreshNetwork',
] as const;
export type SandboxEffect = (typeof sandboxEffects)[number];

const noEffect = () => {};

const forced = ({ event }: { event: SandboxMachineEvent }) =>
  event.type === 'SandboxDeleteRequested' && event.data.force;

/** Delete only when nothing runs (created, stopped, failed, lost), or with force from anywhere. */
const forceDelete = { SandboxDeleteRequested: { guard: 'forced', target: '#sandbox.deleting' } } as const;
/** Recovery re-made missing wiring of a VM that runs (nothing in the context changes: the wiring is the same). */
const networkRepaired = { SandboxNetworkRepaired: { actions: 'wiringReconciled' } } as const;
/** The wiring of a sandbox whose VM is gone or going was taken out of its namespace (stop, delete, recovery). */
const networkReleased = { SandboxNetworkReleased: { actions: 'wiringReconciled' } } as const;

const vmDied = {
  VmExited: { target: '#sandbox.lost', actions: 'gone' },
  SandboxLost: { target: '#sandbox.lost', actions: 'gone' },
} as const;

export const sandboxMachine = setup({
  types: {} as { context: SandboxContext; events: SandboxMachineEvent },
  actions: {
    launchVm: noEffect,
    connectAgent: noEffect,
    initGuest: noEffect,
    releaseVm: noEffect,
    pauseVm: noEffect,
    resumeVm: noEffect,
    stopVm: noEffect,
    destroyVm: noEffect,
    updateGuestNetwork: noEffect,
    resizeVm: noEffect,
    refreshNetwork: noEffect,
    refreshAsked: assign({ netnsRefreshing: true as const }),
    refreshed: assign(({ context, event }) =>
      event.type === 'SandboxNetworkRefreshed' && context.netns
        ? {
            netns: { ...context.netns, links: event.data.links, routes: event.data.routes },
            netnsRefreshing: undefined,
          }
        : {},
    ),
    // Like a refused guest network change, a refresh that failed says nothing about the sandbox's health.
    refreshSettled: assign({ netnsRefreshing: undefined }),
    /** Keeps the failure of a …Failed event for views. */
    remember: assign(({ event }) => ('error' in event.data ? { error: event.data.error } : {})),
    reattached: assign(({ event }) =>
      event.type === 'SandboxReattached' ? { handle: event.data.handle } : {},
    ),
    resized: assign(({ context, event }) =>
      event.type === 'SandboxResized'
        ? {
            size: { vcpus: event.data.vcpus, memoryMiB: event.data.memoryMiB },
            ...(context.resizing ? { resizing: undefined } : {}),
          }
        : {},
    ),
    resizeAsked: assign(({ event }) =>
      event.type === 'SandboxResizeRequested'
        ? { resizing: { vcpus: event.data.vcpus, memoryMiB: event.data.memoryMiB } }
        : {},
    ),
    // Like a refused network change, a resize that stopped short says nothing about the sandbox's health.
    resizeSettled: assign({ resizing: undefined }),
    networkChanged: assign(({ context, event }) =>
      event.type === 'GuestNetworkUpdated'
        ? {
            guestNetwork: withNetworkChange(context.guestNetwork, event.data),
            ...(context.networkUpdating ? { networkUpdating: undefined } : {}),
          }
        : {},
    ),
    networkAsked: assign(({ event }) =>
      event.type === 'GuestNetworkUpdateRequested' ? { networkUpdating: event.data } : {},
    ),
    // Not `remember`: a refused network change says nothing about the sandbox's health (its view's error).
    networkSettled: assign({ networkUpdating: undefined }),
    /** A fact for the audit trail only: what recovery changed in the namespace leaves the context as it was. */
    wiringReconciled: assign({}),
    /** The VM is known gone: forget its handle, keep why. */
    gone: assign(({ event }) => ({
      handle: undefined,
      lostReason: 'reason' in event.data ? event.data.reason : undefined,
    })),
  },
  guards: {
    forced,
    networkIdle: ({ context }) => context.networkUpdating === undefined,
    resizeIdle: ({ context }) => context.resizing === undefined,
    /** A netns VM (it has a recorded wiring) with no refresh in flight. */
    refreshable: ({ context }) => context.netns !== undefined && context.netnsRefreshing === undefined,
    /** A VM restored from a template (only a clone has a template's identity to replace). */
    clone: ({ context }) => context.restored !== undefined,
    /** Cold, or a clone whose randomness, clock and hostname were made its own: nothing runs on the template's. */
    identityFresh: ({ context }) => context.restored === undefined || context.identityRefreshed === true,
  },
}).createMachine({
  id: 'sandbox',
  initial: 'absent',
  context: { sandboxId: '', config: {}, createdAt: '' },
  states: {
    /** No event yet: the stream does not exist. */
    absent: {
      on: {
        SandboxCreated: {
          target: 'created',
          actions: assign(({ event }) => ({
            sandboxId: event.data.sandboxId,
            ...(event.data.incarnation ? { incarnation: event.data.incarnation } : {}),
            config: event.data.config,
            createdAt: event.at ?? '',
          })),
        },
      },
    },
    created: {
      tags: ['startable'],
      on: {
        ...networkReleased,
        SandboxStartRequested: { target: 'starting' },
        SandboxDeleteRequested: { target: 'deleting' },
      },
    },
    /** Booting: each sub-state is one effect in flight, so recovery knows which step to settle. */
    starting: {
      tags: ['vmUp', 'transitional'],
      initial: 'launching',
      // A new VM: where the previous one came from no longer holds (keys only touched when set: older
      // snapshots stay as they were).
      entry: assign(({ context }) => ({
        error: undefined,
        lostReason: undefined,
        ...(context.restored ? { restored: undefined } : {}),
        ...(context.restoreFailed ? { restoreFailed: undefined } : {}),
        ...(context.identityRefreshed ? { identityRefreshed: undefined } : {}),
      })),
      on: {
        SandboxStartFailed: { target: 'failed', actions: ['remember', 'releaseVm'] },
        ...networkRepaired,
        ...vmDied,
        ...forceDelete,
      },
      states: {
        launching: {
          entry: 'launchVm',
          on: {
            SandboxNetworkAttached: { actions: assign(({ event }) => ({ netns: event.data.wiring })) },
            SandboxRestored: { actions: assign(({ event }) => ({ restored: event.data })) },
            SandboxRestoreFailed: { actions: assign(({ event }) => ({ restoreFailed: event.data })) },
            VmLaunched: {
              target: 'connecting',
              // A new VM boots at the config's size and network: changes to the previous one no longer hold.
              // (Only keys that are set are touched, so snapshots of logs without such changes stay as they were.)
              actions: assign(({ context, event }) => ({
                handle: event.data.handle,
                ...(context.size ? { size: undefined } : {}),
                ...(context.guestNetwork ? { guestNetwork: undefined } : {}),
                ...(context.networkUpdating ? { networkUpdating: undefined } : {}),
                ...(context.resizing ? { resizing: undefined } : {}),
                ...(context.netnsRefreshing ? { netnsRefreshing: undefined } : {}),
              })),
            },
          },
        },
        connecting: {
          entry: 'connectAgent',
          on: {
            AgentConnected: {
              target: 'initialising',
              actions: assign(({ event }) => ({ agentVersion: event.data.agentVersion })),
            },
          },
        },
        initialising: {
          entry: 'initGuest',
          on: {
            SandboxIdentityRefreshed: { guard: 'clone', actions: assign({ identityRefreshed: true }) },
            SandboxStarted: { guard: 'identityFresh', target: '#sandbox.running' },
          },
        },
      },
    },
    running: {
      tags: ['vmUp', 'serving'],
      on: {
        // Only a running guest can online what was plugged; paused, booting or stopping ones refuse.
        SandboxResizeRequested: { guard: 'resizeIdle', actions: ['resizeAsked', 'resizeVm'] },
        SandboxResized: { actions: 'resized' },
        SandboxResizeFailed: { actions: 'resizeSettled' },
        GuestNetworkUpdateRequested: {
          guard: 'networkIdle',
          actions: ['networkAsked', 'updateGuestNetwork'],
        },
        GuestNetworkUpdated: { actions: 'networkChanged' },
        GuestNetworkUpdateFailed: { actions: 'networkSettled' },
        SandboxNetworkRefreshRequested: { guard: 'refreshable', actions: ['refreshAsked', 'refreshNetwork'] },
        SandboxNetworkRefreshed: { actions: 'refreshed' },
        SandboxNetworkRefreshFailed: { actions: 'refreshSettled' },
        SandboxPauseRequested: { target: 'pausing' },
        SandboxStopRequested: { target: 'stopping' },
        SandboxReattached: { actions: 'reattached' },
        ...networkRepaired,
        ...vmDied,
        ...forceDelete,
      },
    },
    pausing: {
      tags: ['vmUp', 'frozen', 'transitional'],
      entry: 'pauseVm',
      on: {
        SandboxPaused: { target: 'paused' },
        SandboxReattached: { actions: 'reattached' },
        SandboxPauseFailed: { target: 'running', actions: 'remember' },
        ...networkRepaired,
        ...vmDied,
        ...forceDelete,
      },
    },
    paused: {
      tags: ['vmUp', 'frozen'],
      on: {
        SandboxResumeRequested: { target: 'resuming' },
        SandboxStopRequested: { target: 'stopping' },
        SandboxReattached: { actions: 'reattached' },
        ...networkRepaired,
        ...vmDied,
        ...forceDelete,
      },
    },
    resuming: {
      tags: ['vmUp', 'frozen', 'transitional'],
      entry: 'resumeVm',
      on: {
        SandboxResumed: { target: 'running' },
        SandboxReattached: { actions: 'reattached' },
        SandboxResumeFailed: { target: 'paused', actions: 'remember' },
        ...networkRepaired,
        ...vmDied,
        ...forceDelete,
      },
    },
    /** The VM going away here is expected: the stop effect's outcome tells the story, not VmExited. */
    stopping: {
      tags: ['vmUp', 'transitional'],
      entry: 'stopVm',
      on: {
        ...networkReleased,
        SandboxStopped: { target: 'stopped', actions: assign({ handle: undefined }) },
        SandboxStopFailed: { target: 'failed', actions: 'remember' },
        SandboxLost: { target: 'lost', actions: 'gone' },
        ...forceDelete,
      },
    },
    stopped: {
      tags: ['down', 'startable'],
      on: {
        ...networkReleased,
        SandboxStartRequested: { target: 'starting' },
        SandboxDeleteRequested: { target: 'deleting' },
      },
    },
    failed: {
      tags: ['down', 'startable'],
      on: {
        ...networkReleased,
        // Start again in place: launchVm clears what the failed attempt left.
        SandboxStartRequested: { target: 'starting' },
        SandboxDeleteRequested: { target: 'deleting' },
        VmExited: { actions: 'gone' },
        SandboxLost: { actions: 'gone' },
      },
    },
    lost: {
      tags: ['down', 'startable'],
      on: {
        ...networkReleased,
        // A VM that died can be booted again; its containers stay lost until deleted.
        SandboxStartRequested: { target: 'starting' },
        SandboxDeleteRequested: { target: 'deleting' },
      },
    },
    deleting: {
      tags: ['down', 'transitional'],
      entry: 'destroyVm',
      on: {
        ...networkReleased,
        SandboxDeleted: { target: 'deleted', actions: assign({ handle: undefined }) },
        SandboxDeleteFailed: { target: 'failed', actions: 'remember' },
      },
    },
    deleted: { type: 'final' },
  },
});
