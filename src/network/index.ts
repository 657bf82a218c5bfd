// The network room: a sandbox's VM plugged into a network namespace (CNI's veths) through taps and tc redirects.
export {
  dnsOf,
  isEmptyDns,
  netnsResolvConfPath,
  parseResolvConf,
  readNetnsDns,
  resolvConfLines,
} from './dns.js';
export {
  attachNetns,
  changesMadeBefore,
  checkNetnsPath,
  detachNetns,
  inNetns,
  readNetns,
  repairNetns,
  runPlan,
} from './netns.js';
export { parseIngressFilters, parseIngressQdiscs, parseLinks, parseRoutes } from './parse.js';
export {
  changesOf,
  FILTER_PREF,
  isTapOf,
  NETNS_FIELD,
  nextTapIndex,
  planAttach,
  planDetach,
  planLinks,
  planRefresh,
  planRemoval,
  planRepair,
  tapName,
  wiredLinkOf,
  workloadLinks,
} from './plan.js';
export type {
  DnsConfig,
  IngressFilter,
  NetnsChange,
  NetnsCommand,
  NetnsLink,
  NetnsRoute,
  NetnsState,
  NetnsWiring,
  WiredLink,
} from './types.js';
