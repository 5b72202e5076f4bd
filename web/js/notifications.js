// The customer's notifications (GET /api/notifications): what we told them by mail, newest
// first (booking confirmed, refund done, screening cancelled; for admins and organizers also
// screenings nearly sold out and sold out), each linking to its order or screening.

import { api, explain } from "./api.js";
import { clear, h } from "./dom.js";
import { dayAndClock } from "./format.js";

const KIND_WORDS = {
  booking_confirmed: "Booking confirmed",
  refund_done: "Refund done",
  screening_cancelled: "Screening cancelled",
  screening_nearly_sold_out: "Nearly sold out",
  screening_sold_out: "Sold out",
};

function item(n) {
  const link = n.order_id ? h("a", { href: `#/order/${n.order_id}` }, "Open the order")
    : n.screening_id ? h("a", { href: `#/screening/${n.screening_id}` }, "Open the screening") : null;
  return h("li", { class: `notification kind-${n.kind}`, "data-kind": n.kind },
    h("p", { class: "notification-head" },
      h("span", { class: "badge" }, KIND_WORDS[n.kind] || n.kind),
      h("strong", {}, n.subject),
      h("time", { class: "muted small", datetime: n.created_at }, dayAndClock(n.created_at, Intl.DateTimeFormat().resolvedOptions().timeZone))),
    h("p", { class: "notification-body" }, n.body.replace(/\n+seatmap\n*$/, "").trim()),
    link ? h("p", {}, link) : null);
}

export async function showNotifications(main) {
  const list = h("ul", { class: "notifications", id: "notifications" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older");
  let cursor = null;
  async function load() {
    const data = await api(`/api/notifications?limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    list.append(...data.items.map(item));
    cursor = data.next_cursor;
    more.hidden = !cursor;
    if (!list.children.length) list.replaceWith(h("p", { class: "muted", id: "notifications" }, "Nothing yet. We tell you here (and by mail) when a booking is confirmed, refunded or cancelled."));
  }
  more.addEventListener("click", () => load().catch(() => {}));
  clear(main, h("h1", {}, "Notifications"), list, h("p", { class: "actions" }, more));
  try {
    await load();
  } catch (error) {
    clear(main, h("h1", {}, "Notifications"), h("p", { class: "notice notice-error" }, explain(error)));
  }
}
