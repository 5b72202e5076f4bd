// The admin console's bookings (GET /api/admin/orders: filters, pages, CSV; one order in full
// from GET /api/admin/orders/{id}) and door lists (GET /api/admin/screenings/{id}/attendees).

import { all, api, errorText } from "./api.js";
import { doorList } from "./door-list.js";
import { clear, h, say } from "./dom.js";
import { downloadCsv } from "./exports.js";
import { clock, dayAndClock, isoDay, money } from "./format.js";

const STATUSES = ["", "pending", "paid", "expired", "cancelled", "refund_pending", "refunded"];

function statusBadge(status) {
  const kind = status === "paid" ? "badge-ok" : ["cancelled", "expired", "refunded", "refund_pending"].includes(status) ? "badge-bad" : "";
  return h("span", { class: `badge ${kind}` }, status.replace("_", " "));
}

function who(b) {
  if (b.buyer) return [b.buyer.name || b.buyer.email, b.buyer.name ? h("div", { class: "small muted" }, b.buyer.email) : null];
  return ["Box office", b.sold_by ? h("div", { class: "small muted" }, `sold by ${b.sold_by.email}`) : null];
}

/** A cinema, day and screening chooser; calls `onPick(id)` with the chosen screening (or null). */
export async function screeningPicker({ id, params, onPick }) {
  const cinemas = await all("/api/cinemas?limit=100");
  const cinemaSelect = h("select", { id: `${id}-cinema`, "aria-label": "Cinema" },
    cinemas.map((c) => h("option", { value: c.id, selected: String(c.id) === params.get("cinema") }, `${c.name} (${c.city})`)));
  const dateInput = h("input", { type: "date", id: `${id}-date`, value: params.get("date") || isoDay(new Date()), "aria-label": "Day" });
  const screeningSelect = h("select", { id: `${id}-screening`, "aria-label": "Screening" });
  const tz = () => cinemas.find((c) => String(c.id) === cinemaSelect.value)?.timezone;

  async function fill(wanted) {
    const items = await all(`/api/screenings?cinema=${cinemaSelect.value}&date=${dateInput.value}&limit=100`, 3).catch(() => []);
    clear(screeningSelect, h("option", { value: "" }, items.length ? "Choose a screening" : "No screenings this day"),
      items.map((s) => h("option", { value: s.id, selected: String(s.id) === String(wanted) }, `${clock(s.starts_at, tz())} ${s.movie.title} · ${s.auditorium.name}`)));
    onPick(screeningSelect.value || null);
  }
  cinemaSelect.addEventListener("change", () => fill(null));
  dateInput.addEventListener("change", () => fill(null));
  screeningSelect.addEventListener("change", () => onPick(screeningSelect.value || null));
  await fill(params.get("screening"));
  return h("div", { class: "filters" }, h("label", {}, "Cinema", cinemaSelect), h("label", {}, "Day", dateInput), h("label", {}, "Screening", screeningSelect));
}

async function showOrder(box, id) {
  clear(box, h("p", { class: "muted" }, "Loading…"));
  let d;
  try {
    d = await api(`/api/admin/orders/${encodeURIComponent(id)}`);
  } catch (error) {
    clear(box, h("p", { class: "notice notice-error" }, errorText(error)));
    return;
  }
  const b = d.booking;
  const tz = b.timezone;
  const when = (iso) => (iso ? dayAndClock(iso, tz) : "");
  clear(box,
    h("h2", {}, `Order ${b.id} `, statusBadge(b.status)),
    h("p", {}, who(b), h("div", {}, `${b.title} · ${dayAndClock(b.starts_at, tz)} · ${b.cinema}`), h("div", {}, h("strong", {}, money(b.total, b)), ` · ${b.channel}`)),
    h("h3", {}, "Tickets"),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Seat", "Holder", "Code", "Status", "Checked in"].map((t) => h("th", {}, t)))),
      h("tbody", {}, d.order.tickets.map((t) => {
        const scan = d.check_ins.find((c) => c.code === t.code);
        return h("tr", {}, h("td", {}, t.seat || t.area), h("td", {}, t.holder_name || ""), h("td", {}, h("code", { class: "small" }, t.code)),
          h("td", {}, t.status), h("td", { class: "small" }, scan ? [when(scan.at), scan.gate, scan.by?.email].filter(Boolean).join(" · ") : ""));
      })))),
    h("h3", {}, "Payments"),
    d.payments.length
      ? h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Payment", "Provider", "Status", "Amount", "Updated"].map((t) => h("th", {}, t)))),
          h("tbody", {}, d.payments.map((p) => h("tr", {}, h("td", {}, String(p.id)), h("td", { class: "small" }, `${p.provider} ${p.provider_ref}`),
            h("td", {}, p.status, p.needs_refund ? h("div", { class: "small muted" }, `to refund: ${p.refund_reason || ""}`) : null),
            h("td", {}, money(p.amount, { currency: p.currency, currency_exponent: b.currency_exponent })), h("td", { class: "small" }, when(p.updated_at)))))))
      : h("p", { class: "muted" }, "No payment yet."),
    h("h3", {}, "Refunds"),
    d.refunds.length
      ? h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Refund", "Reason", "Status", "Amount", "Asked by", "Done"].map((t) => h("th", {}, t)))),
          h("tbody", {}, d.refunds.map((r) => h("tr", {}, h("td", {}, String(r.id)), h("td", {}, r.reason), h("td", {}, r.status),
            h("td", {}, money(r.amount, { currency: r.currency, currency_exponent: b.currency_exponent })),
            h("td", { class: "small" }, r.requested_by?.email || ""), h("td", { class: "small" }, when(r.completed_at)))))))
      : h("p", { class: "muted" }, "No refund."),
    h("h3", {}, "History"),
    h("ol", { class: "history small", id: "order-history" }, d.history.map((e) =>
      h("li", { "data-event": e.event }, `${when(e.at)} · ${e.event.replace(/_/g, " ")}${e.detail ? ` · ${e.detail}` : ""}${e.by ? ` · ${e.by.email}` : ""}`))));
}

export async function showBookings(root, params) {
  const cinemas = await all("/api/cinemas?limit=100");
  const q = h("input", { type: "search", id: "bk-q", value: params.get("q") || "", placeholder: "Name, email or ticket code", "aria-label": "Search" });
  const status = h("select", { id: "bk-status", "aria-label": "Status" }, STATUSES.map((s) => h("option", { value: s, selected: s === (params.get("status") || "") }, s ? s.replace("_", " ") : "any")));
  const cinema = h("select", { id: "bk-cinema", "aria-label": "Cinema" }, h("option", { value: "" }, "All cinemas"),
    cinemas.map((c) => h("option", { value: c.id, selected: String(c.id) === params.get("cinema_id") }, c.name)));
  const screening = h("input", { type: "number", min: 1, id: "bk-screening", value: params.get("screening_id") || "", placeholder: "id", "aria-label": "Screening id", class: "narrow" });
  const from = h("input", { type: "date", id: "bk-from", value: params.get("from") || "", "aria-label": "Booked from" });
  const to = h("input", { type: "date", id: "bk-to", value: params.get("to") || "", "aria-label": "Booked until" });
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const list = h("div", { class: "table-wrap", id: "bookings" });
  const more = h("button", { type: "button", class: "secondary", id: "bk-more", hidden: true }, "More");
  const detail = h("section", { class: "panel", id: "order-detail" }, h("p", { class: "muted" }, "Choose an order to see its payments, refunds and history."));
  let cursor = null;
  let rows = [];

  function query() {
    const p = new URLSearchParams();
    if (q.value.trim()) p.set("q", q.value.trim());
    if (status.value) p.set("status", status.value);
    if (cinema.value) p.set("cinema_id", cinema.value);
    if (screening.value) p.set("screening_id", screening.value);
    if (from.value) p.set("from", from.value);
    if (to.value) p.set("to", to.value);
    return p;
  }

  function render() {
    clear(list, rows.length
      ? h("table", { class: "stack" }, h("thead", {}, h("tr", {}, ["Order", "Booked", "Customer", "Screening", "Seats", "Total"].map((t) => h("th", {}, t)))),
          h("tbody", {}, rows.map((b) => h("tr", { "data-order": b.id },
            h("td", {}, h("button", { type: "button", class: "link", onclick: () => showOrder(detail, b.id) }, `#${b.id}`)),
            h("td", { class: "small", "data-label": "Booked" }, dayAndClock(b.created_at, b.timezone)),
            h("td", {}, who(b)),
            h("td", {}, b.title, h("div", { class: "small muted" }, `${dayAndClock(b.starts_at, b.timezone)} · ${b.cinema}`)),
            h("td", {}, b.seats.join(" "), b.holder_names.length ? h("div", { class: "small muted" }, b.holder_names.join("; ")) : null),
            h("td", {}, money(b.total, b), " ", statusBadge(b.status))))))
      : h("p", { class: "muted" }, "No bookings match."));
    more.hidden = !cursor;
  }

  let searches = 0;
  async function search(event, append = false) {
    event?.preventDefault();
    const mine = ++searches;
    const p = query();
    history.replaceState(null, "", `#bookings?${p}`);
    if (append && cursor) p.set("cursor", cursor);
    try {
      const page = await api(`/api/admin/orders?${p}`);
      if (mine !== searches) return; // a later search's answer is the one to show
      rows = append ? rows.concat(page.items) : page.items;
      cursor = page.next_cursor || null;
      say(message, "");
    } catch (error) {
      say(message, errorText(error), "error");
      return;
    }
    render();
  }

  const csv = h("button", { type: "button", class: "secondary", id: "bk-csv", onclick: async () => {
    try {
      await downloadCsv(`/api/admin/orders?${query()}`);
    } catch (error) {
      say(message, errorText(error), "error");
    }
  } }, "Download CSV");
  more.addEventListener("click", () => search(null, true));
  const form = h("form", { class: "filters", id: "bk-filters", onsubmit: search },
    h("label", { class: "grow" }, "Search", q), h("label", {}, "Status", status), h("label", {}, "Cinema", cinema),
    h("label", {}, "Screening", screening), h("label", {}, "Booked from", from), h("label", {}, "until", to),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Search"), csv));
  clear(root, h("h2", {}, "Bookings"), form, message, h("div", { class: "admin-grid bookings-grid" }, h("div", {}, list, more), detail));
  await search();
  return null;
}

export async function showDoorLists(root, params) {
  const roster = doorList({ id: "door-list" });
  const picker = await screeningPicker({ id: "dl", params, onPick: (sid) => roster.load(sid) });
  clear(root, h("h2", {}, "Door lists"), picker, roster.el);
  const timer = setInterval(() => roster.reload(), 15_000);
  return () => clearInterval(timer);
}
