// Admin: cinemas and their halls (with the layout editor: compact rows typed on the left, the
// hall drawn live on the right), and films. (Refunds: admin-money.js.)

import { all, api, errorText, managed, me } from "./api.js";
import { confirmDialog } from "./confirm.js";
import { clear, h, say } from "./dom.js";
import { money } from "./format.js";
import { fromRows, gaFromText } from "./layout.js";
import { SeatMapView } from "./seatmap.js";

function field(id, label, input) {
  input.id = id;
  return h("p", { class: "field" }, h("label", { for: id }, label), input);
}

async function remove(path, what, message, after) {
  const ok = await confirmDialog({ title: `Delete ${what}?`, confirm: "Delete", danger: true });
  if (!ok) return;
  try {
    await api(path, { method: "DELETE" });
    say(message, `Deleted ${what}.`, "ok");
    await after();
  } catch (error) {
    say(message, error.code === "in_use" ? `${what} is still in use: remove what refers to it first.` : errorText(error), "error");
  }
}

// ---- cinemas and halls ------------------------------------------------------------------------

const EXAMPLE_ROWS = ["WCSSS_SSSSSS_SSSCW", "SSSSS_SSSSSS_SSSSS", "SSSSS_SSSSSS_SSSSS", "", "PPPPP_PPPPPP_PPPPP"].join("\n");

export async function showCinemas(root, params) {
  // An organizer manages the halls of its own cinemas; the cinemas themselves are the admins'.
  const admin = (await me())?.role === "admin";
  let cinemas = await managed(await all("/api/cinemas?limit=100"));
  let cinemaId = params.get("cinema") || String(cinemas[0]?.id || "");
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const list = h("div", {});
  const cinemaForm = h("section", { class: "panel" });
  const halls = h("section", { class: "panel" });
  const editor = h("section", { class: "panel", id: "hall-editor" });
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : ["Asia/Jakarta"];

  function renderList() {
    clear(list, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Cinema"), h("th", {}, "City"), h("th", {}, "Time zone"), h("th", {}, ""))),
      h("tbody", {}, cinemas.map((c) => h("tr", { class: String(c.id) === cinemaId ? "selected" : "" },
        h("td", {}, h("button", { type: "button", class: "link", onclick: () => choose(c.id) }, c.name)),
        h("td", {}, c.city), h("td", {}, c.timezone),
        h("td", {}, admin ? [h("button", { type: "button", class: "link", onclick: () => renderCinemaForm(c) }, "Edit"),
          h("button", { type: "button", class: "link", onclick: () => remove(`/api/admin/cinemas/${c.id}`, c.name, message, reload) }, "Delete")] : null))))));
  }

  async function reload() {
    cinemas = await managed(await all("/api/cinemas?limit=100"));
    if (!cinemas.some((c) => String(c.id) === cinemaId)) cinemaId = String(cinemas[0]?.id || "");
    renderList();
    await renderHalls();
  }

  function renderCinemaForm(cinema = null) {
    const name = h("input", { required: true, maxlength: 200, value: cinema?.name || "" });
    const city = h("input", { required: true, maxlength: 100, value: cinema?.city || "" });
    const tz = h("input", { required: true, list: "zones", value: cinema?.timezone || "Asia/Jakarta" });
    const address = h("input", { maxlength: 500, value: cinema?.address || "" });
    const form = h("form", {},
      h("h2", {}, cinema ? `Edit ${cinema.name}` : "New cinema"),
      h("div", { class: "form-grid" }, field("cinema-name", "Name", name), field("cinema-city", "City", city), field("cinema-tz", "Time zone", tz), field("cinema-address", "Address", address)),
      h("datalist", { id: "zones" }, zones.map((z) => h("option", { value: z }))),
      h("p", { class: "actions" }, h("button", { type: "submit", class: "primary" }, cinema ? "Save" : "Add cinema"),
        cinema ? h("button", { type: "button", class: "secondary", onclick: () => renderCinemaForm() }, "New cinema instead") : null));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { name: name.value.trim(), city: city.value.trim(), timezone: tz.value.trim(), address: address.value.trim() };
      try {
        const saved = cinema
          ? await api(`/api/admin/cinemas/${cinema.id}`, { method: "PATCH", body })
          : await api("/api/admin/cinemas", { method: "POST", body });
        say(message, `Saved ${saved.name}.`, "ok");
        cinemaId = String(saved.id);
        await reload();
        renderCinemaForm();
      } catch (error) {
        say(message, errorText(error), "error");
      }
    });
    clear(cinemaForm, form);
  }

  async function choose(id) {
    cinemaId = String(id);
    history.replaceState(null, "", `#cinemas?cinema=${cinemaId}`);
    renderList();
    await renderHalls();
  }

  async function renderHalls(hallId = null, notice = "") {
    const cinema = cinemas.find((c) => String(c.id) === cinemaId);
    if (!cinema) {
      clear(halls, h("p", { class: "muted" }, "Add a cinema first."));
      clear(editor);
      return;
    }
    const items = await all(`/api/cinemas/${cinema.id}/auditoriums?limit=100`);
    clear(halls, h("h2", {}, `Halls of ${cinema.name}`),
      items.length ? h("ul", {}, items.map((a) => h("li", {},
        h("button", { type: "button", class: "link", onclick: () => renderEditor(cinema, a.id) }, a.name),
        ` · ${a.seat_count} seats${a.ga_capacity ? ` + ${a.ga_capacity} standing` : ""} · ${a.categories.join(", ")} `,
        h("button", { type: "button", class: "link", onclick: () => remove(`/api/admin/auditoriums/${a.id}`, a.name, message, () => renderHalls()) }, "Delete"))))
        : h("p", { class: "muted" }, "No halls yet."),
      h("p", {}, h("button", { type: "button", class: "secondary", id: "new-hall-button", onclick: () => renderEditor(cinema, null) }, "New hall")));
    await renderEditor(cinema, hallId, notice);
  }

  async function renderEditor(cinema, hallId, notice = "") {
    const hall = hallId ? await api(`/api/auditoriums/${hallId}`) : null;
    const name = h("input", { required: true, maxlength: 200, value: hall?.name || "" });
    const rows = h("textarea", { id: "layout-rows", rows: 12, spellcheck: "false", "aria-describedby": "layout-help" });
    rows.value = hall?.source?.rows ? hall.source.rows.join("\n") : hall ? "" : EXAMPLE_ROWS;
    const ga = h("textarea", { id: "layout-ga", rows: 3, spellcheck: "false", placeholder: "Floor, 300, standard" });
    ga.value = (hall?.source?.ga || hall?.layout?.ga || []).map((a) => `${a.name}, ${a.capacity}, ${a.category}`).join("\n");
    const preview = h("div", { class: "map-box preview", id: "layout-preview" });
    const stats = h("p", { class: "small", id: "layout-stats", "aria-live": "polite" });
    const problems = h("div", { class: "notice notice-error", role: "alert", hidden: true });
    const out = h("div", { class: "notice", role: "alert", hidden: true });
    let timer = null;

    function update() {
      const areas = gaFromText(ga.value);
      const lines = rows.value.replace(/\r/g, "").split("\n").map((l) => l.trimEnd());
      while (lines.length && !lines[lines.length - 1]) lines.pop();
      const { layout, errors } = fromRows(lines, areas.areas);
      const all = [...errors, ...areas.errors];
      say(problems, all.join(" "), "error");
      const per = {};
      for (const seat of layout.seats) per[seat.category] = (per[seat.category] || 0) + 1;
      const access = layout.seats.filter((s) => s.accessible).length;
      stats.textContent = `${layout.seats.length} seats (${Object.entries(per).map(([c, n]) => `${n} ${c}`).join(", ") || "none"})${access ? `, ${access} wheelchair` : ""}${areas.areas.length ? `; standing: ${areas.areas.map((a) => `${a.name} ${a.capacity}`).join(", ")}` : ""}; ${layout.height} rows × ${layout.width} columns.`;
      if (layout.seats.length) new SeatMapView(preview, layout, { label: "Layout preview", inert: true });
      else clear(preview, h("p", { class: "muted" }, "No seats yet."));
      return { lines, areas: areas.areas, ok: !all.length };
    }
    const later = () => {
      clearTimeout(timer);
      timer = setTimeout(update, 150);
    };
    rows.addEventListener("input", later);
    ga.addEventListener("input", later);

    const form = h("form", {},
      h("h2", {}, hall ? `Edit ${hall.name}` : `New hall in ${cinema.name}`),
      field("hall-name", "Name", name),
      h("div", { class: "admin-grid" },
        h("div", {},
          h("p", { class: "field" }, h("label", { for: "layout-rows" }, "Rows (top = nearest the screen)"), rows),
          h("p", { class: "small muted", id: "layout-help" }, "One line per row, one character per seat: S standard, P premium, V VIP, W wheelchair space, C companion seat, _ gap or aisle. An empty line is a walkway. Rows are lettered A, B, … and seats numbered from 1, skipping gaps."),
          h("p", { class: "field" }, h("label", { for: "layout-ga" }, "Standing / open areas: name, capacity, category (one per line)"), ga)),
        h("div", {}, h("h3", {}, "Preview"), stats, preview)),
      problems, out,
      h("p", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "save-hall" }, hall ? "Save hall" : "Add hall")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const { lines, areas, ok } = update();
      if (!ok) return;
      const body = { name: name.value.trim(), layout: { rows: lines, ga: areas } };
      if (!lines.length) delete body.layout.rows;
      try {
        const saved = hall
          ? await api(`/api/admin/auditoriums/${hall.id}`, { method: "PUT", body })
          : await api(`/api/admin/cinemas/${cinema.id}/auditoriums`, { method: "POST", body });
        await renderHalls(saved.id, `Saved ${saved.name}: ${saved.seat_count} seats.`);
      } catch (error) {
        say(out, error.code === "in_use" || error.code === "conflict" ? `${errorText(error)} (screenings use this hall: its layout can no longer change).` : errorText(error), "error");
      }
    });
    clear(editor, form);
    if (notice) say(out, notice, "ok");
    update();
  }

  clear(root, message, h("div", { class: "admin-grid" }, h("div", {}, list, cinemaForm), halls), editor);
  renderList();
  if (admin) renderCinemaForm();
  await renderHalls();
  return null;
}

// ---- films -------------------------------------------------------------------------------------------

export async function showFilms(root) {
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const list = h("div", {});
  const formBox = h("section", { class: "panel" });

  async function reload() {
    const movies = await all("/api/movies?limit=100");
    clear(list, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Title"), h("th", {}, "Kind"), h("th", {}, "Minutes"), h("th", {}, "Rating"), h("th", {}, ""))),
      h("tbody", {}, movies.map((m) => h("tr", {},
        h("td", {}, m.title), h("td", {}, m.kind), h("td", {}, m.duration_minutes), h("td", {}, m.rating || ""),
        h("td", {}, h("button", { type: "button", class: "link", onclick: () => renderForm(m) }, "Edit"),
          h("button", { type: "button", class: "link", onclick: () => remove(`/api/admin/movies/${m.id}`, m.title, message, reload) }, "Delete")))))));
  }

  function renderForm(movie = null) {
    const title = h("input", { required: true, maxlength: 300, value: movie?.title || "" });
    const minutes = h("input", { type: "number", min: 1, max: 1440, required: true, value: movie?.duration_minutes || 120 });
    const kind = h("select", {}, h("option", { value: "movie", selected: movie?.kind !== "event" }, "Movie"), h("option", { value: "event", selected: movie?.kind === "event" }, "Event"));
    const rating = h("input", { maxlength: 20, value: movie?.rating || "" });
    const description = h("textarea", { rows: 3, maxlength: 5000 });
    description.value = movie?.description || "";
    const form = h("form", {},
      h("h2", {}, movie ? `Edit ${movie.title}` : "New film or event"),
      h("div", { class: "form-grid" }, field("film-title", "Title", title), field("film-minutes", "Minutes", minutes), field("film-kind", "Kind", kind), field("film-rating", "Rating", rating)),
      field("film-description", "Description", description),
      h("p", { class: "actions" }, h("button", { type: "submit", class: "primary" }, movie ? "Save" : "Add film"),
        movie ? h("button", { type: "button", class: "secondary", onclick: () => renderForm() }, "New film instead") : null));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { title: title.value.trim(), duration_minutes: Number(minutes.value), kind: kind.value, rating: rating.value.trim(), description: description.value.trim() };
      try {
        const saved = movie
          ? await api(`/api/admin/movies/${movie.id}`, { method: "PATCH", body })
          : await api("/api/admin/movies", { method: "POST", body });
        say(message, `Saved ${saved.title}.`, "ok");
        renderForm();
        await reload();
      } catch (error) {
        say(message, errorText(error), "error");
      }
    });
    clear(formBox, form);
  }

  clear(root, message, h("div", { class: "admin-grid" }, list, formBox));
  renderForm();
  await reload();
  return null;
}
