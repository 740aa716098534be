/** The S3 client an upload (or the tracker's pre-signer) uses, and what its errors mean to a user. */
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { InputError, LifeboatError } from '../../config/errors.js';
import { MissingCredentialsError, networkCode, UploadError } from './errors.js';

export interface S3ClientOptions {
  /** S3-compatible endpoint URL; path-style addressing is used when given. Default: AWS. */
  endpoint?: string;
  /** Default `us-east-1` when an endpoint is given, else the SDK's region chain. */
  region?: string;
  /** Explicit credentials; default: the SDK's standard chain (env, shared config, SSO, IMDS…). */
  credentials?: S3ClientConfig['credentials'];
}

/** The SDK client for `options`. Checksums only when required: many S3-compatible stores mishandle aws-chunked trailers. */
export function createS3Client(options: S3ClientOptions): S3Client {
  return new S3Client({
    ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
    region: options.region ?? (options.endpoint ? 'us-east-1' : undefined),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Turns an SDK/network error into a LifeboatError whose message says what to do. */
export function describeS3Error(err: unknown, at: { where: string; endpoint: string; file?: string; policy?: 'stop' | 'give-up' }): LifeboatError {
  if (err instanceof LifeboatError) return err;
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const endpoint = at.endpoint || 'the AWS endpoint';
  if (e.name === 'CredentialsProviderError' || /Could not load credentials/i.test(e.message ?? '')) {
    return new MissingCredentialsError(
      `${at.where}: no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / ~/.aws/credentials)`,
      { cause: err },
    );
  }
  if (/Region is missing/i.test(e.message ?? '')) {
    return new InputError(`${at.where}: no AWS region configured; set AWS_REGION or pass --endpoint`, { code: 'E_UPLOAD_REGION', cause: err });
  }
  const net = networkCode(err);
  if (net && status === undefined) {
    return new UploadError(`${at.where}: cannot reach ${endpoint} (${net}); check --endpoint and the network`, {
      code: 'E_UPLOAD_UNREACHABLE',
      file: at.file,
      policy: at.policy ?? 'retry',
      cause: err,
    });
  }
  if (status === 403 || e.name === 'InvalidAccessKeyId' || e.name === 'SignatureDoesNotMatch' || e.name === 'AccessDenied') {
    return new UploadError(`${at.where}: the store refused the credentials (${e.name ?? status}); check the access key, secret and bucket policy`, {
      code: 'E_UPLOAD_AUTH',
      file: at.file,
      status,
      policy: 'stop',
      cause: err,
    });
  }
  if (status === 404 || e.name === 'NoSuchBucket' || e.name === 'NotFound') {
    return new InputError(`${at.where}: bucket not found on ${endpoint}; create it first`, { code: 'E_UPLOAD_NO_BUCKET', cause: err });
  }
  return new UploadError(`${at.where}: ${e.name ?? 'error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`, {
    code: 'E_UPLOAD_HTTP',
    file: at.file,
    status,
    policy: at.policy ?? 'give-up',
    cause: err,
  });
}
