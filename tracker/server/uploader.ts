import { HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { ConfigError, InputError } from '../../config/errors.js';
import { type PresignedPut, type PresignFile, type VerifyObjectResult, presignPutUrls, verifyObject } from '../../storage/upload/presigned.js';
import { createS3Client, describeS3Error } from '../../storage/upload/s3-client.js';
import * as api from './api-schemas.js';
import { UploadStoreError, UploadUnverifiedError } from '../client/errors.js';
import type { ItemStore } from '../store/item-store.js';
import type { ProjectUpload } from '../store/project.js';

/**
 * Uploads through the tracker (ARCHITECTURE.md "Tracker and nodes"): the tracker holds the storage credentials, hands
 * a node pre-signed PUT URLs for the files of its leased item, and checks the objects before it
 * accepts `done`. `buildTrackerApp` receives a `TrackerUploader`; `serveTracker` builds an
 * S3 one from the project's `upload` section (`uploaderFromProject`), tests pass one backed by
 * s3rver.
 */
export interface TrackerUploader {
  /** What claim answers announce (`upload: { mode }`). */
  readonly mode: 's3-presigned';
  /** Pre-signed PUT URLs for `files` at `KEY_PREFIX/NAME` under the uploader's own prefix. */
  presign(files: readonly PresignFile[], keyPrefix: string): Promise<PresignedPut[]>;
  /** Whether the object at `key` (`KEY_PREFIX/NAME`, below the uploader's prefix) holds `size` bytes announced with `sha256`. */
  verify(key: string, size: number, sha256: string): Promise<VerifyObjectResult>;
}

export interface S3UploaderOptions {
  /** The client (created with `requestChecksumCalculation: 'WHEN_REQUIRED'`, see `createS3Client`); owned by the caller. */
  s3Client: S3Client;
  bucket: string;
  /** Key prefix before `KEY_PREFIX/NAME`; leading/trailing slashes are dropped. */
  prefix: string;
  /** Lifetime of each URL; default 3600 s. */
  expiresSecs?: number;
}

/** A `TrackerUploader` on an S3-compatible store. */
export class S3Uploader implements TrackerUploader {
  readonly mode = 's3-presigned' as const;
  #s3: S3Client;
  #bucket: string;
  #prefix: string;
  #expiresSecs: number;

  constructor(options: S3UploaderOptions) {
    const { s3Client, bucket, prefix, expiresSecs = 3600 } = options;
    this.#s3 = s3Client;
    this.#bucket = bucket;
    this.#prefix = prefix.replace(/^\/+|\/+$/g, '');
    this.#expiresSecs = expiresSecs;
  }

  async presign(files: readonly PresignFile[], keyPrefix: string): Promise<PresignedPut[]> {
    return presignPutUrls({ s3Client: this.#s3, bucket: this.#bucket, prefix: this.#key(keyPrefix), files, expiresSecs: this.#expiresSecs });
  }

  async verify(key: string, size: number, sha256: string): Promise<VerifyObjectResult> {
    return verifyObject({ s3Client: this.#s3, bucket: this.#bucket, key: this.#key(key), size, sha256 });
  }

  #key(relative: string): string {
    return [this.#prefix, relative].filter(Boolean).join('/');
  }

  /** Fails fast (when the tracker starts) if the bucket is missing or the credentials are refused. */
  async checkBucket(endpoint: string): Promise<void> {
    try {
      await this.#s3.send(new HeadBucketCommand({ Bucket: this.#bucket }));
    } catch (err) {
      throw describeS3Error(err, { where: `upload bucket s3://${this.#bucket}`, endpoint, policy: 'stop' });
    }
  }
}

/**
 * The S3 client and uploader for a project's `upload` section. Credentials, region and endpoint
 * come from `env` (the standard AWS variables) when set there; without keys in `env` the SDK's
 * own chain is used (shared config, instance role). The caller owns `s3Client` and destroys it.
 */
export function uploaderFromProject(
  upload: ProjectUpload,
  env: Record<string, string | undefined>,
  file?: string,
): { uploader: S3Uploader; s3Client: S3Client; endpoint: string } {
  const endpoint = upload.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const region = upload.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? (endpoint ? 'us-east-1' : undefined);
  if (!region) throw new ConfigError('no AWS region for uploads: set upload.region, or AWS_REGION in the environment', { file, keyPath: 'upload.region' });
  const keyId = env.AWS_ACCESS_KEY_ID;
  const secret = env.AWS_SECRET_ACCESS_KEY;
  if (!!keyId !== !!secret) throw new ConfigError('set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or neither, to use the AWS SDK credential chain)', { file, keyPath: 'upload' });
  const credentials = keyId && secret ? { accessKeyId: keyId, secretAccessKey: secret, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) } : undefined;
  const s3Client = createS3Client({ region, ...(endpoint ? { endpoint } : {}), ...(credentials ? { credentials } : {}) });
  const uploader = new S3Uploader({ s3Client, bucket: upload.bucket, prefix: upload.prefix, ...(upload.expires_secs ? { expiresSecs: upload.expires_secs } : {}) });
  return { uploader, s3Client, endpoint: endpoint ?? '' };
}

/** Where an item's files go, below the uploader's own prefix: `PROJECT/item-ITEMID`. */
export const itemKeyPrefix = (project: string, itemId: number): string => `${project}/item-${itemId}`;

/** Runs a call to the upload store; its failures (network, credentials) become 503 `E_UPLOAD_STORE`. */
export async function callUploadStore<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new UploadStoreError(`the tracker could not ${what}: its upload store failed (${(err as Error).message}); try again later`, { cause: err });
  }
}

/**
 * Before `done` on a live lease: every reported WARC must be in the bucket at its key with the
 * reported size and sha256. A repeated `done` (lease already finished) is not checked again.
 */
export async function checkUploads(
  uploader: TrackerUploader,
  store: ItemStore,
  options: { nodeId: number; leaseId: string; now: number; project: string; warcs: readonly { name: string; size: number; sha256: string }[] },
): Promise<void> {
  const lease = await store.lookupLease(options);
  if (lease.state === 'done') return;
  for (const w of options.warcs) {
    const checked = api.uploadName.safeParse(w.name);
    if (!checked.success || w.name === 'shard.json') {
      throw new InputError(`stats.warcs: ${JSON.stringify(w.name)} is not a WARC name this tracker uploads (NAME.warc.gz)`, { code: 'E_BAD_REQUEST' });
    }
  }
  const prefix = itemKeyPrefix(options.project, lease.itemId);
  const problems: string[] = [];
  const queue = [...options.warcs];
  const worker = async () => {
    for (let w = queue.shift(); w; w = queue.shift()) {
      const { name, size, sha256 } = w;
      const result = await callUploadStore('check uploaded WARCs', () => uploader.verify(`${prefix}/${name}`, size, sha256));
      if (!result.ok) problems.push(`${name} (${result.reason})`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, queue.length) }, worker));
  if (problems.length > 0) {
    problems.sort();
    const shown = problems.slice(0, 5).join('; ') + (problems.length > 5 ? `; and ${problems.length - 5} more` : '');
    throw new UploadUnverifiedError(
      `${problems.length} of ${options.warcs.length} WARCs are not in the upload bucket as reported: ${shown}. ` +
        'Upload them with URLs from /api/v1/upload-urls and send done again; the item stays leased.',
    );
  }
}
