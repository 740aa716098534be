import { createHash } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { sha1Label, type Capture } from '../../storage/warc/capture.js';

/**
 * Record building for browser capture (issue 5; split from browser-capture.ts in issue 17): the
 * response and request heads from what CDP reports, and a `Capture` from one recorded response.
 * The rules (decoded bodies, renamed encoding headers, rebuilt request head) are in browser-capture.ts.
 */

export interface Paused {
  requestId: string;
  networkId?: string;
  resourceType: string;
  request: { url: string; method: string; headers: Record<string, string>; postData?: string };
  responseStatusCode?: number;
  responseStatusText?: string;
  responseHeaders?: { name: string; value: string }[];
  responseErrorReason?: string;
}

export interface Pending {
  paused: Paused;
  /** Which hop of its network request (0, then 1.. after redirects): indexes the ExtraInfo lists. */
  hop: number;
  body: Buffer;
  truncated: boolean;
  fetchedAt: Date;
  requestHeaders: Record<string, string> | undefined;
  headersText: string | undefined;
  remoteAddress: string | undefined;
}

export const sha1 = (...parts: Buffer[]): string => {
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return sha1Label(h.digest());
};

/** `HTTP/1.1 ...` head lines from CDP, adjusted to the decoded body (see the module comment). */
export function responseHeadFor(p: { status: number; statusText?: string; headersText?: string; headers?: { name: string; value: string }[] }, bodyLength: number): Buffer {
  let statusLine: string;
  let fields: [string, string][];
  if (p.headersText && new RegExp(`^HTTP/1\\.[01] ${p.status}\\b`).test(p.headersText)) {
    const lines = p.headersText.replace(/\r\n\r\n$/, '').split('\r\n');
    statusLine = lines[0]!;
    fields = lines.slice(1).filter(Boolean).map((line) => {
      const i = line.indexOf(':');
      return [line.slice(0, i), line.slice(i + 1).trim()];
    });
  } else {
    statusLine = `HTTP/1.1 ${p.status} ${p.statusText || STATUS_CODES[p.status] || ''}`;
    fields = (p.headers ?? []).map((h) => [h.name, h.value]);
  }
  const encoded = fields.some(([n, v]) => n.toLowerCase() === 'content-encoding' && v.trim().toLowerCase() !== 'identity');
  let out = `${statusLine}\r\n`;
  let needLength = encoded;
  for (const [name, value] of fields) {
    const lower = name.toLowerCase();
    if (lower === 'content-encoding' && encoded) out += `X-Lifeboat-Orig-Content-Encoding: ${value}\r\n`;
    else if (lower === 'transfer-encoding') out += `X-Lifeboat-Orig-Transfer-Encoding: ${value}\r\n`;
    else if (lower === 'content-length' && Number(value) !== bodyLength) {
      out += `X-Lifeboat-Orig-Content-Length: ${value}\r\n`;
      needLength = true;
    } else {
      if (lower === 'content-length') needLength = false;
      out += `${name}: ${value}\r\n`;
    }
  }
  if (needLength) out += `Content-Length: ${bodyLength}\r\n`;
  return Buffer.from(`${out}\r\n`, 'latin1');
}

/** The request head from the headers Chromium reports it sent (HTTP/2 pseudo-headers folded in). */
export function requestHeadFor(method: string, url: string, headers: Record<string, string>): Buffer {
  const u = new URL(url);
  let head = `${method} ${u.pathname}${u.search} HTTP/1.1\r\n`;
  const entries = Object.entries(headers);
  const authority = entries.find(([n]) => n === ':authority')?.[1];
  if (!entries.some(([n]) => n.toLowerCase() === 'host')) head += `Host: ${authority ?? u.host}\r\n`;
  for (const [name, value] of entries) {
    if (name.startsWith(':')) continue;
    for (const v of value.split('\n')) head += `${name}: ${v}\r\n`;
  }
  return Buffer.from(`${head}\r\n`, 'latin1');
}

export function toCapture(p: Pending): Capture {
  const { paused } = p;
  const status = paused.responseStatusCode!;
  const responseHead = responseHeadFor(
    {
      status,
      ...(paused.responseStatusText !== undefined ? { statusText: paused.responseStatusText } : {}),
      ...(p.headersText !== undefined ? { headersText: p.headersText } : {}),
      ...(paused.responseHeaders ? { headers: paused.responseHeaders } : {}),
    },
    p.body.length,
  );
  const requestBody = paused.request.postData !== undefined ? Buffer.from(paused.request.postData) : undefined;
  const contentType = paused.responseHeaders?.find((h) => h.name.toLowerCase() === 'content-type')?.value;
  return {
    url: paused.request.url,
    method: paused.request.method,
    requestHead: requestHeadFor(paused.request.method, paused.request.url, p.requestHeaders ?? paused.request.headers),
    ...(requestBody ? { requestBody } : {}),
    responseHead,
    status,
    body: { kind: 'buffer', data: p.body },
    payloadDigest: sha1(p.body),
    blockDigest: sha1(responseHead, p.body),
    fetchedAt: p.fetchedAt,
    ...(p.remoteAddress ? { remoteAddress: p.remoteAddress.replace(/^\[|\]$/g, '') } : {}),
    ...(p.truncated ? { truncated: 'length' as const } : {}),
    ...(contentType ? { contentType } : {}),
  };
}
