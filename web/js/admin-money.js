// Admin: the money desk. Refunds named by order, customer, screening and amount, with a retry
// for dead ones and, for cash and card-present sales (refunded at the counter), a confirmation
// that staff paid it out, with the till's reference. And the simulated gateway's webhooks it
// gave up delivering, with a button to send one again.

import { api, available, errorText } from "./api.js";
import { confirmDialog } from "./confirm.js";
import { clear, h, say } from "./dom.js";
import { dayAndClock, money } from "./format.js";

const STATUSES = ["", "pending", "failed", "dead", "succeeded", "manual", "paid_out"];
const STATUS_WORDS = { manual: "owed at counter", paid_out: "paid out" };
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

function badgeFor(status) {
  const kind = status === "dead" ? "badge-bad" : status === "succeeded" || status === "paid_out" ? "badge-ok" : status === "manual" ? "badge-warn" : "";
  return h("span", { class: `badge ${kind}` }, STATUS_WORDS[status] || status);
}

export async function showRefunds(root, params) {
  if (!(await available("get", "/api/admin/refunds"))) {
    clear(root, h("h2", {}, "Refunds"),
      h("p", { class: "unavailable", id: "refunds-unavailable" }, "Refunds are not available on this server yet (GET /api/admin/refunds)."));
    return null;
  }
  const status = h("select", { id: "refund-status", "aria-label": "Status" },
    STATUSES.map((s) => h("option", { value: s, selected: s === (params.get("status") || "") }, s ? STATUS_WORDS[s] || s : "all")));
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const list = h("div", { class: "table-scroll" });

  async function act(path, body, done) {
    try {
      await api(path, { method: "POST", body });
      say(message, done, "ok");
      await reload();
    } catch (error) {
      say(message, errorText(error), "error");
    }
  }

  async function confirmPayout(r) {
    const reference = await confirmDialog({
      title: `Paid out refund ${r.id}?`,
      body: `${money(r.amount, r)} for order ${r.order_id}${r.customer_email ? ` (${r.customer_email})` : " (counter sale)"}. Enter the till's reference of the payout.`,
      confirm: "Confirm payout",
      field: { label: "Till reference", required: true, maxlength: 100 },
    });
    if (!reference) return;
    await act(`/api/admin/refunds/${r.id}/confirm`, { till_reference: reference }, `Refund ${r.id} paid out (${reference}).`);
  }

  function row(r) {
    const action = r.status === "dead"
      ? h("button", { type: "button", class: "secondary", onclick: () => act(`/api/admin/refunds/${r.id}/retry`, undefined, `Refund ${r.id} will be retried.`) }, "Retry")
      : r.status === "manual"
        ? h("button", { type: "button", class: "primary", "data-confirm": r.id, onclick: () => confirmPayout(r) }, "Confirm payout")
        : null;
    return h("tr", { class: r.status === "dead" ? "dead" : "", "data-refund": r.id },
      h("td", {}, String(r.id)),
      h("td", {}, String(r.order_id), h("div", { class: "muted small" }, r.channel === "boxoffice" ? "box office" : "web")),
      h("td", {}, r.customer_email ? [r.customer_name ? h("div", {}, r.customer_name) : null, h("div", { class: "small" }, r.customer_email)] : h("span", { class: "muted" }, "at the counter")),
      h("td", {}, h("div", {}, r.movie_title), h("div", { class: "muted small" }, `${dayAndClock(r.starts_at, ZONE)} · #${r.screening_id}`)),
      h("td", { class: "num" }, money(r.amount, r)),
      h("td", {}, badgeFor(r.status), r.till_reference ? h("div", { class: "muted small" }, `till ${r.till_reference}`) : null,
        r.status === "failed" || r.status === "dead" ? h("div", { class: "muted small" }, `${r.attempts} attempts`) : null),
      h("td", { class: "small" }, r.last_error || r.reason || ""),
      h("td", {}, action));
  }

  async function reload() {
    let items;
    try {
      items = (await api(`/api/admin/refunds?limit=100${status.value ? `&status=${status.value}` : ""}`)).items;
    } catch (error) {
      clear(list, h("p", { class: "notice notice-error" }, errorText(error)));
      return;
    }
    clear(list, items.length
      ? h("table", { id: "refunds-table" },
        h("thead", {}, h("tr", {}, ["Refund", "Order", "Customer", "Screening", "Amount", "Status", "Why / last error", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, items.map(row)))
      : h("p", { class: "muted" }, "No refunds."));
  }
  status.addEventListener("change", reload);
  clear(root, h("h2", {}, "Refunds"), h("p", {}, h("label", {}, "Status ", status)), message, list);
  await reload();
  const timer = setInterval(() => {
    if (!document.querySelector("dialog[open]")) reload();
  }, 10_000);
  return () => clearInterval(timer);
}

export async function showGivenUp(root) {
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const list = h("div", { class: "table-scroll" });

  async function reload() {
    let items;
    try {
      items = (await api("/api/admin/gateway/webhooks/given-up?limit=100")).items;
    } catch (error) {
      clear(list, h("p", { class: "notice notice-error" }, errorText(error)));
      return;
    }
    clear(list, items.length
      ? h("table", { id: "given-up-table" },
        h("thead", {}, h("tr", {}, ["Webhook", "Event", "Order", "Payment", "Attempts", "Last answer", "Since", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, items.map((w) => h("tr", { "data-webhook": w.id },
          h("td", {}, String(w.id)), h("td", {}, w.type), h("td", {}, w.reference || ""),
          h("td", { class: "small" }, w.payment_id), h("td", { class: "num" }, String(w.attempts)),
          h("td", {}, w.last_status ? `HTTP ${w.last_status}` : "no answer"),
          h("td", { class: "small" }, dayAndClock(w.created_at, ZONE)),
          h("td", {}, h("button", { type: "button", class: "secondary", onclick: async () => {
            try {
              await api(`/api/admin/gateway/webhooks/${w.id}/send-again`, { method: "POST" });
              say(message, `Webhook ${w.id} is being sent again.`, "ok");
              await reload();
            } catch (error) {
              say(message, errorText(error), "error");
            }
          } }, "Send again"))))))
      : h("p", { class: "muted", id: "given-up-empty" }, "None: the gateway delivered every webhook."));
  }
  clear(root, h("h2", {}, "Gateway webhooks given up"),
    h("p", { class: "muted" }, "Events the payment gateway stopped trying to deliver after its last attempt. Until one arrives, its payment stays processing here."),
    message, list);
  await reload();
  return null;
}
