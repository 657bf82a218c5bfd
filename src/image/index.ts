// Door of src/image: the guest image builder (kernel, initrd, guest root), the guest contract, busybox OCI bundles.
//
// GUEST CONTRACT (the authoritative copy with all details is the comment block atop src/image/guest-init.sh):
// - The VM gets the guest root as a read-only virtio-blk disk with serial `sbxroot` = GuestImagePaths.rootImage
//   (erofs; without one, rootDir as the 9p share `sbxroot`), the 9p share `sbxshared` = the sandbox's writable
//   share (trans=virtio, version=9p2000.L), a virtio-serial port named `agent.channel.0`, and optionally
//   `agent.output.0` (process output).
// - Kernel: GuestImagePaths.kernel, initrd: GuestImagePaths.initrd, cmdline `console=ttyS0 quiet panic=-1` and the
//   optional keys `sandboxd.hostname=NAME`, `sandboxd.selftest=1`, `sandboxd.loglevel=LEVEL`, `sandboxd.debug=1`, `sandboxd.share=defer` (templates:
//   the share is mounted by CreateSandbox's storages after a restore, not at boot).
// - In the guest: a tmpfs root (pivot_root works), /usr and /opt from `sbxroot`, the share at /run/sandboxd/shared,
//   cgroup2 at /sys/fs/cgroup with +cpu +memory +pids +io delegated to /sandboxd (containers: cgroupsPath
//   /sandboxd/<id>), the agent in the leaf cgroup /agent.
// - The agent runs as `node /opt/sandboxd/agent.mjs` with SANDBOXD_AGENT_PORT=/dev/vportNpM,
//   SANDBOXD_AGENT_PROTO=/opt/sandboxd/agent.proto, SANDBOXD_SHARED=/run/sandboxd/shared, SANDBOXD_LOG_LEVEL,
//   SANDBOXD_IMAGE_VERSION; its stdout/stderr go to the console (ttyS0). Exit 0 powers the VM off; non-zero
//   exits are restarted (more than 5 quick failures in a row power it off).
export { AGENT_ENTRY, AGENT_PROTO } from './agent.js';
export { type EnsureGuestImageOptions, ensureGuestImage } from './build.js';
export { type BusyboxBundleOptions, busyboxBundleConfig, createBusyboxBundle } from './bundle.js';
export { defaultImageCacheDir, imagePaths } from './cache-layout.js';
export {
  CONSOLE_HELPER_SOURCE,
  CONSOLE_HELPER_TARGET,
  type ConsoleHelper,
  compileConsoleHelper,
} from './console.js';
export { busyboxPath } from './hostfiles.js';
export { GUEST_MODULES } from './kernel.js';
export { makeRootImage, ROOT_IMAGE_FILE, ROOT_IMAGE_FSTYPE } from './rootfs.js';
export { RECIPE_VERSION } from './version.js';

/** The names both sides of the guest boundary agree on (see the contract above). */
export const guestContract = {
  /** virtio-blk serial (or 9p mount tag) of the image's read-only guest root. */
  rootShareTag: 'sbxroot',
  /** 9p mount tag of the sandbox's writable share. */
  sharedShareTag: 'sbxshared',
  /** Name of the virtio-serial port of the agent channel. */
  agentPortName: 'agent.channel.0',
  /** Name of the optional virtio-serial port of process output. */
  outputPortName: 'agent.output.0',
  /** Where the sandbox share is mounted in the guest. */
  guestSharedDir: '/run/sandboxd/shared',
  agentPath: '/opt/sandboxd/agent.mjs',
  protoPath: '/opt/sandboxd/agent.proto',
  /** The image manifest in the guest (JSON with `version`). */
  manifestPath: '/opt/sandboxd/image.json',
  /** cgroup (relative to /sys/fs/cgroup) that containers go under: cgroupsPath `${containerCgroupParent}/<id>`. */
  containerCgroupParent: '/sandboxd',
  agentCgroup: '/agent',
  env: {
    agentPort: 'SANDBOXD_AGENT_PORT',
    agentProto: 'SANDBOXD_AGENT_PROTO',
    shared: 'SANDBOXD_SHARED',
    logLevel: 'SANDBOXD_LOG_LEVEL',
    imageVersion: 'SANDBOXD_IMAGE_VERSION',
  },
  cmdline: {
    hostname: 'sandboxd.hostname',
    selftest: 'sandboxd.selftest',
    logLevel: 'sandboxd.loglevel',
    debug: 'sandboxd.debug',
    /** `sandboxd.share=defer`: the share is not mounted at boot (a template); CreateSandbox mounts it. */
    share: 'sandboxd.share',
  },
  /** Kernel parameters every boot needs. */
  baseKernelParams: ['console=ttyS0', 'quiet', 'panic=-1'],
  selftest: {
    begin: '=== sandboxd selftest begin ===',
    end: '=== sandboxd selftest end ===',
    /** Bundle (in the sandbox share) that the selftest runs with crun if present. */
    bundleDir: 'selftest-bundle',
  },
} as const;
