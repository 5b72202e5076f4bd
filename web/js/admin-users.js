// Admin: accounts. Find people by email or name, change a role, disable or enable an account,
// give an organizer its cinemas, and create staff, organizer and admin accounts. A new role or
// a disabled account logs the person out everywhere at once (the server revokes every token),
// so both ask first.

import { all, api, errorText, me } from "./api.js";
import { confirmDialog } from "./confirm.js";
import { clear, h, say } from "./dom.js";

const ROLES = ["customer", "staff", "organizer", "admin"];
const ROLE_NAMES = { customer: "Customer", staff: "Staff", organizer: "Organizer", admin: "Admin" };

function cinemaPicker(cinemas, chosen, idPrefix) {
  const boxes = cinemas.map((c) => h("input", { type: "checkbox", id: `${idPrefix}-${c.id}`, value: c.id, checked: chosen.includes(c.id) }));
  const el = h("fieldset", { class: "cinema-picker" },
    h("legend", {}, "Cinemas"),
    cinemas.length
      ? cinemas.map((c, i) => h("label", { for: `${idPrefix}-${c.id}`, class: "check" }, boxes[i], ` ${c.name} (${c.city})`))
      : h("p", { class: "muted" }, "No cinemas yet."));
  return { el, value: () => boxes.filter((b) => b.checked).map((b) => Number(b.value)) };
}

export async function showUsers(root, params) {
  const self = await me();
  const cinemas = await all("/api/cinemas?limit=100");
  const cinemaName = (id) => cinemas.find((c) => c.id === id)?.name || `#${id}`;
  const search = h("input", { type: "search", id: "user-search", placeholder: "Email or name", maxlength: 254, value: params.get("q") || "", autocomplete: "off" });
  const role = h("select", { id: "user-role" },
    h("option", { value: "" }, "Every role"), ROLES.map((r) => h("option", { value: r, selected: r === params.get("role") }, ROLE_NAMES[r])));
  const state = h("select", { id: "user-state" },
    h("option", { value: "" }, "Active and disabled"), h("option", { value: "false" }, "Active"), h("option", { value: "true" }, "Disabled"));
  const message = h("div", { class: "notice", role: "alert", hidden: true, id: "users-message" });
  const list = h("div", { class: "users-list" });
  const more = h("button", { type: "button", class: "secondary", id: "users-more", hidden: true }, "More");
  const formBox = h("section", { class: "panel", id: "new-user" });
  let cursor = null;
  let rows = [];

  const query = () => {
    const q = new URLSearchParams({ limit: "50" });
    if (search.value.trim()) q.set("q", search.value.trim());
    if (role.value) q.set("role", role.value);
    if (state.value) q.set("disabled", state.value);
    return q;
  };

  async function load(append = false) {
    const q = query();
    if (append && cursor) q.set("cursor", cursor);
    let page;
    try {
      page = await api(`/api/admin/users?${q}`);
    } catch (error) {
      say(message, errorText(error), "error");
      return;
    }
    rows = append ? [...rows, ...page.items] : page.items;
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
    render();
  }

  async function change(user, body, done) {
    try {
      const updated = await api(`/api/admin/users/${user.id}`, { method: "PATCH", body });
      rows = rows.map((r) => (r.id === updated.id ? updated : r));
      say(message, done(updated), "ok");
    } catch (error) {
      say(message, errorText(error), "error");
    }
    render();
  }

  async function changeRole(user, select) {
    const next = select.value;
    const ok = await confirmDialog({
      title: `Make ${user.name || user.email} ${ROLE_NAMES[next].toLowerCase()}?`,
      body: "They are logged out everywhere at once and get the new role when they log in again.",
      confirm: "Change role", cancel: "Keep the role",
    });
    if (!ok) {
      select.value = user.role;
      return;
    }
    await change(user, { role: next }, (u) => `${u.email} is now ${ROLE_NAMES[u.role].toLowerCase()}.`);
  }

  async function toggle(user) {
    if (!user.disabled) {
      const ok = await confirmDialog({
        title: `Disable ${user.name || user.email}?`,
        body: "They are logged out everywhere at once, cannot log in until the account is enabled again, and the seats they hold are released.",
        confirm: "Disable account", cancel: "Keep it active", danger: true,
      });
      if (!ok) return;
    }
    await change(user, { disabled: !user.disabled }, (u) => `${u.email} is ${u.disabled ? "disabled" : "enabled again"}.`);
  }

  function cinemasCell(user) {
    if (user.role !== "organizer") {
      return user.cinema_ids.length ? h("span", { class: "small muted" }, `${user.cinema_ids.map(cinemaName).join(", ")} (while organizer)`) : "—";
    }
    const picker = cinemaPicker(cinemas, user.cinema_ids, `uc-${user.id}`);
    const save = h("button", { type: "button", class: "secondary", "data-save-cinemas": user.id, onclick: () =>
      change(user, { cinema_ids: picker.value() }, (u) => `${u.email} organizes ${u.cinema_ids.length ? u.cinema_ids.map(cinemaName).join(", ") : "no cinema"}.`) }, "Save cinemas");
    return h("details", { class: "cinemas" },
      h("summary", {}, user.cinema_ids.length ? user.cinema_ids.map(cinemaName).join(", ") : h("span", { class: "badge badge-bad" }, "no cinema")),
      picker.el, save);
  }

  function render() {
    clear(list, rows.length
      ? h("table", { class: "users-table" },
          h("thead", {}, h("tr", {}, ["Name", "Email", "Role", "Cinemas", "Status", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, rows.map((u) => {
            const mine = u.id === self?.id;
            const select = h("select", { "aria-label": `Role of ${u.email}`, "data-role-of": u.id, disabled: mine }, ROLES.map((r) => h("option", { value: r, selected: r === u.role }, ROLE_NAMES[r])));
            select.addEventListener("change", () => changeRole(u, select));
            return h("tr", { "data-user": u.id, class: u.disabled ? "disabled" : "" },
              h("td", { "data-label": "Name" }, u.name || "—", mine ? h("span", { class: "small muted" }, " (you)") : null),
              h("td", { "data-label": "Email" }, u.email, u.email_verified ? null : h("span", { class: "small muted" }, " · unverified")),
              h("td", { "data-label": "Role" }, select),
              h("td", { "data-label": "Cinemas" }, cinemasCell(u)),
              h("td", { "data-label": "Status" }, h("span", { class: `badge ${u.disabled ? "badge-bad" : "badge-ok"}` }, u.disabled ? "Disabled" : "Active")),
              h("td", {}, mine ? null : h("button", { type: "button", class: u.disabled ? "secondary" : "danger", "data-toggle": u.id, onclick: () => toggle(u) }, u.disabled ? "Enable" : "Disable")));
          })))
      : h("p", { class: "muted" }, "No accounts match."));
  }

  function renderForm() {
    const name = h("input", { id: "nu-name", required: true, maxlength: 200 });
    const email = h("input", { id: "nu-email", type: "email", required: true, maxlength: 254 });
    const password = h("input", { id: "nu-password", type: "password", required: true, minlength: 8, autocomplete: "new-password" });
    const newRole = h("select", { id: "nu-role" }, ["staff", "organizer", "admin"].map((r) => h("option", { value: r }, ROLE_NAMES[r])));
    const picker = cinemaPicker(cinemas, [], "nu-cinema");
    const out = h("div", { class: "notice", role: "alert", hidden: true });
    const showPicker = () => { picker.el.hidden = newRole.value !== "organizer"; };
    newRole.addEventListener("change", showPicker);
    showPicker();
    const form = h("form", {},
      h("h2", {}, "New account"),
      h("p", { class: "muted small" }, "For box-office and door staff, organizers (who manage only their cinemas) and admins. The address counts as verified."),
      h("div", { class: "form-grid" },
        h("p", { class: "field" }, h("label", { for: "nu-name" }, "Name"), name),
        h("p", { class: "field" }, h("label", { for: "nu-email" }, "Email"), email),
        h("p", { class: "field" }, h("label", { for: "nu-password" }, "Password (8 or more)"), password),
        h("p", { class: "field" }, h("label", { for: "nu-role" }, "Role"), newRole)),
      picker.el, out,
      h("p", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "create-user" }, "Create account")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { name: name.value.trim(), email: email.value.trim(), password: password.value, role: newRole.value };
      if (newRole.value === "organizer") body.cinema_ids = picker.value();
      try {
        const created = await api("/api/admin/users", { method: "POST", body });
        say(out, `Created ${created.email} (${ROLE_NAMES[created.role].toLowerCase()}).`, "ok");
        form.reset();
        showPicker();
        await load();
      } catch (error) {
        say(out, error.code === "email_taken" ? "An account with this email exists already." : errorText(error), "error");
      }
    });
    clear(formBox, form);
  }

  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => load(), 250);
  });
  role.addEventListener("change", () => load());
  state.addEventListener("change", () => load());
  more.addEventListener("click", () => load(true));
  clear(root,
    h("div", { class: "filters" },
      h("label", {}, "Find", search), h("label", {}, "Role", role), h("label", {}, "Status", state)),
    message,
    h("div", { class: "admin-grid users-grid" }, h("div", {}, list, h("p", {}, more)), formBox));
  renderForm();
  await load();
  return () => clearTimeout(typing);
}
