// Holder names: one field per ticket (seats first, then each standing place, the order the
// server names tickets in), for the web checkout and the kiosk sale. Shown when the screening
// asks (`holder_names`: required for events that print a name on every ticket, optional when
// the cinema asks by default, none otherwise).

import { h } from "./dom.js";

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** The tickets of a selection, in the server's order: [{ key, label }]. */
export function ticketsOf(seats, ga) {
  const tickets = seats.map((label) => ({ key: `seat:${label}`, label: `Seat ${label}` }));
  if (ga) for (let i = 0; i < ga.quantity; i += 1) tickets.push({ key: `ga:${ga.area}:${i}`, label: `${ga.area} ${i + 1}` });
  return tickets;
}

/**
 * The fields, or null when names are not asked. `remembered` keeps what was typed across
 * re-renders (a key per ticket). `check()` answers { names } or { error } (and focuses the field).
 */
export function holderFields(mode, tickets, remembered = new Map()) {
  if (!mode || mode === "none" || !tickets.length) return null;
  const required = mode === "required";
  const inputs = tickets.map((ticket, i) => {
    const input = h("input", {
      type: "text", class: "holder-name", maxlength: 100, "data-ticket": ticket.key,
      autocomplete: i === 0 ? "name" : "off", required, value: remembered.get(ticket.key) || "",
      "aria-label": `Name on the ticket for ${ticket.label}`,
    });
    input.addEventListener("input", () => remembered.set(ticket.key, input.value));
    return input;
  });
  const el = h("fieldset", { class: "holders", id: "holder-names" },
    h("legend", {}, required ? "Name on each ticket" : "Names on the tickets (optional)"),
    required ? h("p", { class: "muted small" }, "This event prints the holder's name on every ticket.") : null,
    tickets.map((ticket, i) => h("label", { class: "holder-field" }, h("span", {}, ticket.label), inputs[i])));

  function check() {
    const names = inputs.map((input) => input.value.trim());
    const bad = names.findIndex((name) => CONTROL.test(name));
    if (bad >= 0) {
      inputs[bad].focus();
      return { error: `The name for ${tickets[bad].label} has characters that cannot be printed.` };
    }
    const missing = required ? names.findIndex((name) => !name) : -1;
    if (missing >= 0) {
      inputs[missing].focus();
      return { error: `This event prints a name on every ticket: enter one for ${tickets[missing].label}.` };
    }
    while (names.length && !names[names.length - 1]) names.pop();
    return { names };
  }
  return { el, check };
}
