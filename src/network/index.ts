// The network room: a sandbox's VM plugged into a network namespace (CNI's veths) through taps and tc redirects.
export {
  dnsOf,
  isEmptyDns,
  netnsResolvConfPath,
  parseResolvConf,
  readNetnsDns,
  resolvConfLines,
} from './dns.js';
export { attachNetns, checkNetnsPath, detachNetns, inNetns, readNetns } from './netns.js';
export { parseIngressFilters, parseIngressQdiscs, parseLinks, parseRoutes } from './parse.js';
export { FILTER_PREF, isTapOf, NETNS_FIELD, planAttach, planDetach, tapName, workloadLinks } from './plan.js';
export type {
  DnsConfig,
  IngressFilter,
  NetnsCommand,
  NetnsLink,
  NetnsRoute,
  NetnsState,
  NetnsWiring,
  WiredLink,
} from './types.js';
