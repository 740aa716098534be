import { describe, expect, it } from 'vitest';
import { parseHtmlBounded } from '../crawler/extract/html-extract.js';
import { cssReferences, pageRequisites, srcsetUrls } from '../crawler/extract/page-requisites.js';
import { extract } from '../crawler/extract/extract.js';
import { Requisites } from '../crawler/extract/requisites.js';
import { extractLimits } from '../crawler/extract/extract-bounds.js';
import { parseProfile } from '../config/profile.js';
import { httpCapture } from './fixtures/http-capture.js';

/** The head and body of a MediaWiki 1.39 page as index.php?oldid= serves it (Vector, trimmed). */
const MEDIAWIKI_PAGE = `<!DOCTYPE html><html class="client-nojs" lang="en" dir="ltr"><head>
<meta charset="UTF-8"/><title>Alpha - Lifeboat Test Wiki</title>
<script>document.documentElement.className="client-js";</script>
<link rel="stylesheet" href="/load.php?lang=en&amp;modules=mediawiki.action.styles%7Cskins.vector.styles.legacy&amp;only=styles&amp;skin=vector"/>
<script async="" src="/load.php?lang=en&amp;modules=startup&amp;only=scripts&amp;raw=1&amp;skin=vector"></script>
<link rel="alternate" type="application/x-wiki" title="Edit" href="/index.php?title=Alpha&amp;action=edit"/>
<link rel="icon" href="/favicon.ico"/>
<link rel="preload" as="font" href="/fonts/Lato.woff2" crossorigin/>
<style>.logo { background-image: url("/resources/assets/wiki.png"); } @import url(/print.css) print;</style>
</head><body>
<a href="/index.php/File:Red_square.png" class="image"><img alt="Red square.png" src="/images/6/69/Red_square.png" width="40" height="30"/></a>
<img src="/resources/assets/poweredby_mediawiki_88x31.png" srcset="/resources/assets/poweredby_mediawiki_132x47.png 1.5x, /resources/assets/poweredby_mediawiki_176x62.png 2x"/>
<img src="data:image/gif;base64,R0lGOD" alt=""/><img src="javascript:alert(1)"/>
<div style="background: url('/bg.jpg')"></div>
<a href="/index.php/Other_page">other</a>
</body></html>`;

const PAGE = 'http://127.0.0.1:8931/index.php?oldid=5';

async function dom(html: string) {
  return (await parseHtmlBounded(html, { maxDepth: 512, deadlineMs: Date.now() + 10_000 })).dom;
}

describe('page requisites (wget --page-requisites)', () => {
  it('finds a MediaWiki page’s stylesheet, script, images, icon and fonts, absolute and once each — not its links', async () => {
    const all = pageRequisites(await dom(MEDIAWIKI_PAGE), PAGE, ['stylesheets', 'scripts', 'images', 'fonts']);
    const h = 'http://127.0.0.1:8931';
    expect(all.sort()).toEqual(
      [
        `${h}/load.php?lang=en&modules=mediawiki.action.styles%7Cskins.vector.styles.legacy&only=styles&skin=vector`,
        `${h}/print.css`,
        `${h}/load.php?lang=en&modules=startup&only=scripts&raw=1&skin=vector`,
        `${h}/images/6/69/Red_square.png`,
        `${h}/resources/assets/poweredby_mediawiki_88x31.png`,
        `${h}/resources/assets/poweredby_mediawiki_132x47.png`,
        `${h}/resources/assets/poweredby_mediawiki_176x62.png`,
        `${h}/favicon.ico`,
        `${h}/resources/assets/wiki.png`,
        `${h}/bg.jpg`,
        `${h}/fonts/Lato.woff2`,
      ].sort(),
    );
  });

  it('takes only the kinds asked for', async () => {
    const d = await dom(MEDIAWIKI_PAGE);
    expect(pageRequisites(d, PAGE, ['scripts'])).toEqual(['http://127.0.0.1:8931/load.php?lang=en&modules=startup&only=scripts&raw=1&skin=vector']);
    expect(pageRequisites(d, PAGE, ['stylesheets']).sort()).toEqual(['http://127.0.0.1:8931/load.php?lang=en&modules=mediawiki.action.styles%7Cskins.vector.styles.legacy&only=styles&skin=vector', 'http://127.0.0.1:8931/print.css']);
    expect(pageRequisites(d, PAGE, ['fonts'])).toEqual(['http://127.0.0.1:8931/fonts/Lato.woff2']);
    expect(pageRequisites(d, PAGE, [])).toEqual([]);
  });

  it('resolves against <base href>, and stops at the limit', async () => {
    const d = await dom('<base href="https://cdn.example.org/static/"><img src="a.png"><img src="b.png"><script src="/c.js"></script>');
    expect(pageRequisites(d, PAGE, ['images', 'scripts'])).toEqual(['https://cdn.example.org/c.js', 'https://cdn.example.org/static/a.png', 'https://cdn.example.org/static/b.png']);
    expect(pageRequisites(d, PAGE, ['images'], 1)).toEqual(['https://cdn.example.org/static/a.png']);
  });

  it('reads a stylesheet: @import as stylesheets, url() in @font-face as fonts, other url() as images', () => {
    const css = `@import "theme.css"; @import url('/base.css');
/* url(/commented.png) */
@font-face { font-family: Lato; src: url(/fonts/lato.woff2) format("woff2"), url("/fonts/lato.woff") format("woff"); }
.logo { background: url( "../img/logo.svg?a60df" ) no-repeat; } .x { background: url(data:image/png;base64,AAA); }
.y{background:url(/img/bg.png)}`;
    expect(cssReferences(css, ['stylesheets', 'scripts', 'images', 'fonts'])).toEqual(['theme.css', '/base.css', '/fonts/lato.woff2', '/fonts/lato.woff', '../img/logo.svg?a60df', '/img/bg.png']);
    expect(cssReferences(css, ['images'])).toEqual(['../img/logo.svg?a60df', '/img/bg.png']);
    expect(cssReferences(css, ['fonts'])).toEqual(['/fonts/lato.woff2', '/fonts/lato.woff']);
  });

  it('splits srcset candidates, with or without space after the comma', () => {
    expect(srcsetUrls('a.png 1x, b.png 2x')).toEqual(['a.png', 'b.png']);
    expect(srcsetUrls('a.png 480w,b.png 800w')).toEqual(['a.png', 'b.png']);
    expect(srcsetUrls('/img,with,commas.png 1x')).toEqual(['/img,with,commas.png']);
  });

  it('extract() returns an HTML capture’s requisites when its profile asks, even without extract rules', async () => {
    const p = parseProfile(`name: t
base_url: http://127.0.0.1:8931
captures:
  - {name: rev, url: "{base_url}/api.php?revids={id}", type: json}
  - {name: page, url: "{base_url}/index.php?oldid={id}", type: html, requisites: [scripts]}
  - {name: bare, url: "{base_url}/index.php?curid={id}", type: html}
`, { source: 'p.yaml' });
    const capture = httpCapture(PAGE, MEDIAWIKI_PAGE, { contentType: 'text/html' });
    const page = p.captures[1]!;
    const ex = await extract(capture, page.extract, page.type, extractLimits(p), undefined, page.requisites);
    expect(ex.requisites).toEqual(['http://127.0.0.1:8931/load.php?lang=en&modules=startup&only=scripts&raw=1&skin=vector']);
    const bare = p.captures[2]!;
    expect((await extract(capture, bare.extract, bare.type, extractLimits(p), undefined, bare.requisites)).requisites).toEqual([]);
  });

  it('the crawl keeps requisites on the scope hosts and reads fetched stylesheets (text/css only) for theirs', async () => {
    const p = parseProfile(`name: t
base_url: http://127.0.0.1:8931
scope: {hosts: ["127.0.0.1", "*.example.org"]}
captures:
  - {name: rev, url: "{base_url}/api.php?revids={id}", type: json}
  - {name: page, url: "{base_url}/index.php?oldid={id}", type: html, requisites: [stylesheets, images]}
`, { source: 'p.yaml' });
    const req = new Requisites(p);
    expect(req.kinds).toEqual(['stylesheets', 'images']);
    expect(req.inScope(['http://127.0.0.1:8931/a.css', 'https://fonts.googleapis.com/x.css', 'https://cdn.example.org/b.png', 'https://example.org/apex.png', 'http://127.0.0.1:8931/a.css'])).toEqual(['http://127.0.0.1:8931/a.css', 'https://cdn.example.org/b.png']);
    const css = '@import "more.css"; @font-face{src:url(/f.woff2)} .a{background:url(../img/a.svg?1)} .b{background:url(https://elsewhere.net/x.png)}';
    const sheet = httpCapture('http://127.0.0.1:8931/skin/main.css', css, { contentType: 'text/css; charset=utf-8' });
    expect(await req.ofStylesheet(sheet)).toEqual(['http://127.0.0.1:8931/skin/more.css', 'http://127.0.0.1:8931/img/a.svg?1']);
    expect(await req.ofStylesheet(httpCapture('http://127.0.0.1:8931/x.js', css, { contentType: 'text/javascript' }))).toEqual([]);
    expect(await req.ofStylesheet(httpCapture('http://127.0.0.1:8931/x.css', css, { contentType: 'text/css', status: 404 }))).toEqual([]);
  });
});
