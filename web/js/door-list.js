// The door list of one screening (GET /api/admin/screenings/{id}/attendees): every live ticket
// in seat order with its holder, code and check-in. Shown in the admin console and beside the
// kiosk's scanner at the door, where it refreshes after every scan.

import { api, errorText } from "./api.js";
import { clear, h, say } from "./dom.js";
import { clock, dayAndClock } from "./format.js";
import { downloadCsv } from "./exports.js";

export function doorList({ id = "door-list" } = {}) {
  const filter = h("input", { type: "search", id: `${id}-filter`, placeholder: "Name, seat or code", "aria-label": "Find on the door list" });
  const summary = h("p", { class: "door-summary", id: `${id}-summary` });
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const body = h("div", { class: "table-wrap" });
  const csv = h("button", { type: "button", class: "secondary", id: `${id}-csv`, disabled: true }, "Download CSV");
  const el = h("section", { class: "panel door-list", id },
    h("h2", {}, "Door list"), summary,
    h("div", { class: "filters" }, h("label", {}, "Find", filter), csv), message, body);
  let data = null;
  let screeningId = null;
  let loads = 0;

  function render() {
    if (!data) return;
    const needle = filter.value.trim().toLowerCase();
    const items = needle
      ? data.items.filter((a) => [a.seat, a.area, a.holder_name, a.code, a.buyer_email].some((v) => v && v.toLowerCase().includes(needle)))
      : data.items;
    clear(summary,
      h("strong", {}, data.title), ` · ${dayAndClock(data.starts_at, data.timezone)} · ${data.auditorium} · `,
      h("span", { class: "badge badge-ok" }, `${data.checked_in} of ${data.tickets} in`));
    clear(body, items.length
      ? h("table", { class: "attendees stack" },
          h("thead", {}, h("tr", {}, ["Seat", "Holder", "Code", "Checked in"].map((t) => h("th", {}, t)))),
          h("tbody", {}, items.map((a) => h("tr", { class: a.checked_in_at ? "in" : "", "data-code": a.code },
            h("td", {}, h("strong", {}, a.seat || a.area || ""), h("div", { class: "small muted" }, a.category)),
            h("td", {}, a.holder_name || h("span", { class: "muted" }, "—"), a.buyer_email ? h("div", { class: "small muted" }, a.buyer_email) : null),
            h("td", {}, h("code", { class: "small" }, a.code)),
            h("td", {}, a.checked_in_at
              ? [h("span", { class: "badge badge-ok" }, `In ${clock(a.checked_in_at, data.timezone)}`),
                 h("div", { class: "small muted" }, [a.gate, a.checked_in_by].filter(Boolean).join(" · "))]
              : h("span", { class: "muted" }, "not yet"))))))
      : h("p", { class: "muted" }, data.items.length ? "Nobody on the list matches." : "No tickets sold for this screening."));
  }

  async function load(sid) {
    const mine = ++loads;
    screeningId = sid ? String(sid) : null;
    csv.disabled = !screeningId;
    if (!screeningId) {
      data = null;
      clear(summary, h("span", { class: "muted" }, "Choose a screening to see who is coming."));
      clear(body);
      return;
    }
    try {
      const found = await api(`/api/admin/screenings/${encodeURIComponent(screeningId)}/attendees`);
      if (mine !== loads) return; // another screening (or a fresher load) is the one to show
      data = found;
      say(message, "");
    } catch (error) {
      if (mine === loads) say(message, errorText(error), "error");
      return;
    }
    render();
  }

  filter.addEventListener("input", render);
  csv.addEventListener("click", async () => {
    try {
      await downloadCsv(`/api/admin/screenings/${encodeURIComponent(screeningId)}/attendees`);
    } catch (error) {
      say(message, errorText(error), "error");
    }
  });
  return { el, load, reload: () => load(screeningId) };
}
