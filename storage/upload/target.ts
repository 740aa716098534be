/** Where `lifeboat upload --to` sends a directory: `s3://BUCKET/PREFIX` or `ia://IDENTIFIER`. */
import { InputError } from '../../config/errors.js';

export type UploadTarget =
  | { scheme: 's3'; bucket: string; prefix: string; url: string }
  | { scheme: 'ia'; identifier: string; url: string };

const IA_IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9_.-]{2,99}$/;
const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses `--to`: `s3://BUCKET/PREFIX` or `ia://IDENTIFIER`. Anything else is an InputError. */
export function parseUploadTarget(to: string): UploadTarget {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(.*)$/.exec(to);
  if (!m) throw new InputError(`--to ${JSON.stringify(to)}: expected s3://BUCKET/PREFIX or ia://IDENTIFIER`, { code: 'E_UPLOAD_TARGET' });
  const scheme = m[1]!.toLowerCase();
  const rest = m[2]!;
  if (scheme === 's3') {
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
    if (!S3_BUCKET.test(bucket)) {
      throw new InputError(`--to ${to}: ${JSON.stringify(bucket)} is not a valid S3 bucket name`, { code: 'E_UPLOAD_TARGET' });
    }
    return { scheme: 's3', bucket, prefix, url: prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}` };
  }
  if (scheme === 'ia') {
    const identifier = rest.replace(/\/+$/, '');
    if (!IA_IDENTIFIER.test(identifier)) {
      throw new InputError(
        `--to ${to}: ${JSON.stringify(identifier)} is not a valid archive.org identifier (3-100 of A-Z a-z 0-9 _ - ., starting with a letter or digit)`,
        { code: 'E_UPLOAD_TARGET' },
      );
    }
    return { scheme: 'ia', identifier, url: `ia://${identifier}` };
  }
  throw new InputError(`--to ${to}: unknown scheme "${scheme}://"; use s3://BUCKET/PREFIX or ia://IDENTIFIER`, {
    code: 'E_UPLOAD_SCHEME',
  });
}
