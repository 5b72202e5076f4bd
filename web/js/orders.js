// Orders and tickets: the page the payment gateway sends the buyer back to (`/?order=ID`),
// the list of the buyer's orders, and the ticket cards (with QR codes) the kiosk prints too.

import { api, explain } from "./api.js";
import { clear, h, say } from "./dom.js";
import { dayAndClock, money } from "./format.js";
import { refundBox } from "./refund.js";

const screenings = new Map();

export async function screeningBrief(id) {
  if (!screenings.has(id)) screenings.set(id, api(`/api/screenings/${id}`).catch(() => null));
  return screenings.get(id);
}

/** One card per ticket: the QR code, the seat (or area), the category and the code. */
export function ticketCards(tickets, order, screening) {
  return h("ul", { class: "tickets" },
    tickets.map((ticket) =>
      h("li", { class: `ticket ticket-${ticket.status}`, "data-code": ticket.code },
        h("img", { class: "qr", src: ticket.qr_url, alt: `QR code of ticket ${ticket.code}`, width: 160, height: 160 }),
        h("div", { class: "ticket-text" },
          screening ? h("p", { class: "ticket-title" }, screening.movie.title) : null,
          screening ? h("p", { class: "muted" }, `${dayAndClock(screening.starts_at, screening.cinema.timezone)} · ${screening.cinema.name} · ${screening.auditorium.name}`) : null,
          h("p", { class: "ticket-seat" }, ticket.seat ? `Seat ${ticket.seat}` : ticket.area || "Ticket"),
          h("p", {}, `${ticket.category} · ${money(ticket.price, order)}`),
          ticket.holder_name ? h("p", {}, ticket.holder_name) : null,
          h("p", { class: "code" }, h("span", { class: "muted" }, "Code "), h("code", {}, ticket.code)),
          ticket.status !== "valid" ? h("p", { class: "badge badge-bad" }, ticket.status) : null,
          ticket.checked_in_at ? h("p", { class: "badge" }, "Used") : null))));
}

const STATUS_WORDS = {
  pending: "Waiting for payment",
  paid: "Paid",
  expired: "Expired: the payment did not arrive in time",
  cancelled: "Cancelled",
  refund_pending: "Refunded: the money is on its way back",
  refunded: "Refunded",
};

export async function showOrder(main, id) {
  let timer = null;
  let polls = 0;
  const message = h("div", { class: "notice", role: "alert", hidden: true });

  async function render() {
    const order = await api(`/api/orders/${id}`);
    const screening = await screeningBrief(order.screening_id);
    const payment = order.payments[order.payments.length - 1];
    const parts = [
      h("p", { class: "crumbs" }, h("a", { href: "#/orders" }, "← My tickets")),
      h("h1", {}, order.status === "paid" ? "Your tickets" : `Order ${order.id}`),
      screening
        ? h("p", { class: "meta" }, h("a", { href: `#/screening/${screening.id}` }, screening.movie.title), ` · ${dayAndClock(screening.starts_at, screening.cinema.timezone)} · ${screening.cinema.name}`)
        : null,
      h("p", { class: `order-status status-${order.status}`, role: "status" }, STATUS_WORDS[order.status] || order.status,
        ` · ${money(order.total, order)}`),
      message,
    ];
    if (order.needs_refund) parts.push(h("p", { class: "notice notice-warn" }, "This payment is being refunded."));
    if (order.status === "pending") {
      if (payment?.status === "declined") parts.push(h("p", { class: "notice notice-error" }, "The payment was declined."));
      const again = h("button", { type: "button", class: "primary" }, payment?.status === "open" ? "Continue to payment" : "Pay now");
      again.addEventListener("click", async () => {
        try {
          const next = await api(`/api/orders/${order.id}/payments`, { method: "POST" });
          location.assign(next.redirect_url);
        } catch (error) {
          say(message, explain(error), "error");
        }
      });
      parts.push(h("p", { class: "actions" }, again,
        h("button", { type: "button", class: "secondary", onclick: async () => {
          try {
            await api(`/api/orders/${order.id}/cancel`, { method: "POST" });
            await render();
          } catch (error) {
            say(message, explain(error), "error");
          }
        } }, "Cancel order")));
      if (payment && payment.status !== "open" && polls < 20) {
        // Back from the gateway: its webhook may still be on its way.
        polls += 1;
        timer = setTimeout(render, 1000);
      }
    }
    if (order.tickets.length) {
      parts.push(ticketCards(order.tickets, order, screening),
        h("p", { class: "actions no-print" }, h("button", { type: "button", class: "secondary", onclick: () => print() }, "Print tickets")),
        refundBox(order, screening, message, render));
    }
    clear(main, h("article", { class: "order", "data-order": order.id, "data-status": order.status }, parts));
  }

  try {
    await render();
  } catch (error) {
    clear(main, h("h1", {}, "Order"), h("p", { class: "notice notice-error" }, explain(error)));
  }
  return () => clearTimeout(timer);
}

export async function showOrders(main) {
  const data = await api("/api/orders?limit=50");
  const rows = await Promise.all(
    data.items.map(async (order) => {
      const screening = await screeningBrief(order.screening_id);
      return h("li", { class: "order-row" },
        h("a", { href: `#/order/${order.id}` },
          h("strong", {}, screening ? screening.movie.title : `Screening ${order.screening_id}`),
          h("span", {}, screening ? dayAndClock(screening.starts_at, screening.cinema.timezone) : ""),
          h("span", { class: `status-${order.status}` }, STATUS_WORDS[order.status] || order.status),
          h("span", {}, money(order.total, order))));
    }),
  );
  clear(main, h("h1", {}, "My tickets"),
    rows.length ? h("ul", { class: "order-list" }, rows) : h("p", { class: "muted" }, "No orders yet."));
}
