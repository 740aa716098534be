/**
 * Final IDs whose extraction was cut or failed (issue 11 §1): the response is archived, and
 * `ids.last_error` holds `extraction: …` saying what was left out. `status` lists them by note.
 */
export interface ExtractionNote {
  note: string;
  count: number;
}

/** A note with its per-ID numbers cut, so one cause counts once. */
function noteKey(lastError: string): string {
  return lastError
    .replace(/^extraction: /, '')
    .replace(/a string of \d+ characters/g, 'a string of more characters')
    .replace(/\(about character \d+\)/g, '(about character …)')
    .replace(/after character \d+ of \d+/g, 'after character …')
    .replace(/markdown of \d+ characters/g, 'markdown of more characters');
}

/** The notes by cause, most common first, from a shard's `extraction: …` errors (`ShardDbReader.extractionErrors`). */
export function extractionNotes(errors: Iterable<{ lastError: string; count: number }>, limit = 5): { total: number; notes: ExtractionNote[] } {
  const byNote = new Map<string, number>();
  let total = 0;
  for (const r of errors) {
    total += r.count;
    const key = noteKey(r.lastError);
    byNote.set(key, (byNote.get(key) ?? 0) + r.count);
  }
  const notes = [...byNote].map(([note, count]) => ({ note, count })).sort((a, b) => b.count - a.count || a.note.localeCompare(b.note));
  return { total, notes: notes.slice(0, limit) };
}

/** The `status` lines: `extraction notes: N archived IDs` then `  COUNT × NOTE`. */
export function formatExtractionNotes(x: { total: number; notes: ExtractionNote[] } | undefined): string[] {
  if (!x || x.total === 0) return [];
  const width = String(x.notes[0]?.count ?? 0).length;
  return [`extraction notes: ${x.total} IDs archived with extraction cut short or failed (ids.last_error):`, ...x.notes.map((n) => `  ${String(n.count).padStart(width)} × ${n.note}`)];
}
