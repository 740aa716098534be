import dns from 'node:dns';
import net from 'node:net';
import { buildConnector } from 'undici';
import { InputError, ScopeError } from '../../config/errors.js';

/**
 * The scope guard decides which URLs and which network addresses the crawler may touch
 * (README "Politeness and safety": `scope.hosts`, `--allow-private-network`). Two gates, both needed:
 * - `checkUrl` before a URL is queued or fetched: scheme, credentials, host list, IP literals;
 * - `lookup` (or `connector`) at connect time, so a DNS name that resolves to a loopback or
 *   private address is refused too — checked on the address actually connected to, so DNS
 *   rebinding between check and connect does not help.
 */

export type AddressClass = 'loopback' | 'private' | 'link-local' | 'unspecified' | 'multicast' | 'reserved' | 'cgnat' | 'public';

/** Classes `--allow-private-network` opens. Unspecified and multicast are never fetched. */
const PRIVATE_NETWORK_CLASSES: ReadonlySet<AddressClass> = new Set(['loopback', 'private', 'link-local', 'cgnat', 'reserved']);

interface Cidr {
  bytes: Uint8Array;
  bits: number;
  cls: AddressClass;
}

function cidrs(rows: ReadonlyArray<readonly [string, AddressClass]>): Cidr[] {
  return rows.map(([cidr, cls]) => {
    const [addr = '', bits = ''] = cidr.split('/');
    return { bytes: parseAddress(addr) as Uint8Array, bits: Number(bits), cls };
  });
}

// First match wins, so more specific ranges come first. Sources: the IANA special-purpose registries.
const IPV4_RANGES = cidrs([
  ['0.0.0.0/32', 'unspecified'],
  ['0.0.0.0/8', 'reserved'], // "this network"
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'reserved'], // IETF protocol assignments
  ['192.0.2.0/24', 'reserved'], // TEST-NET-1
  ['192.88.99.0/24', 'reserved'], // 6to4 relay anycast (deprecated)
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'reserved'], // benchmarking
  ['198.51.100.0/24', 'reserved'], // TEST-NET-2
  ['203.0.113.0/24', 'reserved'], // TEST-NET-3
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'], // includes broadcast 255.255.255.255
]);

const IPV6_RANGES = cidrs([
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['::/96', 'reserved'], // IPv4-compatible (deprecated)
  ['64:ff9b::/96', 'public'], // well-known NAT64 (the IPv4 address it wraps is checked first)
  ['64:ff9b:1::/48', 'private'], // local-use NAT64
  ['100::/64', 'reserved'], // discard-only
  ['2001:db8::/32', 'reserved'], // documentation
  ['2001::/23', 'reserved'], // IETF protocol assignments, incl. Teredo
  ['fc00::/7', 'private'], // unique local
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'private'], // site-local (deprecated)
  ['ff00::/8', 'multicast'],
  ['2000::/3', 'public'], // global unicast; all else is unassigned
]);

/** An IPv4 or IPv6 address (zone id and brackets allowed) as 4 or 16 bytes; undefined if not an address. */
function parseAddress(input: string): Uint8Array | undefined {
  let ip = input.startsWith('[') && input.endsWith(']') ? input.slice(1, -1) : input;
  const zone = ip.indexOf('%');
  if (zone >= 0) ip = ip.slice(0, zone);
  const version = net.isIP(ip);
  if (version === 4) return Uint8Array.from(ip.split('.').map(Number));
  if (version !== 6) return undefined;
  const bytes = new Uint8Array(16);
  let head = ip;
  let tail4: number[] = [];
  const lastColon = ip.lastIndexOf(':');
  if (ip.slice(lastColon + 1).includes('.')) {
    tail4 = ip.slice(lastColon + 1).split('.').map(Number);
    head = `${ip.slice(0, lastColon + 1)}0:0`;
  }
  const [left = '', right] = head.split('::');
  const leftGroups = left ? left.split(':') : [];
  const rightGroups = right ? right.split(':') : [];
  const groups = [...leftGroups, ...Array<string>(8 - leftGroups.length - rightGroups.length).fill('0'), ...rightGroups];
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    bytes[i * 2] = n >> 8;
    bytes[i * 2 + 1] = n & 0xff;
  });
  if (tail4.length === 4) bytes.set(tail4, 12);
  return bytes;
}

function matches(bytes: Uint8Array, range: Cidr): boolean {
  if (bytes.length !== range.bytes.length) return false;
  for (let bit = 0; bit < range.bits; bit += 8) {
    const mask = range.bits - bit >= 8 ? 0xff : (0xff << (8 - (range.bits - bit))) & 0xff;
    if (((bytes[bit / 8] ?? 0) & mask) !== ((range.bytes[bit / 8] ?? 0) & mask)) return false;
  }
  return true;
}

function classifyBytes(bytes: Uint8Array): AddressClass {
  if (bytes.length === 4) return IPV4_RANGES.find((r) => matches(bytes, r))?.cls ?? 'public';
  // An IPv4-mapped address is the IPv4 address itself.
  if (isMapped(bytes)) return classifyBytes(bytes.subarray(12));
  // NAT64 and 6to4 addresses reach the IPv4 address they wrap: as bad as it is, if it is bad.
  const wrapped = wrappedIpv4(bytes);
  const wrappedClass = wrapped ? classifyBytes(wrapped) : 'public';
  if (wrappedClass !== 'public') return wrappedClass;
  return IPV6_RANGES.find((r) => matches(bytes, r))?.cls ?? 'reserved';
}

function isMapped(bytes: Uint8Array): boolean {
  return bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

/** The IPv4 address inside a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address. */
function wrappedIpv4(bytes: Uint8Array): Uint8Array | undefined {
  const nat64 = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];
  if (nat64.every((b, i) => bytes[i] === b)) return bytes.subarray(12);
  if (bytes[0] === 0x20 && bytes[1] === 0x02) return bytes.subarray(2, 6);
  return undefined;
}

/** The kind of network an IP address belongs to. Throws ScopeError `E_SCOPE_ADDRESS` if `ip` is not an address. */
export function classifyAddress(ip: string): AddressClass {
  const bytes = parseAddress(ip);
  if (!bytes) throw new ScopeError(`not an IP address: ${JSON.stringify(ip)}`, { code: 'E_SCOPE_ADDRESS' });
  return classifyBytes(bytes);
}

/** A hostname as compared: lower case, trailing dots and IPv6 brackets removed. */
function normaliseHost(hostname: string): string {
  let host = hostname.toLowerCase().replace(/\.+$/, '');
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return host;
}

export interface ScopeGuardOptions {
  /** Hosts that may be fetched: `example.org` (exactly), `*.example.org` (any subdomain, not the apex), IP literals. */
  hosts: string[];
  /** Allow loopback, private, link-local, CGNAT and reserved addresses (`--allow-private-network`). */
  allowPrivateNetwork: boolean;
  /** The resolver behind `lookup`. Default `dns.lookup`; inject to test what a name resolves to. */
  dnsLookup?: typeof dns.lookup;
}

export class ScopeGuard {
  readonly #exactHosts = new Set<string>();
  readonly #wildcardSuffixes: string[] = [];
  readonly #allowPrivateNetwork: boolean;
  readonly #dnsLookup: typeof dns.lookup;
  readonly #addressVerdicts = new Map<string, boolean>();

  constructor(opts: ScopeGuardOptions) {
    const { hosts, allowPrivateNetwork, dnsLookup = dns.lookup } = opts;
    for (const entry of hosts) {
      const wildcard = entry.startsWith('*.');
      const host = ScopeGuard.#parseHostEntry(wildcard ? entry.slice(2) : entry);
      if (wildcard) this.#wildcardSuffixes.push(`.${host}`);
      else this.#exactHosts.add(host);
    }
    this.#allowPrivateNetwork = allowPrivateNetwork;
    this.#dnsLookup = dnsLookup;
  }

  static #parseHostEntry(entry: string): string {
    const trimmed = entry.trim().replace(/\.+$/, '');
    const bare = net.isIPv6(trimmed) ? `[${trimmed}]` : trimmed;
    let url: URL | undefined;
    try {
      url = new URL(`http://${bare}/`);
    } catch {
      url = undefined;
    }
    // A port written as the default (`:80`) vanishes from `url.host`, hence the second test.
    if (!url || url.href !== `http://${url.host}/` || /:\d*$/.test(bare) || url.hostname === '') {
      throw new InputError(`scope host ${JSON.stringify(entry)} must be a bare host name or IP address (no scheme, port or path)`, {
        code: 'E_SCOPE_HOSTS',
      });
    }
    return normaliseHost(url.hostname);
  }

  /** Whether a connection to this IP address is allowed. Not an address → false. */
  isAllowedAddress(ip: string): boolean {
    // Asked per request (checkUrl) and per connection: remember the few addresses a crawl sees.
    const known = this.#addressVerdicts.get(ip);
    if (known !== undefined) return known;
    const bytes = parseAddress(ip);
    const verdict = bytes !== undefined && this.#classAllowed(classifyBytes(bytes));
    if (this.#addressVerdicts.size >= 4096) this.#addressVerdicts.clear();
    this.#addressVerdicts.set(ip, verdict);
    return verdict;
  }

  #classAllowed(cls: ReturnType<typeof classifyBytes>): boolean {
    return cls === 'public' || (this.#allowPrivateNetwork && PRIVATE_NETWORK_CLASSES.has(cls));
  }

  /** Whether `hostname` (as in `URL.hostname`) is in the host list. */
  isAllowedHost(hostname: string): boolean {
    const host = normaliseHost(hostname);
    return this.#exactHosts.has(host) || this.#wildcardSuffixes.some((suffix) => host.endsWith(suffix));
  }

  /** The URL, parsed, if it may be fetched; otherwise throws a ScopeError saying why. */
  checkUrl(url: string | URL): URL {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (cause) {
      throw new ScopeError(`not a valid URL: ${String(url).slice(0, 200)}`, { code: 'E_SCOPE_URL', cause });
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new ScopeError(`refused ${parsed.protocol} URL: only http: and https: are fetched`, { code: 'E_SCOPE_SCHEME' });
    }
    if (parsed.username || parsed.password) {
      throw new ScopeError(`refused URL with credentials for ${parsed.host}: lifeboat never sends user:password@`, {
        code: 'E_SCOPE_CREDENTIALS',
      });
    }
    if (!this.isAllowedHost(parsed.hostname)) {
      throw new ScopeError(`host ${parsed.hostname} is not in the profile's scope.hosts`, { code: 'E_SCOPE_HOST' });
    }
    const host = normaliseHost(parsed.hostname);
    if (net.isIP(host) !== 0 && !this.isAllowedAddress(host)) throw this.#addressError(host, host);
    return parsed;
  }

  #addressError(hostname: string, address: string): ScopeError {
    const bytes = parseAddress(address);
    const cls = bytes ? classifyBytes(bytes) : undefined;
    const via = hostname === address ? '' : ` (${hostname} resolves to it)`;
    const hint =
      cls && !this.#allowPrivateNetwork && PRIVATE_NETWORK_CLASSES.has(cls) ? '; pass --allow-private-network to fetch it' : '';
    return new ScopeError(`refused ${cls ?? 'invalid'} address ${address}${via}${hint}`, { code: 'E_SCOPE_ADDRESS' });
  }

  /**
   * A `dns.lookup` replacement for `net.connect` / undici's `connect: { lookup }`: resolves the
   * name, drops every address that is not allowed, and fails with ScopeError `E_SCOPE_ADDRESS`
   * when none is left. Honours `options.all` (Node's Happy Eyeballs asks for all addresses).
   * IP literals never reach a lookup function: `checkUrl` or `connector()` covers those.
   */
  readonly lookup: net.LookupFunction = (hostname, options, callback) => {
    this.#dnsLookup(hostname, { ...options, all: true }, (err, resolved) => {
      if (err) return callback(err, '', undefined);
      const list = Array.isArray(resolved) ? resolved : [{ address: String(resolved), family: 0 }];
      const allowed = list.filter((entry) => this.isAllowedAddress(entry.address));
      const first = allowed[0];
      if (!first) {
        const error = list[0]
          ? this.#addressError(hostname, list[0].address)
          : new ScopeError(`${hostname} resolved to no address`, { code: 'E_SCOPE_ADDRESS' });
        return callback(Object.assign(error, { hostname }) as NodeJS.ErrnoException, '', undefined);
      }
      if (options.all) return callback(null, allowed);
      return callback(null, first.address, first.family);
    });
  };

  /**
   * An undici connector (`new Agent({ connect: guard.connector() })`) that refuses IP-literal
   * origins that are not allowed and resolves names through `lookup` — both gates in one place.
   */
  connector(buildOptions: buildConnector.BuildOptions = {}): buildConnector.connector {
    const connect = buildConnector({ ...buildOptions, lookup: this.lookup } as buildConnector.BuildOptions);
    return (options, callback) => {
      const host = normaliseHost(options.hostname);
      if (net.isIP(host) !== 0 && !this.isAllowedAddress(host)) {
        callback(this.#addressError(host, host), null);
        return;
      }
      connect(options, callback);
    };
  }
}
