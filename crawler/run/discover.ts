import { query } from 'jsonpath-rfc9535';
import { Agent, request } from 'undici';
import { InputError, errorMessage } from '../../config/errors.js';
import { fillTemplate, type Profile } from '../../config/profile.js';
import { ScopeGuard } from '../fetch/scope-guard.js';
import { userAgent } from '../../config/version.js';

/** Asks the platform for its current highest ID (profile `ids.discover`). */
export async function discoverMaxId(profile: Profile, options: { allowPrivateNetwork: boolean }): Promise<number> {
  if (!profile.discover) throw new InputError(`profile ${profile.name} has no ids.discover, so "latest" cannot be used in --ids`, { code: 'E_RANGE' });
  const guard = new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork: options.allowPrivateNetwork });
  const url = fillTemplate(profile.discover.urlTemplate, { base_url: profile.baseUrl });
  guard.checkUrl(url);
  const agent = new Agent({ connect: { lookup: guard.lookup } });
  try {
    const res = await request(url, { dispatcher: agent, headers: { 'user-agent': userAgent(), accept: 'application/json' } });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new InputError(`discovering the latest ID: ${url} answered HTTP ${res.statusCode}`, { code: 'E_DISCOVER' });
    const values = query(JSON.parse(text), profile.discover.jsonPath);
    const n = Number(values[0]);
    if (!Number.isSafeInteger(n) || n < 0) throw new InputError(`discovering the latest ID: ${profile.discover.jsonPath} in ${url} gave ${JSON.stringify(values[0])}, not an ID`, { code: 'E_DISCOVER' });
    return n;
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`discovering the latest ID from ${url} failed: ${errorMessage(err)}`, { code: 'E_DISCOVER', cause: err });
  } finally {
    await agent.close();
  }
}
