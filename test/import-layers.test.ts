import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The layering of DESIGN.md, checked on the source (type-only and dynamic imports count too):
 * scripts → crawler / tracker → storage → config; storage never imports crawler or tracker;
 * tracker never imports crawler; crawler reaches the tracker only through its client-side
 * modules; nothing outside scripts/ imports scripts/; and no two modules import each other,
 * however long the way round.
 *
 * TypeScript's own `preProcessFile` lists the imports (no new dependency; madge or
 * dependency-cruiser would pull in a resolver and a few dozen packages for the same few rules).
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const FOLDERS = ['config', 'storage', 'crawler', 'tracker', 'scripts'] as const;
type Folder = (typeof FOLDERS)[number];

/** What each folder may import besides itself. */
const MAY_IMPORT: Record<Folder, readonly Folder[]> = {
  config: [],
  storage: ['config'],
  tracker: ['storage', 'config'],
  crawler: ['tracker', 'storage', 'config'],
  scripts: ['crawler', 'tracker', 'storage', 'config'],
};

/** The tracker modules a node (crawler/) may use: the client and what it says, never a store or the server. */
const TRACKER_CLIENT_SIDE = new Set(['tracker/client.ts', 'tracker/errors.ts', 'tracker/api-types.ts']);

/**
 * Cycles known today in files being reworked elsewhere (issue 12: the WARC writer split; a
 * type-only import of `BlockPart` back from warc-compress.ts). Each must still exist: when one
 * is gone, take it off this list so that it cannot come back.
 */
const KNOWN_CYCLES: readonly string[][] = [['storage/warc-build.ts', 'storage/warc-compress.ts']];

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
    const a = from.split('/')[0] as Folder;
    for (const to of deps) {
      const b = to.split('/')[0] as Folder;
      if (!FOLDERS.includes(b)) out.push(`${from} -> ${to} (outside the source folders)`);
      else if (a !== b && !MAY_IMPORT[a].includes(b)) out.push(`${from} -> ${to} (${a} may not import ${b})`);
      else if (a === 'crawler' && b === 'tracker' && !TRACKER_CLIENT_SIDE.has(to)) out.push(`${from} -> ${to} (a node uses the tracker's client side only)`);
      else if (a === 'tracker' && TRACKER_CLIENT_SIDE.has(from) && b === 'tracker' && !TRACKER_CLIENT_SIDE.has(to)) {
        out.push(`${from} -> ${to} (the client side may not import server code)`);
      }
    }
  }
  return out.sort();
}

describe('import layers', () => {
  const graph = importGraph(ROOT, FOLDERS);

  it('reads the real tree (a scanner that finds nothing would pass everything)', () => {
    expect(graph.size).toBeGreaterThan(100);
    expect(graph.get('scripts/cli.ts')).toContain('scripts/cli-io.ts');
    // dynamic imports count: the crawl command loads the crawler on use
    expect(graph.get('scripts/crawl-command.ts')).toContain('crawler/crawl.ts');
    // type-only imports count
    expect(graph.get('crawler/node-upload.ts')).toContain('tracker/api-types.ts');
  });

  it('finds a cycle and a layer breach when there is one', () => {
    const bad: ImportGraph = new Map([
      ['storage/a.ts', ['storage/b.ts', 'crawler/c.ts']],
      ['storage/b.ts', ['storage/a.ts']],
      ['crawler/c.ts', ['tracker/server.ts', 'tracker/client.ts', 'scripts/cli.ts']],
      ['tracker/client.ts', ['tracker/item-store.ts']],
    ]);
    expect(importCycles(bad)).toEqual([['storage/a.ts', 'storage/b.ts']]);
    expect(layerViolations(bad)).toEqual([
      'crawler/c.ts -> scripts/cli.ts (crawler may not import scripts)',
      "crawler/c.ts -> tracker/server.ts (a node uses the tracker's client side only)",
      'storage/a.ts -> crawler/c.ts (storage may not import crawler)',
      'tracker/client.ts -> tracker/item-store.ts (the client side may not import server code)',
    ]);
  });

  it('keeps the layers: scripts → crawler/tracker → storage → config, the node on the client side only', () => {
    expect(layerViolations(graph)).toEqual([]);
  });

  it('has no import cycles (but the known ones listed above, which must still be there)', () => {
    expect(importCycles(graph).map((c) => c.join(' <-> '))).toEqual(KNOWN_CYCLES.map((c) => [...c].sort().join(' <-> ')));
  });

  it('resolves every import to a source file (a path it cannot follow would hide an edge)', () => {
    const unresolved = [...graph.entries()].flatMap(([from, deps]) => deps.filter((d) => !graph.has(d) && !d.endsWith('.json')).map((d) => `${from} -> ${d}`));
    expect(unresolved).toEqual([]);
  });
});
