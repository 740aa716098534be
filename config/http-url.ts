import { InputError } from './errors.js';

/**
 * A flag that takes an http(s) URL (`--tracker`, `--endpoint`): anything else — `127.0.0.1:8070`
 * without its scheme, say — is bad usage, said on one line with the URL as it should be written.
 */
export function assertHttpUrl(flag: string, raw: string): void {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    throw new InputError(`${flag} ${JSON.stringify(raw)} is not an http(s) URL: write it with its scheme, e.g. http://${raw.replace(/^[a-z]+:\/\//i, '')}`, { code: 'E_USAGE' });
  }
}
