// What part of the hall the seat map shows: fit to the box on open (the whole hall visible),
// zoomed and panned by pinch and drag on touch, by the wheel and by keys (+, −, 0) on a
// desktop, and zoomed towards the tapped section when a finger taps a hall whose seats are too
// small to hit (under 24 px, WCAG 2.5.8). Pure geometry plus the gestures; the renderer (SVG
// viewBox or canvas transform) is told the new view through `onChange(view)`.
//
// Units are the hall's drawing units (the SVG's user space); `view` is {x, y, w, h} in those
// units with the box's own aspect ratio, so it maps onto the box without letterboxing.

export const TARGET_PX = 24; // the smallest seat a finger is asked to hit
const TAP_ZOOM_PX = 34; // a tapped large hall zooms until a seat is this wide
const TAP_SLOP = 10; // px a finger may wander and still tap

export class Viewport {
  /**
   * box: the element the map fills; hall: {x, y, w, h} of the whole drawing; seat: a seat's
   * width in units; onChange(view) re-renders; maxSeatPx: a small hall is never shown larger.
   */
  constructor(box, hall, { seat, onChange, maxSeatPx = 40 }) {
    this.box = box;
    this.hall = hall;
    this.seat = seat;
    this.onChange = onChange;
    this.maxSeatPx = maxSeatPx;
    this.zoom = 1;
    this.cx = hall.x + hall.w / 2;
    this.cy = hall.y + hall.h / 2;
    this.suppressClick = false;
    this.pointers = new Map();
    this._bind();
  }

  /** The box's size, read when the view changes (reading it per seat forced a layout each time). */
  get size() {
    if (!this._size) this.measure();
    return this._size;
  }

  measure() {
    this._size = { w: this.box.clientWidth || 1, h: this.box.clientHeight || 1 };
  }

  /** Pixels per unit with the whole hall in the box. */
  get fitScale() {
    const { w, h } = this.size;
    return Math.min(w / this.hall.w, h / this.hall.h, this.maxSeatPx / this.seat);
  }

  get scale() {
    return this.fitScale * this.zoom;
  }

  /** A seat's width on screen now, in CSS pixels. */
  get seatPx() {
    return this.seat * this.scale;
  }

  get maxZoom() {
    return Math.max(2, (2.2 * TAP_ZOOM_PX) / (this.seat * this.fitScale));
  }

  /** Too small to tap at the whole-hall view: a tap zooms in before it chooses. */
  get tapZooms() {
    return this.seat * this.fitScale < TARGET_PX;
  }

  get view() {
    const { w, h } = this.size;
    const s = this.scale;
    return { x: this.cx - w / (2 * s), y: this.cy - h / (2 * s), w: w / s, h: h / s };
  }

  _clamp() {
    const { w, h } = this.size;
    const s = this.scale;
    const half = (span, px) => px / (2 * s);
    for (const [axis, lo, span, px] of [["cx", this.hall.x, this.hall.w, w], ["cy", this.hall.y, this.hall.h, h]]) {
      const room = half(span, px);
      this[axis] = room * 2 >= span ? lo + span / 2 : Math.min(lo + span - room, Math.max(lo + room, this[axis]));
    }
  }

  apply() {
    this.measure();
    this._clamp();
    this.box.classList.toggle("zoomed", this.zoom > 1.001);
    this.onChange(this.view);
  }

  fit() {
    this.zoom = 1;
    this.cx = this.hall.x + this.hall.w / 2;
    this.cy = this.hall.y + this.hall.h / 2;
    this.apply();
  }

  /** The hall point under the client point (px, py). */
  toHall(px, py) {
    const r = this.box.getBoundingClientRect();
    const v = this.view;
    return { x: v.x + (px - r.left) / this.scale, y: v.y + (py - r.top) / this.scale };
  }

  /** Zoom by `factor`, keeping the hall point under client (px, py) (default: the middle) still. */
  zoomBy(factor, px, py) {
    const r = this.box.getBoundingClientRect();
    if (px === undefined) [px, py] = [r.left + r.width / 2, r.top + r.height / 2];
    const at = this.toHall(px, py);
    this.zoom = Math.min(this.maxZoom, Math.max(1, this.zoom * factor));
    const s = this.scale;
    this.cx = at.x - (px - r.left - r.width / 2) / s;
    this.cy = at.y - (py - r.top - r.height / 2) / s;
    this.apply();
  }

  /** Zoom so seats are `px` wide (at least), centred on hall point (x, y). */
  zoomTo(x, y, px = TAP_ZOOM_PX) {
    this.zoom = Math.min(this.maxZoom, Math.max(this.zoom, px / (this.seat * this.fitScale)));
    this.cx = x;
    this.cy = y;
    this.apply();
  }

  /** Pan just enough that the hall rect (x, y, w, h) is in view (a seat reached by keyboard). */
  reveal(x, y, w, h) {
    const v = this.view;
    const margin = Math.min(v.w, v.h) * 0.08;
    if (x < v.x + margin) this.cx -= v.x + margin - x;
    else if (x + w > v.x + v.w - margin) this.cx += x + w - (v.x + v.w - margin);
    if (y < v.y + margin) this.cy -= v.y + margin - y;
    else if (y + h > v.y + v.h - margin) this.cy += y + h - (v.y + v.h - margin);
    this.apply();
  }

  panBy(dx, dy) {
    this.cx -= dx / this.scale;
    this.cy -= dy / this.scale;
    this.apply();
  }

  _bind() {
    const box = this.box;
    box.addEventListener("wheel", (event) => {
      // Zooming out of the whole-hall view scrolls the page instead.
      if (this.zoom <= 1 && event.deltaY > 0 && !event.ctrlKey) return;
      event.preventDefault();
      this.zoomBy(Math.exp(-event.deltaY * (event.ctrlKey ? 0.01 : 0.0025)), event.clientX, event.clientY);
    }, { passive: false });
    box.addEventListener("pointerdown", (event) => this._down(event));
    this._move = (event) => this._moved(event);
    this._up = (event) => this._lifted(event);
  }

  _down(event) {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    this.suppressClick = false; // a new gesture: what ended the last one no longer matters
    if (!this.pointers.size) {
      window.addEventListener("pointermove", this._move);
      window.addEventListener("pointerup", this._up);
      window.addEventListener("pointercancel", this._up);
      this.gesture = { moved: false, start: { x: event.clientX, y: event.clientY }, pinched: false };
    }
    this.pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    if (this.pointers.size === 2) this.gesture.pinched = true;
  }

  _moved(event) {
    const before = this.pointers.get(event.pointerId);
    if (!before) return;
    const now = { x: event.clientX, y: event.clientY };
    if (this.pointers.size >= 2) {
      const [a, b] = [...this.pointers.values()];
      const other = a === before ? b : a;
      const d0 = Math.hypot(before.x - other.x, before.y - other.y) || 1;
      const d1 = Math.hypot(now.x - other.x, now.y - other.y) || 1;
      this.zoomBy(d1 / d0, (now.x + other.x) / 2, (now.y + other.y) / 2);
      this.panBy((now.x - before.x) / 2, (now.y - before.y) / 2);
      this.gesture.moved = true;
    } else {
      const g = this.gesture;
      if (!g.moved && Math.hypot(now.x - g.start.x, now.y - g.start.y) > TAP_SLOP) g.moved = true;
      if (g.moved && this.zoom > 1) this.panBy(now.x - before.x, now.y - before.y);
    }
    this.pointers.set(event.pointerId, now);
  }

  _lifted(event) {
    if (!this.pointers.delete(event.pointerId)) return;
    if (this.pointers.size) return;
    window.removeEventListener("pointermove", this._move);
    window.removeEventListener("pointerup", this._up);
    window.removeEventListener("pointercancel", this._up);
    const g = this.gesture;
    if (g.moved || g.pinched) {
      this.suppressClick = true; // the click that ends a drag or pinch chooses nothing
    } else if (event.pointerType === "touch" && this.tapZooms && this.seatPx < TARGET_PX) {
      const at = this.toHall(event.clientX, event.clientY);
      this.zoomTo(at.x, at.y);
      this.suppressClick = true; // the tap zoomed into the section; the next tap chooses
    }
    setTimeout(() => (this.suppressClick = false), 400);
  }

  /** Keys the map itself answers: + and − zoom about (x, y), 0 shows the whole hall. */
  key(event, x, y) {
    const r = this.box.getBoundingClientRect();
    const v = this.view;
    const px = x === undefined ? undefined : r.left + (x - v.x) * this.scale;
    const py = y === undefined ? undefined : r.top + (y - v.y) * this.scale;
    if (event.key === "+" || event.key === "=") this.zoomBy(1.5, px, py);
    else if (event.key === "-" || event.key === "_") this.zoomBy(1 / 1.5, px, py);
    else if (event.key === "0") this.fit();
    else return false;
    event.preventDefault();
    return true;
  }
}
