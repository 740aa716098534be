import { describe, expect, it } from 'vitest';
import { parseProfile } from '../config/profile.js';
import { decideStatus, fetchWithStatusRules, rateLimitBackoffMs, RateLimitGate } from '../crawler/run/status-rules.js';

const base = `name: t
base_url: http://127.0.0.1:9
captures:
  - {name: post, url: "{base_url}/api/{id}", type: json}
`;

function statusOf(status: string) {
  return parseProfile(`${base}status: ${status}\n`, { source: 'p.yaml' }).status;
}

function parse(text: string) {
  return () => parseProfile(text, { source: 'bad.yaml' });
}

const lemmy = statusOf(`{archived: [200], missing: [404], rules: [
  {code: 400, json: "$.error", equals: couldnt_find_post, then: missing},
  {code: [400, 429], json: "$.error", equals: rate_limit_error, then: retry},
  {code: 200, json: "$.post_view.post.deleted", equals: true, then: missing},
  {code: 200, json: "$.deleted", equals: [true, "yes"], then: gone},
  {code: 200, json: "$.query.badrevids", then: missing},
  {code: 200, json: "$.error.code", equals: ratelimited, then: retry},
  {code: 200, json: "$.error", then: failed},
  {code: 200, body: "^\\\\s*null\\\\s*$", then: missing},
  {json: "$.dead", exists: false, code: 299, then: restricted}]}`);

describe('status rules: the status from the HTTP status and the body', () => {
  it('maps one status code to different outcomes by a JSONPath on the body (Lemmy ≥ 0.19.4)', () => {
    expect(decideStatus(lemmy, { code: 400, text: '{"error":"couldnt_find_post"}' })).toEqual({ kind: 'final', status: 'missing', rule: 'status.rules[0]' });
    const retry = decideStatus(lemmy, { code: 400, text: '{"error":"rate_limit_error"}' });
    expect(retry).toMatchObject({ kind: 'retry', rule: 'status.rules[1]' });
    expect(retry.kind === 'retry' && retry.reason).toBe('HTTP 400 $.error = "rate_limit_error" (status.rules[1]: retry)');
    // A 400 no rule knows is not a status list's either: failed, saying so.
    expect(decideStatus(lemmy, { code: 400, text: '{"error":"invalid_url"}' })).toEqual({ kind: 'final', status: 'failed', reason: 'unexpected HTTP 400' });
  });

  it('applies rules to 200 bodies: deleted flags, MediaWiki badrevids, errors and null', () => {
    expect(decideStatus(lemmy, { code: 200, text: '{"post_view":{"post":{"deleted":true}}}' })).toMatchObject({ status: 'missing' });
    expect(decideStatus(lemmy, { code: 200, text: '{"post_view":{"post":{"deleted":false}}}' })).toEqual({ kind: 'final', status: 'archived' });
    expect(decideStatus(lemmy, { code: 200, text: '{"deleted":"yes","id":3}' })).toMatchObject({ status: 'gone', rule: 'status.rules[3]' });
    expect(decideStatus(lemmy, { code: 200, text: '{"deleted":"true"}' })).toMatchObject({ status: 'archived' });
    expect(decideStatus(lemmy, { code: 200, text: '{"deleted":1}' })).toMatchObject({ status: 'archived' });
    expect(decideStatus(lemmy, { code: 200, text: '{"batchcomplete":true,"query":{"badrevids":{"7":{"revid":7,"missing":true}}}}' })).toMatchObject({ status: 'missing' });
    expect(decideStatus(lemmy, { code: 200, text: '{"error":{"code":"ratelimited","info":"slow down"}}' })).toMatchObject({ kind: 'retry', rule: 'status.rules[5]' });
    expect(decideStatus(lemmy, { code: 200, text: '{"error":{"code":"internal_api_error"}}' })).toMatchObject({ kind: 'final', status: 'failed', rule: 'status.rules[6]' });
    expect(decideStatus(lemmy, { code: 200, text: ' null\n' })).toMatchObject({ status: 'missing', rule: 'status.rules[7]' });
    // `exists: false` matches a body where the path selects nothing (or only null).
    expect(decideStatus(lemmy, { code: 299, text: '{"dead":null}' })).toMatchObject({ status: 'restricted' });
    expect(decideStatus(lemmy, { code: 299, text: '{"dead":false}' })).toMatchObject({ status: 'failed' });
  });

  it('a body that is not JSON, too deep or absent matches no JSON rule', () => {
    expect(decideStatus(lemmy, { code: 400, text: '<html>rate_limit_error</html>' })).toMatchObject({ status: 'failed' });
    expect(decideStatus(lemmy, { code: 400, text: undefined })).toMatchObject({ status: 'failed' });
    expect(decideStatus(lemmy, { code: 400, text: `${'['.repeat(20_000)}${']'.repeat(20_000)}` })).toMatchObject({ status: 'failed' });
  });

  it('keeps the status lists and missing_body (the older form) working', () => {
    const old = statusOf('{archived: [200, 203], missing: [404], gone: [410], restricted: [401], missing_body: ["null"]}');
    expect(decideStatus(old, { code: 203, text: '{}' })).toEqual({ kind: 'final', status: 'archived' });
    expect(decideStatus(old, { code: 200, text: 'null\n' })).toEqual({ kind: 'final', status: 'missing' });
    expect(decideStatus(old, { code: 410, text: '' })).toEqual({ kind: 'final', status: 'gone' });
    expect(decideStatus(old, { code: 401, text: '' })).toEqual({ kind: 'final', status: 'restricted' });
    expect(decideStatus(old, { code: 500, text: '' })).toMatchObject({ status: 'failed', reason: 'unexpected HTTP 500' });
    expect(old.rules).toEqual([]);
  });

  it('validates rules like the rest of the profile, naming file and key path', () => {
    const rule = (r: string) => parse(`${base}status: {rules: [{code: 400, json: "$.error", then: missing}, ${r}]}\n`);
    expect(rule('{code: 400, json: "$.error[", then: retry}')).toThrow(/^bad\.yaml: status\.rules\[1\]\.json: JSONPath "\$\.error\[" does not parse/);
    expect(rule('{code: 400, jsn: "$.error", then: retry}')).toThrow(/^bad\.yaml: status\.rules\[1\]: unknown key "jsn" \(did you mean "json"\?\)/);
    expect(rule('{code: 400, json: "$.e", then: later}')).toThrow(/^bad\.yaml: status\.rules\[1\]\.then: /);
    expect(rule('{code: 600, then: missing}')).toThrow(/^bad\.yaml: status\.rules\[1\]\.code/);
    expect(rule('{then: missing}')).toThrow(/^bad\.yaml: status\.rules\[1\]: a status rule needs at least one of code, json, body/);
    expect(rule('{code: 400, equals: x, then: missing}')).toThrow(/^bad\.yaml: status\.rules\[1\]\.equals: equals compares what json selects/);
    expect(rule('{json: "$.a", equals: 1, exists: true, then: missing}')).toThrow(/^bad\.yaml: status\.rules\[1\]\.exists: use equals or exists/);
    expect(rule('{body: "(", then: missing}')).toThrow(/^bad\.yaml: status\.rules\[1\]\.body: regular expression \/\(\/ does not compile/);
  });
});

describe('status rules: retry later', () => {
  it('fetches again while the verdict is retry, discards the replaced answers, pauses the whole part', async () => {
    const answers = ['{"error":"rate_limit_error"}', '{"error":"rate_limit_error"}', '{"post_view":{"post":{"id":1}}}'];
    const discarded: string[] = [];
    const gate = new RateLimitGate();
    let n = 0;
    const got = await fetchWithStatusRules({
      attempt: async () => ({ code: n < 2 ? 400 : 200, text: answers[n++] }),
      decide: (r) => decideStatus(lemmy, r),
      discard: async (r) => void discarded.push(r.text!),
      maxAttempts: 5,
      gate,
      backoffBaseMs: 4,
      onRetry: () => undefined,
    });
    expect(got.decision).toEqual({ kind: 'final', status: 'archived' });
    expect(got.attempts).toBe(3);
    expect(got.result.text).toBe(answers[2]);
    expect(discarded).toEqual(answers.slice(0, 2));
    expect(gate.remainingMs()).toBe(0);
  });

  it('ends failed, naming the rule, when attempts run out', async () => {
    let n = 0;
    const got = await fetchWithStatusRules({
      attempt: async () => ({ code: 400, text: `{"error":"rate_limit_error","n":${++n}}` }),
      decide: (r) => decideStatus(lemmy, r),
      discard: async () => undefined,
      maxAttempts: 3,
      gate: new RateLimitGate(),
      backoffBaseMs: 2,
    });
    expect(n).toBe(3);
    expect(got.decision).toEqual({ kind: 'final', status: 'failed', rule: 'status.rules[1]', reason: 'HTTP 400 $.error = "rate_limit_error" (status.rules[1]: retry): still so after 3 attempts' });
  });

  it('pauses at least as long as the answer’s Retry-After asks', async () => {
    class RecordingGate extends RateLimitGate {
      readonly pauses: number[] = [];
      override pause(ms: number): void {
        this.pauses.push(ms);
      }
    }
    const gate = new RecordingGate();
    const answers = [
      { code: 200, text: '{"error":{"code":"ratelimited"}}', retryAfterMs: 7000 },
      { code: 200, text: '{"error":{"code":"ratelimited"}}' },
      { code: 200, text: '{"query":{"pages":[]}}' },
    ];
    let n = 0;
    const got = await fetchWithStatusRules({
      attempt: async () => answers[n++]!,
      decide: (r) => decideStatus(lemmy, r),
      discard: async () => undefined,
      retryAfterMs: (r) => r.retryAfterMs,
      maxAttempts: 5,
      gate,
      backoffBaseMs: 4,
    });
    expect(got.decision).toMatchObject({ status: 'archived' });
    expect(gate.pauses[0]).toBe(7000);
    expect(gate.pauses[1]).toBeLessThan(8);
  });

  it('the gate holds every waiter until the longest pause asked is over', () => {
    const gate = new RateLimitGate();
    gate.pause(1000, 10_000);
    gate.pause(200, 10_100);
    expect(gate.remainingMs(10_500)).toBe(500);
    expect(gate.remainingMs(11_000)).toBe(0);
  });

  it('backs off exponentially with equal jitter: never under half the ceiling, capped', () => {
    expect(rateLimitBackoffMs(1, { baseMs: 500, random: () => 0 })).toBe(250);
    expect(rateLimitBackoffMs(1, { baseMs: 500, random: () => 0.999999 })).toBe(499);
    expect(rateLimitBackoffMs(4, { baseMs: 500, random: () => 0 })).toBe(2000);
    expect(rateLimitBackoffMs(30, { baseMs: 500, maxMs: 60_000, random: () => 1 })).toBe(60_000);
  });
});
