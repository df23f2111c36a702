import { sql } from "drizzle-orm";
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import type { Config } from "./config.js";
import type { Database } from "./db/client.js";
import { bearerTenantAuth } from "./http/auth.js";
import type { AppEnv } from "./http/env.js";
import { ApiError } from "./http/errors.js";
import { isJsonMediaType } from "./http/media-type.js";
import { createErrorHandler, notFound, problemResponse } from "./http/problem.js";
import { requestLog } from "./http/request-log.js";
import { requestMetrics } from "./http/request-metrics.js";
import { createRouter } from "./http/router.js";
import { type IdempotencyEvent, idempotency } from "./idempotency/middleware.js";
import type { Logger } from "./logger.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { registerCancelOrder } from "./orders/cancel-order.js";
import { registerCreateOrder } from "./orders/create-order.js";
import { registerGetOrder } from "./orders/get-order.js";
import { registerListOrders } from "./orders/list-orders.js";

export const MAX_BODY_BYTES = 1024 * 1024;
const READINESS_TIMEOUT_MS = 2000;

export interface AppDeps {
  db: Database;
  config: Pick<Config, "IDEMPOTENCY_TTL_MS" | "IDEMPOTENCY_WAIT_MS">;
  logger: Logger;
  /** True once shutdown began: readiness fails so load balancers stop sending traffic. */
  isShuttingDown?: () => boolean;
  /** Observes every idempotency outcome, besides the metrics. */
  onIdempotencyOutcome?: (event: IdempotencyEvent) => void;
  /**
   * The registry `/metrics` serves and this app feeds. Default: a fresh one without process
   * metrics, so each app built in a test has numbers of its own.
   */
  metrics?: Metrics;
}

/** Resource paths behind API-key auth; webhooks authenticate by signature instead. */
const TENANT_PATHS = ["/v1/orders"];

/**
 * Builds the HTTP app. No I/O happens here: tests build it around their own database and
 * drive it with `app.request()`, and `main.ts` serves it.
 */
export function createApp(deps: AppDeps) {
  const { db, logger } = deps;
  const metrics = deps.metrics ?? createMetrics();
  const app = createRouter();
  app.onError(createErrorHandler(logger));
  app.notFound(notFound);

  app.use(requestId());
  app.use(requestLog(logger));
  app.use(requestMetrics(metrics));
  app.use(async function provideDb(c, next) {
    c.set("db", db);
    await next();
  });

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    if (deps.isShuttingDown?.()) {
      return problemResponse(c, new ApiError("service_unavailable", { detail: "Shutting down." }));
    }
    try {
      await withDeadline(db.execute(sql`SELECT 1`), READINESS_TIMEOUT_MS);
      return c.json({ status: "ready" });
    } catch (error) {
      logger.warn({ err: error }, "readiness check failed");
      return problemResponse(
        c,
        new ApiError("service_unavailable", { detail: "The database is unreachable." }),
      );
    }
  });

  // Prometheus text format; meant for the internal network: no tenant data, no auth.
  app.get("/metrics", async (c) =>
    c.body(await metrics.registry.metrics(), 200, {
      "Content-Type": metrics.registry.contentType,
    }),
  );

  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new ApiError("payload_too_large");
      },
    }),
  );
  app.use("/v1/*", requireJsonBody);
  const auth = bearerTenantAuth({ db });
  for (const path of TENANT_PATHS) app.use(path, auth).use(`${path}/*`, auth);

  const idempotent = idempotency<AppEnv>({
    db,
    tenantId: (c) => c.var.tenant.id,
    ttlMs: deps.config.IDEMPOTENCY_TTL_MS,
    waitMs: deps.config.IDEMPOTENCY_WAIT_MS,
    onOutcome: (_c, event) => {
      metrics.observeIdempotency(event);
      deps.onIdempotencyOutcome?.(event);
    },
  });

  const orders = createRouter();
  registerCreateOrder(orders, idempotent);
  registerListOrders(orders);
  registerGetOrder(orders);
  registerCancelOrder(orders, idempotent);
  app.route("/", orders);

  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    description: "Your API key: `Authorization: Bearer sk_...`.",
  });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: { title: "Idempotent Payments API", version: "0.1.0" },
    security: [{ bearerAuth: [] }],
  });
  return app;
}

export type App = ReturnType<typeof createApp>;

/**
 * 415 for a request body that is not JSON. A POST without a body (cancel) needs no content type;
 * the check runs before any idempotency work so such a request stores nothing.
 */
const requireJsonBody: MiddlewareHandler<AppEnv> = async function requireJsonBody(c, next) {
  const length = c.req.header("content-length");
  const hasBody =
    c.req.header("transfer-encoding") !== undefined || (length !== undefined && length !== "0");
  if (hasBody && !isJsonMediaType(c.req.header("content-type"))) {
    throw new ApiError("unsupported_media_type");
  }
  await next();
};

async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
