// Bearer-token check for every protected route. Tokens are compared as SHA-256 digests with
// timingSafeEqual, and every configured token is checked, so timing reveals neither a token's
// content nor which of several rotated tokens matched.

import { createHash, timingSafeEqual } from "node:crypto";

function digest(value: string): Uint8Array {
  return createHash("sha256").update(value).digest();
}

export class BearerAuth {
  readonly #digests: Uint8Array[];

  constructor(tokens: readonly string[]) {
    this.#digests = tokens.map(digest);
  }

  /** True when no token is configured (unauthenticated mode). */
  get open(): boolean {
    return this.#digests.length === 0;
  }

  /** Whether the request carries exactly one `Authorization: Bearer <configured token>`. */
  check(authorization: string | null): boolean {
    if (this.open) return true;
    if (authorization === null) return false;
    // Headers joins repeated Authorization headers with ", ": more than one credential is refused.
    const token = /^Bearer ([^\s,]+)$/i.exec(authorization.trim())?.[1];
    if (token === undefined) return false;
    const given = digest(token);
    let ok = false;
    for (const d of this.#digests) ok = timingSafeEqual(given, d) || ok;
    return ok;
  }
}
