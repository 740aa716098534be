/**
 * Kinds of tracker work (issue 13), shared by the tracker and the node so both classify a media
 * URL alike: `posts` items are ID ranges, `media` items are batches of media URLs. A media URL is
 * an image, a video or other, by what the profile says or else by its path's extension.
 */

export const ITEM_KINDS = ['posts', 'media'] as const;
export type ItemKind = (typeof ITEM_KINDS)[number];

export const MEDIA_KINDS = ['image', 'other', 'video'] as const;
export type MediaKind = (typeof MEDIA_KINDS)[number];

const IMAGE_EXT = new Set(['jpg', 'jpeg', 'png', 'gif', 'webp', 'avif', 'svg', 'bmp', 'ico', 'heic', 'jxl', 'tif', 'tiff']);
const VIDEO_EXT = new Set(['mp4', 'webm', 'mov', 'm4v', 'm3u8', 'mpd', 'mkv', 'avi', 'ogv', 'ts', '3gp']);

/** The media kind a URL's path extension says (`x.JPG?size=2` is an image), or `other`. */
export function mediaKindOf(url: string): MediaKind {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return 'other';
  }
  const ext = /\.([a-z0-9]{1,5})$/i.exec(path)?.[1]?.toLowerCase();
  if (ext && IMAGE_EXT.has(ext)) return 'image';
  if (ext && VIDEO_EXT.has(ext)) return 'video';
  return 'other';
}
