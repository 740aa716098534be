import { describe, expect, it } from 'vitest';
import { encodePath, fillTemplate, parseProfile } from '../config/profile.js';
import { extractLimits } from '../crawler/extract/extract-bounds.js';
import { extract, resolveUrls } from '../crawler/extract/extract.js';
import { INLINE_MARKDOWN_CHARS, lexMarkdownUrls, MAX_MARKDOWN_CHARS, readMarkdownUrls } from '../crawler/extract/markdown-urls.js';
import { httpCapture } from './fixtures/http-capture.js';
import { extractionNotes } from '../storage/shard/extraction-notes.js';

/** A profile with one JSON capture and these extract rules (YAML flow), validated the real way. */
function profileWith(extractYaml: string, captureExtra = '') {
  return parseProfile(`name: t
base_url: http://127.0.0.1:9
captures:
  - {name: post, url: "{base_url}/posts/{id}.json", type: json${captureExtra}}
extract: ${extractYaml}
`, { source: 'p.yaml' });
}

const DISCOURSE_COOKED = `<p>Look:</p>
<div class="lightbox-wrapper"><a class="lightbox" href="/uploads/default/original/1X/abc123.png" data-download-href="/uploads/default/abc123" title="shot.png">
<img src="/uploads/default/optimized/1X/abc123_2_690x388.png" alt="shot" width="690" height="388" srcset="/uploads/default/optimized/1X/abc123_2_690x388.png, /uploads/default/optimized/1X/abc123_2_1035x582.png 1.5x"></a></div>
<p><img src="https://forum.example.org/images/emoji/twitter/smile.png?v=12" class="emoji" alt=":smile:"></p>`;

async function run(extractYaml: string, body: unknown, url = 'http://127.0.0.1:9/posts/7.json', o: { maxMs?: number; signal?: AbortSignal } = {}) {
  const p = profileWith(extractYaml);
  const limits = { ...extractLimits(p), ...(o.maxMs ? { maxMs: o.maxMs } : {}) };
  return extract(httpCapture(url, JSON.stringify(body), { contentType: 'application/json' }), p.captures[0]!.extract, 'json', limits, o.signal);
}

/** How many timer turns the event loop took while `work` ran (0: it was blocked throughout). */
async function ticksDuring<T>(work: () => Promise<T>): Promise<{ out: T; ticks: number }> {
  let ticks = 0;
  const iv = setInterval(() => ticks++, 5);
  try {
    const out = await work();
    return { out, ticks };
  } finally {
    clearInterval(iv);
  }
}

describe('extraction: HTML and markdown inside JSON, URL templates with fixed parts', () => {
  it('applies CSS selectors to HTML held in a JSON string (Discourse cooked), resolved against the capture URL', async () => {
    const ex = await run('{media: [{json: "$.cooked", css: "a.lightbox", attr: href}, {json: "$.cooked", css: "img:not(.emoji)", attr: src}], fields: {text: {json: "$.cooked", css: "p", attr: text}}}', { cooked: DISCOURSE_COOKED });
    expect(ex.media).toEqual(['/uploads/default/original/1X/abc123.png', '/uploads/default/optimized/1X/abc123_2_690x388.png']);
    expect(ex.fields.text).toBe('Look:');
    expect(resolveUrls(ex.media, 'http://127.0.0.1:9/posts/7.json')).toEqual(['http://127.0.0.1:9/uploads/default/original/1X/abc123.png', 'http://127.0.0.1:9/uploads/default/optimized/1X/abc123_2_690x388.png']);
    expect(ex.notes).toEqual([]);
  });

  it('takes image and/or link URLs out of markdown (Lemmy post.body)', async () => {
    const body = { post_view: { post: { body: 'Cat: ![a cat](/pictrs/image/cat.jpeg)\n\nsee [the source](https://example.org/src) and ![](https://127.0.0.1:9/pictrs/image/dog.webp "dog")\n\n    ![in code](no.png)\n' } } };
    const images = await run('{media: [{json: "$.post_view.post.body", markdown: images}]}', body);
    expect(images.media).toEqual(['/pictrs/image/cat.jpeg', 'https://127.0.0.1:9/pictrs/image/dog.webp']);
    const links = await run('{media: [{json: "$.post_view.post.body", markdown: links}]}', body);
    expect(links.media).toEqual(['https://example.org/src']);
    const all = await run('{media: [{json: "$.post_view.post.body", markdown: all}]}', body);
    expect(all.media).toHaveLength(3);
  });

  it('markdown longer than the bound is read up to it, with a note', async () => {
    const long = `${'x'.repeat(MAX_MARKDOWN_CHARS - 20)} ![](/a.png) ${'y'.repeat(100)} ![](/b.png)`;
    const ex = await run('{media: [{json: "$.body", markdown: images}]}', { body: long });
    expect(ex.media).toEqual(['/a.png']);
    expect(ex.problem).toMatch(/markdown longer than 1048576 characters read up to there/);
  });

  it('hostile markdown (quadratic for the lexer) is stopped at max_extract_ms off the event loop, with a note (issue 21 §4)', async () => {
    const body = { body: '_a'.repeat(64 * 1024) }; // ~seconds of lexing on the calling thread
    const { out: ex, ticks } = await ticksDuring(() => run('{media: [{json: "$.body", markdown: images}]}', body, undefined, { maxMs: 100 }));
    expect(ex.media).toEqual([]);
    expect(ex.problem).toMatch(/^media \$\.body markdown images: markdown of 131072 characters not read within max_extract_ms: its URLs not kept$/);
    expect(ticks).toBeGreaterThan(0); // the event loop went on while the worker lexed
    // `status` counts the cause once, whatever each text's length.
    const two = extractionNotes([{ lastError: `extraction: ${ex.problem!}`, count: 2 }, { lastError: 'extraction: media $.body markdown images: markdown of 5000 characters not read within max_extract_ms: its URLs not kept', count: 1 }]);
    expect(two).toEqual({ total: 3, notes: [{ note: 'media $.body markdown images: markdown of more characters not read within max_extract_ms: its URLs not kept', count: 3 }] });
  });

  it('Ctrl-C stops a markdown text being read in the worker', async () => {
    const stop = new AbortController();
    const reading = readMarkdownUrls('_a'.repeat(256 * 1024), 'all', 10, { maxDepth: 512, deadlineMs: Date.now() + 600_000, signal: stop.signal });
    setTimeout(() => stop.abort(), 50);
    expect((await reading).notes.join('; ')).toMatch(/extraction stopped: the crawl is stopping/);
  });

  it('markdown nested deeper than max_html_depth is read up to that line, never a RangeError (1 MiB of ">")', async () => {
    const ex = await run('{media: [{json: "$.body", markdown: images}]}', { body: `![](/a.png)\n\n${'>'.repeat(MAX_MARKDOWN_CHARS - 40)}\n![](/b.png)` });
    expect(ex.media).toEqual(['/a.png']);
    expect(ex.problem).toBe('media $.body markdown images: markdown nested deeper than 512 levels: read up to there (about character 13)');
    // deep lists by indentation (gigabytes of tokens for the lexer) are cut the same way
    const lists = Array.from({ length: 1000 }, (_, k) => `${'  '.repeat(k)}- ![](/i${k}.png)`).join('\n');
    const got = await readMarkdownUrls(lists, 'images', 1000, { maxDepth: 16, deadlineMs: Date.now() + 60_000 });
    expect(got.notes).toEqual([expect.stringMatching(/^markdown nested deeper than 16 levels: read up to there \(about character \d+\)$/)]);
    expect(got.urls.length).toBeGreaterThan(10);
    expect(got.urls.length).toBeLessThan(40);
  });

  it('long markdown read in the worker gives the same URLs as the lexer on the calling thread', async () => {
    const post = 'Some **text** with ![a](/p/1.png) and [a link](https://example.org/x) and <https://example.org/auto>\n\n- item ![b](/p/2.png)\n\n[ref]: /p/ref.png\n\n![c][ref]\n\n';
    const long = post.repeat(Math.ceil((INLINE_MARKDOWN_CHARS * 3) / post.length)) + '![last](/p/last.png)';
    expect(long.length).toBeGreaterThan(INLINE_MARKDOWN_CHARS);
    const got = await readMarkdownUrls(long, 'all', 100, { maxDepth: 512, deadlineMs: Date.now() + 60_000 });
    expect(got).toEqual({ urls: lexMarkdownUrls(long, 'all', 100), notes: [] });
    expect(got.urls).toEqual(['/p/1.png', 'https://example.org/x', 'https://example.org/auto', '/p/2.png', '/p/ref.png', '/p/last.png']);
  });

  it('fills fixed placeholders of a URL template a field holds (Discourse avatar_template); drops one left open', async () => {
    const ex = await run('{media: [{json: "$.avatar_template", fill: {size: 240}}, {json: "$.other", fill: {size: 240}}]}', {
      avatar_template: '/user_avatar/forum.example.org/sam/{size}/12_2.png',
      other: '/letter_avatar/{username}/{size}/5.png',
    });
    expect(ex.media).toEqual(['/user_avatar/forum.example.org/sam/240/12_2.png']);
    expect(ex.problem).toMatch(/1 template\(s\) with a placeholder not in fill/);
  });

  it('HTML inside JSON is bounded like a page: too deep is parsed up to the limit, with a note', async () => {
    const deep = `${'<div>'.repeat(2000)}<img src="/deep.png">${'</div>'.repeat(2000)}<img src="/after.png">`;
    const ex = await run('{media: [{json: "$.cooked", css: img, attr: src}]}', { cooked: `<img src="/first.png">${deep}` });
    expect(ex.media).toEqual(['/first.png']);
    expect(ex.problem).toMatch(/HTML nested deeper than 512 levels/);
  });

  it('a value that is not a string is skipped by css/markdown/fill, not an error', async () => {
    const ex = await run('{media: [{json: "$.cooked", css: img}, {json: "$.body", markdown: images}, {json: "$.t", fill: {size: 1}}]}', { cooked: 42, body: null, t: { x: 1 } });
    expect(ex.media).toEqual([]);
    expect(ex.notes).toEqual([]);
  });
});

describe('profile validation of the new selector forms and templates', () => {
  const bad = (extractYaml: string, captureExtra = '') => () => profileWith(extractYaml, captureExtra);
  it('names the key path of each mistake', () => {
    expect(bad('{media: [{json: "$.cooked[", css: img}]}')).toThrow(/^p\.yaml: extract\.media\[0\]\.json: JSONPath "\$\.cooked\[" does not parse/);
    expect(bad('{media: [{json: "$.cooked", css: "a[href"}]}')).toThrow(/^p\.yaml: extract\.media\[0\]\.css: CSS selector "a\[href" does not parse/);
    expect(bad('{media: [{json: "$.cooked", css: img, markdown: images}]}')).toThrow(/^p\.yaml: extract\.media\[0\]\.markdown: use one of css, markdown, fill on a JSON field, not css and markdown/);
    expect(bad('{media: [{json: "$.body", markdown: pictures}]}')).toThrow(/^p\.yaml: extract\.media\[0\]\.markdown: /);
    expect(bad('{media: [{jsn: "$.body", markdown: images}]}')).toThrow(/^p\.yaml: extract\.media\[0\]: unknown key "jsn" \(did you mean "json"\?\)/);
    expect(bad('{media: [{css: img}]}')).toThrow(/^p\.yaml: extract\.media\[0\]: a json capture extracts with JSONPath, not \{css\} \(HTML inside a JSON field: \{json, css, attr\}\)/);
    expect(bad('{media: [{json: "$.t", fill: {"bad name": 1}}]}')).toThrow(/^p\.yaml: extract\.media\[0\]\.fill\.bad name: fill names are/);
    expect(bad('{}', ', requisites: true')).toThrow(/^p\.yaml: captures\[0\]\.requisites: requisites are for html captures over http/);
    expect(bad('{}', ', requisites: [styles]')).toThrow(/^p\.yaml: captures\[0\]\.requisites/);
    expect(() => parseProfile('name: t\nbase_url: http://127.0.0.1:9\ncaptures:\n  - {name: p, url: "{base_url}/{id:raw}"}\n', { source: 'p.yaml' })).toThrow(/^p\.yaml: captures\[0\]\.url: placeholder \{id:raw\}: the forms are \{id\} \(escaped\), \{id:path\}/);
  });

  it('turns requisites into a list of kinds', () => {
    const p = parseProfile(`name: t
base_url: http://127.0.0.1:9
captures:
  - {name: post, url: "{base_url}/{id}.json", type: json, extract: {fields: {path: "$.path"}}}
  - {name: page, url: "{base_url}{path:path}", type: html, requisites: true}
  - {name: page2, url: "{base_url}/p/{id}", type: html, requisites: [stylesheets, fonts, stylesheets]}
`, { source: 'p.yaml' });
    expect(p.captures.map((c) => c.requisites)).toEqual([[], ['stylesheets', 'scripts', 'images', 'fonts'], ['stylesheets', 'fonts']]);
  });
});

describe('fillTemplate: path-shaped values keep their slashes when the profile says so', () => {
  it('encodes a plain placeholder whole, a :path one per segment', () => {
    const v = { base_url: 'http://h', p: '/t/some topic/12/3', q: 'a/b?c#d', pct: '/wiki/Caf%C3%A9 100%' };
    expect(fillTemplate('{base_url}/x/{q}', v)).toBe('http://h/x/a%2Fb%3Fc%23d');
    expect(fillTemplate('{base_url}{p:path}', v)).toBe('http://h/t/some%20topic/12/3');
    expect(fillTemplate('{base_url}/r/{q:path}', v)).toBe('http://h/r/a/b%3Fc%23d');
    expect(fillTemplate('{base_url}{pct:path}', v)).toBe('http://h/wiki/Caf%C3%A9%20100%25');
    expect(encodePath("File:Ünïcode_(x)/y'z")).toBe("File:%C3%9Cn%C3%AFcode_(x)/y'z");
    expect(() => fillTemplate('{base_url}{nope:path}', v)).toThrow(/no value for \{nope:path\}/);
  });
});
