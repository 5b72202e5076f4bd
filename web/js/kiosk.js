// The kiosk (staff): box-office sales on the live map, and door check-in with a verdict you can
// read from across the foyer. Full screen, touch-sized, with a clear offline indicator: the
// kiosk pings the server every few seconds and says so at once when it cannot reach it.

import { ApiError, all, api, explain, logout, me } from "./api.js";
import { doorList } from "./door-list.js";
import { clear, h, say } from "./dom.js";
import { clock, dayAndClock, listWords, money } from "./format.js";
import { showRefunds } from "./admin-money.js";
import { holderFields, ticketsOf } from "./holders.js";
import { LiveMap } from "./live.js";
import { askLogin } from "./login.js";
import { ticketCards } from "./orders.js";
import { connectionBadge } from "./screening.js";
import { seatMap } from "./seatcanvas.js";
import { legend } from "./seatmap.js";

const main = document.getElementById("main");
const topbar = document.getElementById("kiosk-bar");
const offlineBar = document.getElementById("offline");
let cleanup = null;
let cinemas = [];
const store = {
  get cinema() { return localStorage.getItem("seatmap.kiosk.cinema") || ""; },
  set cinema(v) { localStorage.setItem("seatmap.kiosk.cinema", v); },
  get gate() { return localStorage.getItem("seatmap.kiosk.gate") || ""; },
  set gate(v) { localStorage.setItem("seatmap.kiosk.gate", v); },
};

// ---- offline indicator -------------------------------------------------------------------------

let reachable = true;
async function probe() {
  let ok = navigator.onLine !== false;
  if (ok) {
    try {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 3000);
      const response = await fetch("/healthz", { cache: "no-store", signal: controller.signal });
      clearTimeout(timer);
      ok = response.ok;
    } catch {
      ok = false;
    }
  }
  if (ok !== reachable) {
    reachable = ok;
    offlineBar.hidden = ok;
    document.body.classList.toggle("is-offline", !ok);
  }
}
setInterval(probe, 4000);
window.addEventListener("offline", probe);
window.addEventListener("online", probe);

// ---- screenings of the chosen cinema ------------------------------------------------------------

async function upcoming(cinemaId) {
  if (!cinemaId) return [];
  // Those that have not ended yet, soonest first.
  return all(`/api/screenings?cinema=${cinemaId}&limit=50`, 2);
}

// The screening lists refresh by themselves: new screenings appear, ended ones go.
const REFRESH_MS = 30_000;

/** Every REFRESH_MS, the select's options become the cinema's upcoming screenings again
 *  (`first` options kept, the choice kept); returns the stop function. */
function refreshing(select, cinemaId, first = []) {
  const timer = setInterval(async () => {
    let fresh;
    try {
      fresh = await upcoming(cinemaId);
    } catch {
      return; // offline: the bar says so; try again next time
    }
    if (!select.isConnected || document.activeElement === select) return;
    const chosen = select.value;
    select.replaceChildren(...first.map((o) => o.cloneNode(true)), ...fresh.map((s) => screeningOption(s, chosen)));
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  }, REFRESH_MS);
  return () => clearInterval(timer);
}

function screeningOption(s, selected) {
  return h("option", { value: s.id, selected: String(s.id) === String(selected) },
    `${clock(s.starts_at, s.cinema.timezone)} · ${s.movie.title} · ${s.auditorium.name}${s.status !== "scheduled" ? ` (${s.status})` : s.availability === "sold_out" ? " (sold out)" : s.availability === "few_left" ? " (few left)" : ""}`);
}

// ---- box office ---------------------------------------------------------------------------------

async function showSale(root, params) {
  const cinemaId = store.cinema;
  const list = await upcoming(cinemaId);
  let screeningId = params.get("screening") || list[0]?.id;
  const picker = h("select", { id: "sale-screening", "aria-label": "Screening" }, list.map((s) => screeningOption(s, screeningId)));
  picker.addEventListener("change", () => (location.hash = `#sale?screening=${picker.value}`));
  const body = h("div", { class: "sale" });
  clear(root,
    h("div", { class: "kiosk-row" }, h("label", {}, "Screening", picker)),
    body);
  const stopRefresh = refreshing(picker, cinemaId);
  if (!screeningId) {
    clear(body, h("p", { class: "muted" }, "No screenings left today at this cinema."));
    // Until one is scheduled: then the sale opens on it.
    const wait = setInterval(async () => {
      if ((await upcoming(cinemaId).catch(() => [])).length) route();
    }, REFRESH_MS);
    return () => { stopRefresh(); clearInterval(wait); };
  }
  const detail = await api(`/api/screenings/${screeningId}`);
  const selected = new Set();
  let lastSale = null;
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const info = h("p", { class: "seat-info", "aria-live": "polite" }, "Tap seats to sell them.");
  const mapBox = h("div", { class: "map-box stale" });
  const cart = h("section", { class: "panel" });
  const badge = connectionBadge();
  const viewers = h("span", { class: "viewers" });
  const reference = h("input", { id: "card-ref", placeholder: "Card receipt no. (optional)", maxlength: 100 });
  const bestCount = h("select", { id: "kiosk-best-count", "aria-label": "How many seats" },
    Array.from({ length: 10 }, (_, i) => h("option", { value: i + 1, selected: i === 1 }, String(i + 1))));
  const gaQty = new Map();
  const typedNames = new Map();
  let holders = null; // the holder-name fields of the cart, when the screening asks

  let view = null; // made on the laid-out page below: SVG, or the canvas for a large hall
  const display = (label) => {
    const live = liveMap.stateOf(label);
    return live === "free" && selected.has(label) ? "selected" : live;
  };
  const liveMap = new LiveMap(detail.id, {
    onSnapshot: () => { dropTaken(); view.setAll(display); renderCart(); },
    onChange: (changes) => {
      for (const c of changes) if (c.seat !== undefined) view.set(c.seat, display(c.seat));
      dropTaken();
      renderCart();
    },
    onViewers: (n) => (viewers.textContent = `${Math.max(1, n)} viewing`),
    onStatus: () => renderCart(),
    onConnection: (state, detailInfo) => { badge.update(state, detailInfo); mapBox.classList.toggle("stale", state !== "live"); },
  });
  badge.retry.addEventListener("click", () => liveMap.retryNow());

  function dropTaken() {
    const lost = [...selected].filter((label) => liveMap.stateOf(label) !== "free");
    if (!lost.length) return;
    for (const label of lost) selected.delete(label);
    say(message, `${listWords(lost)} ${lost.length === 1 ? "was" : "were"} just taken elsewhere and left your selection.`, "warn");
  }

  function toggle(label, state) {
    if (state !== "free" && state !== "selected") {
      say(message, `${label} is ${state === "blocked" ? "blocked" : state}.`, "info");
      return;
    }
    lastSale = null;
    if (selected.has(label)) selected.delete(label);
    else selected.add(label);
    view.set(label, display(label));
    say(message, "");
    renderCart();
  }

  // The server's best-available choice, without holding it (GET …/suggestion): one ranking.
  async function suggest() {
    for (const label of selected) view.set(label, liveMap.stateOf(label));
    selected.clear();
    const count = Number(bestCount.value);
    try {
      const found = await api(`/api/screenings/${detail.id}/suggestion?count=${count}`);
      const seats = found.blocks[0];
      if (!seats) {
        say(message, `No ${count} seats together any more; the largest block free has ${found.largest}.`, "warn");
      } else {
        for (const label of seats) selected.add(label);
        say(message, `Suggested: ${listWords(seats)}. Sell them, or tap seats to change.`, "ok");
        view.focusSeat(seats[0]);
      }
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      say(message, explain(error), "error");
    }
    view.setAll(display);
    renderCart();
  }

  async function sell(method) {
    const seats = [...selected];
    const gaArea = [...gaQty.entries()].find(([, qty]) => qty > 0);
    if (!seats.length && !gaArea) {
      say(message, "Choose seats (or standing tickets) first.", "warn");
      return;
    }
    const named = holders ? holders.check() : { names: [] };
    if (named.error) {
      say(message, named.error, "warn");
      return;
    }
    const body = { screening_id: detail.id, payment_method: method, seats: seats.sort() };
    if (gaArea) body.ga = { area: gaArea[0], quantity: gaArea[1] };
    if (named.names.length) body.holder_names = named.names;
    if (method === "card_present" && reference.value.trim()) body.reference = reference.value.trim();
    say(message, "Selling…", "info");
    try {
      lastSale = await api("/api/boxoffice/sales", { method: "POST", body });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      say(message, explain(error), "error");
      view.flash(error.details.seats || (error.details.seat ? [error.details.seat] : []));
      return;
    }
    selected.clear();
    gaQty.clear();
    typedNames.clear();
    reference.value = "";
    say(message, `Sold: ${lastSale.tickets.length} ticket${lastSale.tickets.length === 1 ? "" : "s"}, ${money(lastSale.total, lastSale)} (${method === "cash" ? "cash" : "card"}).`, "ok");
    view.setAll(display);
    renderCart();
  }

  function renderCart() {
    if (lastSale) {
      clear(cart, h("h2", {}, `Order ${lastSale.id}: paid`),
        ticketCards(lastSale.tickets, lastSale, detail),
        h("p", { class: "actions" },
          h("button", { type: "button", class: "secondary", onclick: () => print() }, "Print"),
          h("button", { type: "button", class: "primary", id: "new-sale", onclick: () => { lastSale = null; say(message, ""); renderCart(); } }, "New sale")));
      return;
    }
    const lines = [...selected].sort().map((label) => {
      const seat = detail.layout.seats.find((s) => s.label === label);
      return [label, seat.category, detail.prices[seat.category] ?? 0];
    });
    for (const [area, qty] of gaQty) {
      const a = detail.layout.ga.find((x) => x.name === area);
      if (qty > 0) lines.push([`${qty} × ${area}`, a.category, (detail.prices[a.category] ?? 0) * qty]);
    }
    const total = lines.reduce((sum, l) => sum + l[2], 0);
    const onSale = liveMap.status === null || liveMap.status === "scheduled";
    const gaPick = [...gaQty.entries()].find(([, qty]) => qty > 0);
    const tickets = ticketsOf([...selected].sort(), gaPick ? { area: gaPick[0], quantity: gaPick[1] } : null);
    const ticketKeys = tickets.map((t) => t.key).join("|");
    // The same tickets keep the same fields (and the focus of the one being typed in) when
    // a sale elsewhere redraws the cart.
    if (!holders || holders.keys !== ticketKeys) {
      holders = holderFields(detail.holder_names, tickets, typedNames);
      if (holders) holders.keys = ticketKeys;
    }
    const typing = holders?.el.contains(document.activeElement) ? document.activeElement : null;
    clear(cart,
      h("h2", {}, "Sale"),
      onSale ? null : h("p", { class: "notice notice-error" }, `This screening is ${liveMap.status}.`),
      h("div", { class: "best-row" }, h("label", { for: "kiosk-best-count" }, "Best"), bestCount,
        h("button", { type: "button", class: "secondary", onclick: suggest }, "Suggest seats")),
      detail.layout.ga.map((area) => {
        const remaining = liveMap.ga.get(area.name) ?? area.capacity;
        const input = h("input", { type: "number", min: 0, max: remaining, value: gaQty.get(area.name) || 0, class: "qty", "aria-label": `${area.name} tickets` });
        input.addEventListener("change", () => { gaQty.set(area.name, Math.max(0, Number(input.value) || 0)); renderCart(); });
        return h("p", { class: "ga-area" }, h("span", {}, `${area.name} · ${remaining} left`), input);
      }),
      lines.length
        ? h("ul", { class: "hold-lines" }, lines.map(([what, category, price]) => h("li", {}, h("span", {}, `${what} · ${category}`), h("span", {}, money(price, detail)))))
        : h("p", { class: "muted" }, "Nothing selected."),
      h("p", { class: "total" }, h("span", {}, "Total"), h("strong", { id: "sale-total" }, money(total, detail))),
      holders?.el,
      h("p", { class: "actions pay-buttons" },
        h("button", { type: "button", class: "primary", id: "pay-cash", disabled: !lines.length || !onSale, onclick: () => sell("cash") }, "Cash"),
        h("button", { type: "button", class: "primary", id: "pay-card", disabled: !lines.length || !onSale, onclick: () => sell("card_present") }, "Card")),
      reference,
      lines.length ? h("p", {}, h("button", { type: "button", class: "link", onclick: () => { selected.clear(); gaQty.clear(); view.setAll(display); renderCart(); } }, "Clear selection")) : null);
    typing?.focus();
  }

  clear(body,
    h("p", { class: "meta" }, `${detail.movie.title} · ${dayAndClock(detail.starts_at, detail.cinema.timezone)} · ${detail.auditorium.name}`),
    h("div", { class: "live-line" }, badge.el, viewers),
    h("div", { class: "kiosk-grid" },
      h("div", {},
        h("div", { class: "map-tools" },
          h("button", { type: "button", class: "icon", "aria-label": "Zoom out", onclick: () => view.setZoom(view.zoom / 1.5) }, "−"),
          h("button", { type: "button", class: "icon", "aria-label": "Zoom in", onclick: () => view.setZoom(view.zoom * 1.5) }, "+"),
          info),
        mapBox,
        h("ul", { class: "legend" }, legend(detail.layout.categories, detail.prices, detail, { mine: "Selected", mineState: "selected" })
          .map(([swatch, name, price]) => h("li", {}, swatch, h("span", {}, name), price ? h("span", { class: "price" }, price) : null)))),
      h("div", {}, message, cart)));
  // The same map as the customer's (seatcanvas.js picks SVG or canvas by the hall's size).
  view = seatMap(mapBox, detail.layout, {
    prices: detail.prices, priced: detail, label: `Seat map of ${detail.auditorium.name}`,
    maxSeatPx: 64, // fingers on a kiosk screen
    onActivate: (label, state) => toggle(label, state),
    onFocusSeat: (text) => (info.textContent = text),
  });
  renderCart();
  liveMap.start();
  return () => { liveMap.stop(); badge.stop(); stopRefresh(); };
}

// ---- door check-in ------------------------------------------------------------------------------

const REFUSALS = {
  ticket_void: () => "This ticket is void (refunded or cancelled).",
  not_found: () => "Unknown ticket code.",
};

async function refusalText(error, tz) {
  const d = error.details || {};
  if (error.code === "already_used") {
    const when = d.checked_in_at ? clock(d.checked_in_at, tz) : "an earlier time";
    const who = d.checked_in_by?.email ? ` by ${d.checked_in_by.email}` : "";
    const gate = d.gate ? ` at ${d.gate}` : "";
    return [`Already used at ${when}${who}${gate}.`, ""];
  }
  if (error.code === "wrong_screening") {
    let other = `screening ${d.screening_id}`;
    try {
      const s = await api(`/api/screenings/${d.screening_id}`);
      other = `${s.movie.title}, ${dayAndClock(s.starts_at, s.cinema.timezone)}, ${s.auditorium.name}`;
    } catch {
      // keep the number
    }
    return ["Wrong screening.", `This ticket is for ${other}.`];
  }
  if (error.code === "check_in_closed") {
    const opens = d.opens_at ? clock(d.opens_at, tz) : null;
    const closes = d.closes_at ? clock(d.closes_at, tz) : null;
    return ["Check-in is not open.", error.message !== "Check-in for this screening is not open now." ? error.message : opens ? `Check-in opens at ${opens} and closes at ${closes}.` : ""];
  }
  const known = REFUSALS[error.code];
  return [known ? known() : explain(error), ""];
}

function codeFrom(text) {
  const raw = text.trim();
  const match = /([A-Za-z0-9_-]{16,64})\/?(?:qr\.svg)?$/.exec(raw);
  return match ? match[1] : raw;
}

async function showDoor(root) {
  const cinema = cinemas.find((c) => String(c.id) === store.cinema);
  const tz = cinema?.timezone;
  const list = await upcoming(store.cinema);
  const screening = h("select", { id: "door-screening", "aria-label": "Screening at this door" },
    h("option", { value: "" }, "Any screening"), list.map((s) => screeningOption(s, sessionStorage.getItem("seatmap.door.screening"))));
  // The door list of the screening this door admits to, refreshed after every scan.
  const roster = doorList({ id: "door-list" });
  screening.addEventListener("change", () => {
    sessionStorage.setItem("seatmap.door.screening", screening.value);
    roster.load(screening.value);
  });
  const stopRefresh = refreshing(screening, store.cinema, [h("option", { value: "" }, "Any screening")]);
  const gate = h("input", { id: "door-gate", value: store.gate, placeholder: "e.g. Door 1", maxlength: 100 });
  gate.addEventListener("change", () => (store.gate = gate.value.trim()));
  const input = h("input", { name: "code", id: "ticket-code", autocomplete: "off", autocapitalize: "off", spellcheck: "false", placeholder: "Scan or type the ticket code", "aria-label": "Ticket code" });
  const verdict = h("section", { class: "verdict verdict-idle", id: "verdict", role: "status", "aria-live": "assertive" },
    h("p", { class: "verdict-reason" }, "Ready to scan."));
  const history = h("ol", { class: "history small" });
  let idle = null;

  function show(kind, word, reason, detail) {
    clearTimeout(idle);
    clear(verdict, h("p", { class: "verdict-word" }, word), reason ? h("p", { class: "verdict-reason" }, reason) : null, detail ? h("p", { class: "verdict-detail" }, detail) : null);
    verdict.className = `verdict verdict-${kind}`;
    verdict.dataset.verdict = kind;
    history.prepend(h("li", {}, `${clock(new Date().toISOString(), tz)} · ${word} · ${reason}`));
    while (history.children.length > 10) history.lastChild.remove();
    idle = setTimeout(() => {
      verdict.className = "verdict verdict-idle";
      delete verdict.dataset.verdict;
      clear(verdict, h("p", { class: "verdict-reason" }, "Ready to scan."));
    }, 10_000);
  }

  async function check(event) {
    event?.preventDefault();
    const code = codeFrom(input.value);
    input.value = "";
    input.focus();
    if (!code) return;
    const body = {};
    if (screening.value) body.screening_id = Number(screening.value);
    if (gate.value.trim()) body.gate = gate.value.trim();
    try {
      const ticket = await api(`/api/tickets/${encodeURIComponent(code)}/check-in`, { method: "POST", body });
      const where = ticket.seat ? `Seat ${ticket.seat}` : ticket.area || "";
      show("admit", "ADMIT", `${where}${ticket.holder_name ? ` · ${ticket.holder_name}` : ""}`,
        `${ticket.screening.title} · ${clock(ticket.screening.starts_at, tz)} · ${ticket.screening.auditorium}`);
      if (screening.value) roster.reload();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.code === "network") {
        show("refused", "OFFLINE", "The server cannot be reached: the ticket was not checked.", "");
        return;
      }
      const [reason, detail] = await refusalText(error, tz);
      show("refused", "REFUSED", reason, detail);
    }
  }

  const form = h("form", { class: "door-form", onsubmit: check }, input, h("button", { type: "submit", class: "primary" }, "Check in"));
  const camera = "BarcodeDetector" in window ? h("button", { type: "button", class: "secondary", onclick: () => scanWithCamera(input, check) }, "Scan with camera") : null;
  clear(root,
    h("div", { class: "door" },
      h("div", { class: "kiosk-row" }, h("label", {}, "Admitting to", screening), h("label", {}, "Gate", gate), camera),
      form, verdict, h("h2", { class: "small muted" }, "Last scans"), history, roster.el));
  roster.load(screening.value);
  input.focus();
  return () => { clearTimeout(idle); stopRefresh(); };
}

async function scanWithCamera(input, check) {
  const video = h("video", { playsinline: true, muted: true, class: "camera" });
  const dialog = h("dialog", { class: "confirm" }, video, h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Close")));
  document.body.append(dialog);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch {
    dialog.remove();
    return;
  }
  video.srcObject = stream;
  await video.play();
  dialog.showModal();
  const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
  const timer = setInterval(async () => {
    const codes = await detector.detect(video).catch(() => []);
    if (codes.length) {
      input.value = codes[0].rawValue;
      dialog.close();
      check();
    }
  }, 300);
  dialog.addEventListener("close", () => {
    clearInterval(timer);
    for (const track of stream.getTracks()) track.stop();
    dialog.remove();
  });
}

// ---- frame ------------------------------------------------------------------------------------------

function renderBar(user, mode) {
  const cinemaSelect = h("select", { id: "kiosk-cinema", "aria-label": "Cinema" },
    cinemas.map((c) => h("option", { value: c.id, selected: String(c.id) === store.cinema }, `${c.name} (${c.city})`)));
  cinemaSelect.addEventListener("change", () => { store.cinema = cinemaSelect.value; route(); });
  const modeButton = (id, text) => h("button", { type: "button", "aria-pressed": String(mode === id), "data-mode": id, onclick: () => (location.hash = `#${id}`) }, text);
  clear(topbar,
    h("a", { class: "brand", href: "/kiosk.html" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "▦"), " seatmap kiosk"),
    h("div", { class: "modes", role: "group", "aria-label": "Mode" }, modeButton("sale", "Box office"), modeButton("door", "Door"), modeButton("refunds", "Refunds")),
    cinemaSelect,
    document.fullscreenEnabled
      ? h("button", { type: "button", class: "secondary", onclick: () => (document.fullscreenElement ? document.exitFullscreen() : document.documentElement.requestFullscreen()).catch(() => {}) }, "Full screen")
      : null,
    h("div", { class: "account" }, h("span", { class: "who" }, user.email),
      h("button", { type: "button", class: "link", onclick: async () => { await logout(); location.reload(); } }, "Log out")));
}

async function route() {
  cleanup?.();
  cleanup = null;
  const user = await me();
  if (!user || user.role === "customer") {
    clear(main, h("p", { class: "muted" }, "Staff only."));
    await askLogin({ reason: "The kiosk needs a staff account.", role: "staff", register: false, dismissable: false });
    return route();
  }
  if (!cinemas.length) cinemas = await all("/api/cinemas?limit=100");
  if (!cinemas.some((c) => String(c.id) === store.cinema) && cinemas[0]) store.cinema = String(cinemas[0].id);
  const [mode, query = ""] = location.hash.replace(/^#/, "").split("?");
  const current = mode === "door" || mode === "refunds" ? mode : "sale";
  renderBar(user, current);
  document.body.dataset.mode = current;
  try {
    // Refunds: cash and card-present refunds owed at this counter, paid out with a till reference.
    cleanup = current === "door" ? await showDoor(main)
      : current === "refunds" ? await showRefunds(main, new URLSearchParams(query || "status=manual"))
      : await showSale(main, new URLSearchParams(query));
  } catch (error) {
    clear(main, h("p", { class: "notice notice-error" }, explain(error)));
  }
}

window.addEventListener("hashchange", route);
probe();
route();
