// The seat map of a large hall (an arena) on one canvas, chosen by measurement: with 5,000 SVG
// seats a phone at 4x CPU throttling took 14 s to become interactive and painted one frame in
// 333 ms while 100 seats a second changed (every change re-rasterises the whole SVG layer);
// here a change repaints its own cell in the next animation frame and a zoom redraws only the
// seats in view. The same surface as SeatMapView (set, setAll, stateOf, setArea, flash,
// focusSeat, describe, setZoom, fit), so the screening page does not care which it has.
//
// One tab stop: the canvas. Arrow keys move a drawn focus ring between seats (Home/End,
// PageUp/PageDown as in the SVG map), Enter or Space chooses, + − 0 zoom; the focused seat's
// description goes to `onFocusSeat` (a live region) and to the tooltip.

import { h, s } from "./dom.js";
import { money, STATE_WORDS, seatWords } from "./format.js";
import { SeatMapView, defs, neighbour } from "./seatmap.js";
import { Viewport } from "./viewport.js";

const CELL = 10;
const SEAT = 8.4;
const PAD = (CELL - SEAT) / 2;
const FILL = { standard: "#d6e9ff", premium: "#ffe1b3", vip: "#ecd4ff" };
const LINE = { standard: "#2b6cb0", premium: "#a65f00", vip: "#6b3fa0" };
const STATE_FILL = { mine: "#22753a", selected: "#2c5282", held: "#cbd5e0", sold: "#4a5568", blocked: "#1a202c" };
const UNAVAILABLE = new Set(["held", "sold", "blocked"]);
const SPAN = 1024; // more columns than a layout may have (MAX_SPAN in seatmap/catalog/layouts.py)
// Above this many seats a hall's map is this canvas, below it the SVG map (measured, see above).
export const LARGE_HALL = 2000;

/** The seat map for this hall: the SVG one (every seat a button), or this canvas for a large hall. */
export function seatMap(container, layout, options) {
  return layout.seats.length > LARGE_HALL ? new SeatCanvasView(container, layout, options) : new SeatMapView(container, layout, options);
}

export class SeatCanvasView {
  constructor(container, layout, { prices = {}, priced, onActivate, onActivateArea, onFocusSeat, label, maxSeatPx = 34 } = {}) {
    this.container = container;
    this.layout = layout;
    this.onActivate = onActivate;
    this.onActivateArea = onActivateArea;
    this.onFocusSeat = onFocusSeat;
    this.maxSeatPx = maxSeatPx;
    this.priceWords = Object.fromEntries(Object.entries(prices).map(([c, amount]) => [c, priced ? money(amount, priced) : ""]));
    this.seats = new Map(); // label -> {seat, state}
    this.cells = new Map(); // y * SPAN + x -> entry
    this.rows = new Map();
    this.areas = new Map(); // name -> {area, remaining, rect}
    this.dirty = new Set();
    this.flashing = new Map(); // label -> until (ms)
    this.frame = 0;
    for (const seat of layout.seats) {
      // Where it is drawn, worked out once (a full redraw of 5,000 seats is a loop over these).
      const entry = { seat, state: "free", x: seat.x * CELL + PAD, y: seat.y * CELL + PAD };
      this.seats.set(seat.label, entry);
      this.cells.set(seat.y * SPAN + seat.x, entry);
      if (!this.rows.has(seat.y)) this.rows.set(seat.y, []);
      this.rows.get(seat.y).push(entry);
    }
    for (const entries of this.rows.values()) entries.sort((a, b) => a.seat.x - b.seat.x);
    this.rowOrder = [...this.rows.keys()].sort((a, b) => a - b);
    const middle = this.rows.get(this.rowOrder[Math.floor(this.rowOrder.length / 2)]) || [];
    this.active = middle[Math.floor(middle.length / 2)] || this.seats.values().next().value || null;

    const left = 2.2 * CELL;
    const top = 3.4 * CELL;
    const gaRows = layout.ga?.length ? 4 : 0;
    this.gaTop = layout.height * CELL + CELL;
    this.hall = { x: -left, y: -top, w: layout.width * CELL + 2 * left, h: layout.height * CELL + top + CELL + gaRows * CELL };
    const span = layout.width * CELL;
    const gap = CELL / 2;
    const each = layout.ga?.length ? (span - gap * (layout.ga.length - 1)) / layout.ga.length : 0;
    (layout.ga || []).forEach((area, i) => {
      this.areas.set(area.name, { area, remaining: area.capacity, rect: { x: i * (each + gap), y: this.gaTop, w: each, h: 3.2 * CELL } });
    });

    this.canvas = h("canvas", {
      class: "seatmap seatcanvas",
      tabindex: 0,
      role: "application",
      "aria-roledescription": "seat map",
      "aria-label": `${label || "Seat map"}: use the arrow keys to move between seats, Enter to choose, + and − to zoom`,
    });
    this.tip = h("div", { class: "map-tip", role: "presentation", hidden: true });
    container.classList.add("map-fit");
    // The legend's swatches draw the SVG map's marks by reference: the symbols live here too.
    const symbols = s("svg", { class: "map-symbols", width: 0, height: 0, "aria-hidden": "true", focusable: "false" }, defs());
    container.replaceChildren(this.canvas, this.tip, symbols);
    this.viewport = new Viewport(container, this.hall, {
      seat: SEAT,
      maxSeatPx: maxSeatPx * (SEAT / CELL),
      onChange: () => {
        this.tip.hidden = true;
        this._all();
      },
    });
    this._bind();
    this._fitBox();
  }

  get zoom() {
    return this.viewport.zoom;
  }

  _fitBox() {
    const box = this.container;
    const resize = () => {
      const width = box.clientWidth || 320;
      const natural = Math.min(width, (this.hall.w / CELL) * this.maxSeatPx) * (this.hall.h / this.hall.w);
      const top = box.getBoundingClientRect().top + window.scrollY;
      const below = box.dataset.below ? Number(box.dataset.below) : 56;
      const room = Math.max(220, window.innerHeight - Math.min(top, window.innerHeight * 0.45) - below);
      box.style.height = `${Math.round(Math.min(natural, room))}px`;
      this.viewport.apply();
    };
    // Fitted now when the box is on the page (one layout read), else when it gets a size.
    new ResizeObserver(() => resize()).observe(box);
    if (box.isConnected) resize();
  }

  // ---- drawing ------------------------------------------------------------------------------

  _transform(ctx) {
    const dpr = window.devicePixelRatio || 1;
    const { w, h: height } = this.viewport.size;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(height * dpr);
    }
    const v = this.viewport.view;
    const s = this.viewport.scale * dpr;
    ctx.setTransform(s, 0, 0, s, -v.x * s, -v.y * s);
    return v;
  }

  /** Everything in view, once per frame at most. */
  _all() {
    this.full = true;
    this._schedule();
  }

  _schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this._paint());
  }

  _paint() {
    this.frame = 0;
    const ctx = this.canvas.getContext("2d");
    const v = this._transform(ctx);
    this.seatPx = this.viewport.seatPx; // once per frame, not per seat
    // The text takes the page's colour (dark on the customer's page, light on the kiosk's);
    // read here, where the frame's style is computed anyway, never per seat.
    this.ink ??= getComputedStyle(this.container).color;
    if (this.full) {
      this.full = false;
      this.dirty.clear();
      ctx.clearRect(v.x, v.y, v.w, v.h);
      this._chrome(ctx);
      this._seats(ctx, v);
      for (const name of this.areas.keys()) this._area(ctx, name);
      if (!this.container.dataset.drawn) {
        this.container.dataset.drawn = String(this.seats.size);
        performance.mark("seatmap:drawn");
      }
    } else {
      // The changes since the last frame (a second of 100 changes is about two a frame).
      for (const entry of this.dirty) {
        ctx.clearRect(entry.seat.x * CELL, entry.seat.y * CELL, CELL, CELL);
        this._seat(ctx, entry);
      }
      this.dirty.clear();
    }
    if (this.flashing.size) {
      const now = performance.now();
      for (const [label, until] of this.flashing) if (until < now) this.flashing.delete(label);
      for (const label of this.flashing.keys()) this.dirty.add(this.seats.get(label));
      this._schedule();
    }
  }

  _chrome(ctx) {
    const width = this.layout.width * CELL;
    ctx.strokeStyle = "#718096";
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    const sx = (width - Math.max(width * 0.7, CELL * 3)) / 2;
    ctx.moveTo(sx, this.hall.y + 0.9 * CELL);
    ctx.quadraticCurveTo(width / 2, this.hall.y + 0.2 * CELL, width - sx, this.hall.y + 0.9 * CELL);
    ctx.stroke();
    ctx.fillStyle = this.ink;
    ctx.font = "5.5px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText("SCREEN", width / 2, this.hall.y + 1.9 * CELL);
    if (this.seatPx >= 6) {
      ctx.font = "600 5px system-ui, sans-serif";
      for (const [y, entries] of this.rows) {
        const row = entries[0].seat.row;
        ctx.fillText(row, -CELL, y * CELL + CELL / 2 + 2.2);
        ctx.fillText(row, width + CELL, y * CELL + CELL / 2 + 2.2);
      }
    }
  }

  /** A seat's colour at this zoom. */
  _fill(entry) {
    // Too small for a mark, a held seat is a darker grey so it still stands out from free ones.
    if (entry.state === "held" && this.seatPx < 10) return "#8a94a6";
    return STATE_FILL[entry.state] || FILL[entry.seat.category] || FILL.standard;
  }

  /** Every seat in view: one path per colour (a fill style per seat costs more than the seat). */
  _seats(ctx, v) {
    const byFill = new Map();
    const marked = [];
    const detailed = this.seatPx >= 10;
    for (const entry of this.seats.values()) {
      const { x, y } = entry;
      if (x > v.x + v.w || x + CELL < v.x || y > v.y + v.h || y + CELL < v.y) continue;
      const fill = this._fill(entry);
      const same = byFill.get(fill);
      if (same) same.push(entry);
      else byFill.set(fill, [entry]);
      if (detailed || entry === this.active || this.flashing.has(entry.seat.label)) marked.push(entry); // the focus ring
    }
    for (const [fill, entries] of byFill) {
      ctx.fillStyle = fill;
      ctx.beginPath();
      for (const { x, y } of entries) ctx.rect(x, y, SEAT, SEAT);
      ctx.fill();
    }
    for (const entry of marked) this._seat(ctx, entry, false);
  }

  _seat(ctx, entry, fill = true) {
    const { seat, state, x, y } = entry;
    const category = seat.category || "standard";
    const detailed = this.seatPx >= 10;
    if (fill) {
      ctx.fillStyle = this._fill(entry);
      ctx.fillRect(x, y, SEAT, SEAT);
    }
    const focus = entry === this.active && document.activeElement === this.canvas;
    if (detailed || focus || this.flashing.has(seat.label)) {
      ctx.lineWidth = focus || this.flashing.has(seat.label) ? 1.6 : 0.7;
      ctx.strokeStyle = focus ? "#d53f8c" : this.flashing.has(seat.label) ? "#b42318" : state === "free" ? LINE[category] || LINE.standard : "#2d3748";
      ctx.strokeRect(x + ctx.lineWidth / 2, y + ctx.lineWidth / 2, SEAT - ctx.lineWidth, SEAT - ctx.lineWidth);
    }
    if (!detailed) return;
    // The same marks as the SVG map: a check for yours, a cross sold, a bar blocked, a dot held.
    ctx.strokeStyle = state === "held" ? "#1a202c" : "#ffffff";
    ctx.lineWidth = 1.2;
    ctx.beginPath();
    if (state === "mine" || state === "selected") {
      ctx.moveTo(x + 1.7, y + 4.5); ctx.lineTo(x + 3.5, y + 6.2); ctx.lineTo(x + 6.7, y + 2.4);
    } else if (state === "sold") {
      ctx.moveTo(x + 2.2, y + 2.2); ctx.lineTo(x + 6.2, y + 6.2); ctx.moveTo(x + 6.2, y + 2.2); ctx.lineTo(x + 2.2, y + 6.2);
    } else if (state === "blocked") {
      ctx.moveTo(x + 1.8, y + 4.2); ctx.lineTo(x + 6.6, y + 4.2);
    } else if (state === "held") {
      ctx.arc(x + 4.2, y + 4.2, 2.2, 0, Math.PI * 2);
    }
    ctx.stroke();
  }

  _area(ctx, name) {
    const { area, remaining, rect } = this.areas.get(name);
    ctx.fillStyle = remaining > 0 ? FILL[area.category || "standard"] || FILL.standard : "#e2e8f0";
    ctx.fillRect(rect.x, rect.y, rect.w, rect.h);
    ctx.strokeStyle = LINE[area.category || "standard"] || LINE.standard;
    ctx.lineWidth = 0.7;
    ctx.strokeRect(rect.x, rect.y, rect.w, rect.h);
    ctx.fillStyle = "#1a202c"; // on the area's own light fill
    ctx.textAlign = "center";
    ctx.font = "700 5px system-ui, sans-serif";
    ctx.fillText(area.name, rect.x + rect.w / 2, rect.y + 1.3 * CELL);
    ctx.font = "4.2px system-ui, sans-serif";
    ctx.fillText(remaining > 0 ? `${remaining} of ${area.capacity} left` : "sold out", rect.x + rect.w / 2, rect.y + 2.4 * CELL);
  }

  // ---- the same surface as SeatMapView --------------------------------------------------------

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

  set(label, state) {
    const entry = this.seats.get(label);
    if (!entry || entry.state === state) return false;
    entry.state = state;
    this.dirty.add(entry);
    this._schedule();
    if (entry === this.active && document.activeElement === this.canvas) {
      this.onFocusSeat?.(this.describe(label));
      if (!this.tip.hidden) this.tip.textContent = this.describe(label); // chosen: say so there too
    }
    return true;
  }

  setAll(stateOf) {
    let changed = 0;
    for (const label of this.seats.keys()) if (this.set(label, stateOf(label))) changed += 1;
    return changed;
  }

  stateOf(label) {
    return this.seats.get(label)?.state;
  }

  setArea(name, remaining) {
    const entry = this.areas.get(name);
    if (!entry || entry.remaining === remaining) return;
    entry.remaining = remaining;
    this._all();
  }

  flash(labels) {
    const until = performance.now() + 2400;
    for (const label of labels || []) if (this.seats.has(label)) this.flashing.set(label, until);
    this._all();
  }

  setZoom(factor) {
    this.viewport.zoomBy(factor / this.viewport.zoom);
  }

  fit() {
    this.viewport.fit();
  }

  focusSeat(label) {
    const entry = this.seats.get(label);
    if (entry) this._focus(entry);
  }

  _focus(entry) {
    const before = this.active;
    this.active = entry;
    if (document.activeElement !== this.canvas) this.canvas.focus({ preventScroll: true });
    if (before) this.dirty.add(before);
    this.dirty.add(entry);
    this.viewport.reveal(entry.seat.x * CELL, entry.seat.y * CELL, CELL, CELL);
    this._schedule();
    this.onFocusSeat?.(this.describe(entry.seat.label));
    this._showTip(entry);
  }

  _showTip(entry) {
    const v = this.viewport.view;
    const scale = this.viewport.scale;
    this.tip.textContent = this.describe(entry.seat.label);
    this.tip.hidden = false;
    const w = this.tip.offsetWidth;
    const x = (entry.seat.x * CELL + CELL / 2 - v.x) * scale;
    const y = (entry.seat.y * CELL - v.y) * scale;
    this.tip.style.left = `${Math.max(2, Math.min(this.container.clientWidth - w - 2, x - w / 2))}px`;
    this.tip.style.top = `${Math.max(2, y - this.tip.offsetHeight - 6)}px`;
  }

  /** The seat (or standing area) under a client point. */
  hit(clientX, clientY) {
    const at = this.viewport.toHall(clientX, clientY);
    const [col, row] = [Math.floor(at.x / CELL), Math.floor(at.y / CELL)];
    const entry = col >= 0 && col < SPAN ? this.cells.get(row * SPAN + col) : undefined;
    if (entry) return { entry };
    for (const [name, { rect }] of this.areas) {
      if (at.x >= rect.x && at.x <= rect.x + rect.w && at.y >= rect.y && at.y <= rect.y + rect.h) return { area: name };
    }
    return {};
  }

  _bind() {
    const c = this.canvas;
    c.addEventListener("click", (event) => {
      if (this.viewport.suppressClick) return;
      const { entry, area } = this.hit(event.clientX, event.clientY);
      if (area) return this.onActivateArea?.(area);
      if (!entry) return;
      this._focus(entry);
      this.onActivate?.(entry.seat.label, entry.state);
    });
    c.addEventListener("pointermove", (event) => {
      if (event.pointerType !== "mouse" || this.viewport.pointers.size) return;
      const { entry } = this.hit(event.clientX, event.clientY);
      c.style.cursor = entry && !UNAVAILABLE.has(entry.state) ? "pointer" : "";
      if (entry) this._showTip(entry);
      else this.tip.hidden = true;
    });
    c.addEventListener("pointerleave", () => (this.tip.hidden = true));
    c.addEventListener("focus", () => this.active && this._focus(this.active));
    c.addEventListener("blur", () => {
      this.tip.hidden = true;
      if (this.active) this.dirty.add(this.active);
      this._schedule();
    });
    c.addEventListener("keydown", (event) => {
      const entry = this.active;
      if (!entry) return;
      if (this.viewport.key(event, entry.seat.x * CELL + CELL / 2, entry.seat.y * CELL + CELL / 2)) return;
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.onActivate?.(entry.seat.label, entry.state);
        return;
      }
      const next = neighbour(this.rows, this.rowOrder, entry, event.key);
      if (next === undefined && !["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"].includes(event.key)) return;
      event.preventDefault();
      if (next) this._focus(next);
    });
  }
}
