import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The built-in profiles: every `NAME.yaml` of `config/profiles/` (copied next to the compiled
 * code). Read from the folder, so a profile added there is listed by `crawl --help` and the
 * refusals without anyone updating a list. Only `node:fs`: the CLI's help reads it at start-up.
 */
export const BUILTIN_DIR = fileURLToPath(new URL('./profiles/', import.meta.url));

export function builtinProfileNames(): string[] {
  let names: string[];
  try {
    names = readdirSync(BUILTIN_DIR);
  } catch {
    return [];
  }
  return names
    .filter((n) => /^[a-z0-9-]+\.yaml$/.test(n))
    .map((n) => n.slice(0, -'.yaml'.length))
    .sort();
}
