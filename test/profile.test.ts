import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinProfileNames, loadProfile, parseProfile } from '../config/profile.js';

const base = `name: t
base_url: http://127.0.0.1:9
captures:
  - {name: post, url: "{base_url}/api/{id}", type: json}
`;

function parse(text: string) {
  return () => parseProfile(text, { source: 'bad.yaml' });
}

describe('profiles', () => {
  it('loads every built-in', () => {
    for (const name of builtinProfileNames()) {
      const p = loadProfile(name, { baseUrl: 'http://127.0.0.1:1' });
      expect(p.name).toBe(name);
      expect(p.captures.length).toBeGreaterThan(0);
      expect(p.source).toBe(`builtin:${name}`);
    }
  });

  it('applies defaults and converts units once', () => {
    const p = parseProfile(base, { source: 'ok.yaml' });
    expect(p.politeness).toMatchObject({ concurrency: 32, perHostConcurrency: 16, ratePerSec: 200, robots: 'obey', maxAttempts: 8, timeoutMs: 30000 });
    expect(p.scopeHosts).toEqual(['127.0.0.1']);
    expect(p.captures[0]!.when).toBe('always');
    expect(p.status.restricted).toEqual([401, 403, 451]);
  });

  it('names the file and key path of each error', () => {
    expect(parse(`${base}politness: {}\n`)).toThrow(/bad\.yaml: unknown key "politness" \(did you mean "politeness"\?\)/);
    expect(parse(`${base}politeness: {concurrency: "many"}\n`)).toThrow(/bad\.yaml: politeness\.concurrency: /);
    expect(parse(base.replace('{id}', '{idd}'))).toThrow(/bad\.yaml: captures\[0\]\.url: unknown placeholder \{idd\}/);
    expect(parse(`${base}extract: {media: ["$.media[*"]}\n`)).toThrow(/bad\.yaml: extract\.media\[0\]: JSONPath "\$\.media\[\*" does not parse/);
    expect(parse(base.replace('name: t', 'name: Bad Name'))).toThrow(/bad\.yaml: name: profile names are/);
    expect(parse(base.replace('type: json', 'type: xml'))).toThrow(/bad\.yaml: captures\[0\]\.type/);
    expect(parse('name: t\ncaptures: [\n')).toThrow(/bad\.yaml: not valid YAML/);
    expect(parse(base.replace('base_url: http://127.0.0.1:9\n', ''))).toThrow(/bad\.yaml: base_url: no base_url/);
    expect(parse(`${base}  - {name: post, url: "{base_url}/x/{id}"}\n`)).toThrow(/captures\[1\]\.name: capture name "post" is used twice/);
  });

  it('lets later captures use fields extracted earlier, and only those', () => {
    const ok = `name: t
base_url: http://127.0.0.1:9
captures:
  - {name: lookup, url: "{base_url}/lookup/{id}", type: json, extract: {fields: {uuid: "$.uuid"}}}
  - {name: post, url: "{base_url}/posts/{uuid}", type: json}
`;
    expect(parseProfile(ok, { source: 'ok.yaml' }).captures[1]!.urlTemplate).toBe('{base_url}/posts/{uuid}');
    expect(() => parseProfile(ok.replace('/lookup/{id}', '/lookup/{uuid}'), { source: 'bad.yaml' })).toThrow(/captures\[0\]\.url: unknown placeholder \{uuid\}/);
  });

  it('refuses css selectors on JSON and JSONPath on HTML', () => {
    expect(parse(`${base}extract: {media: [{css: img}]}\n`)).toThrow(/extract\.media\[0\]: a json capture extracts with JSONPath/);
  });

  it('reads JSON profiles from files and names a missing one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lifeboat-profile-'));
    const file = join(dir, 'p.json');
    await writeFile(file, JSON.stringify({ name: 'j', base_url: 'http://127.0.0.1:1', captures: [{ name: 'a', url: '{base_url}/{id}' }] }));
    expect(loadProfile(file).name).toBe('j');
    await writeFile(file, '{"name": ');
    expect(() => loadProfile(file)).toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not valid JSON`));
    expect(() => loadProfile(join(dir, 'nope.yaml'))).toThrow(/no such profile/);
  });
});
