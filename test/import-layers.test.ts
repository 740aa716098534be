import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The layering of ARCHITECTURE.md ("The house"), checked on the source (type-only and dynamic
 * imports count too). Each room is a folder; a room may import only the rooms listed for it,
 * so every arrow between rooms points one way, down:
 *
 *   scripts/{bench,soak} → scripts/cli → scripts/demo
 *   scripts/cli → node → crawler/run → crawler/{browser,extract} → crawler/fetch
 *   tracker/server → tracker/store → tracker/client
 *   storage/export → storage/curate → storage/shard → storage/warc;  storage/upload → storage/shard
 *   everything → config
 *
 * The node and the crawler reach the tracker only through tracker/client (never a store or
 * the server); nothing outside scripts/ imports scripts/; and no two modules import each other,
 * however long the way round. The house also stays small enough to read (issue 24): at most 15
 * files of its own in a folder, at most 450 lines in a source file.
 *
 * TypeScript's own `preProcessFile` lists the imports (no new dependency; madge or
 * dependency-cruiser would pull in a resolver and a few dozen packages for the same few rules).
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const FOLDERS = ['config', 'storage', 'crawler', 'tracker', 'node', 'scripts'] as const;

const STORAGE_BELOW_CURATE = ['storage/shard', 'storage/warc', 'config'];
const STORAGE = ['storage/export', 'storage/curate', 'storage/upload', ...STORAGE_BELOW_CURATE];
const CRAWLER = ['crawler/run', 'crawler/browser', 'crawler/extract', 'crawler/fetch'];

/** What each room may import besides itself. A file directly in a folder with rooms is its own room. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  config: [],
  'storage/warc': ['config'],
  'storage/shard': ['storage/warc', 'config'],
  'storage/upload': STORAGE_BELOW_CURATE,
  'storage/curate': STORAGE_BELOW_CURATE,
  'storage/export': ['storage/curate', ...STORAGE_BELOW_CURATE],
  'tracker/client': ['config'],
  'tracker/store': ['tracker/client', 'config'],
  'tracker/server': ['tracker/store', 'tracker/client', ...STORAGE],
  'crawler/fetch': STORAGE,
  'crawler/extract': ['crawler/fetch', ...STORAGE],
  'crawler/browser': ['crawler/fetch', ...STORAGE],
  'crawler/run': ['crawler/browser', 'crawler/extract', 'crawler/fetch', 'tracker/client', ...STORAGE],
  node: [...CRAWLER, 'tracker/client', ...STORAGE],
  'scripts/demo': ['config'],
  'scripts/cli': ['scripts/demo', 'node', ...CRAWLER, 'tracker/server', 'tracker/store', 'tracker/client', ...STORAGE],
  'scripts/bench': ['scripts/cli', 'scripts/demo', 'node', ...CRAWLER, 'tracker/server', 'tracker/store', 'tracker/client', ...STORAGE],
  'scripts/soak': ['scripts/cli', 'scripts/demo', 'node', ...CRAWLER, 'tracker/server', 'tracker/store', 'tracker/client', ...STORAGE],
};

/** The room of a file: its folder below the top one (`storage/warc`), or the top folder for `node/` and `config/`. */
function roomOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 2 ? parts.slice(0, 2).join('/') : parts[0]!;
}

/**
 * Cycles known today (none: the last one, warc-build <-> warc-compress, went when `BlockPart`
 * moved into capture.ts). Each listed must still exist: when one is gone, take it off this list
 * so that it cannot come back.
 */
const KNOWN_CYCLES: readonly string[][] = [];

type ImportGraph = Map<string, string[]>;

/** Every `.ts` file under the folders, with the project files it imports (paths relative to ROOT, posix). */
function importGraph(root: string, folders: readonly string[]): ImportGraph {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      const rel = posix.join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) files.push(rel);
    }
  };
  for (const f of folders) walk(f);
  const graph: ImportGraph = new Map();
  for (const file of files) {
    const info = ts.preProcessFile(readFileSync(join(root, file), 'utf8'), true, true);
    const deps = info.importedFiles
      .map((i) => i.fileName)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.js$/, '.ts'));
    graph.set(file, [...new Set(deps)]);
  }
  return graph;
}

/** The strongly connected components with more than one file (Tarjan): each is an import cycle. */
function importCycles(graph: ImportGraph): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return cycles.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** The imports that break the layering, as `from -> to` lines. */
function layerViolations(graph: ImportGraph): string[] {
  const out: string[] = [];
  for (const [from, deps] of graph) {
    const a = roomOf(from);
    for (const to of deps) {
      const b = roomOf(to);
      if (!(FOLDERS as readonly string[]).includes(to.split('/')[0]!)) out.push(`${from} -> ${to} (outside the source folders)`);
      else if (!(a in MAY_IMPORT)) out.push(`${from} (${a} is not a room of the house: add it to MAY_IMPORT)`);
      else if (a !== b && !MAY_IMPORT[a]!.includes(b)) out.push(`${from} -> ${to} (${a} may not import ${b})`);
    }
  }
  return [...new Set(out)].sort();
}

/** Folders holding more than `max` files of their own (not counting sub-folders). */
function crowdedFolders(graph: ImportGraph, max: number): string[] {
  const count = new Map<string, number>();
  for (const file of graph.keys()) count.set(posix.dirname(file), (count.get(posix.dirname(file)) ?? 0) + 1);
  return [...count].filter(([, n]) => n > max).map(([dir, n]) => `${dir}: ${n} files`);
}

/** Source files longer than `max` lines, counted as an editor numbers them (a last line without its newline counts too). */
function longFiles(root: string, files: Iterable<string>, max: number): string[] {
  const out: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    if (lines > max) out.push(`${file}: ${lines} lines`);
  }
  return out.sort();
}

describe('import layers', () => {
  const graph = importGraph(ROOT, FOLDERS);

  it('reads the real tree (a scanner that finds nothing would pass everything)', () => {
    expect(graph.size).toBeGreaterThan(100);
    expect(graph.get('scripts/cli/cli.ts')).toContain('scripts/cli/cli-io.ts');
    // dynamic imports count: the crawl command loads the crawler on use
    expect(graph.get('scripts/cli/crawl-command.ts')).toContain('crawler/run/crawl.ts');
    // type-only imports count
    expect(graph.get('node/upload.ts')).toContain('tracker/client/api-types.ts');
  });

  it('finds a cycle and a layer breach when there is one', () => {
    const bad: ImportGraph = new Map([
      ['storage/a.ts', ['storage/b.ts', 'crawler/c.ts']],
      ['storage/b.ts', ['storage/a.ts']],
      ['crawler/c.ts', ['tracker/server/server.ts']],
      ['crawler/run/d.ts', ['tracker/server/server.ts', 'tracker/client/client.ts', 'scripts/cli/cli.ts', 'node/loop.ts']],
      ['storage/warc/e.ts', ['storage/shard/shard-db.ts']],
      ['tracker/client/client.ts', ['tracker/store/item-store.ts']],
    ]);
    expect(importCycles(bad)).toEqual([['storage/a.ts', 'storage/b.ts']]);
    expect(layerViolations(bad)).toEqual([
      'crawler/c.ts (crawler is not a room of the house: add it to MAY_IMPORT)',
      'crawler/run/d.ts -> node/loop.ts (crawler/run may not import node)',
      'crawler/run/d.ts -> scripts/cli/cli.ts (crawler/run may not import scripts/cli)',
      'crawler/run/d.ts -> tracker/server/server.ts (crawler/run may not import tracker/server)',
      'storage/a.ts (storage is not a room of the house: add it to MAY_IMPORT)',
      'storage/b.ts (storage is not a room of the house: add it to MAY_IMPORT)',
      'storage/warc/e.ts -> storage/shard/shard-db.ts (storage/warc may not import storage/shard)',
      'tracker/client/client.ts -> tracker/store/item-store.ts (tracker/client may not import tracker/store)',
    ]);
  });

  it('keeps the layers: every arrow between rooms points down, the node and crawler on the tracker client only', () => {
    expect(layerViolations(graph)).toEqual([]);
  });

  it('keeps every folder small enough to read: at most 15 files of its own', () => {
    expect(crowdedFolders(graph, 15)).toEqual([]);
  });

  it('keeps every source file small enough to read: at most 450 lines', () => {
    expect(longFiles(ROOT, graph.keys(), 450)).toEqual([]);
  });

  it('has no import cycles (but the known ones listed above, which must still be there)', () => {
    expect(importCycles(graph).map((c) => c.join(' <-> '))).toEqual(KNOWN_CYCLES.map((c) => [...c].sort().join(' <-> ')));
  });

  it('resolves every import to a source file (a path it cannot follow would hide an edge)', () => {
    const unresolved = [...graph.entries()].flatMap(([from, deps]) => deps.filter((d) => !graph.has(d) && !d.endsWith('.json')).map((d) => `${from} -> ${d}`));
    expect(unresolved).toEqual([]);
  });
});
