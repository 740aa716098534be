import { z } from 'zod';
import { ROUTES, VERSION_HEADER, errorResponse } from './api-schemas.js';

const ERROR_STATUSES: Record<string, string> = {
  '400': 'Malformed JSON or a body that does not validate',
  '401': 'Missing or unknown token',
  '403': 'Banned nick',
  '409': 'Stale lease: expired, finished, superseded or held by another node',
  '413': 'Body too large',
  '422': 'done: a reported WARC is not in the upload bucket with the reported size and sha256 (the item stays leased)',
  '426': 'Client older than the project minimum version',
  '429': 'Rate limit reached; wait for Retry-After',
  '503': 'The upload store is unreachable; try again',
};

const schemaOf = (schema: z.ZodType, io: 'input' | 'output') => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
};

/** The OpenAPI 3.1 description of every route in `ROUTES`, generated from the zod schemas. */
export function buildOpenApi(options: { title: string; version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const error = { content: { 'application/json': { schema: schemaOf(errorResponse, 'output') } } };
  for (const route of ROUTES) {
    const op: Record<string, unknown> = { summary: route.summary, operationId: route.path.replace(/[^a-z0-9]+/gi, '_') || 'root' };
    if (route.auth === 'node') op.security = [{ nodeToken: [] }];
    if (route.auth === 'admin') op.security = [{ adminToken: [] }];
    if (route.auth === 'node' || route.auth === 'version') {
      op.parameters = [{ name: VERSION_HEADER, in: 'header', required: true, schema: { type: 'string' }, description: 'lifeboat client version' }];
    }
    if (route.body) op.requestBody = { required: true, content: { 'application/json': { schema: schemaOf(route.body, 'input') } } };
    const responses: Record<string, unknown> = {
      '200': route.response
        ? { description: 'OK', content: { 'application/json': { schema: schemaOf(route.response, 'output') } } }
        : { description: 'OK', content: { [route.contentType ?? 'application/json']: {} } },
    };
    if (route.method === 'POST') for (const [code, description] of Object.entries(ERROR_STATUSES)) responses[code] = { description, ...error };
    op.responses = responses;
    (paths[route.path] ??= {})[route.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: { title: options.title, version: options.version, description: 'lifeboat tracker: hands out ID ranges (items) to volunteer nodes under leases.' },
    components: {
      securitySchemes: {
        nodeToken: { type: 'http', scheme: 'bearer', description: 'the token returned by /api/v1/register' },
        adminToken: { type: 'http', scheme: 'bearer', description: 'the organisers’ admin token' },
      },
    },
    paths,
  };
}
