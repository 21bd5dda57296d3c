/** A small seeded PRNG (mulberry32), so generated inputs are the same on every run. */
export interface Random {
  next(): number;
  int(max: number): number;
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
}

export function seeded(seed: number): Random {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (max) => Math.floor(next() * max),
    pick: (items) => items[Math.floor(next() * items.length)]!,
    chance: (p) => next() < p,
  };
}

/** Values of the wrong type, odd strings and edge cases, for fields that expect something else. */
export const ODD_VALUES: readonly unknown[] = [
  null,
  0,
  -1,
  1.5,
  true,
  false,
  '',
  ' ',
  'ünïcødé-☁',
  '\u0000nul',
  '<script>',
  "'; DROP TABLE x; --",
  [],
  [1, 2],
  {},
  { nested: { deep: [1] } },
  'a'.repeat(300),
];
