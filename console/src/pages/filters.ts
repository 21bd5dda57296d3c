import { field, h } from '../dom.js';

/** One control of a filter form: a text box, or a select when `options` are given. */
export interface FilterField {
  name: string;
  label: string;
  value: string | null;
  options?: string[];
  optionLabels?: string[];
}

/**
 * A labelled filter form; submitting it moves to `#/<page>?<filled fields>`, so a filtered
 * view has an address that can be shared and reloaded.
 */
export function filterForm(page: string, title: string, fields: FilterField[]): HTMLFormElement {
  const controls = fields.map((f) => {
    const id = `f-${page}-${f.name}`;
    const control = f.options
      ? h(
          'select',
          { id, name: f.name },
          ...f.options.map((o, i) => h('option', { value: o, selected: o === (f.value ?? '') }, f.optionLabels?.[i] ?? (o || 'any'))),
        )
      : h('input', { id, name: f.name, type: 'search', value: f.value ?? '' });
    return { f, control };
  });
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': title },
    ...controls.map(({ f, control }) => field(f.label, control)),
    h('button', { type: 'submit' }, 'Apply'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const { f, control } of controls) if (control.value) q.set(f.name, control.value);
    window.location.hash = `#/${page}?${q.toString()}`;
  });
  return form;
}
