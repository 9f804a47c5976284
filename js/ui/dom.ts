/** Tiny DOM helpers (no framework): element creation with attributes and children. */

export type Child = Node | string | null | undefined | false;
export type Attrs = Record<string, string | number | boolean | null | undefined>;

/**
 * Create an element. `attrs`: `class`, `testid` (-> `data-testid`), `data-*`, `aria-*` and other
 * attributes; `true` sets an empty attribute, `false` / `null` / `undefined` leave it out.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    const name = key === "testid" ? "data-testid" : key;
    el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}
