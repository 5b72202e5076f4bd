// The admin console's reports: sales per day, cinema or film (GET /api/admin/reports), one
// screening's figures by channel and category (GET /api/admin/reports/screenings/{id}) and its
// per-seat history (…/seats), each downloadable as CSV.

import { api, errorText } from "./api.js";
import { screeningPicker } from "./admin-bookings.js";
import { clear, h, say } from "./dom.js";
import { downloadCsv } from "./exports.js";
import { dayAndClock, isoDay, money } from "./format.js";

/** "Mon 7 Dec, 22:19:22" in the cinema's zone: a seat's history needs the seconds. */
function stamp(iso, timeZone) {
  const options = { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  try {
    return new Intl.DateTimeFormat("en-GB", { timeZone, ...options }).format(new Date(iso));
  } catch {
    return new Intl.DateTimeFormat("en-GB", options).format(new Date(iso));
  }
}

function bar(f) {
  const pct = (n) => `${((100 * n) / Math.max(1, f.capacity)).toFixed(1)}%`;
  return h("div", { class: "occupancy", role: "img", "aria-label": `${f.sold} sold, ${f.held} held, ${f.blocked} blocked of ${f.capacity}` },
    h("span", { class: "o-sold", style: `width:${pct(f.sold)}` }),
    h("span", { class: "o-held", style: `width:${pct(f.held)}` }),
    h("span", { class: "o-blocked", style: `width:${pct(f.blocked)}` }));
}

function salesTable(id, title, slices, priced) {
  const names = Object.keys(slices);
  return h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, [title, "Sold", "Refunded", "Gross", "Refunds", "Net"].map((t) => h("th", {}, t)))),
    h("tbody", {}, names.map((name) => {
      const s = slices[name];
      return h("tr", { "data-slice": name }, h("td", {}, name), h("td", {}, String(s.sold)), h("td", {}, String(s.refunded)),
        h("td", {}, money(s.gross, priced)), h("td", {}, money(s.refunds, priced)), h("td", {}, h("strong", {}, money(s.net, priced))));
    }))));
}

function figureCards(f) {
  const card = (label, value, id) => h("div", { class: "figure", "data-figure": id }, h("span", { class: "small muted" }, label), h("strong", {}, value));
  return h("div", { class: "figures" },
    card("Sold", `${f.sold} of ${f.sellable}`, "sold"), card("Occupancy", `${f.occupancy}%`, "occupancy"),
    card("Held now", String(f.held), "held"), card("Blocked", String(f.blocked), "blocked"),
    card("Gross", money(f.gross, f), "gross"), card("Refunds", money(f.refunds, f), "refunds"), card("Net", money(f.net, f), "net"));
}

let reportLoads = 0;

async function screeningReport(box, id) {
  const mine = ++reportLoads;
  if (!id) {
    clear(box, h("p", { class: "muted" }, "Choose a screening for its report and seat history."));
    return;
  }
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  let report;
  let history;
  try {
    [report, history] = await Promise.all([
      api(`/api/admin/reports/screenings/${encodeURIComponent(id)}`),
      api(`/api/admin/reports/screenings/${encodeURIComponent(id)}/seats`),
    ]);
  } catch (error) {
    if (mine === reportLoads) clear(box, h("p", { class: "notice notice-error" }, errorText(error)));
    return;
  }
  if (mine !== reportLoads) return; // another screening was chosen meanwhile
  const f = report.report;
  const seat = h("input", { type: "search", id: "history-seat", placeholder: "e.g. F12", "aria-label": "Seat", class: "narrow" });
  const events = h("div", { class: "table-wrap" });
  function renderHistory() {
    const wanted = seat.value.trim().toUpperCase();
    const shown = history.events.filter((e) => !wanted || e.seat === wanted);
    clear(events, shown.length
      ? h("table", { id: "seat-history", class: "stack" }, h("thead", {}, h("tr", {}, ["Seat", "When", "What", "Who", "Where from", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, shown.map((e) => h("tr", { "data-seat": e.seat, "data-event": e.event },
            h("td", {}, h("strong", {}, e.seat)), h("td", { class: "small" }, stamp(e.at, history.timezone)), h("td", {}, e.event.replace("_", " ")),
            h("td", { class: "small" }, e.by || (e.source === "live" ? h("span", { class: "muted" }, "not recorded") : "")),
            h("td", { class: "small muted" }, e.source),
            h("td", { class: "small" }, [e.order_id ? `order ${e.order_id}` : "", e.channel, e.gate, e.detail].filter(Boolean).join(" · "))))))
      : h("p", { class: "muted" }, "Nothing recorded for this seat."));
  }
  seat.addEventListener("input", renderHistory);
  const csv = (path) => async () => {
    try {
      await downloadCsv(path);
    } catch (error) {
      say(message, errorText(error), "error");
    }
  };
  clear(box,
    h("h2", {}, f.label, " ", h("span", { class: `badge ${report.status === "cancelled" ? "badge-bad" : "badge-ok"}` }, report.status)),
    message, bar(f), figureCards(f),
    h("div", { class: "admin-grid" },
      h("div", {}, h("h3", {}, "By channel"), salesTable("by-channel", "Channel", f.by_channel, f)),
      h("div", {}, h("h3", {}, "By category"), salesTable("by-category", "Category", f.by_category, f))),
    h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", id: "screening-report-csv", onclick: csv(`/api/admin/reports/screenings/${id}`) }, "Download CSV")),
    h("h3", {}, "Seat history"),
    h("p", { class: "small muted" }, "From orders, tickets, blocks and the live map's recent changes. Who held a seat that never became an order is not recorded."),
    h("div", { class: "filters" }, h("label", {}, "Seat", seat),
      h("button", { type: "button", class: "secondary", id: "seat-history-csv", onclick: csv(`/api/admin/reports/screenings/${id}/seats`) }, "Download CSV")),
    events);
  renderHistory();
}

export async function showReports(root, params) {
  const today = new Date();
  const ago = new Date(today.getTime() - 30 * 86400_000);
  const ahead = new Date(today.getTime() + 30 * 86400_000);
  const group = h("select", { id: "rep-group", "aria-label": "Group by" },
    [["day", "Day"], ["cinema", "Cinema"], ["movie", "Film"]].map(([v, t]) => h("option", { value: v, selected: v === (params.get("group") || "day") }, t)));
  const from = h("input", { type: "date", id: "rep-from", value: params.get("from") || isoDay(ago), "aria-label": "From" });
  const to = h("input", { type: "date", id: "rep-to", value: params.get("to") || isoDay(ahead), "aria-label": "To" });
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const table = h("div", { class: "table-wrap", id: "report" });
  const one = h("section", { class: "panel", id: "screening-report" });
  const query = () => `group=${group.value}&from=${from.value}&to=${to.value}`;

  let loads = 0;
  async function load(event) {
    event?.preventDefault();
    const mine = ++loads;
    let data;
    try {
      data = await api(`/api/admin/reports?${query()}`);
      if (mine !== loads) return; // a later choice's answer is the one to show
      say(message, "");
    } catch (error) {
      say(message, errorText(error), "error");
      return;
    }
    clear(table, data.rows.length
      ? h("table", { class: "stack" },
          h("thead", {}, h("tr", {}, [group.selectedOptions[0].textContent, "Screenings", "Sold", "Occupancy", "Held", "Blocked", "Gross", "Refunds", "Net", "Web", "Box office"].map((t) => h("th", {}, t)))),
          h("tbody", {}, data.rows.map((r) => h("tr", { "data-key": r.key },
            h("td", {}, h("strong", {}, r.label)), h("td", { "data-label": "Screenings" }, String(r.screenings)),
            h("td", { "data-label": "Sold" }, `${r.sold} / ${r.sellable}`),
            h("td", {}, bar(r), h("span", { class: "small muted" }, `${r.occupancy}%`)),
            h("td", { "data-label": "Held" }, String(r.held)), h("td", { "data-label": "Blocked" }, String(r.blocked)),
            h("td", { "data-label": "Gross" }, money(r.gross, r)), h("td", { "data-label": "Refunds" }, money(r.refunds, r)),
            h("td", { "data-label": "Net" }, h("strong", {}, money(r.net, r))),
            h("td", { class: "small", "data-label": "Web" }, money(r.by_channel.web?.net ?? 0, r)),
            h("td", { class: "small", "data-label": "Box office" }, money(r.by_channel.boxoffice?.net ?? 0, r))))))
      : h("p", { class: "muted" }, "No screenings in this range."));
  }

  const csv = h("button", { type: "button", class: "secondary", id: "rep-csv", onclick: async () => {
    try {
      await downloadCsv(`/api/admin/reports?${query()}`);
    } catch (error) {
      say(message, errorText(error), "error");
    }
  } }, "Download CSV");
  const form = h("form", { class: "filters", id: "rep-filters", onsubmit: load },
    h("label", {}, "Group by", group), h("label", {}, "From", from), h("label", {}, "To", to),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Show"), csv));
  group.addEventListener("change", load);
  const picker = await screeningPicker({ id: "rep", params, onPick: (sid) => screeningReport(one, sid) });
  clear(root, h("h2", {}, "Reports"), form, message, table, h("h2", { class: "section" }, "One screening"), picker, one);
  await load();
  return null;
}
