// Downloads of the server's CSV exports: the same URL as the JSON list, asked for with
// `Accept: text/csv` (a plain link cannot set that header), saved under the server's filename.

import { ApiError } from "./api.js";

export async function downloadCsv(path) {
  const response = await fetch(path, { headers: { Accept: "text/csv" }, credentials: "same-origin" });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError(response.status, data?.error);
  }
  const blob = await response.blob();
  const disposition = response.headers.get("content-disposition") || "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] || "export.csv";
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  return name;
}
