import type dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, buildConnector, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError, ScopeError } from '../config/errors.js';
import { classifyAddress, ScopeGuard, type AddressClass } from '../crawler/fetch/scope-guard.js';

// No test here connects anywhere but 127.0.0.1: private and public addresses are judged by the
// decision functions, and names that resolve to them go through an injected resolver.

describe('classifyAddress', () => {
  const cases: Array<[string, AddressClass]> = [
    ['10.0.0.1', 'private'],
    ['172.16.5.4', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', 'public'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['100.64.0.1', 'cgnat'],
    ['100.127.255.254', 'cgnat'],
    ['100.128.0.1', 'public'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'reserved'],
    ['255.255.255.255', 'reserved'],
    ['240.0.0.1', 'reserved'],
    ['224.0.0.251', 'multicast'],
    ['192.0.2.7', 'reserved'],
    ['8.8.8.8', 'public'],
    ['93.184.216.34', 'public'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fd00::1', 'private'],
    ['fc00::1', 'private'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf::1', 'link-local'],
    ['fec0::1', 'private'],
    ['ff02::1', 'multicast'],
    ['::ffff:192.168.0.1', 'private'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:a00:1', 'private'], // the same address as WHATWG URL writes it
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:8.8.8.8', 'public'],
    ['::ffff:0.0.0.0', 'unspecified'],
    ['64:ff9b::a9fe:a9fe', 'link-local'], // NAT64 of 169.254.169.254
    ['64:ff9b::808:808', 'public'],
    ['2002:0a00:0001::1', 'private'], // 6to4 of 10.0.0.1
    ['2001:db8::1', 'reserved'],
    ['2606:4700:4700::1111', 'public'],
    ['[2606:4700:4700::1111]', 'public'],
    ['4000::1', 'reserved'], // unassigned
    ['::ff:808:808', 'reserved'], // not IPv4-mapped: byte 10 is not 0xff
    ['::ff00:808:808', 'reserved'], // not IPv4-mapped: byte 11 is not 0xff
    ['10.0.0.1%eth0', 'private'], // a zone id never hides the class
  ];
  it.each(cases)('%s is %s', (ip, cls) => {
    expect(classifyAddress(ip)).toBe(cls);
  });

  it('refuses what is not an address', () => {
    for (const bad of ['localhost', '', '10.0.0', '1.2.3.256', ':::1', 'example.org', '[::1', '1::1]']) {
      expect(() => classifyAddress(bad)).toThrow(expect.objectContaining({ code: 'E_SCOPE_ADDRESS' }));
    }
    expect(() => classifyAddress('localhost')).toThrow('not an IP address: "localhost"');
  });
});

describe('ScopeGuard.isAllowedAddress', () => {
  const strict = new ScopeGuard({ hosts: ['example.org'], allowPrivateNetwork: false });
  const open = new ScopeGuard({ hosts: ['example.org'], allowPrivateNetwork: true });
  const notPublic = [
    '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '127.0.0.1', '::1',
    'fd00::1', 'fe80::1', '::ffff:192.168.0.1', '100.64.0.1',
  ];

  it('refuses loopback, private, link-local and CGNAT without the flag', () => {
    for (const ip of notPublic) expect(strict.isAllowedAddress(ip), ip).toBe(false);
    expect(strict.isAllowedAddress('172.32.0.1')).toBe(true);
    expect(strict.isAllowedAddress('2606:4700:4700::1111')).toBe(true);
  });

  it('allows them with allowPrivateNetwork, but never unspecified or multicast', () => {
    for (const ip of notPublic) expect(open.isAllowedAddress(ip), ip).toBe(true);
    for (const ip of ['0.0.0.0', '::', '224.0.0.1', 'ff02::1']) expect(open.isAllowedAddress(ip), ip).toBe(false);
  });

  it('says no to what is not an address', () => {
    expect(open.isAllowedAddress('localhost')).toBe(false);
  });
});

describe('ScopeGuard.checkUrl', () => {
  const guard = new ScopeGuard({ hosts: ['Example.org', '*.cdn.example.net', '127.0.0.1', '::1', '10.0.0.1'], allowPrivateNetwork: false });
  const code = (url: string | URL): string | undefined => {
    try {
      guard.checkUrl(url);
      return undefined;
    } catch (err) {
      expect(err).toBeInstanceOf(ScopeError);
      return (err as ScopeError).code;
    }
  };

  it('returns the parsed URL for hosts in scope', () => {
    expect(guard.checkUrl('https://example.org/a?b=1').href).toBe('https://example.org/a?b=1');
    expect(guard.checkUrl(new URL('http://EXAMPLE.ORG./x')).hostname).toBe('example.org.');
    expect(guard.checkUrl('https://img.cdn.example.net/1.jpg').hostname).toBe('img.cdn.example.net');
    expect(guard.checkUrl('https://a.b.cdn.example.net/1.jpg').hostname).toBe('a.b.cdn.example.net');
  });

  it.each(['file:///etc/passwd', 'ftp://example.org/x', 'javascript:alert(1)', 'data:text/plain,hi', 'gopher://example.org/'])(
    'refuses the scheme of %s',
    (url) => expect(code(url)).toBe('E_SCOPE_SCHEME'),
  );

  it('refuses hosts not in the list', () => {
    expect(code('https://example.com/')).toBe('E_SCOPE_HOST');
    expect(code('https://evil-example.org/')).toBe('E_SCOPE_HOST');
    expect(code('https://example.org.evil.com/')).toBe('E_SCOPE_HOST');
    expect(code('https://cdn.example.net/')).toBe('E_SCOPE_HOST'); // a wildcard does not cover the apex
    expect(code('https://xcdn.example.net/')).toBe('E_SCOPE_HOST');
    expect(code('http://10.0.0.2/')).toBe('E_SCOPE_HOST');
  });

  it('refuses URLs carrying credentials', () => {
    expect(code('https://user:pass@example.org/')).toBe('E_SCOPE_CREDENTIALS');
    expect(code('https://user@example.org/')).toBe('E_SCOPE_CREDENTIALS');
  });

  it('refuses listed IP literals that are not public, in any spelling, without the flag', () => {
    expect(code('http://127.0.0.1:8080/')).toBe('E_SCOPE_ADDRESS');
    expect(code('http://2130706433/')).toBe('E_SCOPE_ADDRESS'); // WHATWG URL makes it 127.0.0.1
    expect(code('http://0x7f.0.0.1/')).toBe('E_SCOPE_ADDRESS');
    expect(code('http://[::1]/')).toBe('E_SCOPE_ADDRESS');
    expect(code('http://10.0.0.1/')).toBe('E_SCOPE_ADDRESS');
    expect(() => guard.checkUrl('http://127.0.0.1/')).toThrow(/--allow-private-network/);
  });

  it('allows them with the flag', () => {
    const open = new ScopeGuard({ hosts: ['127.0.0.1', '[::1]'], allowPrivateNetwork: true });
    expect(open.checkUrl('http://127.0.0.1:8080/p/1').port).toBe('8080');
    expect(open.checkUrl('http://[::1]/').hostname).toBe('[::1]');
  });

  it('refuses what is not a URL', () => {
    expect(code('not a url')).toBe('E_SCOPE_URL');
  });

  it('says why in one line naming the URL or host', () => {
    const message = (url: string): string => {
      try {
        guard.checkUrl(url);
      } catch (err) {
        return (err as Error).message;
      }
      return '';
    };
    expect(message('not a url')).toBe('not a valid URL: not a url');
    expect(message(`x${'y'.repeat(300)}`)).toBe(`not a valid URL: x${'y'.repeat(199)}`);
    expect(message('ftp://example.org/x')).toBe('refused ftp: URL: only http: and https: are fetched');
    expect(message('https://u:p@example.org/')).toBe('refused URL with credentials for example.org: lifeboat never sends user:password@');
    expect(message('https://example.com/')).toBe("host example.com is not in the profile's scope.hosts");
    expect(message('http://127.0.0.1/')).toBe('refused loopback address 127.0.0.1; pass --allow-private-network to fetch it');
  });

  it('matches any of several wildcards, trims host entries and their trailing dots', () => {
    const g = new ScopeGuard({ hosts: ['*.a.example', '*.b.example', ' plain.example. '], allowPrivateNetwork: false });
    expect(g.isAllowedHost('x.a.example')).toBe(true);
    expect(g.isAllowedHost('x.b.example')).toBe(true);
    expect(g.isAllowedHost('plain.example')).toBe(true);
    expect(g.checkUrl('https://plain.example./p').hostname).toBe('plain.example.');
    expect(g.isAllowedHost('x.c.example')).toBe(false);
  });

  it('rejects host entries that are not bare hosts', () => {
    expect(() => new ScopeGuard({ hosts: ['example.org', 'http://example.org'], allowPrivateNetwork: false })).toThrow(
      expect.objectContaining({
        code: 'E_SCOPE_HOSTS',
        message: 'scope host "http://example.org" must be a bare host name or IP address (no scheme, port or path)',
      }),
    );
    for (const entry of ['http://example.org', 'example.org/path', 'example.org:8080', 'example.org:80', 'u@example.org', '']) {
      expect(() => new ScopeGuard({ hosts: [entry], allowPrivateNetwork: false }), entry).toThrow(InputError);
    }
  });
});

type LookupResult = { err: NodeJS.ErrnoException | null; address: string | dns.LookupAddress[]; family?: number };

function lookupWith(guard: ScopeGuard, hostname: string, options: dns.LookupOptions): Promise<LookupResult> {
  return new Promise((resolve) => {
    guard.lookup(hostname, options, (err, address, family) => resolve({ err, address, family }));
  });
}

/** A resolver that answers from a table, for names that must never be connected to. */
function fakeDns(table: Record<string, dns.LookupAddress[]>): typeof dns.lookup {
  return ((hostname: string, _options: unknown, callback: (err: Error | null, addresses: dns.LookupAddress[]) => void) => {
    const addresses = table[hostname];
    if (!addresses) callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), []);
    else callback(null, addresses);
  }) as unknown as typeof dns.lookup;
}

describe('ScopeGuard.lookup', () => {
  it('refuses localhost without the flag', async () => {
    const guard = new ScopeGuard({ hosts: ['localhost'], allowPrivateNetwork: false });
    const { err } = await lookupWith(guard, 'localhost', {});
    expect(err).toBeInstanceOf(ScopeError);
    expect(err?.code).toBe('E_SCOPE_ADDRESS');
    expect(err?.message).toMatch(/loopback address .* \(localhost resolves to it\)/);
  });

  it('allows localhost with the flag, in both answer shapes', async () => {
    const guard = new ScopeGuard({ hosts: ['localhost'], allowPrivateNetwork: true });
    const one = await lookupWith(guard, 'localhost', { family: 4 });
    expect(one.err).toBeNull();
    expect(one.address).toBe('127.0.0.1');
    expect(one.family).toBe(4);
    const all = await lookupWith(guard, 'localhost', { all: true, family: 4 });
    expect(all.err).toBeNull();
    expect(all.address).toEqual([{ address: '127.0.0.1', family: 4 }]);
  });

  it('refuses names that resolve to private or metadata addresses, and drops those among public ones', async () => {
    const dnsLookup = fakeDns({
      'internal.example.org': [{ address: '10.1.2.3', family: 4 }],
      'metadata.example.org': [{ address: '169.254.169.254', family: 4 }],
      'mixed.example.org': [
        { address: '192.168.0.10', family: 4 },
        { address: '93.184.216.34', family: 4 },
        { address: 'fd00::5', family: 6 },
      ],
    });
    const guard = new ScopeGuard({ hosts: ['*.example.org'], allowPrivateNetwork: false, dnsLookup });
    expect((await lookupWith(guard, 'internal.example.org', {})).err?.code).toBe('E_SCOPE_ADDRESS');
    expect((await lookupWith(guard, 'metadata.example.org', { all: true })).err?.code).toBe('E_SCOPE_ADDRESS');
    expect(await lookupWith(guard, 'mixed.example.org', { all: true })).toMatchObject({
      err: null,
      address: [{ address: '93.184.216.34', family: 4 }],
    });
    expect((await lookupWith(guard, 'nowhere.example.org', {})).err?.code).toBe('ENOTFOUND');
  });

  it('names the host, the address and the flag that would allow it — the flag only where it would', async () => {
    const dnsLookup = fakeDns({ 'internal.example.org': [{ address: '10.1.2.3', family: 4 }], 'multi.example.org': [{ address: '224.0.0.1', family: 4 }] });
    const strict = new ScopeGuard({ hosts: ['*.example.org'], allowPrivateNetwork: false, dnsLookup });
    const open = new ScopeGuard({ hosts: ['*.example.org'], allowPrivateNetwork: true, dnsLookup });
    const internal = (await lookupWith(strict, 'internal.example.org', {})).err!;
    expect(internal.message).toBe('refused private address 10.1.2.3 (internal.example.org resolves to it); pass --allow-private-network to fetch it');
    expect(internal).toMatchObject({ hostname: 'internal.example.org' });
    expect((await lookupWith(open, 'multi.example.org', {})).err?.message).toBe('refused multicast address 224.0.0.1 (multi.example.org resolves to it)');
    expect((await lookupWith(strict, 'multi.example.org', {})).err?.message).toBe('refused multicast address 224.0.0.1 (multi.example.org resolves to it)');
  });

  it('handles a resolver that answers one address, or none', async () => {
    const single = ((hostname: string, _o: unknown, cb: (e: Error | null, a: string, f: number) => void) =>
      cb(null, hostname.startsWith('internal') ? '10.0.0.7' : '93.184.216.34', 4)) as unknown as typeof dns.lookup;
    const guard = new ScopeGuard({ hosts: ['*.example.org'], allowPrivateNetwork: false, dnsLookup: single });
    expect(await lookupWith(guard, 'www.example.org', {})).toMatchObject({ err: null, address: '93.184.216.34' });
    expect((await lookupWith(guard, 'internal.example.org', {})).err?.message).toMatch(/^refused private address 10\.0\.0\.7 \(internal\.example\.org resolves to it\)/);
    const none = new ScopeGuard({ hosts: ['*.example.org'], allowPrivateNetwork: true, dnsLookup: fakeDns({ 'empty.example.org': [] }) });
    const { err } = await lookupWith(none, 'empty.example.org', { all: true });
    expect(err).toMatchObject({ code: 'E_SCOPE_ADDRESS', message: 'empty.example.org resolved to no address', hostname: 'empty.example.org' });
  });
});

describe('ScopeGuard with undici, end to end', () => {
  let server: http.Server;
  let port: number;
  beforeAll(async () => {
    server = http.createServer((_req, res) => res.end('served'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function get(agent: Agent, url: string): Promise<string> {
    try {
      const res = await request(url, { dispatcher: agent });
      return await res.body.text();
    } finally {
      await agent.close();
    }
  }

  it('refuses http://localhost:PORT without the flag', async () => {
    const guard = new ScopeGuard({ hosts: ['localhost'], allowPrivateNetwork: false });
    const agent = new Agent({ connect: { lookup: guard.lookup } });
    await expect(get(agent, `http://localhost:${port}/`)).rejects.toMatchObject({ code: 'E_SCOPE_ADDRESS' });
  });

  it('serves http://localhost:PORT with the flag', async () => {
    const guard = new ScopeGuard({ hosts: ['localhost'], allowPrivateNetwork: true });
    const agent = new Agent({ connect: { lookup: guard.lookup, family: 4 } });
    expect(await get(agent, `http://localhost:${port}/`)).toBe('served');
  });

  it('connector() also refuses IP-literal origins, which never reach a lookup', async () => {
    const strict = new ScopeGuard({ hosts: ['127.0.0.1'], allowPrivateNetwork: false });
    await expect(get(new Agent({ connect: strict.connector() }), `http://127.0.0.1:${port}/`)).rejects.toMatchObject({
      code: 'E_SCOPE_ADDRESS',
    });
    await expect(get(new Agent({ connect: strict.connector() }), `http://localhost:${port}/`)).rejects.toMatchObject({
      code: 'E_SCOPE_ADDRESS',
    });
    const open = new ScopeGuard({ hosts: ['127.0.0.1', 'localhost'], allowPrivateNetwork: true });
    expect(await get(new Agent({ connect: open.connector() }), `http://127.0.0.1:${port}/`)).toBe('served');
    const byName = open.connector({ family: 4 } as buildConnector.BuildOptions);
    expect(await get(new Agent({ connect: byName }), `http://localhost:${port}/`)).toBe('served');
  });
});

/**
 * The range table, range by range: for every row of the guard's IPv4 and IPv6 tables (the
 * reserved ranges the README summarises), its first and last address are in the class, and the
 * addresses just below and just above it are in the class written here by hand (the neighbour
 * range, public, or — for IPv6 outside every listed range — unassigned, which is reserved).
 */
describe('the scope guard range table, range by range', () => {
  const F = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff';
  // [range, class, first, last, [just below, its class] | null, [just above, its class] | null]
  type Row = [string, AddressClass, string, string, [string, AddressClass] | null, [string, AddressClass] | null];
  const v4: Row[] = [
    ['0.0.0.0/32', 'unspecified', '0.0.0.0', '0.0.0.0', null, ['0.0.0.1', 'reserved']],
    ['0.0.0.0/8', 'reserved', '0.0.0.1', '0.255.255.255', ['0.0.0.0', 'unspecified'], ['1.0.0.0', 'public']],
    ['10.0.0.0/8', 'private', '10.0.0.0', '10.255.255.255', ['9.255.255.255', 'public'], ['11.0.0.0', 'public']],
    ['100.64.0.0/10', 'cgnat', '100.64.0.0', '100.127.255.255', ['100.63.255.255', 'public'], ['100.128.0.0', 'public']],
    ['127.0.0.0/8', 'loopback', '127.0.0.0', '127.255.255.255', ['126.255.255.255', 'public'], ['128.0.0.0', 'public']],
    ['169.254.0.0/16', 'link-local', '169.254.0.0', '169.254.255.255', ['169.253.255.255', 'public'], ['169.255.0.0', 'public']],
    ['172.16.0.0/12', 'private', '172.16.0.0', '172.31.255.255', ['172.15.255.255', 'public'], ['172.32.0.0', 'public']],
    ['192.0.0.0/24', 'reserved', '192.0.0.0', '192.0.0.255', ['191.255.255.255', 'public'], ['192.0.1.0', 'public']],
    ['192.0.2.0/24', 'reserved', '192.0.2.0', '192.0.2.255', ['192.0.1.255', 'public'], ['192.0.3.0', 'public']],
    ['192.88.99.0/24', 'reserved', '192.88.99.0', '192.88.99.255', ['192.88.98.255', 'public'], ['192.88.100.0', 'public']],
    ['192.168.0.0/16', 'private', '192.168.0.0', '192.168.255.255', ['192.167.255.255', 'public'], ['192.169.0.0', 'public']],
    ['198.18.0.0/15', 'reserved', '198.18.0.0', '198.19.255.255', ['198.17.255.255', 'public'], ['198.20.0.0', 'public']],
    ['198.51.100.0/24', 'reserved', '198.51.100.0', '198.51.100.255', ['198.51.99.255', 'public'], ['198.51.101.0', 'public']],
    ['203.0.113.0/24', 'reserved', '203.0.113.0', '203.0.113.255', ['203.0.112.255', 'public'], ['203.0.114.0', 'public']],
    ['224.0.0.0/4', 'multicast', '224.0.0.0', '239.255.255.255', ['223.255.255.255', 'public'], ['240.0.0.0', 'reserved']],
    ['240.0.0.0/4', 'reserved', '240.0.0.0', '255.255.255.255', ['239.255.255.255', 'multicast'], null],
  ];
  const v6: Row[] = [
    ['::/128', 'unspecified', '::', '::', null, ['::1', 'loopback']],
    ['::1/128', 'loopback', '::1', '::1', ['::', 'unspecified'], ['::2', 'reserved']],
    ['::/96', 'reserved', '::2', '::ffff:ffff', ['::1', 'loopback'], ['::1:0:0', 'reserved']],
    // NAT64 is as good as the IPv4 address it wraps: public only for a public one.
    ['64:ff9b::/96', 'public', '64:ff9b::808:808', '64:ff9b::dfff:ffff', ['64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'], ['64:ff9b::1:0:0', 'reserved']],
    ['64:ff9b:1::/48', 'private', '64:ff9b:1::', '64:ff9b:1:ffff:ffff:ffff:ffff:ffff', ['64:ff9b:0:ffff:ffff:ffff:ffff:ffff', 'reserved'], ['64:ff9b:2::', 'reserved']],
    ['100::/64', 'reserved', '100::', '100::ffff:ffff:ffff:ffff', ['ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'], ['100:0:0:1::', 'reserved']],
    ['2001:db8::/32', 'reserved', '2001:db8::', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', 'public'], ['2001:db9::', 'public']],
    ['2001::/23', 'reserved', '2001::', '2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', ['2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'public'], ['2001:200::', 'public']],
    ['fc00::/7', 'private', 'fc00::', `fdff:${F}`, [`fbff:${F}`, 'reserved'], ['fe00::', 'reserved']],
    ['fe80::/10', 'link-local', 'fe80::', `febf:${F}`, [`fe7f:${F}`, 'reserved'], ['fec0::', 'private']],
    ['fec0::/10', 'private', 'fec0::', `feff:${F}`, [`febf:${F}`, 'link-local'], ['ff00::', 'multicast']],
    ['ff00::/8', 'multicast', 'ff00::', `ffff:${F}`, [`feff:${F}`, 'private'], null],
    ['2000::/3', 'public', '2000::', `3fff:${F}`, [`1fff:${F}`, 'reserved'], ['4000::', 'reserved']],
  ];
  const strict = new ScopeGuard({ hosts: ['example.org'], allowPrivateNetwork: false });
  const open = new ScopeGuard({ hosts: ['example.org'], allowPrivateNetwork: true });
  const neverFetched = new Set<AddressClass>(['unspecified', 'multicast']);

  it.each([...v4, ...v6])('%s is %s at both ends, and its neighbours are what they are', (_range, cls, first, last, below, above) => {
    for (const ip of [first, last]) {
      expect(classifyAddress(ip), ip).toBe(cls);
      expect(strict.isAllowedAddress(ip), `${ip} without the flag`).toBe(cls === 'public');
      expect(open.isAllowedAddress(ip), `${ip} with the flag`).toBe(!neverFetched.has(cls));
    }
    for (const [ip, neighbour] of [below, above].filter((n): n is [string, AddressClass] => n !== null)) {
      expect(classifyAddress(ip), `${ip} next to ${_range}`).toBe(neighbour);
      expect(strict.isAllowedAddress(ip), `${ip} without the flag`).toBe(neighbour === 'public');
    }
  });
});
