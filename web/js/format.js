// How money, times and seat words are shown: one place, so every screen says it the same way.

/**
 * "150,000 IDR", "12.50 USD": `amount` minor units of `priced.currency`, where `priced` is the
 * API object that carries the amount's currency (a screening, an order, a refund). The server
 * sends `currency_exponent` beside each `currency` (seatmap/money.py, whole rupiah for IDR), so
 * this file keeps no table of currencies and says amounts exactly as the mails do.
 */
export function money(amount, priced) {
  if (amount === undefined || amount === null) return "";
  // Integer arithmetic, written as seatmap/money.py's format_amount writes it (the mails),
  // without Intl.NumberFormat: building the first one took 50 ms on a throttled phone.
  const places = priced.currency_exponent;
  const sign = amount < 0 ? "-" : "";
  const digits = String(Math.abs(Math.trunc(amount))).padStart(places + 1, "0");
  const units = digits.slice(0, digits.length - places).replace(/\B(?=(\d{3})+$)/g, ",");
  const fraction = places ? `.${digits.slice(digits.length - places)}` : "";
  return `${sign}${units}${fraction} ${priced.currency}`;
}

const dateFormats = new Map(); // building an Intl.DateTimeFormat is slow on a phone: once each

function parts(date, timeZone, options) {
  const key = `${timeZone} ${JSON.stringify(options)}`;
  if (!dateFormats.has(key)) {
    let format;
    try {
      format = new Intl.DateTimeFormat("en-GB", { timeZone, ...options });
    } catch {
      format = new Intl.DateTimeFormat("en-GB", options); // an unknown zone: the browser's
    }
    dateFormats.set(key, format);
  }
  return dateFormats.get(key).format(date);
}

/** "19:30" in the cinema's own time zone (what the ticket says), not the browser's. */
export function clock(iso, timeZone) {
  return parts(new Date(iso), timeZone, { hour: "2-digit", minute: "2-digit", hour12: false });
}

/** "Sat 21 Nov" */
export function day(iso, timeZone) {
  return parts(new Date(iso), timeZone, { weekday: "short", day: "numeric", month: "short" });
}

export function dayAndClock(iso, timeZone) {
  return `${day(iso, timeZone)}, ${clock(iso, timeZone)}`;
}

const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * "Sat 21 Nov, 19:30" as `iso` itself states it ("2026-11-21T19:30:00+07:00"), the same words
 * as dayAndClock(). The API writes a screening's times in its cinema's zone, so for them this
 * is the cinema's time without Intl: the first Intl.DateTimeFormat with a zone loads the
 * zone data, 130 ms of a throttled phone's main thread, which the arena's map would wait for.
 */
export function statedDayAndClock(iso) {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(iso);
  if (!match) return dayAndClock(iso, undefined);
  const [, y, mo, d, hh, mm] = match;
  const weekday = WEEKDAYS[new Date(Date.UTC(+y, +mo - 1, +d)).getUTCDay()];
  return `${weekday} ${Number(d)} ${MONTHS[+mo - 1]}, ${hh}:${mm}`;
}

/** "4:05" for a countdown; "0:00" once it is over. */
export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return `${minutes}:${seconds}`;
}

/** YYYY-MM-DD of a Date in `timeZone` (a cinema's "today", which is not the browser's near midnight). */
export function zonedDay(date, timeZone) {
  if (!timeZone) return isoDay(date);
  return parts(date, timeZone, { year: "numeric", month: "2-digit", day: "2-digit" }).split("/").reverse().join("-");
}

/** YYYY-MM-DD of a Date in the browser's zone (the `?date=` of the screenings list). */
export function isoDay(date) {
  const y = date.getFullYear();
  const m = String(date.getMonth() + 1).padStart(2, "0");
  const d = String(date.getDate()).padStart(2, "0");
  return `${y}-${m}-${d}`;
}

/** The offset of `timeZone` at the instant `utcMs`, in minutes (east positive). */
function offsetMinutes(utcMs, timeZone) {
  const fmt = new Intl.DateTimeFormat("en-US", {
    timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const p = Object.fromEntries(fmt.formatToParts(new Date(utcMs)).map((x) => [x.type, x.value]));
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  return Math.round((asUtc - utcMs) / 60000);
}

/** A wall-clock time in a cinema's zone ("2026-11-21", "19:30") as ISO 8601 with its offset. */
export function zonedIso(dateText, timeText, timeZone) {
  const [y, mo, d] = dateText.split("-").map(Number);
  const [hh, mm] = timeText.split(":").map(Number);
  const wall = Date.UTC(y, mo - 1, d, hh, mm);
  let offset = offsetMinutes(wall, timeZone);
  offset = offsetMinutes(wall - offset * 60000, timeZone); // settle across a DST change
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  const off = `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
  return `${dateText}T${String(hh).padStart(2, "0")}:${String(mm).padStart(2, "0")}:00${off}`;
}

export const STATE_WORDS = {
  free: "free",
  held: "held by someone else",
  sold: "sold",
  blocked: "not available",
  mine: "held for you",
  selected: "selected",
};

export function seatWords(label) {
  const match = /^([A-Z]+)(\d+)$/.exec(label);
  return match ? `Row ${match[1]} seat ${match[2]}` : `Seat ${label}`;
}

export function listWords(items) {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}
