import { query } from 'jsonpath-rfc9535';
import { Agent, request } from 'undici';
import { InputError, errorMessage } from '../../config/errors.js';
import { fillTemplate, type Profile } from '../../config/profile.js';
import { ScopeGuard } from '../fetch/scope-guard.js';
import { userAgent } from '../../config/version.js';

/**
 * Asks the platform for its current highest ID (profile `ids.discover`). With several entries
 * (one ID space behind several endpoints, as WordPress's posts, pages and media), the highest ID
 * any of them gives; an entry whose selection is empty (a list answering `[]`) is skipped, and a
 * selection of several values counts its highest. An entry that fails (HTTP error, not JSON, a
 * value that is not an ID) fails the discovery: a `latest` lower than the platform's is worse
 * than none.
 */
export async function discoverMaxId(profile: Profile, options: { allowPrivateNetwork: boolean }): Promise<number> {
  if (!profile.discover) throw new InputError(`profile ${profile.name} has no ids.discover, so "latest" cannot be used in --ids`, { code: 'E_RANGE' });
  const guard = new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork: options.allowPrivateNetwork });
  const agent = new Agent({ connect: { lookup: guard.lookup } });
  let highest: number | undefined;
  const empty: string[] = [];
  try {
    for (const entry of profile.discover) {
      const url = fillTemplate(entry.urlTemplate, { base_url: profile.baseUrl });
      const n = await discoverOne(url, entry.jsonPath, guard, agent);
      if (n === undefined) empty.push(url);
      else highest = Math.max(highest ?? n, n);
    }
  } finally {
    await agent.close();
  }
  if (highest === undefined) throw new InputError(`discovering the latest ID: nothing selected (${empty.join(', ')} answered an empty selection)`, { code: 'E_DISCOVER' });
  return highest;
}

/** One discover entry's highest ID; undefined when its selection is empty. */
async function discoverOne(url: string, jsonPath: string, guard: ScopeGuard, agent: Agent): Promise<number | undefined> {
  guard.checkUrl(url);
  try {
    const res = await request(url, { dispatcher: agent, headers: { 'user-agent': userAgent(), accept: 'application/json' } });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new InputError(`discovering the latest ID: ${url} answered HTTP ${res.statusCode}`, { code: 'E_DISCOVER' });
    const values = query(JSON.parse(text), jsonPath);
    if (values.length === 0) return undefined;
    let highest: number | undefined;
    for (const v of values) {
      const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new InputError(`discovering the latest ID: ${jsonPath} in ${url} gave ${JSON.stringify(v)}, not an ID`, { code: 'E_DISCOVER' });
      highest = Math.max(highest ?? n, n);
    }
    return highest;
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`discovering the latest ID from ${url} failed: ${errorMessage(err)}`, { code: 'E_DISCOVER', cause: err });
  }
}
