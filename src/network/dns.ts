// The guest's resolver config: from the sandbox config (CRI's DNSConfig shape, or the older list of servers)
// or, for a netns sandbox without one, from ip-netns(8)'s /etc/netns/NAME/resolv.conf convention.
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { DnsConfig } from './types.js';

/** The directories ip-netns(8) names namespaces in: only those have a NAME for /etc/netns/NAME. */
const NAMED_NETNS_DIRS = new Set(['/run/netns', '/var/run/netns']);

/** The config's `dns` in one shape: a bare list is the servers (the API's first spelling, kept). */
export function dnsOf(dns: readonly string[] | Partial<DnsConfig> | undefined): DnsConfig | undefined {
  if (dns === undefined) return undefined;
  if (Array.isArray(dns)) return { servers: [...dns], searches: [], options: [] };
  const d = dns as Partial<DnsConfig>;
  return {
    servers: [...(d.servers ?? [])],
    searches: [...(d.searches ?? [])],
    options: [...(d.options ?? [])],
  };
}

/** Whether a resolver config says nothing (then the guest's resolv.conf is left alone). */
export function isEmptyDns(dns: DnsConfig): boolean {
  return dns.servers.length === 0 && dns.searches.length === 0 && dns.options.length === 0;
}

/**
 * resolv.conf's lines for the guest agent's CreateSandbox (Kata's `dns` strings: a line with a space is written as
 * it is). The parts were validated (no whitespace inside one), so a part cannot add a line of its own.
 */
export function resolvConfLines(dns: DnsConfig): string[] {
  return [
    ...dns.servers.map((s) => `nameserver ${s}`),
    ...(dns.searches.length > 0 ? [`search ${dns.searches.join(' ')}`] : []),
    ...(dns.options.length > 0 ? [`options ${dns.options.join(' ')}`] : []),
  ];
}

/**
 * resolv.conf(5) as the resolver reads it: nameserver, search (the last search or domain line wins), options
 * (they add up). Comments and lines it does not use (sortlist) are left out.
 */
export function parseResolvConf(text: string): DnsConfig {
  const servers: string[] = [];
  let searches: string[] = [];
  const options: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...values] = line.split(/\s+/);
    if (key === 'nameserver' && values[0]) servers.push(values[0]);
    else if (key === 'search') searches = values;
    else if (key === 'domain' && values[0]) searches = [values[0]];
    else if (key === 'options') options.push(...values);
  }
  return { servers, searches, options };
}

/** /etc/netns/NAME/resolv.conf for a namespace at /run/netns/NAME; undefined for other paths (/proc/PID/ns/net). */
export function netnsResolvConfPath(path: string, etc = '/etc'): string | undefined {
  return NAMED_NETNS_DIRS.has(dirname(path)) ? `${etc}/netns/${basename(path)}/resolv.conf` : undefined;
}

/** The namespace's own resolver config by ip-netns's convention, when it has one that says something. */
export async function readNetnsDns(path: string, etc = '/etc'): Promise<DnsConfig | undefined> {
  const file = netnsResolvConfPath(path, etc);
  if (!file) return undefined;
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const dns = parseResolvConf(text);
  return isEmptyDns(dns) ? undefined : dns;
}
