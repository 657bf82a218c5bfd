// Host cgroups: where a spec's cgroupsPath lands (v1, v2, hybrid; runc's cgroupfs and systemd forms), and the
// directories made, joined and removed. See docs/oci-cli.md "Host cgroups".
export {
  cgroupPids,
  checkCgroupDirs,
  createCgroups,
  hostCgroupDirs,
  joinCgroups,
  removeCgroups,
} from './host.js';
export {
  CGROUP_DIR_PATTERN,
  cgroupDirsFor,
  type Hierarchy,
  hierarchiesOf,
  ownCgroupsOf,
  type Placement,
  systemdCgroupPath,
} from './paths.js';
