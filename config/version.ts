import { readFileSync } from 'node:fs';

function findPackageJson(): { version: string } {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      return JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string };
    } catch {
      // try the next place (source tree vs dist/)
    }
  }
  return { version: '0.0.0' };
}

export const VERSION = findPackageJson().version;
export const SOFTWARE = `lifeboat/${VERSION}`;
export const PROJECT_URL = 'https://github.com/lifeboat-archive/lifeboat';

export function userAgent(contact?: string): string {
  return `${SOFTWARE} (+${PROJECT_URL}; archiving public posts${contact ? `; contact ${contact}` : ''})`;
}
