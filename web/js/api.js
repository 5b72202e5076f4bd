// The JSON API as the browser uses it: same-origin fetch with the HttpOnly session cookie
// (set by POST /api/auth/login), one silent refresh when the access token has run out, and
// errors as `ApiError` carrying the server's `{"error": {code, message, ...}}`.

import { listWords } from "./format.js";

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `The server answered ${status}.`);
    this.status = status;
    this.code = error?.code || `http_${status}`;
    this.details = error || {};
  }
}

const listeners = new Set();
let refreshing = null;

/** Called with the user (or null) whenever the session changes. */
export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function announce(user) {
  for (const fn of listeners) fn(user);
}

async function refreshSession() {
  refreshing ??= fetch("/api/auth/refresh", { method: "POST", credentials: "same-origin" })
    .then((r) => r.ok)
    .catch(() => false)
    .finally(() => setTimeout(() => (refreshing = null), 0));
  return refreshing;
}

/**
 * The response of a request index.html started while the scripts were still loading (the
 * screening's layout: half a megabyte for an arena), taken once; null when there is none or
 * it failed (the caller then asks again, and reports that failure).
 */
function early(path) {
  const started = window.seatmapEarly;
  if (!started || started.path !== path) return null;
  window.seatmapEarly = null;
  return started.response.catch(() => null);
}

export async function api(path, { method = "GET", body, headers = {}, retry = true } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = (method === "GET" && retry && (await early(path))) || (await fetch(path, init));
  } catch {
    throw new ApiError(0, {
      code: "network",
      message: "Cannot reach the server. Check the connection and try again.",
    });
  }
  if (response.status === 401 && retry && !path.startsWith("/api/auth/")) {
    if (await refreshSession()) return api(path, { method, body, headers, retry: false });
    currentUser = null;
    announce(null);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data?.error);
  return data;
}

/** Every page of a keyset-paginated list (bounded, for the small admin and catalog lists). */
export async function all(path, maxPages = 20) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page++) {
    const sep = path.includes("?") ? "&" : "?";
    const data = await api(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...data.items);
    cursor = data.next_cursor;
    if (!cursor) break;
  }
  return items;
}

let spec = null;

/** Does this server have the route? (from its own /openapi.json; for features that land later) */
export async function available(method, path) {
  spec ??= await api("/openapi.json").catch(() => ({ paths: {} }));
  return Boolean(spec.paths?.[path]?.[method.toLowerCase()]);
}

/** The paths this server documents (for routes whose exact shape is discovered). */
export async function paths() {
  spec ??= await api("/openapi.json").catch(() => ({ paths: {} }));
  return Object.keys(spec.paths || {});
}

// ---- the session --------------------------------------------------------------------------

let currentUser;
let asking = null; // the question in flight: the header and the page ask at the same time

/** The logged-in user, or null (asked once, then kept up to date by login/logout). */
export async function me({ fresh = false } = {}) {
  if (currentUser !== undefined && !fresh) return currentUser;
  asking ??= (async () => {
    try {
      currentUser = await api("/api/me");
    } catch (error) {
      if (error.status !== 401 && error.status !== 403) throw error;
      currentUser = null;
    }
    return currentUser;
  })().finally(() => (asking = null));
  return asking;
}

/** Of `cinemas`, those the logged-in user manages: an organizer's own, every one for others. */
export async function managed(cinemas) {
  const user = await me();
  return user?.role === "organizer" ? cinemas.filter((c) => (user.cinema_ids || []).includes(c.id)) : cinemas;
}

export async function login(email, password) {
  await api("/api/auth/login", { method: "POST", body: { email, password } });
  currentUser = await api("/api/me");
  announce(currentUser);
  return currentUser;
}

export async function register(name, email, password) {
  await api("/api/auth/register", { method: "POST", body: { name, email, password } });
  return login(email, password);
}

/** Enter the mailed code; the session's user is verified from then on (no new login needed). */
export async function verifyEmail(email, code) {
  currentUser = await api("/api/auth/verify", { method: "POST", body: { email, code } });
  announce(currentUser);
  return currentUser;
}

export async function resendCode(email) {
  await api("/api/auth/verify/resend", { method: "POST", body: { email } });
}

export async function logout() {
  try {
    await api("/api/auth/logout", { method: "POST" });
  } catch (error) {
    if (error.status !== 401) throw error;
  }
  currentUser = null;
  announce(null);
}

// ---- what an error means to the person in front of the screen ---------------------------------

/** What to show for any failure: the explanation of an API error, or the error's text. */
export function errorText(error) {
  return error instanceof ApiError ? explain(error) : String(error?.message || error);
}

/** One sentence for a refusal, naming the seats, the seat or the block size the server named. */
export function explain(error, context = {}) {
  const d = error.details || {};
  switch (error.code) {
    case "seat_taken": {
      const seats = d.seats || [];
      if (!seats.length) return "Those seats are no longer available.";
      const verb = seats.length === 1 ? "was" : "were";
      const blocked = (d.blocked || []).length && !(d.taken || []).length;
      return blocked
        ? `Seat ${listWords(seats)} ${verb === "was" ? "is" : "are"} not available (blocked).`
        : `Sorry, ${listWords(seats)} ${verb} just taken by someone else. Pick other seats.`;
    }
    case "would_strand_seat":
      return d.seat
        ? `That would leave seat ${d.seat} on its own. Choose seats so no single seat is left between taken seats — shift your choice by one seat.`
        : error.message;
    case "not_enough_adjacent": {
      const count = context.count ? `${context.count} seats together` : "that many seats together";
      return d.largest
        ? `There are no longer ${count}; the largest block still free has ${d.largest} seat${d.largest === 1 ? "" : "s"}.`
        : `There are no longer ${count}.`;
    }
    case "too_many_seats":
      return `You can hold at most ${d.limit ?? 10} seats at once.`;
    case "hold_limit":
      return "You already hold seats for this screening (maybe in another window): release them or check out first.";
    case "hold_expired":
      return "Your hold has expired; the seats went back on sale.";
    case "not_on_sale":
      return error.message || "This screening is not on sale.";
    case "sold_out":
      return d.remaining !== undefined ? `Only ${d.remaining} left in this area.` : "Sold out.";
    case "unknown_seats":
      return `No such seat here: ${listWords(d.seats || [])}.`;
    case "unauthorized":
    case "invalid_token":
      return "Please log in first.";
    case "invalid_credentials":
      return "Wrong email or password.";
    case "email_taken":
      return "An account with this email already exists: log in instead.";
    case "rate_limited":
      return `Too many attempts; try again in ${Math.ceil(d.retry_after || 60)} seconds.`;
    case "email_unverified":
      return "Verify your email first: enter the six-digit code we mailed you.";
    case "invalid_code":
      return error.message || "That code does not work; ask for a new one.";
    case "forbidden":
      return "Your account is not allowed to do this.";
    case "order_closed":
      return `This order is ${d.status || "closed"}.`;
    case "invalid_input":
      return d.path && d.path !== "$" ? `${error.message} (${d.path})` : error.message;
    case "network":
      return error.message;
    default:
      return error.message || "Something went wrong.";
  }
}

