/**
 * The structured planet prompt (DESIGN.md §3): colour, atmosphere, moons, sky, in that fixed
 * order, then extras. Pure; the router expands it before planning.
 *
 *   {color: "deep blue", atmosphere: "frosted cloudy zones", moons: "no moons", sky: "distant stars dark sky"}
 *   → "deep blue planet with frosted cloudy zones, no moons, distant stars dark sky"
 */
export interface PlanetPrompt {
  readonly color?: string;
  readonly atmosphere?: string;
  readonly moons?: string;
  readonly sky?: string;
  readonly extras?: readonly string[];
}

const clean = (s: string | undefined): string => (s ?? '').trim().replace(/\s+/g, ' ');

/** Builds the prompt text; empty slots are left out. Returns '' when every slot is empty. */
export function buildPlanetPrompt(p: PlanetPrompt): string {
  const color = clean(p.color);
  const atmosphere = clean(p.atmosphere);
  let head = color ? `${color} planet` : atmosphere ? 'planet' : '';
  if (atmosphere) head += ` with ${atmosphere}`;
  const parts = [head, clean(p.moons), clean(p.sky), ...(p.extras ?? []).map(clean)];
  return parts.filter((s) => s.length > 0).join(', ');
}
