/** What `h` accepts as a child: nodes, text, or nothing (skipped). */
export type Child = Node | string | number | null | undefined | false | Child[];

/** Attributes and event handlers of an element built by `h` (`on*` keys become listeners). */
export type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/**
 * Builds an element: `h('button', { type: 'button', onclick: go }, 'Go')`. Boolean `true`
 * sets an empty attribute, `false`/null/undefined leave it out. Text is always a text node,
 * so nothing an API answers can become markup.
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, '');
    else if (value !== false && value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Appends children (flattening arrays, skipping empty ones). */
export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else if (child !== null && child !== undefined && child !== false) parent.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces an element's content. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** A table with a caption and column headers; `rows` are cells already built. */
export function table(caption: string, headers: string[], rows: Child[][], empty = 'Nothing to show.'): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'empty' }, `${caption}: ${empty}`);
  return h(
    'table',
    {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ...headers.map((text) => h('th', { scope: 'col' }, text)))),
    h('tbody', {}, ...rows.map((cells) => h('tr', {}, ...cells.map((cell) => h('td', {}, cell))))),
  );
}

/** A labelled form field: the label's `for` names the control's id. */
export function field(label: string, control: HTMLInputElement | HTMLSelectElement): HTMLElement {
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
}

/** A message in a live region, read out by screen readers when it changes. */
export function notice(kind: 'info' | 'error', text: string): HTMLElement {
  return h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A time as "2026-12-01 17:43:39 (3 min ago)". */
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const t = new Date(iso);
  return `${t.toISOString().slice(0, 19).replace('T', ' ')} (${ago(Date.now() - t.getTime())})`;
}

/** A duration as the largest unit that fits ("42 s ago", "3 min ago", "2 h ago"). */
export function ago(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A link inside the console (hash routing, so a reload lands on the same page). */
export function link(route: string, text: string): HTMLAnchorElement {
  return h('a', { href: `#${route}` }, text);
}
