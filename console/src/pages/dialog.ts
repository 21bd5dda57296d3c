import { h } from '../dom.js';

/**
 * Asks for confirmation in a modal dialog (the browser keeps focus inside it and Escape
 * cancels); resolves true only when the confirm button is pressed.
 */
export function confirmDialog(question: string, confirmLabel: string, extra?: HTMLElement): Promise<boolean> {
  return new Promise((resolve) => {
    const confirm = h('button', { type: 'submit', value: 'yes', class: 'danger' }, confirmLabel);
    const cancel = h('button', { type: 'submit', value: 'no', class: 'secondary' }, 'Cancel');
    const dialog = h(
      'dialog',
      { 'aria-labelledby': 'dialog-q' },
      h('form', { method: 'dialog' }, h('p', { id: 'dialog-q' }, question), extra ?? null, h('div', { class: 'actions' }, cancel, confirm)),
    );
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(dialog.returnValue === 'yes');
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
