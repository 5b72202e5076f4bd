// The customer's screening page: the live seat map, prices, GA areas, viewers, the hold with
// its countdown, best-available, refusals that say why, and checkout to the payment page.
// Seat commands go over REST (the same code path as the socket's); the socket brings the
// live state of everyone else's seats.

import { ApiError, api, explain, me } from "./api.js";
import { clear, h, say, uuid } from "./dom.js";
import { countdown, listWords, money, seatWords, statedDayAndClock } from "./format.js";
import { holderFields, ticketsOf } from "./holders.js";
import { LiveMap } from "./live.js";
import { askLogin, askVerification } from "./login.js";
import { seatMap } from "./seatcanvas.js";
import { legend } from "./seatmap.js";

const orderKey = (token) => `seatmap.order-key.${token}`;

export function connectionBadge() {
  const text = h("span", { class: "conn-text" }, "Connecting…");
  const retry = h("button", { type: "button", class: "link", hidden: true }, "Retry now");
  const el = h("div", { class: "conn conn-connecting", role: "status", "aria-live": "polite" },
    h("span", { class: "conn-dot", "aria-hidden": "true" }), text, retry);
  let tick = null;
  return {
    el,
    retry,
    update(state, detail = {}) {
      clearInterval(tick);
      el.className = `conn conn-${state}`;
      retry.hidden = state !== "reconnecting" && state !== "offline";
      if (state === "live") text.textContent = "Live";
      else if (state === "connecting") text.textContent = "Connecting…";
      else if (state === "offline") text.textContent = "Offline: seat states may be out of date; waiting for the network…";
      else if (state === "closed") text.textContent = detail.reason || "Disconnected.";
      else if (state === "reconnecting") {
        const show = () => {
          const left = detail.retryAt ? Math.max(0, detail.retryAt - Date.now()) : 0;
          text.textContent = left > 0
            ? `Connection lost: seat states may be out of date. Reconnecting in ${Math.ceil(left / 1000)} s…`
            : "Connection lost: reconnecting…";
        };
        show();
        tick = setInterval(show, 250);
      }
    },
    stop() {
      clearInterval(tick);
    },
  };
}

export async function showScreening(main, id) {
  // The socket opens while the layout is on its way (index.html asked for it before the
  // scripts loaded) and the session is asked: three round trips at once, not one after another.
  // What the socket says before the page is built stays in liveMap and is drawn with the map.
  let built = false;
  let connection = null; // the socket's state until the badge exists
  const liveMap = new LiveMap(id, {
    onSnapshot: () => built && (repaint(), renderGa()),
    onChange: (changes) => built && changed(changes),
    onStatus: (next) => built && setStatus(next),
    // This page is one of the viewers even before the server's count has caught up.
    onViewers: (n) => built && showViewers(n),
    onConnection: (state, info) => (built ? connected(state, info) : (connection = [state, info])),
  });
  liveMap.start();
  let detail;
  let user;
  try {
    [detail, user] = await Promise.all([api(`/api/screenings/${id}`), me()]);
  } catch (error) {
    liveMap.stop();
    throw error;
  }
  performance.mark("seatmap:layout");
  const tz = detail.cinema.timezone;
  liveMap.seed(detail); // drawn from the REST read until (unless) the socket knows better
  let hold = null;
  let busy = false;
  let status = liveMap.status || detail.status;
  let ticker = null;
  let holders = null; // the holder-name fields of the current hold, when the screening asks
  const typedNames = new Map();

  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const seatInfo = h("p", { class: "seat-info", "aria-live": "polite" }, "Choose seats on the map.");
  const viewers = h("span", { class: "viewers" }, "");
  const badge = connectionBadge();
  const banner = h("div", { class: "banner", role: "status", hidden: true });
  const mapBox = h("div", { class: "map-box stale" });
  const panel = h("section", { class: "panel hold-panel", "aria-labelledby": "hold-title" });
  const gaBox = h("section", { class: "panel ga-panel", hidden: !detail.layout.ga.length });

  let view = null; // made once the page is laid out, so it measures its box once

  const mine = () => new Set(hold?.seats || []);
  function display(label, owned = mine()) {
    const live = liveMap.stateOf(label);
    if (owned.has(label) && live !== "sold" && live !== "blocked") return "mine";
    return live;
  }
  function repaint() {
    const owned = mine(); // once, not once per seat of an arena
    view.setAll((label) => display(label, owned));
  }
  function changed(changes) {
    const owned = mine();
    for (const change of changes) {
      if (change.seat !== undefined) view.set(change.seat, display(change.seat, owned));
      if (change.seat !== undefined && owned.has(change.seat) && change.state === "free" && hold) {
        // Our seat went free: the hold expired or was released elsewhere.
        refreshHold();
      }
    }
    if (changes.some((c) => c.area !== undefined)) renderGa();
  }
  function showViewers(n) {
    const count = Math.max(1, n);
    viewers.textContent = `${count} ${count === 1 ? "person" : "people"} viewing now`;
  }
  function connected(state, info) {
    badge.update(state, info);
    mapBox.classList.toggle("stale", state !== "live");
    viewers.hidden = state !== "live";
  }
  badge.retry.addEventListener("click", () => liveMap.retryNow());

  function setStatus(next) {
    status = next;
    const words = {
      cancelled: "This screening has been cancelled. Seats can no longer be booked; tickets bought for it are refunded.",
      draft: "This screening is not on sale yet.",
    };
    banner.hidden = !words[next];
    banner.textContent = words[next] || "";
    banner.className = `banner banner-${next}`;
    mapBox.dataset.status = next; // a cancelled map says so over the seats
    main.querySelector(".screening")?.setAttribute("data-status", next);
    renderPanel();
  }

  // ---- holding ---------------------------------------------------------------------------

  async function loggedIn(reason) {
    const user = (await me()) || (await askLogin({ reason }));
    // Holding needs a verified email: ask for the mailed code first (the dialog after
    // "Create account" does; this covers a session that put it off).
    return user && !user.email_verified ? askVerification(user) : user;
  }

  // The buyer's other tabs hear of every change to the hold at once; other devices find it with
  // GET /api/holds when their page opens or comes back into view (and from a 409 hold_limit,
  // which names the hold). The socket never says whose a seat is (docs/protocol.md).
  const siblings = "BroadcastChannel" in window ? new BroadcastChannel("seatmap.holds") : null;
  function remember(next, { tell = true } = {}) {
    const before = hold ? `${hold.token} ${hold.seats} ${hold.expires_at}` : "";
    hold = next;
    if (view) repaint();
    renderPanel();
    const after = hold ? `${hold.token} ${hold.seats} ${hold.expires_at}` : "";
    if (tell && before !== after) siblings?.postMessage({ screening: id });
  }

  /** Take up the buyer's live hold on this screening, made in any tab or on any device. */
  async function adopt() {
    if (!(await me())) return;
    try {
      const mineHere = (await api("/api/holds")).find((h) => h.screening_id === id) || null;
      if (mineHere || hold) remember(mineHere, { tell: false });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
    }
  }
  if (siblings) siblings.onmessage = (event) => event.data?.screening === id && !busy && adopt();
  const onVisible = () => document.visibilityState === "visible" && !busy && adopt();
  document.addEventListener("visibilitychange", onVisible);

  async function refreshHold() {
    if (!hold) return;
    try {
      remember(await api(`/api/holds/${encodeURIComponent(hold.token)}`));
    } catch (error) {
      if (error.code === "hold_expired") {
        remember(null);
        say(message, explain(error), "warn");
      } else if (error.status === 404 || error.status === 401) {
        remember(null);
        say(message, "Your hold has expired or was released; the seats went back on sale.", "warn");
      }
    }
  }

  function refuse(error, context) {
    if (error.code === "hold_expired") remember(null); // nothing left to extend, change or release
    if (error.code === "hold_limit") adopt(); // the hold in the way is the buyer's own: show it
    say(message, explain(error, context), "error");
    view.flash(error.details?.seats || (error.details?.seat ? [error.details.seat] : []));
  }

  async function run(task) {
    if (busy) return;
    busy = true;
    main.querySelector(".screening")?.setAttribute("aria-busy", "true");
    try {
      await task();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      refuse(error);
    } finally {
      busy = false;
      main.querySelector(".screening")?.removeAttribute("aria-busy");
    }
  }

  function activate(label, state) {
    if (status !== "scheduled") {
      say(message, banner.textContent || "This screening is not on sale.", "warn");
      return;
    }
    if (state === "held" && !busy) {
      // Maybe the buyer's own, held in another tab or on another device.
      run(async () => {
        await adopt();
        if (mine().has(label)) say(message, `${seatWords(label)} is in your hold.`, "info");
        else say(message, `${seatWords(label)} is held by someone else.`, "info");
      });
      return;
    }
    if (state === "sold" || state === "blocked") {
      say(message, `${seatWords(label)} is ${state === "blocked" ? "not available" : state === "held" ? "held by someone else" : "sold"}.`, "info");
      return;
    }
    run(async () => {
      if (!(await loggedIn("Log in or create an account to hold seats."))) return;
      say(message, "");
      if (state === "mine") {
        if (hold.seats.length === 1 && !hold.ga) {
          await api(`/api/holds/${encodeURIComponent(hold.token)}`, { method: "DELETE" });
          remember(null);
        } else {
          remember(await api(`/api/holds/${encodeURIComponent(hold.token)}/seats`, { method: "POST", body: { remove: [label] } }));
        }
        say(message, `${label} released.`, "info");
        return;
      }
      if (hold) {
        try {
          remember(await api(`/api/holds/${encodeURIComponent(hold.token)}/seats`, { method: "POST", body: { add: [label] } }));
          say(message, `${label} is held for you.`, "ok");
          return;
        } catch (error) {
          if (error.status !== 404 && error.code !== "hold_expired") throw error;
          remember(null); // the hold ended meanwhile: start a new one
        }
      }
      try {
        remember(await api("/api/holds", { method: "POST", body: { screening_id: id, seats: [label] } }));
      } catch (error) {
        if (error.code !== "hold_limit" || !error.details?.token) throw error;
        // The buyer's hold from another tab or device: take it up and add the seat to it.
        remember(await api(`/api/holds/${encodeURIComponent(error.details.token)}/seats`, { method: "POST", body: { add: [label] } }));
      }
      say(message, `${label} is held for you.`, "ok");
    });
  }

  function best(count, category, accessible) {
    run(async () => {
      if (!(await loggedIn("Log in or create an account to hold seats."))) return;
      const body = { screening_id: id, best_available: { count, accessible } };
      if (category) body.best_available.category = category;
      try {
        remember(await api("/api/holds", { method: "POST", body }));
      } catch (error) {
        if (error instanceof ApiError) return refuse(error, { count });
        throw error;
      }
      say(message, `We held the best ${count === 1 ? "seat" : `${count} seats`} for you: ${listWords(hold.seats)}.`, "ok");
      view.focusSeat(hold.seats[0]);
    });
  }

  function holdGa(area, quantity) {
    run(async () => {
      if (!(await loggedIn("Log in or create an account to hold tickets."))) return;
      if (hold) {
        say(message, "Check out or release the seats you hold first; standing tickets are a separate hold.", "warn");
        return;
      }
      remember(await api("/api/holds", { method: "POST", body: { screening_id: id, ga: { area, quantity } } }));
      say(message, `${quantity} × ${area} held for you.`, "ok");
    });
  }

  function release() {
    run(async () => {
      await api(`/api/holds/${encodeURIComponent(hold.token)}`, { method: "DELETE" });
      remember(null);
      say(message, "Your seats are released.", "info");
    });
  }

  function extend() {
    run(async () => {
      const before = hold.expires_at;
      remember(await api(`/api/holds/${encodeURIComponent(hold.token)}/extend`, { method: "POST" }));
      say(message, hold.expires_at === before ? "This hold cannot be extended any further." : "Your hold is extended.", "ok");
    });
  }

  function checkout() {
    run(async () => {
      const named = holders ? holders.check() : { names: [] };
      if (named.error) {
        say(message, named.error, "warn");
        return;
      }
      if (!(await loggedIn("Log in to check out."))) return;
      const key = sessionStorage.getItem(orderKey(hold.token)) || uuid();
      sessionStorage.setItem(orderKey(hold.token), key);
      let order;
      try {
        order = await api("/api/orders", { method: "POST", body: { hold_token: hold.token, ...(named.names.length ? { holder_names: named.names } : {}) }, headers: { "Idempotency-Key": key } });
      } catch (error) {
        if (error.code !== "order_exists") throw error;
        order = await api(`/api/orders/${error.details.order_id}`);
      }
      if (order.status !== "pending") {
        location.hash = `#/order/${order.id}`;
        return;
      }
      say(message, "Taking you to the payment page…", "info");
      const payment = await api(`/api/orders/${order.id}/payments`, { method: "POST" });
      location.assign(payment.redirect_url);
    });
  }

  // ---- panels ------------------------------------------------------------------------------

  const countSelect = h("select", { id: "best-count", "aria-label": "How many seats" },
    ...Array.from({ length: 10 }, (_, i) => h("option", { value: i + 1, selected: i === 1 }, String(i + 1))));
  const categorySelect = h("select", { id: "best-category", "aria-label": "Which category" },
    h("option", { value: "" }, "any category"),
    ...detail.layout.categories.map((c) => h("option", { value: c }, c)));
  const accessible = h("input", { type: "checkbox", id: "best-accessible" });
  const hasAccessible = detail.layout.seats.some((seat) => seat.accessible);
  const bestButton = h("button", { type: "button", class: "primary", id: "best-button" }, "Find best seats");
  bestButton.addEventListener("click", () => best(Number(countSelect.value), categorySelect.value || null, accessible.checked));
  const bestHint = h("p", { class: "muted small", hidden: true }, "Release the seats you hold to let us choose for you.");
  const bestBox = h("section", { class: "panel best-panel", "aria-labelledby": "best-title" },
    h("h2", { id: "best-title" }, "Best available"),
    h("div", { class: "best-row" },
      h("label", { for: "best-count" }, "Seats"), countSelect,
      detail.layout.categories.length > 1 ? categorySelect : null,
      bestButton),
    hasAccessible ? h("p", { class: "small check" }, accessible, h("label", { for: "best-accessible" }, "Wheelchair space and companion seats first")) : null,
    bestHint);

  function renderPanel() {
    clearInterval(ticker);
    holders = null;
    bestButton.disabled = Boolean(hold) || status !== "scheduled";
    bestHint.hidden = !hold;
    panel.classList.toggle("has-hold", Boolean(hold));
    if (!hold) {
      clear(panel,
        h("h2", { id: "hold-title" }, "Your seats"),
        h("p", { class: "muted" }, status === "scheduled" ? "Tap or click free seats to hold them, or let us find the best ones." : "Nothing held."));
      return;
    }
    const category = (label) => detail.layout.seats.find((seat) => seat.label === label)?.category || "standard";
    const lines = hold.seats.map((label) => {
      const cat = category(label);
      return { label, text: `${label} · ${cat}`, price: detail.prices[cat] ?? 0 };
    });
    if (hold.ga) {
      const area = detail.layout.ga.find((a) => a.name === hold.ga.area);
      const price = detail.prices[area?.category || "standard"] ?? 0;
      lines.push({ label: hold.ga.area, text: `${hold.ga.quantity} × ${hold.ga.area}`, price: price * hold.ga.quantity });
    }
    const total = lines.reduce((sum, l) => sum + l.price, 0);
    const clock = h("strong", { class: "countdown", id: "countdown" });
    const expiry = h("p", { class: "expiry" }, "Held for you for ", clock);
    const tick = () => {
      const left = Date.parse(hold.expires_at) - Date.now();
      clock.textContent = countdown(left);
      expiry.classList.toggle("urgent", left < 60_000);
      if (left <= 0) {
        clearInterval(ticker);
        remember(null);
        say(message, "Your hold expired; the seats went back on sale.", "warn");
      }
    };
    const atMax = Date.parse(hold.max_expires_at) - Date.parse(hold.expires_at) < 1000;
    holders = holderFields(detail.holder_names, ticketsOf(hold.seats, hold.ga), typedNames);
    clear(panel,
      h("h2", { id: "hold-title" }, "Your seats"),
      h("ul", { class: "hold-lines" }, lines.map((l) => h("li", {}, h("span", {}, l.text), h("span", {}, money(l.price, detail))))),
      h("p", { class: "total" }, h("span", {}, "Total"), h("strong", {}, money(total, detail))),
      expiry,
      holders?.el,
      h("p", { class: "actions" },
        h("button", { type: "button", class: "primary", id: "checkout", onclick: checkout }, "Check out"),
        h("button", { type: "button", class: "secondary", id: "extend", onclick: extend, disabled: atMax, title: atMax ? "A hold cannot last longer" : null }, "More time"),
        h("button", { type: "button", class: "secondary", id: "release", onclick: release }, "Release")));
    tick();
    ticker = setInterval(tick, 500);
  }

  function renderGa() {
    if (!detail.layout.ga.length) return;
    for (const area of detail.layout.ga) view.setArea(area.name, liveMap.ga.has(area.name) ? liveMap.ga.get(area.name) : area.capacity);
    clear(gaBox, h("h2", {}, "Standing and open areas"),
      ...detail.layout.ga.map((area) => {
        const remaining = liveMap.ga.has(area.name) ? liveMap.ga.get(area.name) : area.capacity;
        const qty = h("input", { type: "number", min: 1, max: Math.max(1, Math.min(10, remaining)), value: 1, "aria-label": `Tickets for ${area.name}`, class: "qty" });
        return h("div", { class: "ga-area", "data-area": area.name },
          h("div", {}, h("strong", {}, area.name), " · ", money(detail.prices[area.category] ?? 0, detail)),
          h("div", { class: "ga-left" }, remaining > 0 ? `${remaining} of ${area.capacity} left` : "Sold out"),
          h("div", {}, qty, h("button", { type: "button", class: "secondary", disabled: remaining <= 0, onclick: () => holdGa(area.name, Number(qty.value)) }, "Hold")));
      }));
  }

  const zoomOut = h("button", { type: "button", class: "icon", "aria-label": "Zoom out", onclick: () => view.setZoom(view.zoom / 1.5) }, "−");
  const zoomIn = h("button", { type: "button", class: "icon", "aria-label": "Zoom in", onclick: () => view.setZoom(view.zoom * 1.5) }, "+");
  const wholeHall = h("button", { type: "button", class: "icon", "aria-label": "Show the whole hall", title: "Whole hall", onclick: () => view.fit() }, "⤢");
  const legendList = h("ul", { class: "legend" },
    legend(detail.layout.categories, detail.prices, detail).map(([swatch, name, price]) =>
      h("li", {}, swatch, h("span", {}, name), price ? h("span", { class: "price" }, price) : null)));

  clear(main,
    h("article", { class: "screening", "data-status": status, "data-screening": id },
      h("header", { class: "screening-head" },
        h("p", { class: "crumbs" }, h("a", { href: "#/" }, "← What's on")),
        h("h1", {}, detail.movie.title, detail.movie.rating ? h("span", { class: "rating" }, detail.movie.rating) : null),
        h("p", { class: "meta" },
          h("time", { datetime: detail.starts_at }, statedDayAndClock(detail.starts_at)), // the cinema's time
          ` · ${detail.cinema.name} · ${detail.auditorium.name} · ${detail.movie.duration_minutes} min`),
        h("div", { class: "live-line" }, badge.el, viewers)),
      banner,
      h("div", { class: "screening-body" },
        h("div", { class: "map-column" },
          h("div", { class: "map-tools" }, zoomOut, zoomIn, wholeHall, seatInfo),
          mapBox,
          legendList),
        h("div", { class: "side-column" }, message, panel, gaBox, bestBox))));

  setStatus(status);
  // The whole hall in view on open; the legend's height is left free under the map. The map
  // is made on the laid-out page, so it measures its box once.
  mapBox.dataset.below = String(Math.ceil(legendList.getBoundingClientRect().height + 24));
  view = seatMap(mapBox, detail.layout, {
    prices: detail.prices,
    priced: detail,
    label: `Seat map of ${detail.auditorium.name}`,
    onActivate: (label, state) => activate(label, state),
    onActivateArea: (name) => gaBox.querySelector(`[data-area="${CSS.escape(name)}"] input`)?.focus(),
    onFocusSeat: (text) => (seatInfo.textContent = text),
  });
  performance.mark("seatmap:map");
  built = true;
  repaint(); // what the REST read or the socket said, whichever is newer
  renderGa();
  connected(...connection);
  if (liveMap.viewers) showViewers(liveMap.viewers);
  // The buyer's hold, from before a reload, the payment page, another tab or another device.
  if (user) await adopt();
  return () => {
    document.removeEventListener("visibilitychange", onVisible);
    siblings?.close();
    clearInterval(ticker);
    badge.stop();
    liveMap.stop();
  };
}

