// The seat map as SVG, drawn once from the auditorium layout; afterwards only the seats whose
// state changed are touched (a class, a mark and an ARIA label). Seats are buttons in one
// roving tab stop: Tab reaches the map, arrow keys move between seats (Home/End: row ends,
// PageUp/PageDown: first/last row), Enter or Space toggles, + and − zoom, 0 shows the whole
// hall. Every state has its own mark or pattern besides its colour. The box is sized so the
// whole hall is visible on open (viewport.js zooms and pans by changing the viewBox); standing
// areas are drawn under the seats with what is left of them.

import { h, s } from "./dom.js";
import { money, STATE_WORDS, seatWords } from "./format.js";
import { Viewport } from "./viewport.js";

const CELL = 10;
const SEAT = 8.4;
const PAD = (CELL - SEAT) / 2;
const MARKS = {
  free: null,
  mine: "#mark-check",
  selected: "#mark-check",
  held: "#mark-clock",
  sold: "#mark-cross",
  blocked: "#mark-bar",
};
const UNAVAILABLE = new Set(["held", "sold", "blocked"]);

/** The marks' symbols and the hatch pattern, which the map's seats and the legend's swatches use. */
export function defs() {
  return s(
    "defs",
    {},
    s("pattern", { id: "hatch", width: 2.4, height: 2.4, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      s("rect", { width: 2.4, height: 2.4, class: "hatch-bg" }),
      s("line", { x1: 0, y1: 0, x2: 0, y2: 2.4, class: "hatch-line" })),
    s("symbol", { id: "mark-check", viewBox: "0 0 10 10" },
      s("path", { d: "M2 5.3 L4.2 7.4 L8 2.8", class: "mark-stroke" })),
    s("symbol", { id: "mark-cross", viewBox: "0 0 10 10" },
      s("path", { d: "M2.6 2.6 L7.4 7.4 M7.4 2.6 L2.6 7.4", class: "mark-stroke" })),
    s("symbol", { id: "mark-bar", viewBox: "0 0 10 10" },
      s("path", { d: "M2.2 5 L7.8 5", class: "mark-stroke" })),
    s("symbol", { id: "mark-clock", viewBox: "0 0 10 10" },
      s("circle", { cx: 5, cy: 5, r: 2.6, class: "mark-thin" }),
      s("path", { d: "M5 3.6 L5 5 L6.1 5.8", class: "mark-thin" })),
    s("symbol", { id: "mark-wheel", viewBox: "0 0 10 10" },
      s("circle", { cx: 5.6, cy: 2.1, r: 0.9, class: "mark-dot" }),
      s("path", { d: "M4.6 3.6 L4.9 6 L7.2 6 L7.8 8", class: "mark-thin" }),
      s("path", { d: "M3.6 4.9 A2.4 2.4 0 1 0 6.6 7.6", class: "mark-thin" })),
    s("symbol", { id: "mark-companion", viewBox: "0 0 10 10" },
      s("circle", { cx: 5, cy: 5, r: 1.4, class: "mark-dot" })),
  );
}

export class SeatMapView {
  /**
   * layout: the normalised layout ({seats, width, height}); prices: {category: amount};
   * onActivate(label, state) is called when a seat is clicked or chosen by keyboard.
   */
  constructor(container, layout, { prices = {}, priced, onActivate, onActivateArea, onFocusSeat, label, inert = false, maxSeatPx = 34 } = {}) {
    this.maxSeatPx = maxSeatPx;
    this.onActivateArea = onActivateArea;
    // money() builds a number format per call: once per category, not once per seat.
    this.priceWords = Object.fromEntries(Object.entries(prices).map(([c, amount]) => [c, priced ? money(amount, priced) : ""]));
    this.areas = new Map(); // GA area name -> {area, text, el}
    this.inert = inert; // a picture only (the layout editor's preview): no focus, no buttons
    this.container = container;
    this.layout = layout;
    this.prices = prices;
    this.priced = priced; // what carries the prices' currency (money() in format.js)
    this.onActivate = onActivate;
    this.onFocusSeat = onFocusSeat;
    this.seats = new Map(); // label -> {seat, el, rect, mark, state}
    this.rows = new Map(); // y -> seats sorted by x
    this.active = null;
    this._draw(label || "Seat map");
  }

  get zoom() {
    return this.viewport?.zoom ?? 1;
  }

  _draw(name) {
    const { width, height } = this.layout;
    const left = 2.2 * CELL;
    const top = 3.4 * CELL;
    const w = width * CELL + 2 * left;
    const gaTop = height * CELL + CELL;
    const gaRows = this.layout.ga?.length ? 4 : 0;
    const hgt = height * CELL + top + CELL + gaRows * CELL;
    this.hall = { x: -left, y: -top, w, h: hgt };
    const svg = s("svg", {
      class: "seatmap",
      viewBox: `${-left} ${-top} ${w} ${hgt}`,
      role: this.inert ? "img" : "group",
      "aria-label": this.inert ? name : `${name}: use the arrow keys to move between seats, Enter to choose, + and − to zoom`,
      preserveAspectRatio: "xMidYMid meet",
    });
    svg.append(defs());
    const screenW = Math.max(width * CELL * 0.7, CELL * 3);
    const sx = (width * CELL - screenW) / 2;
    svg.append(
      s("path", {
        class: "screen",
        d: `M${sx} ${-top + 0.9 * CELL} Q${(width * CELL) / 2} ${-top + 0.2 * CELL} ${sx + screenW} ${-top + 0.9 * CELL}`,
      }),
      s("text", { class: "screen-label", x: (width * CELL) / 2, y: -top + 1.9 * CELL, "text-anchor": "middle" }, "SCREEN"),
    );
    const labels = new Map();
    const seatGroup = s("g", { class: "seats" });
    for (const seat of this.layout.seats) {
      const x = seat.x * CELL + PAD;
      const y = seat.y * CELL + PAD;
      const shape = seat.accessible
        ? s("rect", { x, y, width: SEAT, height: SEAT, rx: SEAT / 2 })
        : s("rect", { x, y, width: SEAT, height: SEAT, rx: 1.8 });
      const mark = s("use", { x, y, width: SEAT, height: SEAT });
      const el = s(
        "g",
        {
          class: `seat cat-${seat.category || "standard"}`,
          role: this.inert ? null : "button",
          tabindex: this.inert ? null : -1,
          "data-label": seat.label,
          "data-state": "free",
        },
        shape,
        mark,
      );
      seatGroup.append(el);
      const entry = { seat, el, mark, state: null };
      this.seats.set(seat.label, entry);
      if (!this.rows.has(seat.y)) this.rows.set(seat.y, []);
      this.rows.get(seat.y).push(entry);
      if (!labels.has(seat.y) || seat.x < labels.get(seat.y).x) labels.set(seat.y, { x: seat.x, row: seat.row });
    }
    for (const entries of this.rows.values()) entries.sort((a, b) => a.seat.x - b.seat.x);
    this.rowOrder = [...this.rows.keys()].sort((a, b) => a - b);
    const rowLabels = s("g", { class: "row-labels", "aria-hidden": "true" });
    for (const [y, { row }] of labels) {
      const cy = y * CELL + CELL / 2 + 2.6;
      rowLabels.append(
        s("text", { x: -CELL, y: cy, "text-anchor": "middle" }, row),
        s("text", { x: width * CELL + CELL, y: cy, "text-anchor": "middle" }, row),
      );
    }
    svg.append(rowLabels, seatGroup, this._drawAreas(gaTop, width * CELL));
    for (const entry of this.seats.values()) this._paint(entry, "free");

    this.svg = svg;
    this.tip = h("div", { class: "map-tip", role: "presentation", hidden: true });
    this.container.classList.add("map-fit");
    if (this.inert) {
      this.container.replaceChildren(svg);
      this._fitBox();
      return;
    }
    svg.addEventListener("click", (event) => {
      if (this.viewport.suppressClick) return; // it ended a drag, a pinch or a zoom-in tap
      const area = event.target.closest?.(".ga-zone");
      if (area) return this.onActivateArea?.(area.dataset.area);
      const el = event.target.closest?.(".seat");
      if (!el) return;
      const entry = this.seats.get(el.dataset.label);
      this._focus(entry, false);
      this.onActivate?.(entry.seat.label, entry.state);
    });
    svg.addEventListener("keydown", (event) => this._key(event));
    svg.addEventListener("focusin", (event) => {
      const el = event.target.closest?.(".seat");
      if (!el) return;
      this.onFocusSeat?.(this.describe(el.dataset.label));
      this._showTip(this.seats.get(el.dataset.label));
    });
    svg.addEventListener("focusout", () => (this.tip.hidden = true));
    svg.addEventListener("pointerover", (event) => {
      const el = event.pointerType === "mouse" && event.target.closest?.(".seat");
      if (el) this._showTip(this.seats.get(el.dataset.label));
    });
    svg.addEventListener("pointerleave", () => (this.tip.hidden = true));
    // The roving tab stop starts near the middle of the hall.
    const middleRow = this.rows.get(this.rowOrder[Math.floor(this.rowOrder.length / 2)]) || [];
    const start = middleRow[Math.floor(middleRow.length / 2)] || this.seats.values().next().value;
    if (start && !this.inert) this._setActive(start);
    this.container.replaceChildren(svg, this.tip);
    this.container.dataset.drawn = String(this.seats.size);
    this._fitBox();
  }

  /** Standing areas as zones under the seats, each with what is left of it. */
  _drawAreas(top, span) {
    const group = s("g", { class: "ga-zones" });
    const areas = this.layout.ga || [];
    const gap = CELL / 2;
    const each = areas.length ? (span - gap * (areas.length - 1)) / areas.length : 0;
    areas.forEach((area, i) => {
      const x = i * (each + gap);
      const text = s("text", { x: x + each / 2, y: top + 2.4 * CELL, "text-anchor": "middle", class: "ga-text" });
      const desc = s("desc", { id: `ga-desc-${i}-${Math.random().toString(36).slice(2, 8)}` });
      const el = s("g", { class: `ga-zone cat-${area.category || "standard"}`, "data-area": area.name, role: this.inert ? null : "button", tabindex: this.inert ? null : 0, "aria-describedby": desc.id },
        desc,
        s("rect", { x, y: top, width: each, height: 3.2 * CELL, rx: 2 }),
        s("text", { x: x + each / 2, y: top + 1.3 * CELL, "text-anchor": "middle", class: "ga-name" }, area.name),
        s("text", { class: "ga-sep", x: x + each / 2, y: top + 1.8 * CELL }, " "),
        text);
      el.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          this.onActivateArea?.(area.name);
        }
      });
      this.areas.set(area.name, { area, text, el, desc });
      this.setArea(area.name, area.capacity);
      group.append(el);
    });
    return group;
  }

  /** What is left of a standing area, drawn in its zone and said in its label. */
  setArea(name, remaining) {
    const entry = this.areas.get(name);
    if (!entry) return;
    const { area, text, el } = entry;
    const words = remaining > 0 ? `${remaining} of ${area.capacity} left` : "sold out";
    text.textContent = words;
    el.classList.toggle("ga-sold-out", remaining <= 0);
    // The name is what the zone shows (name, what is left); the price is its description.
    const price = this.priceWords[area.category || "standard"];
    entry.desc.textContent = `Standing area${price ? `, ${price} each` : ""}`;
  }

  /** The box takes the hall's shape, no taller than the window leaves room for: all of it in view. */
  _fitBox() {
    const box = this.container;
    const resize = () => {
      const width = box.clientWidth || box.parentElement?.clientWidth || 320;
      const cells = this.hall.w / CELL;
      const natural = Math.min(width, cells * this.maxSeatPx) * (this.hall.h / this.hall.w);
      const top = box.getBoundingClientRect().top + window.scrollY;
      const below = box.dataset.below ? Number(box.dataset.below) : 56; // the legend under it
      const room = Math.max(220, window.innerHeight - Math.min(top, window.innerHeight * 0.45) - below);
      box.style.height = `${Math.round(Math.min(natural, room))}px`;
      if (this.viewport) this.viewport.apply();
    };
    if (!this.viewport) {
      this.viewport = new Viewport(box, this.hall, {
        seat: SEAT,
        maxSeatPx: this.maxSeatPx * (SEAT / CELL),
        onChange: (v) => {
          const box = `${v.x} ${v.y} ${v.w} ${v.h}`;
          if (this.svg.getAttribute("viewBox") === box) return; // a resize that changed nothing
          this.svg.setAttribute("viewBox", box);
          this.tip.hidden = true;
        },
      });
      this._resize = resize;
      new ResizeObserver(() => resize()).observe(box);
    }
    resize();
    // Laid out only after the box joins the page: fit again then.
    requestAnimationFrame(() => resize());
  }

  _showTip(entry) {
    if (!entry || this.inert) return;
    const v = this.viewport.view;
    const scale = this.viewport.scale;
    const x = (entry.seat.x * CELL + CELL / 2 - v.x) * scale;
    const y = (entry.seat.y * CELL - v.y) * scale;
    this.tip.textContent = this.describe(entry.seat.label);
    this.tip.hidden = false;
    const w = this.tip.offsetWidth;
    this.tip.style.left = `${Math.max(2, Math.min(this.container.clientWidth - w - 2, x - w / 2))}px`;
    this.tip.style.top = `${Math.max(2, y - this.tip.offsetHeight - 6)}px`;
  }

  /** "Row F seat 12, premium, 75,000 IDR, free" */
  describe(label) {
    const entry = this.seats.get(label);
    if (!entry) return label;
    const { seat, state } = entry;
    const bits = [seatWords(seat.label), seat.category || "standard"];
    if (seat.accessible) bits.push("wheelchair space");
    if (seat.companion) bits.push("companion seat");
    const price = this.priceWords[seat.category || "standard"];
    if (price) bits.push(price);
    bits.push(STATE_WORDS[state] || state);
    return bits.join(", ");
  }

  _paint(entry, state) {
    entry.state = state;
    entry.el.setAttribute("class", `seat cat-${entry.seat.category || "standard"} s-${state}`);
    entry.el.dataset.state = state;
    if (this.inert) {
      const mark = entry.seat.accessible ? "#mark-wheel" : entry.seat.companion ? "#mark-companion" : null;
      if (mark) entry.mark.setAttribute("href", mark);
      return;
    }
    let mark = MARKS[state];
    if (!mark && state === "free") {
      mark = entry.seat.accessible ? "#mark-wheel" : entry.seat.companion ? "#mark-companion" : null;
    }
    if (mark) entry.mark.setAttribute("href", mark);
    else entry.mark.removeAttribute("href");
    entry.el.setAttribute("aria-label", this.describe(entry.seat.label));
    if (UNAVAILABLE.has(state)) entry.el.setAttribute("aria-disabled", "true");
    else entry.el.removeAttribute("aria-disabled");
    if (state === "mine" || state === "selected") entry.el.setAttribute("aria-pressed", "true");
    else entry.el.setAttribute("aria-pressed", "false");
  }

  /** Show one seat's state; touches the DOM only when it changed. */
  set(label, state) {
    const entry = this.seats.get(label);
    if (!entry || entry.state === state) return false;
    this._paint(entry, state);
    if (entry === this.active) {
      this.onFocusSeat?.(this.describe(label));
      if (!this.tip.hidden) this.tip.textContent = this.describe(label); // chosen: say so there too
    }
    return true;
  }

  /** Bring every seat to `stateOf(label)` (after a snapshot); only changed seats are touched. */
  setAll(stateOf) {
    let changed = 0;
    for (const label of this.seats.keys()) if (this.set(label, stateOf(label))) changed += 1;
    return changed;
  }

  stateOf(label) {
    return this.seats.get(label)?.state;
  }

  /** Draw attention to seats an error named. */
  flash(labels) {
    for (const label of labels || []) {
      const entry = this.seats.get(label);
      if (!entry) continue;
      entry.el.classList.remove("flash");
      void entry.el.getBoundingClientRect();
      entry.el.classList.add("flash");
      setTimeout(() => entry.el.classList.remove("flash"), 2400);
    }
  }

  /** Zoom to `factor` times the whole-hall view, about the middle of what is shown. */
  setZoom(factor) {
    this.viewport.zoomBy(factor / this.viewport.zoom);
  }

  /** The whole hall again. */
  fit() {
    this.viewport.fit();
  }

  focusSeat(label) {
    const entry = this.seats.get(label);
    if (entry) this._focus(entry, true);
  }

  _setActive(entry) {
    if (this.active) this.active.el.setAttribute("tabindex", "-1");
    this.active = entry;
    entry.el.setAttribute("tabindex", "0");
  }

  _focus(entry, move) {
    this._setActive(entry);
    if (move) {
      entry.el.focus({ preventScroll: true });
      this.viewport.reveal(entry.seat.x * CELL, entry.seat.y * CELL, CELL, CELL);
      this._showTip(entry);
    }
  }

  _neighbour(entry, key) {
    return neighbour(this.rows, this.rowOrder, entry, key);
  }

  _key(event) {
    const el = event.target.closest?.(".seat");
    if (!el) return;
    const entry = this.seats.get(el.dataset.label);
    if (this.viewport.key(event, entry.seat.x * CELL + CELL / 2, entry.seat.y * CELL + CELL / 2)) {
      this._showTip(entry);
      return;
    }
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      this.onActivate?.(entry.seat.label, entry.state);
      return;
    }
    const next = this._neighbour(entry, event.key);
    if (next === undefined && !["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"].includes(event.key)) return;
    event.preventDefault();
    if (next) this._focus(next, true);
  }
}

/** The seat an arrow, Home/End or PageUp/PageDown key moves to from `entry` (rows: y -> entries by x). */
export function neighbour(rows, rowOrder, entry, key) {
  const { x, y } = entry.seat;
  const row = rows.get(y);
  const index = row.indexOf(entry);
  if (key === "ArrowLeft") return row[index - 1];
  if (key === "ArrowRight") return row[index + 1];
  if (key === "Home") return row[0];
  if (key === "End") return row[row.length - 1];
  const at = rowOrder.indexOf(y);
  let target;
  if (key === "ArrowUp") target = rowOrder[at - 1];
  if (key === "ArrowDown") target = rowOrder[at + 1];
  if (key === "PageUp") target = rowOrder[0];
  if (key === "PageDown") target = rowOrder[rowOrder.length - 1];
  if (target === undefined) return undefined;
  // The seat of that row nearest in x (across aisles the rows line up by column).
  return rows.get(target).reduce((best, e) =>
    Math.abs(e.seat.x - x) < Math.abs(best.seat.x - x) ? e : best,
  );
}

/** Counts for occupancy displays: {free, held, sold, blocked, total}. */
export function occupancy(layout, seats) {
  const counts = { free: 0, held: 0, sold: 0, blocked: 0, total: layout.seats.length };
  for (const seat of layout.seats) counts[seats.get?.(seat.label) || seats[seat.label] || "free"] += 1;
  return counts;
}

/** The legend: what each colour, mark and pattern means, with the price of each category. */
export function legend(categories, prices, priced, { mine = "Your seats", mineState = "mine" } = {}) {
  const swatch = (cls, mark) =>
    s("svg", { class: "swatch", viewBox: "0 0 10 10", width: 22, height: 22, "aria-hidden": "true" },
      s("g", { class: `seat ${cls}` },
        s("rect", { x: 0.8, y: 0.8, width: SEAT, height: SEAT, rx: 1.8 }),
        mark ? s("use", { href: mark, x: 0.8, y: 0.8, width: SEAT, height: SEAT }) : null));
  const items = [];
  for (const category of categories) {
    items.push([swatch(`cat-${category} s-free`), category === "vip" ? "VIP" : `${category[0].toUpperCase()}${category.slice(1)}`, prices[category] !== undefined ? money(prices[category], priced) : "no price"]);
  }
  items.push(
    [swatch(`cat-standard s-${mineState}`, "#mark-check"), mine, ""],
    [swatch("cat-standard s-held", "#mark-clock"), "Held by others", ""],
    [swatch("cat-standard s-sold", "#mark-cross"), "Sold", ""],
    [swatch("cat-standard s-blocked", "#mark-bar"), "Not available", ""],
  );
  return items;
}
