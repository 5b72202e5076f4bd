// A modal confirmation (with an optional text field, e.g. the reason for a cancellation),
// keyboard-friendly: focus starts on the safe choice; Escape cancels.

import { h } from "./dom.js";

/** Resolves with the field's value (or true without a field) when confirmed, null otherwise. */
export function confirmDialog({ title, body = "", confirm = "Confirm", cancel = "Keep", danger = false, field = null }) {
  return new Promise((resolve) => {
    const input = field ? h(field.multiline ? "textarea" : "input", { id: "confirm-field", required: field.required ?? false, maxlength: field.maxlength || 500, rows: 3 }) : null;
    const ok = h("button", { type: "submit", class: danger ? "danger" : "primary", id: "confirm-ok" }, confirm);
    const no = h("button", { type: "button", class: "secondary", id: "confirm-cancel" }, cancel);
    const form = h("form", { method: "dialog" },
      h("h2", { id: "confirm-title" }, title),
      body ? h("p", {}, body) : null,
      input ? h("p", { class: "field" }, h("label", { for: "confirm-field" }, field.label), input) : null,
      h("p", { class: "actions" }, no, ok));
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": "confirm-title" }, form);
    const done = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    no.addEventListener("click", () => done(null));
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      done(null);
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (input && field.required && !input.value.trim()) {
        input.focus();
        return;
      }
      done(input ? input.value.trim() : true);
    });
    document.body.append(dialog);
    dialog.showModal();
    (input || no).focus();
  });
}
