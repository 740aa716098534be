import type { LookupAddress } from 'node:dns';
import net from 'node:net';
import { InputError, ScopeError, errorMessage } from '../../config/errors.js';
import { fillTemplate, type Profile } from '../../config/profile.js';
import { ScopeGuard } from './scope-guard.js';

/**
 * Before a crawl writes anything: may the profile's primary capture be fetched at all? A host
 * outside `scope.hosts`, or a loopback/private address (an IP literal, or a name such as
 * `localhost` that resolves only to such addresses) without `--allow-private-network`, would
 * fail every ID — slowly, and in the case of a name, as a robots.txt "try again later". The
 * run is refused at once with the scope guard's reason instead. A name that does not resolve
 * right now is left to the crawl (its retries wait out a passing DNS failure).
 */
export async function checkCrawlScope(profile: Profile, options: { allowPrivateNetwork: boolean; guard?: ScopeGuard }): Promise<void> {
  const guard = options.guard ?? new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork: options.allowPrivateNetwork });
  const primary = profile.captures[0]!;
  // Every alternative of the primary: an ID falls through to the later ones whenever the first is not archived.
  for (const template of primary.urlTemplates) {
    let url: string;
    try {
      url = fillTemplate(template, { id: '1', base_url: profile.baseUrl });
    } catch {
      continue; // a template the crawl reports per ID
    }
    try {
      const parsed = guard.checkUrl(url);
      const host = parsed.hostname.replace(/^\[|\]$/g, '');
      if (net.isIP(host) === 0) await lookupAll(guard, host);
    } catch (err) {
      if (!(err instanceof ScopeError)) continue;
      throw new InputError(`profile ${profile.source}: capture "${primary.name}" (${url}): ${errorMessage(err)}`, { code: 'E_SCOPE_PREFLIGHT', cause: err });
    }
  }
}

function lookupAll(guard: ScopeGuard, hostname: string): Promise<LookupAddress[]> {
  return new Promise((done, fail) => {
    guard.lookup(hostname, { all: true }, (err, addresses) => (err ? fail(err) : done(addresses as unknown as LookupAddress[])));
  });
}
