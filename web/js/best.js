// A best-seats suggestion computed in the browser for the box office, where the cashier picks
// seats for a customer before selling them (the sale itself is checked on the server, which
// refuses stranded single seats atomically). Same idea as docs/seating.md: adjacent seats of
// one segment, closest to the sweet spot by |dx| + 1.5 |dy|, no wheelchair or companion
// seats, and no single free seat left behind when that can be avoided.

/** {seats: [...labels]} or {seats: null, largest} */
export function suggestBest(layout, isFree, count, { category = null, sweetRow = 0.6 } = {}) {
  const seats = layout.seats;
  if (!seats.length) return { seats: null, largest: 0 };
  const xs = seats.map((s) => s.x);
  const ys = seats.map((s) => s.y);
  const sweetX = (Math.min(...xs) + Math.max(...xs)) / 2;
  const sweetY = Math.min(...ys) + sweetRow * (Math.max(...ys) - Math.min(...ys));
  const rows = new Map();
  for (const seat of seats) {
    if (!rows.has(seat.y)) rows.set(seat.y, []);
    rows.get(seat.y).push(seat);
  }
  const pickable = (seat) =>
    isFree(seat.label) && !seat.accessible && !seat.companion && (!category || seat.category === category);
  let best = null;
  let largest = 0;
  for (const row of rows.values()) {
    row.sort((a, b) => a.x - b.x);
    // Segments: runs of seats with consecutive x (a gap or aisle ends one).
    const segments = [];
    for (const seat of row) {
      const last = segments[segments.length - 1];
      if (last && seat.x === last[last.length - 1].x + 1) last.push(seat);
      else segments.push([seat]);
    }
    for (const segment of segments) {
      let run = 0;
      for (const seat of segment) {
        run = pickable(seat) ? run + 1 : 0;
        largest = Math.max(largest, run);
      }
      for (let start = 0; start + count <= segment.length; start++) {
        const block = segment.slice(start, start + count);
        if (!block.every(pickable)) continue;
        const strands =
          strandsAt(segment, start - 1, -1, isFree) || strandsAt(segment, start + count, +1, isFree);
        const cx = (block[0].x + block[block.length - 1].x) / 2;
        const score = Math.abs(cx - sweetX) + 1.5 * Math.abs(block[0].y - sweetY) + (strands ? 1000 : 0);
        if (!best || score < best.score) best = { score, labels: block.map((s) => s.label) };
      }
    }
  }
  return best ? { seats: best.labels } : { seats: null, largest };
}

/** Would the free seat at `index` be left alone (the next one outward is taken or the end)? */
function strandsAt(segment, index, step, isFree) {
  const seat = segment[index];
  if (!seat || !isFree(seat.label)) return false;
  const beyond = segment[index + step];
  return !beyond || !isFree(beyond.label);
}
