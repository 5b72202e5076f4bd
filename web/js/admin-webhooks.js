// Admin: webhooks to integrators. Endpoints (URL, event types, enabled), the signing secret shown
// once when it is made or rotated, and each endpoint's delivery log: every attempt's answer,
// dead letters with a Retry button. The API is sales/webhook_admin.py.

import { api, errorText } from "./api.js";
import { confirmDialog } from "./confirm.js";
import { clear, h, say } from "./dom.js";

const EVENT_TYPES = [
  ["order.paid", "An order is paid (web or box office), with its tickets"],
  ["order.refunded", "A refund is done"],
  ["ticket.checked_in", "A ticket is admitted at the door"],
  ["screening.cancelled", "A screening is cancelled"],
  ["screening.sold_out", "A screening's last seat is sold"],
  ["seat.status_changed", "Seats sold or freed (one event per sale or refund)"],
];
const STATUS_BADGE = { delivered: "badge-ok", dead: "badge-bad", failed: "badge-warn" };

const when = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" }) : "");

function secretNotice(endpoint, verb) {
  return h("div", { class: "notice notice-warn secret-once", role: "alert", id: "webhook-secret" },
    h("p", {}, h("strong", {}, `Signing secret for ${endpoint.url} (${verb}): `), "copy it now, it is not shown again."),
    h("p", {}, h("code", { class: "secret" }, endpoint.secret)),
    endpoint.previous_secret_until
      ? h("p", { class: "small" }, `The previous secret keeps signing too (a second v1) until ${when(endpoint.previous_secret_until)}.`)
      : null);
}

export async function showWebhooks(root, params) {
  let endpoints = [];
  let selectedId = params.get("endpoint");
  let statusFilter = params.get("status") || "";
  const message = h("div", { class: "notice", role: "alert", hidden: true });
  const secretBox = h("div", {});
  const list = h("div", { id: "webhook-list" });
  const formBox = h("section", { class: "panel", id: "new-webhook" });
  const log = h("section", { class: "panel", id: "webhook-log" }, h("p", { class: "muted" }, "Choose an endpoint to see its deliveries."));

  const go = () => history.replaceState(null, "", `#hooks${selectedId ? `?endpoint=${selectedId}${statusFilter ? `&status=${statusFilter}` : ""}` : ""}`);

  async function reload() {
    try {
      endpoints = (await api("/api/admin/webhooks")).items;
    } catch (error) {
      clear(list, h("p", { class: "notice notice-error" }, errorText(error)));
      return;
    }
    clear(list, endpoints.length
      ? h("ul", { class: "endpoints" }, endpoints.map((e) => h("li", { class: `panel endpoint${String(e.id) === String(selectedId) ? " selected" : ""}`, "data-endpoint": e.id },
          h("p", { class: "url" }, h("button", { type: "button", class: "link show-log", onclick: () => select(e.id) }, e.url)),
          h("p", { class: "small" },
            h("span", { class: `badge ${e.enabled ? "badge-ok" : ""}` }, e.enabled ? "enabled" : "disabled"), " ",
            e.description ? [h("span", {}, e.description), " · "] : null,
            e.event_types.length === EVENT_TYPES.length ? "all events" : e.event_types.join(", ")),
          h("p", { class: "small" }, `${e.pending} pending`,
            e.dead ? [" · ", h("span", { class: "badge badge-bad dead-count" }, `${e.dead} dead`)] : null),
          h("p", { class: "row-actions small" },
            h("button", { type: "button", class: "link", onclick: () => select(e.id) }, "Deliveries"),
            h("button", { type: "button", class: "link", onclick: () => toggle(e) }, e.enabled ? "Disable" : "Enable"),
            h("button", { type: "button", class: "link", onclick: () => rotate(e) }, "Rotate secret"),
            h("button", { type: "button", class: "link", onclick: () => remove(e) }, "Delete")))))
      : h("p", { class: "muted" }, "No endpoints yet: integrators get nothing until one is registered."));
  }

  async function toggle(e) {
    try {
      await api(`/api/admin/webhooks/${e.id}`, { method: "PATCH", body: { enabled: !e.enabled } });
      say(message, `${e.url} is ${e.enabled ? "disabled: it gets no new events" : "enabled"}.`, "ok");
      await reload();
    } catch (error) {
      say(message, errorText(error), "error");
    }
  }

  async function rotate(e) {
    const ok = await confirmDialog({ title: "Rotate the signing secret?", body: `${e.url} gets a new secret, shown once. The old one keeps signing beside it for 24 hours, so the integrator can switch without missing a delivery.`, confirm: "Rotate" });
    if (!ok) return;
    try {
      const rotated = await api(`/api/admin/webhooks/${e.id}/secret`, { method: "POST" });
      clear(secretBox, secretNotice(rotated, "rotated"));
      await reload();
    } catch (error) {
      say(message, errorText(error), "error");
    }
  }

  async function remove(e) {
    const ok = await confirmDialog({ title: "Delete this endpoint?", body: `${e.url} and its delivery log are deleted; queued deliveries are dropped.`, confirm: "Delete", danger: true });
    if (!ok) return;
    try {
      await api(`/api/admin/webhooks/${e.id}`, { method: "DELETE" });
      say(message, `Deleted ${e.url}.`, "ok");
      if (String(selectedId) === String(e.id)) {
        selectedId = null;
        clear(log, h("p", { class: "muted" }, "Choose an endpoint to see its deliveries."));
        go();
      }
      await reload();
    } catch (error) {
      say(message, errorText(error), "error");
    }
  }

  function renderForm() {
    const url = h("input", { id: "webhook-url", type: "url", required: true, maxlength: 2000, placeholder: "https://integrator.example.com/seatmap" });
    const description = h("input", { id: "webhook-description", maxlength: 500, placeholder: "Who it is for (optional)" });
    const boxes = EVENT_TYPES.map(([type, text]) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: "event_types", value: type, checked: type !== "seat.status_changed" }), " ", h("code", {}, type), h("span", { class: "small muted" }, ` ${text}`)));
    const out = h("div", { class: "notice", role: "alert", hidden: true });
    const form = h("form", {},
      h("h2", {}, "New endpoint"),
      h("p", { class: "field" }, h("label", { for: "webhook-url" }, "URL"), url),
      h("p", { class: "field" }, h("label", { for: "webhook-description" }, "Description"), description),
      h("fieldset", { class: "event-types" }, h("legend", {}, "Events"), boxes.map((b) => h("div", {}, b))),
      out,
      h("p", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "create-webhook" }, "Add endpoint")),
      h("p", { class: "small muted" }, "Each delivery is a POST signed with Seatmap-Signature (HMAC-SHA256 of timestamp.body) and carries a Webhook-Id to deduplicate on; see docs/back-office.md."));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const types = [...form.querySelectorAll("input[name=event_types]:checked")].map((i) => i.value);
      if (!types.length) {
        say(out, "Choose at least one event.", "error");
        return;
      }
      try {
        const created = await api("/api/admin/webhooks", { method: "POST", body: { url: url.value.trim(), description: description.value.trim(), event_types: types } });
        say(out, "", "info");
        clear(secretBox, secretNotice(created, "new"));
        form.reset();
        await reload();
        await select(created.id);
      } catch (error) {
        say(out, error.details?.path === "$.url" || error.code === "invalid_input" ? error.message : errorText(error), "error");
      }
    });
    clear(formBox, form);
  }

  async function select(id) {
    selectedId = String(id);
    go();
    for (const li of list.querySelectorAll("[data-endpoint]")) li.classList.toggle("selected", li.dataset.endpoint === selectedId);
    await loadLog();
  }

  // `notice` is said once the log is drawn again (drawing it replaces the old notice).
  // Only the latest request draws: an answer to an older filter arriving late is dropped.
  let logRequest = 0;
  async function loadLog(notice = "") {
    if (!selectedId) return;
    const request = ++logRequest;
    const shown = statusFilter;
    const endpoint = endpoints.find((e) => String(e.id) === selectedId);
    const status = h("select", { id: "delivery-status", "aria-label": "Status" },
      ["", "pending", "failed", "delivered", "dead"].map((s) => h("option", { value: s, selected: s === statusFilter }, s || "all")));
    status.addEventListener("change", () => { statusFilter = status.value; go(); loadLog(); });
    let page;
    try {
      page = await api(`/api/admin/webhooks/${selectedId}/deliveries?limit=50${shown ? `&status=${shown}` : ""}`);
    } catch (error) {
      if (request === logRequest) clear(log, h("p", { class: "notice notice-error" }, errorText(error)));
      return;
    }
    if (request !== logRequest) return;
    log.dataset.status = shown;
    const out = h("div", { class: "notice", role: "alert", hidden: true });
    if (notice) say(out, notice, "ok");
    clear(log,
      h("h2", {}, "Deliveries"),
      h("p", { class: "meta small" }, endpoint ? endpoint.url : "", " · ", h("label", {}, "Status ", status)),
      out,
      page.items.length
        ? h("table", { class: "deliveries" },
            h("thead", {}, h("tr", {}, ["Event", "Status", "Tries", "Last answer", ""].map((t) => h("th", {}, t)))),
            h("tbody", {}, page.items.map((d) => h("tr", { class: d.status === "dead" ? "dead" : "", "data-delivery": d.id },
              h("td", {}, h("code", {}, d.event_type), h("div", { class: "small muted" }, when(d.created_at))),
              h("td", {}, h("span", { class: `badge ${STATUS_BADGE[d.status] || ""}` }, d.status),
                d.next_attempt_at ? h("div", { class: "small muted" }, `next ${when(d.next_attempt_at)}`) : null),
              h("td", {}, String(d.attempts)),
              h("td", { class: "small" }, d.last_error || (d.last_status ? `HTTP ${d.last_status}` : "")),
              h("td", { class: "row-actions" },
                d.status === "dead"
                  ? h("button", { type: "button", class: "secondary", onclick: async () => {
                      try {
                        await api(`/api/admin/webhooks/deliveries/${d.id}/retry`, { method: "POST" });
                        await Promise.all([reload(), loadLog(`Delivery ${d.id} will be tried again (same Webhook-Id).`)]);
                      } catch (error) {
                        say(out, errorText(error), "error");
                      }
                    } }, "Retry")
                  : null,
                h("button", { type: "button", class: "link", onclick: (event) => showDetail(event.target.closest("tr"), d.id) }, "Details"))))))
        : h("p", { class: "muted" }, shown ? `No ${shown} deliveries.` : "No deliveries yet."));
  }

  async function showDetail(row, id) {
    const next = row.nextElementSibling;
    if (next?.classList.contains("delivery-detail")) {
      next.remove();
      return;
    }
    try {
      const d = await api(`/api/admin/webhooks/deliveries/${id}`);
      row.after(h("tr", { class: "delivery-detail" }, h("td", { colspan: 5 },
        h("p", { class: "small" }, "Webhook-Id ", h("code", {}, d.event_id)),
        h("ol", { class: "small attempts" }, d.attempt_log.map((a) => h("li", {}, `${when(a.attempted_at)}: ${a.error || (a.status_code ? `HTTP ${a.status_code}` : "no answer")}, ${a.duration_ms} ms`))),
        h("pre", { class: "small event-body" }, JSON.stringify(d.event, null, 2)))));
    } catch (error) {
      row.after(h("tr", { class: "delivery-detail" }, h("td", { colspan: 5 }, errorText(error))));
    }
  }

  clear(root, h("h2", {}, "Webhooks"), message, secretBox, list, h("div", { class: "admin-grid" }, log, formBox));
  renderForm();
  await reload();
  if (selectedId) await loadLog();
  const timer = setInterval(async () => { await reload(); }, 10_000);
  return () => clearInterval(timer);
}
