// Compact rows -> the normalised layout, the same rules as seatmap/layouts.py, so the admin's
// layout editor can preview a hall while it is typed. The server still validates on save;
// this is only the preview (and its first hints).

const KINDS = {
  S: ["standard", false, false],
  P: ["premium", false, false],
  V: ["vip", false, false],
  W: ["standard", true, false],
  C: ["standard", false, true],
};
const ORDER = ["standard", "premium", "vip"];

export function rowLabel(index) {
  let letters = "";
  let n = index + 1;
  while (n) {
    const rest = (n - 1) % 26;
    n = Math.floor((n - 1) / 26);
    letters = String.fromCharCode(65 + rest) + letters;
  }
  return letters;
}

/** {layout, errors}: errors are sentences naming the row and column. */
export function fromRows(rows, ga = []) {
  const seats = [];
  const errors = [];
  let labelled = 0;
  rows.forEach((text, y) => {
    if (!text.replaceAll("_", "")) return; // a walkway: no seats, no label
    const row = rowLabel(labelled++);
    let number = 0;
    [...text].forEach((char, x) => {
      if (char === "_") return;
      const kind = KINDS[char];
      if (!kind) {
        errors.push(`Row ${row} has an unknown seat character '${char}' at column ${x + 1}; use S, P, V, W, C or _ for a gap.`);
        return;
      }
      number += 1;
      const [category, accessible, companion] = kind;
      seats.push({ label: `${row}${number}`, row, number, x, y, category, accessible, companion });
    });
  });
  if (!seats.length && !ga.length) errors.push("The layout needs at least one seat or one GA area.");
  if (seats.length > 10000) errors.push("A layout has at most 10,000 seats.");
  const used = new Set([...seats.map((s) => s.category), ...ga.map((a) => a.category || "standard")]);
  return {
    layout: {
      seats,
      ga,
      categories: ORDER.filter((c) => used.has(c)),
      width: Math.max(0, ...rows.map((r) => r.length)),
      height: rows.length,
    },
    errors,
  };
}

/** "Floor, 300, standard" lines -> GA areas ({name, capacity, category}) and errors. */
export function gaFromText(text) {
  const areas = [];
  const errors = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const [name, capacity, category = "standard"] = line.split(",").map((p) => p.trim());
    const n = Number(capacity);
    if (!name || !Number.isInteger(n) || n < 1) {
      errors.push(`GA line ${i + 1}: write "name, capacity[, category]" with a whole capacity from 1.`);
      return;
    }
    areas.push({ name, capacity: n, category: category || "standard" });
  });
  return { areas, errors };
}
