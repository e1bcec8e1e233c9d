/**
 * Binary-mask operations on the detector's grid: a neighbour-count filter, a 3x3 dilation and
 * closing, hole filling and connected components (two-pass union-find). Masks are row-major
 * Uint8Array of 0/1, `w` x `h`. Pure: the input is never changed; each function writes a new mask
 * (or labelling), into `out` when the caller passes one to reuse (the detector does, so a check
 * allocates nothing per image). `out` must not be the input.
 */

/** Whether a Uint32 holds its bytes lowest first (the word-at-a-time passes assume it). */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** Whether `a` can be read as 32-bit words whose rows (`w` cells) start on a word. */
function wordAligned(a: Uint8Array, w: number): boolean {
  return LITTLE_ENDIAN && w % 4 === 0 && a.byteOffset % 4 === 0;
}

/** `a`'s first `cells` cells as 32-bit words (4 cells each; `cells` a multiple of 4). */
function words(a: Uint8Array, cells: number): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, cells >> 2);
}

/**
 * Keeps a set cell only if at least `minNeighbours` of its 8 neighbours are set (cells beyond the
 * border count as copies of the cell, so a body cut by the frame keeps its edge). Removes specks
 * of one or two cells (averaged stars) and one-cell lines; a body's limb cells keep ≥ 3.
 */
export function dropSpecks(mask: Uint8Array, w: number, h: number, minNeighbours = 3, out: Uint8Array = new Uint8Array(w * h)): Uint8Array {
  out.fill(0, 0, w * h);
  // Mostly empty masks: four unset cells at a time are skipped with one word read.
  const quads = wordAligned(mask, w) ? words(mask, w * h) : undefined;
  for (let y = 0; y < h; y++) {
    const r = y * w;
    // Rows beyond the border replicate the cell's own row.
    const up = y > 0 ? r - w : r;
    const dn = y < h - 1 ? r + w : r;
    for (let x = 0; x < w; x++) {
      if (quads && (x & 3) === 0 && quads[(r + x) >> 2] === 0) {
        x += 3;
        continue;
      }
      if (!mask[r + x]) continue;
      const xl = x > 0 ? x - 1 : x;
      const xr = x < w - 1 ? x + 1 : x;
      // The cell itself is set; its replicated copies (border) count as neighbours, as before.
      const n = mask[up + xl]! + mask[up + x]! + mask[up + xr]! + mask[r + xl]! + mask[r + xr]! + mask[dn + xl]! + mask[dn + x]! + mask[dn + xr]!;
      if (n >= minNeighbours) out[r + x] = 1;
    }
  }
  return out;
}

/**
 * dilateOrErode four cells at a time: each 32-bit word holds four 0/1 cells, lowest byte first,
 * so a word shifted by 8 bits lines every cell up with its left (or right) neighbour, and the
 * neighbour across a word boundary comes from the next (previous) word's end byte.
 */
function dilateOrErodeWords(mask: Uint8Array, w: number, h: number, dilate: boolean, tmp: Uint8Array, out: Uint8Array): Uint8Array {
  const ww = w >> 2;
  const m = words(mask, w * h);
  const t = words(tmp, w * h);
  const o = words(out, w * h);
  for (let y = 0; y < h; y++) {
    const r = y * ww;
    for (let j = 0; j < ww; j++) {
      const x = m[r + j]!;
      // The row's ends replicate the edge cell: cell 0 is its own left neighbour, cell w−1 its own right one.
      const prev = j > 0 ? m[r + j - 1]! : (x & 0xff) << 24;
      const next = j < ww - 1 ? m[r + j + 1]! : x >>> 24;
      const left = (x << 8) | (prev >>> 24);
      const right = (x >>> 8) | (next << 24);
      t[r + j] = dilate ? x | left | right : x & left & right;
    }
  }
  for (let y = 0; y < h; y++) {
    const up = (y > 0 ? y - 1 : y) * ww;
    const dn = (y < h - 1 ? y + 1 : y) * ww;
    const r = y * ww;
    if (dilate) for (let j = 0; j < ww; j++) o[r + j] = t[up + j]! | t[r + j]! | t[dn + j]!;
    else for (let j = 0; j < ww; j++) o[r + j] = t[up + j]! & t[r + j]! & t[dn + j]!;
  }
  return out;
}

/** One separable 3x3 pass (max for dilation, min for erosion); the border replicates the edge cell. `tmp` holds the horizontal pass. */
function dilateOrErode(mask: Uint8Array, w: number, h: number, dilate: boolean, tmp: Uint8Array, out: Uint8Array): Uint8Array {
  if (wordAligned(mask, w) && wordAligned(tmp, w) && wordAligned(out, w)) return dilateOrErodeWords(mask, w, h, dilate, tmp, out);
  for (let y = 0; y < h; y++) {
    const r = y * w;
    if (w === 1) {
      tmp[r] = mask[r]!;
      continue;
    }
    if (dilate) {
      tmp[r] = mask[r]! | mask[r + 1]!;
      for (let x = 1; x < w - 1; x++) tmp[r + x] = mask[r + x - 1]! | mask[r + x]! | mask[r + x + 1]!;
      tmp[r + w - 1] = mask[r + w - 2]! | mask[r + w - 1]!;
    } else {
      tmp[r] = mask[r]! & mask[r + 1]!;
      for (let x = 1; x < w - 1; x++) tmp[r + x] = mask[r + x - 1]! & mask[r + x]! & mask[r + x + 1]!;
      tmp[r + w - 1] = mask[r + w - 2]! & mask[r + w - 1]!;
    }
  }
  for (let y = 0; y < h; y++) {
    const up = (y > 0 ? y - 1 : y) * w;
    const dn = (y < h - 1 ? y + 1 : y) * w;
    const r = y * w;
    if (dilate) for (let x = 0; x < w; x++) out[r + x] = tmp[up + x]! | tmp[r + x]! | tmp[dn + x]!;
    else for (let x = 0; x < w; x++) out[r + x] = tmp[up + x]! & tmp[r + x]! & tmp[dn + x]!;
  }
  return out;
}

/** Dilation by a (2r+1)-cell square: r passes of the 3x3 one. `tmp` (w·h cells) is scratch; pass it to reuse it. */
export function dilate(mask: Uint8Array, w: number, h: number, r: number, out: Uint8Array = new Uint8Array(w * h), tmp: Uint8Array = new Uint8Array(w * h)): Uint8Array {
  if (r <= 0) {
    out.set(mask.subarray(0, w * h));
    return out;
  }
  dilateOrErode(mask, w, h, true, tmp, out);
  for (let k = 1; k < r; k++) {
    // out → tmp (the horizontal pass) → out: the vertical pass reads only tmp, so writing out is safe.
    dilateOrErode(out, w, h, true, tmp, out);
  }
  return out;
}

/** Morphological closing with a 3x3 square: bridges one-cell gaps (a dark band across a dim disc). `tmp`, `mid`: scratch. */
export function close3x3(mask: Uint8Array, w: number, h: number, out: Uint8Array = new Uint8Array(w * h), tmp: Uint8Array = new Uint8Array(w * h), mid: Uint8Array = new Uint8Array(w * h)): Uint8Array {
  return dilateOrErode(dilateOrErode(mask, w, h, true, tmp, mid), w, h, false, tmp, out);
}

/** Int32 scratch fillHoles needs for a `w` x `h` mask: per run of unset cells a parent, a start, an end, a row and a flag. */
export function fillHolesScratchSize(w: number, h: number): number {
  return 5 * h * Math.ceil((w + 1) / 2);
}

/**
 * Sets every unset cell that the border cannot reach through unset cells (4-connected): holes
 * inside bodies. Only the box around the set cells (grown by one) can hold a hole: every unset
 * cell outside it reaches the border in a straight line, and so does the box's edge. Inside it,
 * the unset cells are cut into runs along the rows, runs that overlap in the next row are joined
 * (union-find), and runs joined to one on the box's edge are reached; the rest are holes. Work per
 * run, not per cell: a sky with a few bodies is a few runs a row. `scratch` holds
 * fillHolesScratchSize(w, h) ints.
 */
export function fillHoles(mask: Uint8Array, w: number, h: number, out: Uint8Array = new Uint8Array(w * h), scratch: Int32Array = new Int32Array(fillHolesScratchSize(w, h))): Uint8Array {
  out.set(mask.subarray(0, w * h));
  const quads = wordAligned(mask, w) ? words(mask, w * h) : undefined;
  let x0 = w;
  let x1 = -1;
  let y0 = h;
  let y1 = -1;
  for (let y = 0; y < h; y++) {
    const r = y * w;
    let x = 0;
    // Four unset cells at a time while the words are empty.
    if (quads) while (x < w && quads[(r + x) >> 2] === 0) x += 4;
    while (x < w && !mask[r + x]) x++;
    if (x >= w) continue;
    let last = w - 1;
    if (quads) while (quads[(r + last - 3) >> 2] === 0) last -= 4;
    while (!mask[r + last]) last--;
    if (y0 === h) y0 = y;
    y1 = y;
    if (x < x0) x0 = x;
    if (last > x1) x1 = last;
  }
  if (y1 < 0) return out;
  const bx0 = Math.max(0, x0 - 1);
  const bx1 = Math.min(w - 1, x1 + 1);
  const by0 = Math.max(0, y0 - 1);
  const by1 = Math.min(h - 1, y1 + 1);
  const maxRuns = h * Math.ceil((w + 1) / 2);
  if (scratch.length < 5 * maxRuns) throw new RangeError(`fillHoles needs ${5 * maxRuns} ints of scratch`);
  const parent = scratch.subarray(0, maxRuns);
  const start = scratch.subarray(maxRuns, 2 * maxRuns);
  const end = scratch.subarray(2 * maxRuns, 3 * maxRuns);
  const reached = scratch.subarray(3 * maxRuns, 4 * maxRuns);
  const rowOf = scratch.subarray(4 * maxRuns, 5 * maxRuns);
  let runs = 0;
  let prevFirst = 0;
  let prevEnd = 0;
  for (let y = by0; y <= by1; y++) {
    const r = y * w;
    const first = runs;
    const edgeRow = y === by0 || y === by1 ? 1 : 0;
    let x = bx0;
    while (x <= bx1) {
      while (x <= bx1 && mask[r + x]) x++;
      if (x > bx1) break;
      const s = x;
      while (x <= bx1 && !mask[r + x]) x += quads && (x & 3) === 0 && x + 3 <= bx1 && quads[(r + x) >> 2] === 0 ? 4 : 1;
      start[runs] = s;
      end[runs] = x;
      parent[runs] = runs;
      rowOf[runs] = r;
      reached[runs] = edgeRow | +(s === bx0) | +(x === bx1 + 1);
      runs++;
    }
    // Join this row's runs to the previous row's runs they overlap (both lists run left to right).
    for (let i = prevFirst, j = first; i < prevEnd && j < runs; ) {
      if (start[i]! < end[j]! && start[j]! < end[i]!) union(parent, i, j);
      if (end[i]! < end[j]!) i++;
      else j++;
    }
    prevFirst = first;
    prevEnd = runs;
  }
  for (let k = 0; k < runs; k++) if (reached[k]) reached[find(parent, k)] = 1;
  for (let k = 0; k < runs; k++) if (!reached[find(parent, k)]) out.fill(1, rowOf[k]! + start[k]!, rowOf[k]! + end[k]!);
  return out;
}

/** One connected component: its area in cells and its bounding box in cells (inclusive). */
export interface Component {
  readonly label: number;
  area: number;
  minX: number;
  maxX: number;
  minY: number;
  maxY: number;
}

export interface Labelling {
  /** Per cell: component label (1-based), 0 for unset cells. */
  readonly labels: Int32Array;
  /** Components by label − 1. */
  readonly components: Component[];
}

function find(parent: Int32Array, a: number): number {
  while (parent[a] !== a) {
    parent[a] = parent[parent[a]!]!;
    a = parent[a]!;
  }
  return a;
}

/** Merges the sets of provisional labels `a` and `b` (the smaller root wins); returns the root. */
function union(parent: Int32Array, a: number, b: number): number {
  const ra = find(parent, a);
  const rb = find(parent, b);
  if (ra === rb) return ra;
  if (ra < rb) {
    parent[rb] = ra;
    return ra;
  }
  parent[ra] = rb;
  return rb;
}

/**
 * 8-connected components by the classic two-pass algorithm with a union-find of provisional
 * labels. `labels` (w·h) and `parent` (w·h/2 + 2) may be passed to reuse them.
 */
export function labelComponents(mask: Uint8Array, w: number, h: number, labels: Int32Array = new Int32Array(w * h), parent: Int32Array = new Int32Array(Math.ceil((w * h) / 2) + 2)): Labelling {
  labels.fill(0, 0, w * h);
  // Mostly empty masks: four unset cells at a time are skipped with one word read.
  const quads = wordAligned(mask, w) ? words(mask, w * h) : undefined;
  let next = 1;
  for (let y = 0; y < h; y++) {
    const r = y * w;
    for (let x = 0; x < w; x++) {
      const i = r + x;
      if (quads && (x & 3) === 0 && quads[i >> 2] === 0) {
        x += 3;
        continue;
      }
      if (!mask[i]) continue;
      // Already-visited neighbours: W, NW, N, NE.
      let l = x > 0 ? labels[i - 1]! : 0;
      if (y > 0) {
        const xl = x > 0 ? x - 1 : x;
        const xr = x < w - 1 ? x + 1 : x;
        for (let xx = xl; xx <= xr; xx++) {
          const nb = labels[i - w + xx - x]!;
          if (nb) l = l ? union(parent, l, nb) : nb;
        }
      }
      if (!l) {
        l = next++;
        parent[l] = l;
      }
      labels[i] = l;
    }
  }
  // Second pass: compact roots to 1..k and gather each component's area and box.
  const compact = new Int32Array(next);
  const components: Component[] = [];
  for (let y = 0; y < h; y++) {
    const r = y * w;
    for (let x = 0; x < w; x++) {
      if (quads && (x & 3) === 0 && quads[(r + x) >> 2] === 0) {
        x += 3;
        continue;
      }
      const l = labels[r + x]!;
      if (!l) continue;
      const root = find(parent, l);
      let c = compact[root]!;
      if (!c) {
        c = components.length + 1;
        compact[root] = c;
        components.push({ label: c, area: 0, minX: w, maxX: -1, minY: h, maxY: -1 });
      }
      labels[r + x] = c;
      const comp = components[c - 1]!;
      comp.area++;
      if (x < comp.minX) comp.minX = x;
      if (x > comp.maxX) comp.maxX = x;
      if (y < comp.minY) comp.minY = y;
      if (y > comp.maxY) comp.maxY = y;
    }
  }
  return { labels, components };
}
