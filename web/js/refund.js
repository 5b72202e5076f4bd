// The refund button on the customer's order page: a paid order can be refunded until the
// screening's `refunds_close_at` (SEATMAP_REFUND_DEADLINE before the start), shown beside it;
// after that, or once a ticket was used at the door, the page says why not.

import { api, explain } from "./api.js";
import { confirmDialog } from "./confirm.js";
import { h, say } from "./dom.js";
import { dayAndClock, money } from "./format.js";

export function refundBox(order, screening, message, after) {
  if (order.status !== "paid" || !screening?.refunds_close_at) return null;
  const tz = screening.cinema.timezone;
  const deadline = dayAndClock(screening.refunds_close_at, tz);
  const used = order.tickets.some((t) => t.checked_in_at);
  if (used) return h("p", { class: "muted refund-box", id: "refund-box" }, "A ticket of this order was used at the door, so it cannot be refunded.");
  if (Date.parse(screening.refunds_close_at) <= Date.now()) {
    return h("p", { class: "muted refund-box", id: "refund-box" }, `Refunds for this screening closed on ${deadline}.`);
  }
  const button = h("button", { type: "button", class: "secondary", id: "refund" }, "Refund this order");
  button.addEventListener("click", async () => {
    const ok = await confirmDialog({
      title: "Refund this order?",
      body: `${money(order.total, order)} goes back to how you paid, and your ${order.tickets.length === 1 ? "ticket stops" : `${order.tickets.length} tickets stop`} working at once.`,
      confirm: "Refund",
      danger: true,
    });
    if (!ok) return;
    button.disabled = true;
    try {
      await api(`/api/orders/${order.id}/refund`, { method: "POST" });
      await after();
    } catch (error) {
      button.disabled = false;
      say(message, explain(error), "error");
    }
  });
  return h("div", { class: "refund-box", id: "refund-box" },
    button, h("p", { class: "muted small", id: "refund-deadline" }, `You can refund until ${deadline}.`));
}
