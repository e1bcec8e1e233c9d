/**
 * Binary-mask operations on the detector's grid: a neighbour-count filter, a 3x3 closing, hole
 * filling and connected components (two-pass union-find). Masks are row-major Uint8Array of 0/1,
 * `w` x `h`. Pure; each function returns a new mask or labelling.
 */

/**
 * Keeps a set cell only if at least `minNeighbours` of its 8 neighbours are set (cells beyond the
 * border count as copies of the cell, so a body cut by the frame keeps its edge). Removes specks
 * of one or two cells (averaged stars) and one-cell lines; a body's limb cells keep ≥ 3.
 */
export function dropSpecks(mask: Uint8Array, w: number, h: number, minNeighbours = 3): Uint8Array {
  const out = new Uint8Array(mask.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      let n = 0;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy < 0 || y + dy >= h ? y : y + dy;
        for (let dx = -1; dx <= 1; dx++) {
          if (dx === 0 && dy === 0) continue;
          const xx = x + dx < 0 || x + dx >= w ? x : x + dx;
          n += mask[yy * w + xx]!;
        }
      }
      if (n >= minNeighbours) out[i] = 1;
    }
  }
  return out;
}

function dilateOrErode(mask: Uint8Array, w: number, h: number, dilate: boolean): Uint8Array {
  // Separable 3x3: horizontal pass then vertical; the border replicates the edge cell.
  const tmp = new Uint8Array(mask.length);
  const out = new Uint8Array(mask.length);
  for (let y = 0; y < h; y++) {
    const r = y * w;
    for (let x = 0; x < w; x++) {
      const a = mask[r + (x > 0 ? x - 1 : x)]!;
      const b = mask[r + x]!;
      const c = mask[r + (x < w - 1 ? x + 1 : x)]!;
      tmp[r + x] = dilate ? a | b | c : a & b & c;
    }
  }
  for (let y = 0; y < h; y++) {
    const up = (y > 0 ? y - 1 : y) * w;
    const dn = (y < h - 1 ? y + 1 : y) * w;
    const r = y * w;
    for (let x = 0; x < w; x++) {
      const a = tmp[up + x]!;
      const b = tmp[r + x]!;
      const c = tmp[dn + x]!;
      out[r + x] = dilate ? a | b | c : a & b & c;
    }
  }
  return out;
}

/** Dilation by a (2r+1)-cell square: r passes of the 3x3 one. */
export function dilate(mask: Uint8Array, w: number, h: number, r: number): Uint8Array {
  let out = mask;
  for (let k = 0; k < r; k++) out = dilateOrErode(out, w, h, true);
  return out;
}

/** Morphological closing with a 3x3 square: bridges one-cell gaps (a dark band across a dim disc). */
export function close3x3(mask: Uint8Array, w: number, h: number): Uint8Array {
  return dilateOrErode(dilateOrErode(mask, w, h, true), w, h, false);
}

/** Sets every unset cell that the border cannot reach through unset cells (4-connected): holes inside bodies. */
export function fillHoles(mask: Uint8Array, w: number, h: number): Uint8Array {
  const out = Uint8Array.from(mask);
  const reached = new Uint8Array(mask.length);
  const stack = new Int32Array(mask.length);
  let top = 0;
  const push = (i: number): void => {
    if (!mask[i] && !reached[i]) {
      reached[i] = 1;
      stack[top++] = i;
    }
  };
  for (let x = 0; x < w; x++) {
    push(x);
    push((h - 1) * w + x);
  }
  for (let y = 0; y < h; y++) {
    push(y * w);
    push(y * w + w - 1);
  }
  while (top > 0) {
    const i = stack[--top]!;
    const x = i % w;
    if (x > 0) push(i - 1);
    if (x < w - 1) push(i + 1);
    if (i >= w) push(i - w);
    if (i < (h - 1) * w) push(i + w);
  }
  for (let i = 0; i < out.length; i++) if (!mask[i] && !reached[i]) out[i] = 1;
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

/** 8-connected components by the classic two-pass algorithm with a union-find of provisional labels. */
export function labelComponents(mask: Uint8Array, w: number, h: number): Labelling {
  const labels = new Int32Array(mask.length);
  const parent = new Int32Array(Math.ceil(mask.length / 2) + 2);
  let next = 1;
  const union = (a: number, b: number): number => {
    const ra = find(parent, a);
    const rb = find(parent, b);
    if (ra === rb) return ra;
    if (ra < rb) {
      parent[rb] = ra;
      return ra;
    }
    parent[ra] = rb;
    return rb;
  };
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      // Already-visited neighbours: W, NW, N, NE.
      let l = x > 0 ? labels[i - 1]! : 0;
      if (y > 0) {
        for (let dx = -1; dx <= 1; dx++) {
          if (x + dx < 0 || x + dx >= w) continue;
          const n = labels[i - w + dx]!;
          if (n) l = l ? union(l, n) : n;
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
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    if (!l) continue;
    const root = find(parent, l);
    let c = compact[root]!;
    if (!c) {
      c = components.length + 1;
      compact[root] = c;
      components.push({ label: c, area: 0, minX: w, maxX: -1, minY: h, maxY: -1 });
    }
    labels[i] = c;
    const comp = components[c - 1]!;
    const x = i % w;
    const y = (i - x) / w;
    comp.area++;
    if (x < comp.minX) comp.minX = x;
    if (x > comp.maxX) comp.maxX = x;
    if (y < comp.minY) comp.minY = y;
    if (y > comp.maxY) comp.maxY = y;
  }
  return { labels, components };
}
