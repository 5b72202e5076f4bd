// The customer's web app: choose city, cinema, day and film; then a screening's live seat map
// (screening.js); orders and tickets (orders.js). Hash routes keep it one static page:
//   #/  what's on · #/screening/42 · #/order/7 · #/orders · #/notifications
// The payment gateway returns to `/?order=7`, which becomes `#/order/7`.

import { all, api, explain, logout, me, onSession } from "./api.js";
import { clear, h } from "./dom.js";
import { clock, money, zonedDay } from "./format.js";
import { askLogin } from "./login.js";
import { showScreening } from "./screening.js";

// Screens a seat map does not need are loaded when they are opened (index.html preloads the rest).
const orders = () => import("./orders.js");

const main = document.getElementById("main");
const account = document.getElementById("account");
let cleanup = null;

function renderAccount(user) {
  if (user) {
    clear(account,
      h("span", { class: "who" }, user.name || user.email),
      user.role !== "customer" ? h("a", { href: user.role === "admin" ? "/admin.html" : "/kiosk.html" }, user.role === "admin" ? "Admin" : "Kiosk") : null,
      h("button", { type: "button", class: "link", onclick: async () => { await logout(); route(); } }, "Log out"));
  } else {
    clear(account, h("button", { type: "button", class: "link", id: "login-button", onclick: () => askLogin() }, "Log in"));
  }
}

// ---- what's on ----------------------------------------------------------------------------

const prefs = {
  get city() { return localStorage.getItem("seatmap.city") || ""; },
  set city(v) { localStorage.setItem("seatmap.city", v); },
};

async function showBrowse(root, params) {
  const cinemas = await all("/api/cinemas?limit=100");
  const cities = [...new Set(cinemas.map((c) => c.city))].sort();
  let city = params.get("city") || prefs.city || cities[0] || "";
  if (!cities.includes(city)) city = cities[0] || "";
  let cinema = params.get("cinema") || "";
  // "Today" is the city's (its cinemas' zone), not the browser's: near midnight they differ.
  const cityToday = () => zonedDay(new Date(), cinemas.find((c) => c.city === city)?.timezone);
  let date = params.get("date") || cityToday();
  if (!params.get("date") && city) {
    // Late at night today may have nothing left: open on the next day that has screenings.
    try {
      const [next] = await all(`/api/screenings?${new URLSearchParams({ city, limit: "1" })}`, 1);
      // `starts_at` is in the cinema's zone, whose day `?date=` means.
      if (next && next.starts_at.slice(0, 10) > date) date = next.starts_at.slice(0, 10);
    } catch {
      // the day's own request below says what went wrong
    }
  }
  let movie = params.get("movie") || "";

  const citySelect = h("select", { id: "city", "aria-label": "City" }, cities.map((c) => h("option", { value: c, selected: c === city }, c)));
  const cinemaSelect = h("select", { id: "cinema", "aria-label": "Cinema" });
  const movieSelect = h("select", { id: "movie", "aria-label": "Film" });
  const days = h("div", { class: "days", role: "group", "aria-label": "Day" });
  const results = h("div", { class: "results", "aria-live": "polite" });

  function fillCinemas() {
    clear(cinemaSelect, h("option", { value: "" }, "All cinemas"),
      cinemas.filter((c) => c.city === city).map((c) => h("option", { value: c.id, selected: String(c.id) === cinema }, c.name)));
  }
  function fillDays() {
    const [y, m, dd] = cityToday().split("-").map(Number);
    clear(days, Array.from({ length: 7 }, (_, i) => {
      const d = new Date(Date.UTC(y, m - 1, dd + i)); // a calendar day, read in UTC
      const value = d.toISOString().slice(0, 10);
      const label = i === 0 ? "Today" : i === 1 ? "Tomorrow" : d.toLocaleDateString("en-GB", { timeZone: "UTC", weekday: "short", day: "numeric", month: "short" });
      return h("button", { type: "button", class: "day", "aria-pressed": String(value === date), "data-date": value,
        onclick: () => { date = value; fillDays(); load(); } }, label);
    }));
  }
  function sync() {
    const q = new URLSearchParams({ city, date, ...(cinema ? { cinema } : {}), ...(movie ? { movie } : {}) });
    history.replaceState(null, "", `#/?${q}`);
  }

  async function load() {
    sync();
    clear(results, h("p", { class: "muted" }, "Loading…"));
    const q = new URLSearchParams({ city, date, limit: "100" });
    if (cinema) q.set("cinema", cinema);
    let items;
    try {
      items = await all(`/api/screenings?${q}`, 5);
    } catch (error) {
      clear(results, h("p", { class: "notice notice-error" }, explain(error)));
      return;
    }
    const films = new Map(items.map((s) => [String(s.movie.id), s.movie]));
    clear(movieSelect, h("option", { value: "" }, "All films"),
      [...films.values()].sort((a, b) => a.title.localeCompare(b.title)).map((m) => h("option", { value: m.id, selected: String(m.id) === movie }, m.title)));
    const shown = movie ? items.filter((s) => String(s.movie.id) === movie) : items;
    if (!shown.length) {
      clear(results, h("p", { class: "muted" }, "No screenings on this day. Try another day or cinema."));
      return;
    }
    const byFilm = new Map();
    for (const screening of shown) {
      if (!byFilm.has(screening.movie.id)) byFilm.set(screening.movie.id, []);
      byFilm.get(screening.movie.id).push(screening);
    }
    clear(results, [...byFilm.values()].map((list) => {
      const film = list[0].movie;
      const byCinema = new Map();
      for (const s of list) {
        if (!byCinema.has(s.cinema.id)) byCinema.set(s.cinema.id, []);
        byCinema.get(s.cinema.id).push(s);
      }
      return h("section", { class: "film" },
        h("h2", {}, film.title, film.rating ? h("span", { class: "rating" }, film.rating) : null),
        h("p", { class: "muted" }, `${film.duration_minutes} min${film.kind === "event" ? " · event" : ""}${film.description ? ` · ${film.description}` : ""}`),
        [...byCinema.values()].map((shows) =>
          h("div", { class: "showtimes" },
            h("h3", {}, shows[0].cinema.name),
            h("ul", {}, shows.map((s) => {
              const from = Math.min(...Object.values(s.prices));
              return h("li", {},
                // The link's name is its visible text, so voice control users can say what they see.
                h("a", { class: "time", href: `#/screening/${s.id}`, "data-screening": s.id },
                  h("span", { class: "visually-hidden" }, `${film.title} at `),
                  h("strong", {}, clock(s.starts_at, s.cinema.timezone)),
                  h("span", {}, s.auditorium.name),
                  s.availability && s.availability !== "available"
                    ? h("span", { class: `avail avail-${s.availability}`, "data-availability": s.availability }, s.availability === "sold_out" ? "Sold out" : "Few left")
                    : null,
                  Number.isFinite(from) ? h("span", { class: "from" }, `from ${money(from, s)}`) : null));
            })))));
    }));
  }

  citySelect.addEventListener("change", () => { city = citySelect.value; prefs.city = city; cinema = ""; movie = ""; fillCinemas(); load(); });
  cinemaSelect.addEventListener("change", () => { cinema = cinemaSelect.value; load(); });
  movieSelect.addEventListener("change", () => { movie = movieSelect.value; load(); });
  fillCinemas();
  fillDays();
  clear(root,
    h("h1", {}, "What's on"),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
      h("label", {}, "City ", citySelect), h("label", {}, "Cinema ", cinemaSelect), h("label", {}, "Film ", movieSelect)),
    days,
    results);
  await load();
}

// ---- routing ------------------------------------------------------------------------------

async function route() {
  cleanup?.();
  cleanup = null;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  document.body.dataset.page = parts[0] || "browse";
  try {
    if (parts[0] === "screening" && /^\d+$/.test(parts[1] || "")) {
      cleanup = await showScreening(main, Number(parts[1]));
    } else if (parts[0] === "order" && /^\d+$/.test(parts[1] || "")) {
      if (!(await me()) && !(await askLogin({ reason: "Log in to see this order." }))) return;
      cleanup = await (await orders()).showOrder(main, Number(parts[1]));
    } else if (parts[0] === "notifications") {
      if (!(await me()) && !(await askLogin({ reason: "Log in to see your notifications." }))) return;
      await (await import("./notifications.js")).showNotifications(main);
    } else if (parts[0] === "orders") {
      if (!(await me()) && !(await askLogin({ reason: "Log in to see your tickets." }))) return;
      await (await orders()).showOrders(main);
    } else {
      await showBrowse(main, params);
    }
  } catch (error) {
    clear(main, h("h1", {}, "Sorry"), h("p", { class: "notice notice-error" }, error.code === "not_found" ? "This page does not exist (any more)." : explain(error)));
  }
  document.title = `${main.querySelector("h1")?.textContent || "seatmap"} · seatmap`;
}

const search = new URLSearchParams(location.search);
if (search.has("kiosk")) location.replace("/kiosk.html");
if (search.has("order")) history.replaceState(null, "", `/#/order/${encodeURIComponent(search.get("order"))}`);

onSession((user) => renderAccount(user));
window.addEventListener("hashchange", () => route());
// The header's question and the page's run side by side (me() asks the server once).
me().then(renderAccount, () => renderAccount(null));
route();
