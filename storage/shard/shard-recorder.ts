/**
 * One recorder per shard part (ARCHITECTURE.md "One ID", "Durable"): owns the part's connection to the shard
 * database, its rolling WARC writer, the revisit index (written-not-committed pairs, a Bloom
 * filter of the shard's pairs, the SQLite lookup) and the `warcs` rows. The crawler hands it
 * captures and outcomes; it never calls back into the crawler.
 *
 * The durability rule lives here: `finalizeId` only queues; `commit` fsyncs the WARC, then makes
 * every queued ID final in one SQLite transaction, so an ID is never final before its records
 * are on disk.
 */
import type { Capture } from '../warc/capture.js';
import { bodyLength } from '../warc/capture.js';
import { GroupCommit } from './group-commit.js';
import { ShardDb, type CaptureRow, type IdStatus } from './shard-db.js';
import { WarcWriter, type WarcWriterOptions, type WrittenRecord } from '../warc/warc-writer.js';
import { shardDbPath, warcsDir } from './layout.js';

export interface ShardRecorderOptions {
  /** The shard directory (`shard.sqlite`, `warcs/`). */
  dir: string;
  /** The rolling WARC file: name parts, rotation size, warcinfo fields, and for tests the clock and record IDs. */
  warc: Omit<WarcWriterOptions, 'dir' | 'onFileOpened' | 'onFileClosed'>;
}

/** What recording one fetch (all its hops) wrote. */
export interface Recorded {
  rows: CaptureRow[];
  records: number;
  bytes: number;
}

/** An ID's outcome, with everything that becomes final with it in one transaction. */
export interface IdFinal {
  id: number;
  status: IdStatus;
  httpStatus: number | null;
  attempts: number;
  lastError: string | null;
  /**
   * Why the ID is incomplete: its status is final, but a capture the profile asked for could not be
   * had (its URL could not be built, or it failed after its retries). Not counted done: the next run
   * crawls it again, and a node does not report it finished.
   */
  incomplete?: string;
  /** The extracted fields, already serialised (a value that cannot be stored costs its own fields, never the batch). */
  fieldsJson?: string;
  rows: CaptureRow[];
  /** Related IDs in the requested ranges; those without a state yet are queued for the frontier. */
  relatedIds: number[];
  /** Media URLs the ID refers to; queued in its transaction (a crash leaves both or neither). */
  media: string[];
}

export interface MediaFinal {
  url: string;
  state: 'done' | 'failed' | 'skipped';
  rows: CaptureRow[];
  attempts: number;
  httpStatus?: number | null;
  lastError: string | null;
}

export class ShardRecorder {
  readonly #db: ShardDb;
  readonly #writer: WarcWriter;
  readonly #commits: GroupCommit;
  #warcsClosed = 0;
  #closed = false;

  /** Opens its own connection to `dir/shard.sqlite`; `close()` closes it and the WARC writer. */
  constructor(o: ShardRecorderOptions) {
    this.#db = new ShardDb(shardDbPath(o.dir));
    const db = this.#db;
    this.#writer = new WarcWriter({
      ...o.warc,
      dir: warcsDir(o.dir),
      onFileOpened: (name) => db.recordWarc({ name, size: 0, sha256: '', records: 0 }, 'open'),
      onFileClosed: (w) => {
        db.recordWarc(w, 'closed');
        this.#warcsClosed++;
      },
    });
    this.#commits = new GroupCommit(this.#writer, db);
  }

  /** WARC files this recorder finished (renamed from `.open`). */
  get warcsClosed(): number {
    return this.#warcsClosed;
  }

  /**
   * Writes every hop of one fetch (redirects first): each a response, or a revisit when the shard
   * already holds this URL with this payload, plus its request. Returns the rows to finalise.
   */
  async recordCapture(hops: Capture[], name: string, postId: number | null): Promise<Recorded> {
    const out: Recorded = { rows: [], records: 0, bytes: 0 };
    for (const hop of hops) {
      const revisitOf = this.#commits.lookupRevisit(hop.url, hop.payloadDigest);
      const written = await this.#writer.writeCapture(hop, revisitOf ? { revisitOf } : {});
      out.records += 2;
      out.bytes += written.request.length + written.response.length;
      if (!revisitOf) this.#commits.rememberRevisit(hop.url, hop.payloadDigest, { recordId: written.response.recordId, url: hop.url, date: hop.fetchedAt.toISOString() });
      out.rows.push({
        postId,
        name,
        url: hop.url,
        status: hop.status,
        request: written.request,
        response: written.response,
        payloadDigest: hop.payloadDigest,
        fetchedAt: hop.fetchedAt.toISOString(),
        revisitOf: revisitOf?.recordId ?? null,
        contentType: hop.contentType ?? null,
        bodyBytes: bodyLength(hop.body),
      });
    }
    return out;
  }

  /** A `resource` record (a page's screenshot); it has no row. */
  recordResource(record: { url: string; contentType: string; data: Buffer }): Promise<WrittenRecord> {
    return this.#writer.writeRecord({ type: 'resource', ...record });
  }

  /**
   * Queues an ID's outcome for the next commit. Resolves once it is final (after the fsync and
   * the transaction) with the media URLs new to the shard — what to fetch next; the INSERT is
   * the shard-wide dedupe, exact also across worker threads. Rejects when that commit fails.
   * `commit()` resolves only after these have resolved (and their callbacks have run).
   */
  finalizeId(f: IdFinal): Promise<string[]> {
    const db = this.#db;
    return new Promise((resolve, reject) => {
      this.#commits.add(
        () => {
          for (const row of f.rows) db.recordCapture(row);
          db.recordOutcome({ id: f.id, status: f.status, httpStatus: f.httpStatus, attempts: f.attempts, lastError: f.lastError, incomplete: f.incomplete ?? null, ...(f.fieldsJson !== undefined ? { fieldsJson: f.fieldsJson } : {}) });
          for (const rid of f.relatedIds) if (!db.idState(rid)) db.addRelated(rid);
          const fresh = f.media.filter((url) => db.queueUrl(url, f.id));
          return () => resolve(fresh);
        },
        f.status === 'failed' || f.incomplete ? undefined : f.id,
        reject,
      );
    });
  }

  /** Queues a media URL's outcome (and its rows) for the next commit; resolves once final. */
  finalizeMedia(m: MediaFinal): Promise<void> {
    const db = this.#db;
    return new Promise((resolve, reject) => {
      this.#commits.add(
        () => {
          for (const row of m.rows) db.recordCapture(row);
          db.setUrlState(m.url, m.state, { attempts: m.attempts, httpStatus: m.httpStatus ?? null, lastError: m.lastError });
          return () => resolve();
        },
        undefined,
        reject,
      );
    });
  }

  /**
   * Queues URLs a fetched media file refers to (a stylesheet's @import, fonts and images) in the
   * next commit; resolves with those new to the shard — the same shard-wide dedupe as an ID's media.
   */
  queueMedia(urls: string[], postId: number | null): Promise<string[]> {
    const db = this.#db;
    return new Promise((resolve, reject) => {
      this.#commits.add(
        () => {
          const fresh = urls.filter((url) => db.queueUrl(url, postId));
          return () => resolve(fresh);
        },
        undefined,
        reject,
      );
    });
  }

  /** fsync, then one transaction for everything finalised since the last commit; resolves with the IDs made final. */
  commit(): Promise<number[]> {
    return this.#commits.commit();
  }

  #incomplete: Set<number> | undefined;

  /**
   * For an ID an earlier run left incomplete: the captures it already holds (2xx) and its stored
   * fields; undefined for any other ID. The incomplete IDs are read once, at the first call.
   */
  earlierCaptures(id: number): { names: Set<string>; fields: Record<string, unknown> } | undefined {
    this.#incomplete ??= new Set(this.#db.incompleteIds());
    return this.#incomplete.has(id) ? this.#db.earlierCaptures(id) : undefined;
  }

  /** The frontier's view of the shard (frontier.ts `FrontierSource`), for one partition of the IDs. */
  frontierSource(partition: { index: number; count: number }) {
    const db = this.#db;
    return {
      finalRanges: () => db.finalRanges(),
      takeRelated: (n: number) => db.takeRelated(n, partition),
      isFinal: (id: number) => {
        const s = db.idState(id);
        return s !== undefined && s.status !== 'failed' && !s.incomplete;
      },
    };
  }

  /**
   * Commits what is queued, closes (fsync, rename) the open WARC and the database connection.
   * On a failed commit or close, the shard stays as the last good commit left it: the open WARC
   * is let go of as a crash would (the next run repairs it) and the error is thrown.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#commits.commit();
      await this.#writer.close();
    } catch (err) {
      await this.#writer.abandon();
      throw err;
    } finally {
      this.#db.close();
    }
  }

  /** Lets go at once (after a failure elsewhere): no commit, no rename; the database connection closes. */
  async abandon(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writer.abandon();
    this.#db.close();
  }
}
