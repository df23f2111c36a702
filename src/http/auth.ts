import type { MiddlewareHandler } from "hono";
import type { Database } from "../db/client.js";
import type { Tenant } from "../db/schema.js";
import { findTenantByApiKey } from "../tenants/tenants.queries.js";
import type { AppEnv } from "./env.js";
import { ApiError } from "./errors.js";

export interface AuthOptions {
  db: Database;
  /**
   * How long a resolved key stays in this process's memory. Keys are never revoked by this
   * service, so the cache only saves a query per request. Default 60 000.
   */
  cacheTtlMs?: number;
  /** Most keys kept. Default 10 000. */
  cacheSize?: number;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * Resolves `Authorization: Bearer <api key>` to the tenant and puts it on the context.
 * A missing header is `authentication_required`, an unknown key `api_key_invalid`; both 401.
 */
export function bearerTenantAuth(options: AuthOptions): MiddlewareHandler<AppEnv> {
  const ttlMs = options.cacheTtlMs ?? 60_000;
  const maxEntries = options.cacheSize ?? 10_000;
  const cache = new Map<string, { tenant: Tenant; until: number }>();

  return async function bearerTenantAuth(c, next) {
    const header = c.req.header("authorization") ?? "";
    // Keyed by the header itself, which this process holds anyway while serving the request: a
    // hit costs neither parsing nor hashing.
    const cached = cache.get(header);
    let tenant = cached && cached.until > Date.now() ? cached.tenant : undefined;
    if (!tenant) {
      const match = BEARER.exec(header);
      if (!match?.[1]) {
        throw new ApiError("authentication_required", {
          headers: { "WWW-Authenticate": 'Bearer realm="api"' },
        });
      }
      tenant = await findTenantByApiKey(options.db, match[1]);
      if (!tenant) {
        throw new ApiError("api_key_invalid", {
          headers: { "WWW-Authenticate": 'Bearer realm="api", error="invalid_token"' },
        });
      }
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string);
      cache.set(header, { tenant, until: Date.now() + ttlMs });
    }
    c.set("tenant", tenant);
    await next();
  };
}
