// Tells a full disk apart from other database failures. A full disk is an operating condition,
// not a bug: the HTTP layer answers it with 503 and the background loops wait and try again, so
// foreman stays up and loses nothing it already accepted.

/**
 * SQLITE_FULL (13), as node:sqlite reports it: the write found no room on the disk. Errors from
 * prepared statements carry `errcode`; those from `exec` (a COMMIT) only SQLite's message.
 */
export function isDiskFull(err: unknown): boolean {
  const e = err as { code?: unknown; errcode?: unknown; message?: unknown } | null;
  if (e?.code !== "ERR_SQLITE_ERROR") return false;
  if (typeof e.errcode === "number") return (e.errcode & 0xff) === 13;
  return typeof e.message === "string" && e.message.includes("database or disk is full");
}

export const DISK_FULL_MESSAGE =
  "foreman cannot store new work right now: its disk is full; try again later";
