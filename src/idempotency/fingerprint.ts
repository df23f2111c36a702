import { hash } from "node:crypto";
import canonicalize from "canonicalize";

/**
 * What makes two requests "the same": SHA-256 over the method, the path and the body in RFC 8785
 * (JCS) canonical form, so key order and whitespace never matter and any value change does.
 * A request without a body hashes an empty body, which differs from `{}` or `null`.
 *
 * @param body the parsed JSON body, or `undefined` when the request had none
 * @throws when the body holds a number JSON cannot represent (such as `1e400`, parsed as Infinity)
 */
export function requestFingerprint(method: string, path: string, body: unknown): string {
  const canonicalBody = body === undefined ? "" : canonicalize(body);
  return hash("sha256", `${method.toUpperCase()}\n${path}\n${canonicalBody ?? ""}`, "hex");
}
