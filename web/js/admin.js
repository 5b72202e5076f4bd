// The admin console: screenings (create, publish, live occupancy, block seats, cancel),
// cinemas and halls with the layout editor, films, and refunds. Screens that need an API
// another part of the product has not shipped yet (cancel, refunds) look the route up in
// /openapi.json first and say plainly that it is not available, instead of failing.

import { all, api, available, errorText, logout, managed, me } from "./api.js";
import { showCinemas, showFilms } from "./admin-catalog.js";
import { showBookings, showDoorLists } from "./admin-bookings.js";
import { showGivenUp, showRefunds } from "./admin-money.js";
import { showReports } from "./admin-reports.js";
import { showUsers } from "./admin-users.js";
import { showWebhooks } from "./admin-webhooks.js";
import { confirmDialog } from "./confirm.js";
import { clear, h, say } from "./dom.js";
import { clock, dayAndClock, listWords, money, zonedDay, zonedIso } from "./format.js";
import { LiveMap } from "./live.js";
import { askLogin } from "./login.js";
import { connectionBadge } from "./screening.js";
import { seatMap } from "./seatcanvas.js";
import { legend, occupancy } from "./seatmap.js";

const main = document.getElementById("main");
const account = document.getElementById("account");
const tabs = document.getElementById("tabs");
let cleanup = null;

function occupancyBar(counts) {
  const pct = (n) => `${((100 * n) / Math.max(1, counts.total)).toFixed(1)}%`;
  return h("div", { class: "occupancy", role: "img", "aria-label": `${counts.sold} sold, ${counts.held} held, ${counts.blocked} blocked, ${counts.free} free of ${counts.total}` },
    h("span", { class: "o-sold", style: `width:${pct(counts.sold)}` }),
    h("span", { class: "o-held", style: `width:${pct(counts.held)}` }),
    h("span", { class: "o-blocked", style: `width:${pct(counts.blocked)}` }));
}

function countsText(c, status) {
  if (status === "cancelled") return `Cancelled${c.sold ? ` · ${c.sold} tickets to refund` : ""}`;
  return `${c.sold} sold · ${c.held} held · ${c.free} free${c.blocked ? ` · ${c.blocked} blocked` : ""}`;
}

// ---- screenings ---------------------------------------------------------------------------------

async function showScreenings(root, params) {
  const cinemas = await managed(await all("/api/cinemas?limit=100"));
  const movies = await all("/api/movies?limit=100");
  let cinemaId = params.get("cinema") || localStorage.getItem("seatmap.admin.cinema") || String(cinemas[0]?.id || "");
  // Today where the cinema is (at 06:00 in Jakarta it is still yesterday in a UTC browser).
  let date = params.get("date") || zonedDay(new Date(), cinemas.find((c) => String(c.id) === cinemaId)?.timezone);
  let selectedId = params.get("screening");
  let detailCleanup = null;
  let refresh = null;
  const canCancel = await available("post", "/api/admin/screenings/{id}/cancel");

  const cinemaSelect = h("select", { id: "adm-cinema" }, cinemas.map((c) => h("option", { value: c.id, selected: String(c.id) === cinemaId }, `${c.name} (${c.city})`)));
  const dateInput = h("input", { type: "date", id: "adm-date", value: date });
  const table = h("div", { class: "screening-table" });
  const detail = h("section", { class: "panel", id: "screening-detail" }, h("p", { class: "muted" }, "Choose a screening to see its live map."));
  const formBox = h("section", { class: "panel", id: "new-screening" });
  const message = h("div", { class: "notice", role: "alert", hidden: true });

  const cinema = () => cinemas.find((c) => String(c.id) === cinemaId);
  const go = () => history.replaceState(null, "", `#screenings?cinema=${cinemaId}&date=${date}${selectedId ? `&screening=${selectedId}` : ""}`);

  async function loadTable() {
    let items;
    try {
      items = await all(`/api/screenings?cinema=${cinemaId}&date=${date}&limit=100`, 3);
    } catch (error) {
      clear(table, h("p", { class: "notice notice-error" }, errorText(error)));
      return;
    }
    const details = await Promise.all(items.map((s) => api(`/api/screenings/${s.id}`).catch(() => null)));
    const tz = cinema()?.timezone;
    clear(table, items.length
      ? h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Film"), h("th", {}, "Hall"), h("th", {}, "Status"), h("th", {}, "Occupancy"))),
          h("tbody", {}, items.map((s, i) => {
            const d = details[i];
            const counts = d ? occupancy(d.layout, d.seats || {}) : null;
            return h("tr", { class: String(s.id) === String(selectedId) ? "selected" : "", "data-screening": s.id },
              h("td", {}, h("button", { type: "button", class: "link", onclick: () => select(s.id) }, clock(s.starts_at, tz))),
              h("td", {}, s.movie.title),
              h("td", {}, s.auditorium.name),
              h("td", {}, h("span", { class: `badge ${s.status === "cancelled" ? "badge-bad" : s.status === "scheduled" ? "badge-ok" : ""}` }, s.status)),
              h("td", {}, counts ? [occupancyBar(counts), h("span", { class: "small muted" }, countsText(counts, s.status))] : "—"));
          })))
      : h("p", { class: "muted" }, "No screenings on this day."));
  }

  async function select(id) {
    selectedId = String(id);
    go();
    for (const tr of table.querySelectorAll("tr[data-screening]")) tr.classList.toggle("selected", tr.dataset.screening === selectedId);
    detailCleanup?.();
    detailCleanup = await showDetail(detail, Number(id), { canCancel, onChanged: loadTable });
  }

  async function renderForm() {
    const c = cinema();
    const halls = c ? await all(`/api/cinemas/${c.id}/auditoriums?limit=100`) : [];
    const hall = h("select", { id: "new-hall", required: true }, halls.map((a) => h("option", { value: a.id }, `${a.name} (${a.seat_count} seats${a.ga_capacity ? ` + ${a.ga_capacity} GA` : ""})`)));
    const movie = h("select", { id: "new-movie", required: true }, movies.map((m) => h("option", { value: m.id }, `${m.title} (${m.duration_minutes} min)`)));
    const day = h("input", { type: "date", id: "new-date", value: date, required: true });
    const time = h("input", { type: "time", id: "new-time", value: "19:00", required: true });
    const status = h("select", { id: "new-status" }, h("option", { value: "scheduled" }, "On sale"), h("option", { value: "draft" }, "Draft (not on sale)"));
    const currency = h("input", { id: "new-currency", value: "IDR", maxlength: 3, pattern: "[A-Z]{3}", size: 4 });
    const prices = h("div", { class: "form-grid" });
    const out = h("div", { class: "notice", role: "alert", hidden: true });
    const fillPrices = () => {
      const a = halls.find((x) => String(x.id) === hall.value);
      clear(prices, (a?.categories || []).map((cat) =>
        h("p", { class: "field" }, h("label", { for: `price-${cat}` }, `Price ${cat}`),
          h("input", { type: "number", id: `price-${cat}`, "data-category": cat, min: 0, step: 1, required: true, value: cat === "standard" ? 50000 : cat === "premium" ? 75000 : 120000 }))));
    };
    hall.addEventListener("change", fillPrices);
    fillPrices();
    const form = h("form", { class: "screening-form" },
      h("h2", {}, "New screening"),
      halls.length ? null : h("p", { class: "muted" }, "This cinema has no halls yet: add one under Cinemas & halls."),
      h("div", { class: "form-grid" },
        h("p", { class: "field" }, h("label", { for: "new-hall" }, "Hall"), hall),
        h("p", { class: "field" }, h("label", { for: "new-movie" }, "Film"), movie),
        h("p", { class: "field" }, h("label", { for: "new-date" }, `Day (${c?.timezone || ""})`), day),
        h("p", { class: "field" }, h("label", { for: "new-time" }, "Starts at"), time),
        h("p", { class: "field" }, h("label", { for: "new-status" }, "Status"), status),
        h("p", { class: "field" }, h("label", { for: "new-currency" }, "Currency"), currency)),
      prices, out,
      h("p", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "create-screening", disabled: !halls.length }, "Create screening")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {
        auditorium_id: Number(hall.value),
        movie_id: Number(movie.value),
        starts_at: zonedIso(day.value, time.value, c.timezone),
        prices: Object.fromEntries([...prices.querySelectorAll("input")].map((i) => [i.dataset.category, Number(i.value)])),
        currency: currency.value.trim().toUpperCase() || "IDR",
        status: status.value,
      };
      try {
        const created = await api("/api/admin/screenings", { method: "POST", body });
        say(out, `Created: ${created.movie.title} at ${dayAndClock(created.starts_at, c.timezone)} in ${created.auditorium.name}.`, "ok");
        date = day.value;
        dateInput.value = date;
        await loadTable();
        await select(created.id);
      } catch (error) {
        say(out, error.code === "screening_overlap" ? "Another screening in this hall overlaps that time (including 15 minutes of cleaning)." : errorText(error), "error");
      }
    });
    clear(formBox, form);
  }

  cinemaSelect.addEventListener("change", async () => {
    cinemaId = cinemaSelect.value;
    localStorage.setItem("seatmap.admin.cinema", cinemaId);
    selectedId = null;
    go();
    await Promise.all([loadTable(), renderForm()]);
  });
  dateInput.addEventListener("change", async () => {
    date = dateInput.value;
    go();
    await loadTable();
  });

  clear(root,
    h("div", { class: "filters" }, h("label", {}, "Cinema ", cinemaSelect), h("label", {}, "Day ", dateInput)),
    message,
    h("div", { class: "admin-grid" }, h("div", {}, table, formBox), detail));
  await Promise.all([loadTable(), renderForm()]);
  if (selectedId) await select(selectedId);
  refresh = setInterval(loadTable, 10_000);
  return () => {
    clearInterval(refresh);
    detailCleanup?.();
  };
}

/** One screening: live map and counts, block/unblock, publish, delete, cancel. */
async function showDetail(box, id, { canCancel, onChanged }) {
  const d = await api(`/api/screenings/${id}`);
  const tz = d.cinema.timezone;
  const selected = new Set();
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const counts = h("p", { class: "counts" });
  const mapBox = h("div", { class: "map-box stale" });
  const blocksBox = h("div", { class: "blocks" });
  const actions = h("div", { class: "selection-actions" });
  const badge = connectionBadge();
  const viewers = h("span", { class: "viewers" });
  const reason = h("input", { id: "block-reason", placeholder: "Reason (e.g. broken seat)", maxlength: 200 });
  const statusBadge = h("span", { class: "badge", id: "detail-status" }, d.status);

  const view = seatMap(mapBox, d.layout, { // SVG, or the canvas for a large hall
    prices: d.prices, priced: d, label: `Seat map of ${d.auditorium.name}`,
    onActivate: (label, state) => {
      if (state === "held" || state === "sold") {
        say(message, `${label} is ${state}; only free seats can be blocked.`, "info");
        return;
      }
      if (selected.has(label)) selected.delete(label);
      else selected.add(label);
      view.set(label, display(label));
      renderActions();
    },
  });
  const display = (label) => (selected.has(label) ? "selected" : live.stateOf(label));
  const live = new LiveMap(id, {
    onSnapshot: () => { view.setAll(display); renderCounts(); },
    onChange: (changes) => {
      for (const c of changes) if (c.seat !== undefined) view.set(c.seat, display(c.seat));
      renderCounts();
    },
    onStatus: (status) => { statusBadge.textContent = status; renderButtons(); renderCounts(); },
    onViewers: (n) => (viewers.textContent = `${Math.max(1, n)} viewing`),
    onConnection: (state, info) => { badge.update(state, info); mapBox.classList.toggle("stale", state !== "live"); },
  });

  function renderCounts() {
    const c = occupancy(d.layout, live.seats);
    const ga = d.layout.ga.map((a) => `${a.name}: ${live.ga.get(a.name) ?? a.capacity} of ${a.capacity} left`);
    clear(counts, occupancyBar(c), h("span", { id: "live-counts" }, countsText(c, live.status || d.status)), ga.length ? h("span", { class: "muted" }, ` · ${ga.join(" · ")}`) : null);
  }

  async function loadBlocks() {
    try {
      const list = await api(`/api/admin/screenings/${id}/blocks`);
      clear(blocksBox, list.items.length
        ? h("details", {}, h("summary", {}, `${list.items.length} blocked seat${list.items.length === 1 ? "" : "s"}`),
            h("ul", { class: "small" }, list.items.map((b) => h("li", {}, `${b.seat}${b.reason ? `: ${b.reason}` : ""}`))))
        : null);
    } catch (error) {
      clear(blocksBox, h("p", { class: "small muted" }, errorText(error)));
    }
  }

  async function change(path, body, done) {
    try {
      await api(path, { method: "POST", body });
      say(message, done, "ok");
      for (const label of selected) view.set(label, live.stateOf(label));
      selected.clear();
      view.setAll(display);
      renderActions();
      await loadBlocks();
      onChanged();
    } catch (error) {
      say(message, errorText(error), "error");
      view.flash(error.details?.seats || []);
    }
  }

  function renderActions() {
    const labels = [...selected].sort();
    const free = labels.filter((l) => live.stateOf(l) === "free");
    const blocked = labels.filter((l) => live.stateOf(l) === "blocked");
    clear(actions, labels.length
      ? [h("p", {}, `Selected: ${listWords(labels)}`),
         h("p", { class: "actions" }, reason,
           h("button", { type: "button", class: "secondary", id: "block-seats", disabled: !free.length, onclick: () =>
             change(`/api/admin/screenings/${id}/blocks`, { seats: free, reason: reason.value.trim() }, `Blocked ${listWords(free)}.`) }, `Block ${free.length || ""}`),
           h("button", { type: "button", class: "secondary", id: "unblock-seats", disabled: !blocked.length, onclick: () =>
             change(`/api/admin/screenings/${id}/unblock`, { seats: blocked }, `Unblocked ${listWords(blocked)}.`) }, `Unblock ${blocked.length || ""}`))]
      : h("p", { class: "small muted" }, "Click free seats to block them (broken seat, camera position, house seats), or blocked seats to unblock them."));
  }

  const buttons = h("p", { class: "actions" });
  function renderButtons() {
    const status = live.status || d.status;
    const publish = status === "draft"
      ? h("button", { type: "button", class: "primary", onclick: async () => {
          try {
            await api(`/api/admin/screenings/${id}`, { method: "PATCH", body: { status: "scheduled" } });
            statusBadge.textContent = "scheduled";
            say(message, "The screening is on sale.", "ok");
            onChanged();
          } catch (error) {
            say(message, errorText(error), "error");
          }
        } }, "Put on sale")
      : null;
    const cancel = status === "cancelled"
      ? h("span", { class: "badge badge-bad" }, "Cancelled")
      : canCancel
        ? h("button", { type: "button", class: "danger", id: "cancel-screening", onclick: cancelScreening }, "Cancel screening…")
        : h("span", { class: "unavailable", id: "cancel-unavailable" }, "Cancelling is not available on this server yet (it comes with refunds: POST /api/admin/screenings/{id}/cancel).");
    const remove = h("button", { type: "button", class: "secondary", onclick: async () => {
      const ok = await confirmDialog({ title: "Delete this screening?", body: "Only a screening without tickets can be deleted; otherwise cancel it.", confirm: "Delete", danger: true });
      if (!ok) return;
      try {
        await api(`/api/admin/screenings/${id}`, { method: "DELETE" });
        clear(box, h("p", { class: "notice notice-ok" }, "Deleted."));
        onChanged();
      } catch (error) {
        say(message, error.code === "has_tickets" ? "Tickets exist for this screening: cancel it instead." : errorText(error), "error");
      }
    } }, "Delete");
    clear(buttons, publish, cancel, status !== "cancelled" ? remove : null);
  }

  async function cancelScreening() {
    const why = await confirmDialog({
      title: "Cancel this screening?",
      body: `${d.movie.title}, ${dayAndClock(d.starts_at, tz)}, ${d.auditorium.name}. Every viewer sees it cancelled, holds are released, and every paid order is refunded. This cannot be undone.`,
      confirm: "Cancel screening", cancel: "Keep it", danger: true,
      field: { label: "Reason (told to the customers)", required: true, multiline: true },
    });
    if (!why) return;
    try {
      const result = await api(`/api/admin/screenings/${id}/cancel`, { method: "POST", body: { reason: why } });
      const parts = result && typeof result === "object" ? Object.entries(result).filter(([, v]) => typeof v === "number").map(([k, v]) => `${v} ${k.replaceAll("_", " ")}`) : [];
      say(message, `Cancelled.${parts.length ? ` ${parts.join(", ")}.` : ""}`, "ok");
      onChanged();
    } catch (error) {
      say(message, error.status === 404 && error.code === "not_found" && !(await available("post", "/api/admin/screenings/{id}/cancel"))
        ? "Cancelling is not available on this server yet." : errorText(error), "error");
    }
  }

  clear(box,
    h("h2", {}, `${d.movie.title} · ${dayAndClock(d.starts_at, tz)}`),
    h("p", { class: "meta" }, `${d.cinema.name} · ${d.auditorium.name} · `, statusBadge, " · ",
      Object.entries(d.prices).map(([c, p]) => `${c} ${money(p, d)}`).join(" · ")),
    h("div", { class: "live-line" }, badge.el, viewers),
    counts, message, buttons, mapBox,
    h("ul", { class: "legend" }, legend(d.layout.categories, d.prices, d, { mine: "Selected", mineState: "selected" })
      .map(([swatch, name, price]) => h("li", {}, swatch, h("span", {}, name), price ? h("span", { class: "price" }, price) : null))),
    actions, blocksBox,
    h("p", {}, h("a", { href: `/#/screening/${id}`, target: "_blank", rel: "noopener" }, "Open the customer page")));
  renderButtons();
  renderActions();
  renderCounts();
  loadBlocks();
  live.start();
  return () => { live.stop(); badge.stop(); };
}

// ---- frame ----------------------------------------------------------------------------------------

const TABS = [
  ["screenings", "Screenings", showScreenings],
  ["cinemas", "Cinemas & halls", showCinemas],
  ["films", "Films", showFilms],
  ["refunds", "Refunds", showRefunds],
  ["bookings", "Bookings", showBookings],
  ["door", "Door lists", showDoorLists],
  ["reports", "Reports", showReports],
  ["users", "Users", showUsers],
  ["webhooks", "Gateway webhooks", showGivenUp],
  ["hooks", "Integrator webhooks", showWebhooks],
];
// What an organizer sees of the console: its own cinemas' screenings, halls, refunds, bookings,
// door lists and reports.
const ORGANIZER_TABS = new Set(["screenings", "cinemas", "refunds", "bookings", "door", "reports"]);

async function route() {
  cleanup?.();
  cleanup = null;
  let user = await me();
  while (!user || (user.role !== "admin" && user.role !== "organizer")) {
    clear(main, h("p", { class: "muted" }, "Admins and organizers only."));
    user = await askLogin({ reason: "The admin console needs an admin or organizer account.", role: "organizer", register: false, dismissable: false });
  }
  const shown = TABS.filter(([id]) => user.role === "admin" || ORGANIZER_TABS.has(id));
  clear(account, h("span", { class: "who" }, user.email), h("a", { href: "/" }, "Shop"), h("a", { href: "/kiosk.html" }, "Kiosk"),
    h("button", { type: "button", class: "link", onclick: async () => { await logout(); location.reload(); } }, "Log out"));
  const [name, query = ""] = location.hash.replace(/^#/, "").split("?");
  const tab = shown.find(([id]) => id === name) || shown[0];
  clear(tabs, shown.map(([id, text]) => h("button", { type: "button", role: "tab", "aria-selected": String(id === tab[0]), "data-tab": id, onclick: () => (location.hash = `#${id}`) }, text)));
  document.title = `${tab[1]} · seatmap admin`;
  try {
    cleanup = await tab[2](main, new URLSearchParams(query));
  } catch (error) {
    clear(main, h("p", { class: "notice notice-error" }, errorText(error)));
  }
}

window.addEventListener("hashchange", route);
route();
