import { query } from 'jsonpath-rfc9535';
import { describe, expect, it } from 'vitest';
import { jsonPathQuery } from '../crawler/extract/json-path.js';

const docs: unknown[] = [
  { id: 1, author: { handle: 'a', avatar_url: '/x.png' }, media: [{ url: 'u1' }, { url: 'u2' }, { type: 'video' }], reply_to: null, kids: [5, 6, 7] },
  { post_view: { post: { id: 3, thumbnail_url: 't' }, creator: { name: 'n' } }, 'x y': [1, [2, 3]] },
  [1, { url: 'z' }, null, 'media'],
  null,
  'text',
  { media: { a: { url: 1 }, b: { url: 2 } }, kids: { 0: 'not an array' } },
];
const expressions = ['$', '$.id', '$.author.handle', '$.media[*].url', '$.media[*]', '$.kids[0]', '$.kids[-1]', '$.kids[9]', '$.reply_to', "$['x y'][1][0]", '$.post_view.post.thumbnail_url', '$[*].url', '$[1]', '$..url', '$.media[?@.url]', '$.kids[0:2]'];

describe('jsonPathQuery', () => {
  it('selects exactly what jsonpath-rfc9535 selects, for compiled and delegated expressions alike', () => {
    for (const doc of docs) for (const e of expressions) expect(jsonPathQuery(doc, e), `${e} on ${JSON.stringify(doc)}`).toEqual(query(doc as never, e));
  });

  it('throws on an expression that does not parse', () => {
    expect(() => jsonPathQuery({}, '$.[[')).toThrow();
  });
});

describe('jsonPathQuery on hostile documents (issue 11 §1)', () => {
  const doc = { media: Array.from({ length: 200_000 }, (_, i) => ({ url: `u${i}` })) };

  it('a wildcard over 200,000 entries selects them all without overflowing the stack', () => {
    const all = jsonPathQuery(doc, '$.media[*].url');
    expect(all.length).toBe(200_000);
    expect(all[199_999]).toBe('u199999');
  });

  it('stops at the limit, for compiled and delegated expressions', () => {
    expect(jsonPathQuery(doc, '$.media[*].url', 100)).toEqual(Array.from({ length: 100 }, (_, i) => `u${i}`));
    expect(jsonPathQuery(doc, '$.media[?@.url].url', 3)).toEqual(['u0', 'u1', 'u2']);
  });
});
