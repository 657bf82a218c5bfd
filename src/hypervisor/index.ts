// Door of src/hypervisor: the Hypervisor port, the QEMU driver, its QMP client and the accelerator probe.
export { accelArgs, accelFromEnv, detectAccel, kvmWorks } from './accel.js';
export { affinityOf, hostOnline } from './affinity.js';
export {
  AGENT_PORT_NAME,
  GUEST_ROOT_TAG,
  kernelCommandLine,
  MEMORY_SLOTS,
  qemuArgs,
  SANDBOX_SHARE_TAG,
  USER_NETWORK,
  type VmPaths,
  vmPaths,
} from './cmdline.js';
export { netdevId, nicId, SPARE_NIC_PORTS } from './nics.js';
export { isProcessAlive, type ProcUsage, readProcStat, readProcUsage } from './proc.js';
export { createQemuHypervisor, QemuHypervisor, type QemuHypervisorOptions } from './qemu.js';
export {
  QmpClient,
  type QmpConnectOptions,
  type QmpErrorBody,
  type QmpEvent,
  type QmpExecuteOptions,
} from './qmp.js';
export * from './types.js';
