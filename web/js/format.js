// How money, times and seat words are shown: one place, so every screen says it the same way.

/**
 * "150,000 IDR", "12.50 USD": `amount` minor units of `priced.currency`, where `priced` is the
 * API object that carries the amount's currency (a screening, an order, a refund). The server
 * sends `currency_exponent` beside each `currency` (seatmap/money.py, whole rupiah for IDR), so
 * this file keeps no table of currencies and says amounts exactly as the mails do.
 */
const numberFormats = new Map(); // places -> Intl.NumberFormat: building one is slow on a phone

export function money(amount, priced) {
  if (amount === undefined || amount === null) return "";
  const places = priced.currency_exponent;
  if (!numberFormats.has(places)) {
    numberFormats.set(places, new Intl.NumberFormat("en-US", { minimumFractionDigits: places, maximumFractionDigits: places }));
  }
  const text = numberFormats.get(places).format(amount / 10 ** places);
  return `${text} ${priced.currency}`;
}

function parts(date, timeZone, options) {
  try {
    return new Intl.DateTimeFormat("en-GB", { timeZone, ...options }).format(date);
  } catch {
    return new Intl.DateTimeFormat("en-GB", options).format(date);
  }
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

/** "4:05" for a countdown; "0:00" once it is over. */
export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return `${minutes}:${seconds}`;
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
