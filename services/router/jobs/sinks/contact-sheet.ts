/**
 * The contact sheet: one PNG with labelled thumbnails of a job's first few hundred items in a grid,
 * so a person can look at a whole job at once. Labels (the custom_id under each tile) and the title
 * are one SVG text layer composited over the thumbnails.
 *
 * The one place the router uses sharp (the layering rule keeps it out of router/ otherwise): the
 * sheet is made where the job is finalized, and sharp is loaded only then, by loadSharp(), so a
 * router that never finalizes a job never loads it.
 */
import { PngRows } from './png-rows.js';

/** A tile's image: its encoded bytes (png, webp, jpeg…), or a loader called when the tile is drawn. */
export type TileImage = Uint8Array | (() => Promise<Uint8Array | undefined>);

export interface ContactSheetOptions {
  /** Tiles per row (fewer when there are fewer tiles). Default 8. */
  columns?: number;
  /** Thumbnail width in pixels. Default 320. */
  tileWidth?: number;
  /** Thumbnail height in pixels. Default: the first decodable tile's aspect ratio at tileWidth. */
  tileHeight?: number;
  /** A line of text above the grid (e.g. the job id and counts). */
  title?: string;
  /** Tiles beyond this many are left out. Default 400. */
  maxTiles?: number;
}

export const CONTACT_SHEET_DEFAULTS = { columns: 8, tileWidth: 320, maxTiles: 400 } as const;

const GAP = 8;
const LABEL_HEIGHT = 20;
const LABEL_FONT_PX = 13;
const TITLE_HEIGHT = 36;
const TITLE_FONT_PX = 18;
/** Monospace advance per character as a share of the font size (DejaVu Sans Mono: 0.602). */
const CHAR_WIDTH_EM = 0.61;
const FONT_FAMILY = "'DejaVu Sans Mono', 'Liberation Mono', monospace";
const BACKGROUND = { r: 24, g: 24, b: 28 };
const PLACEHOLDER = { r: 96, g: 96, b: 96 };
/** Thumbnails decoded at once: bounds memory when tiles are loaders over a remote sink. */
const DECODE_CONCURRENCY = 4;

/** Where everything goes on a sheet (pure). */
export interface SheetLayout {
  readonly columns: number;
  readonly rows: number;
  readonly tileWidth: number;
  readonly tileHeight: number;
  readonly titleHeight: number;
  readonly width: number;
  readonly height: number;
}

/** The layout for `count` tiles; `columns` is capped at `count` (at least 1). */
export function sheetLayout(count: number, o: { columns: number; tileWidth: number; tileHeight: number; title: boolean }): SheetLayout {
  const columns = Math.max(1, Math.min(o.columns, count));
  const rows = Math.max(1, Math.ceil(count / columns));
  const titleHeight = o.title ? TITLE_HEIGHT : 0;
  return {
    columns,
    rows,
    tileWidth: o.tileWidth,
    tileHeight: o.tileHeight,
    titleHeight,
    width: GAP + columns * (o.tileWidth + GAP),
    height: titleHeight + GAP + rows * (o.tileHeight + LABEL_HEIGHT + GAP),
  };
}

/** Top-left corner of tile `i`'s thumbnail. */
export function tileOrigin(layout: SheetLayout, i: number): { left: number; top: number } {
  const col = i % layout.columns;
  const row = Math.floor(i / layout.columns);
  return { left: GAP + col * (layout.tileWidth + GAP), top: layout.titleHeight + GAP + row * (layout.tileHeight + LABEL_HEIGHT + GAP) };
}

/**
 * A PNG contact sheet of `tiles` (the first `maxTiles`), each labelled with its `label`.
 * A tile that cannot be loaded or decoded becomes a grey placeholder with its label, not an error.
 *
 * Drawn one band (the title, then one row of tiles) at a time into a streamed PNG: the sheet of
 * a job's first hundreds of tiles is tens of MB of pixels, and libvips' memory, once taken by a
 * sheet-sized composite, stays with the router's process.
 */
export async function contactSheet(tiles: Array<{ label: string; image: TileImage }>, opts: ContactSheetOptions = {}): Promise<Uint8Array> {
  const sharp = await loadSharp();
  const shown = tiles.slice(0, Math.max(1, opts.maxTiles ?? CONTACT_SHEET_DEFAULTS.maxTiles));
  const tileWidth = Math.max(16, Math.round(opts.tileWidth ?? CONTACT_SHEET_DEFAULTS.tileWidth));

  let tileHeight = opts.tileHeight ? Math.max(16, Math.round(opts.tileHeight)) : undefined;
  // Size the grid from the first tile that decodes; keep the tiles loaded for that so a loader
  // is called once per tile.
  const loaded = new Map<number, Uint8Array | undefined>();
  for (let i = 0; tileHeight === undefined && i < shown.length; i++) {
    const img = await loadTile(shown[i]!.image);
    loaded.set(i, img);
    const meta = img ? await sharp(img).metadata().catch(() => undefined) : undefined;
    if (meta?.width && meta.height) {
      tileHeight = Math.round(Math.min(Math.max((tileWidth * meta.height) / meta.width, tileWidth / 4), tileWidth * 2));
    }
  }
  const th = tileHeight ?? Math.round((tileWidth * 9) / 21); // nothing decodable: the planets' 21:9
  const layout = sheetLayout(shown.length, { columns: opts.columns ?? CONTACT_SHEET_DEFAULTS.columns, tileWidth, tileHeight: th, title: !!opts.title });
  const png = new PngRows(layout.width, layout.height);
  const band = async (height: number, layers: Layer[]) => {
    const { data } = await sharp({ create: { width: layout.width, height, channels: 3, background: BACKGROUND } })
      .composite(layers as never)
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    await png.write(data);
  };

  // The title band, down to the first row's top.
  const firstTop = layout.titleHeight + GAP;
  const title = opts.title ? [svgText(GAP, TITLE_HEIGHT - 11, TITLE_FONT_PX, '#f0f0f0', truncate(opts.title, Math.max(4, Math.floor((layout.width - 2 * GAP) / (TITLE_FONT_PX * CHAR_WIDTH_EM)))))] : [];
  await band(firstTop, title.length ? [textLayer(layout.width, firstTop, title)] : []);

  // One row of tiles a band: its thumbnails, their labels and the gap below.
  const rowHeight = th + LABEL_HEIGHT + GAP;
  const maxChars = Math.max(4, Math.floor((tileWidth - 4) / (LABEL_FONT_PX * CHAR_WIDTH_EM)));
  for (let row = 0; row < layout.rows; row++) {
    const first = row * layout.columns;
    const count = Math.min(layout.columns, shown.length - first);
    const thumbs = new Array<Thumb | undefined>(count);
    await forEachLimited(count, DECODE_CONCURRENCY, async (k) => {
      const i = first + k;
      const img = loaded.has(i) ? loaded.get(i) : await loadTile(shown[i]!.image);
      loaded.delete(i);
      thumbs[k] = img ? await thumbnail(sharp(img, { failOn: 'error' }), tileWidth, th).catch(() => undefined) : undefined;
    });
    const layers: Layer[] = [];
    const texts: string[] = [];
    for (let k = 0; k < count; k++) {
      const { left } = tileOrigin(layout, first + k);
      const t = thumbs[k];
      if (t) layers.push({ input: t.data, raw: { width: t.width, height: t.height, channels: t.channels }, left, top: 0 });
      else layers.push({ input: { create: { width: tileWidth, height: th, channels: 3, background: PLACEHOLDER } }, left, top: 0 });
      const cx = left + tileWidth / 2;
      texts.push(svgText(cx, th + LABEL_HEIGHT - 6, LABEL_FONT_PX, '#e8e8e8', truncate(shown[first + k]!.label, maxChars), 'middle'));
      if (!t) texts.push(svgText(cx, th / 2 + 4, LABEL_FONT_PX, '#202020', 'no image', 'middle'));
    }
    layers.push(textLayer(layout.width, rowHeight, texts));
    await band(rowHeight, layers);
  }
  const out = await png.end();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

type Thumb = { data: Buffer; width: number; height: number; channels: 1 | 2 | 3 | 4 };
type Layer = { input: Buffer | { create: object }; raw?: object; left: number; top: number };

function svgText(x: number, y: number, sizePx: number, fill: string, text: string, anchor?: 'middle'): string {
  return `<text x="${x}" y="${y}"${anchor ? ` text-anchor="${anchor}"` : ''} font-size="${sizePx}" fill="${fill}">${escapeXml(text)}</text>`;
}

/** Text elements as one SVG layer the size of a band. */
function textLayer(width: number, height: number, texts: readonly string[]): Layer {
  return { input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="${FONT_FAMILY}">${texts.join('')}</svg>`), left: 0, top: 0 };
}

async function thumbnail(img: SharpImage, width: number, height: number): Promise<Thumb> {
  const { data, info } = await img
    .resize(width, height, { fit: 'contain', background: BACKGROUND })
    .flatten({ background: BACKGROUND })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

async function loadTile(image: TileImage): Promise<Uint8Array | undefined> {
  if (typeof image !== 'function') return image;
  try {
    return await image();
  } catch {
    return undefined; // a tile that cannot be loaded is drawn as a placeholder
  }
}

/** sharp, loaded on first use. */
async function loadSharp() {
  // eslint-disable-next-line orrery/layers -- the contact sheet is the router's only image work: loaded lazily, at job finalization
  return (await import('sharp')).default;
}
type SharpImage = ReturnType<Awaited<ReturnType<typeof loadSharp>>>;

/** Characters XML 1.0 does not allow in a document, even escaped. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const XML_INVALID = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g;
const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Text safe inside an SVG element: XML-escaped, characters invalid in XML 1.0 dropped. */
export function escapeXml(text: string): string {
  return text.replace(XML_INVALID, '').replace(/[&<>"']/g, (c) => XML_ESCAPES[c]!);
}

function truncate(text: string, maxChars: number): string {
  const chars = [...text];
  return chars.length <= maxChars ? text : `${chars.slice(0, maxChars - 1).join('')}…`;
}

async function forEachLimited(count: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}
