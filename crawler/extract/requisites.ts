import type { Profile, RequisiteKind } from '../../config/profile.js';
import type { Capture } from '../../storage/warc/capture.js';
import { decodedBody, resolveUrls } from './extract.js';
import { cssReferences, MAX_REQUISITES } from './page-requisites.js';
import { ScopeGuard } from '../fetch/scope-guard.js';

/**
 * What the crawl does with page requisites (crawler/extract/page-requisites.ts finds them): keep those on
 * the profile's scope hosts (a page's CDN fonts or analytics script are not the platform's to
 * rescue, and would only be refused one by one), and read each fetched stylesheet for its own
 * @import and url() references. They are then queued like media: once per shard.
 */
export class Requisites {
  /** Every kind any capture of the profile asks for; empty when none does. */
  readonly kinds: RequisiteKind[];
  readonly #hosts: ScopeGuard;
  readonly #maxBytes: number;

  constructor(profile: Pick<Profile, 'captures' | 'scopeHosts' | 'politeness'>) {
    this.kinds = [...new Set(profile.captures.flatMap((c) => c.requisites))];
    // Only the host list is asked here; addresses are the fetcher's guard's business.
    this.#hosts = new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork: true });
    this.#maxBytes = profile.politeness.maxExtractBytes;
  }

  /** The URLs on the scope hosts, each once. */
  inScope(urls: readonly string[]): string[] {
    return [...new Set(urls)].filter((u) => {
      try {
        return this.#hosts.isAllowedHost(new URL(u).hostname);
      } catch {
        return false;
      }
    });
  }

  /** A fetched stylesheet's references (resolved against its URL, in scope); [] for anything not text/css. */
  async ofStylesheet(capture: Capture): Promise<string[]> {
    if (this.kinds.length === 0 || capture.status !== 200 || !/^text\/css\b/i.test(capture.contentType ?? '')) return [];
    try {
      const css = (await decodedBody(capture, this.#maxBytes)).toString('utf8');
      return this.inScope(resolveUrls(cssReferences(css, this.kinds), capture.url).filter((u) => /^https?:/.test(u))).slice(0, MAX_REQUISITES);
    } catch {
      return []; // a stylesheet that cannot be decoded is archived as it is; it just adds nothing
    }
  }
}
