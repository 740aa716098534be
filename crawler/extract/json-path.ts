import { query } from 'jsonpath-rfc9535';
import parse from 'jsonpath-rfc9535/parser';

/**
 * JSONPath (RFC 9535) with each expression parsed once. jsonpath-rfc9535 re-parses the
 * expression on every call (a PEG parse that was ~80% of extraction's JSONPath time here).
 * Expressions made only of child segments with names, wildcards and indexes — what profiles use
 * — are compiled into a small walker; anything else (filters, slices, descendants) goes to the
 * library, so the library stays the reference for the semantics.
 */
type Step = { kind: 'name'; name: string } | { kind: 'wildcard' } | { kind: 'index'; index: number };
type Compiled = (doc: unknown, limit: number) => unknown[];

const cache = new Map<string, Compiled>();

interface AstNode {
  type: string;
  value?: unknown;
  selectors?: AstNode[];
  node?: AstNode;
}

function stepOf(node: AstNode | undefined): Step | undefined {
  if (!node) return undefined;
  if (node.type === 'MemberNameShorthand' || node.type === 'NameSelector') return typeof node.value === 'string' ? { kind: 'name', name: node.value } : undefined;
  if (node.type === 'WildcardSelector') return { kind: 'wildcard' };
  if (node.type === 'IndexSelector') return typeof node.value === 'number' ? { kind: 'index', index: node.value } : undefined;
  if (node.type === 'BracketedSelection' && node.selectors?.length === 1) return stepOf(node.selectors[0]);
  return undefined;
}

function apply(values: unknown[], step: Step, limit: number): unknown[] {
  const out: unknown[] = [];
  for (const v of values) {
    if (out.length >= limit) break;
    if (v === null || typeof v !== 'object') continue;
    if (step.kind === 'name') {
      if (!Array.isArray(v) && Object.prototype.hasOwnProperty.call(v, step.name)) out.push((v as Record<string, unknown>)[step.name]);
    } else if (step.kind === 'wildcard') {
      // One push per element: `push(...list)` passes the list as arguments and overflows the
      // stack beyond ~120k entries (a hostile `media` array).
      for (const item of Array.isArray(v) ? v : Object.values(v)) {
        if (out.length >= limit) break;
        out.push(item);
      }
    } else if (Array.isArray(v)) {
      const i = step.index < 0 ? v.length + step.index : step.index;
      if (i >= 0 && i < v.length) out.push(v[i]);
    }
  }
  return out;
}

function compileExpression(expression: string): Compiled {
  const ast = parse(expression) as unknown as { segments: { type: string; node: AstNode }[] };
  const steps: Step[] = [];
  for (const seg of ast.segments) {
    const step = seg.type === 'ChildSegment' ? stepOf(seg.node) : undefined;
    if (!step) return (doc, limit) => query(doc as never, expression).slice(0, limit);
    steps.push(step);
  }
  // Only the last step may stop early: an earlier one feeds steps that may drop values.
  return (doc, limit) => steps.reduce<unknown[]>((values, step, i) => apply(values, step, i === steps.length - 1 ? limit : Infinity), [doc]);
}

/**
 * The values the expression selects, the first `limit` of them (throws on an expression that
 * does not parse). With a limit, a compiled walker never holds more than that many results.
 */
export function jsonPathQuery(doc: unknown, expression: string, limit = Infinity): unknown[] {
  let q = cache.get(expression);
  if (!q) {
    q = compileExpression(expression);
    cache.set(expression, q);
  }
  return q(doc, limit);
}
