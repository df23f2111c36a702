import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import type { Config } from "./config.js";
import type { Database } from "./db/client.js";
import { registerCheckLiveness } from "./health/check-liveness.js";
import { registerCheckReadiness } from "./health/check-readiness.js";
import { registerScrapeMetrics } from "./health/scrape-metrics.js";
import { bearerTenantAuth } from "./http/auth.js";
import { bodyChecks } from "./http/body-checks.js";
import type { AppEnv } from "./http/env.js";
import { ApiError } from "./http/errors.js";
import { throwRejection } from "./http/idempotency-problems.js";
import { isJsonMediaType } from "./http/media-type.js";
import { documentApi } from "./http/openapi-document.js";
import { createErrorHandler, createNotFound } from "./http/problem.js";
import { requestLog } from "./http/request-log.js";
import { requestMetrics } from "./http/request-metrics.js";
import { createRouter } from "./http/router.js";
import {
  type IdempotencyEvent,
  idempotency,
  phasedIdempotency,
  ReplayCache,
} from "./idempotency/index.js";
import { newId } from "./ids.js";
import type { Logger } from "./logger.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { registerCancelOrder } from "./orders/cancel-order.js";
import { registerCreateOrder } from "./orders/create-order.js";
import { registerGetOrder } from "./orders/get-order.js";
import { registerListOrders } from "./orders/list-orders.js";
import { registerCreatePayment } from "./payments/create-payment.js";
import { registerGetPayment } from "./payments/get-payment.js";
import type { PaymentProvider } from "./provider/stripe-provider.js";
import { registerCreateRefund } from "./refunds/create-refund.js";
import { registerGetRefund } from "./refunds/get-refund.js";
import { registerReceiveStripeWebhook } from "./webhooks/receive-stripe-webhook.js";

export const MAX_BODY_BYTES = 1024 * 1024;

export interface AppDeps {
  db: Database;
  config: Pick<
    Config,
    "IDEMPOTENCY_TTL_MS" | "IDEMPOTENCY_WAIT_MS" | "IDEMPOTENCY_CACHE_BYTES" | "PAYMENT_LEASE_MS"
  >;
  logger: Logger;
  provider: PaymentProvider;
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
const TENANT_PATHS = ["/v1/orders", "/v1/payments", "/v1/refunds"];

/**
 * Builds the HTTP app. No I/O happens here: tests build it around their own database and
 * drive it with `app.request()`, and `main.ts` serves it.
 */
export function createApp(deps: AppDeps) {
  const { db, logger } = deps;
  const metrics = deps.metrics ?? createMetrics();
  const app = createRouter();
  app.onError(createErrorHandler(logger));
  app.notFound(createNotFound(() => app.routes));

  app.use(requestId());
  app.use(requestLog(logger));
  app.use(requestMetrics(metrics));
  app.use(async function provideDb(c, next) {
    c.set("db", db);
    await next();
  });

  registerCheckLiveness(app);
  registerCheckReadiness(app, { db, logger, isShuttingDown: deps.isShuttingDown });

  registerScrapeMetrics(app, metrics);

  app.use("/v1/*", checkBody);
  app.use("/v1/*", bodyChecks());
  const auth = bearerTenantAuth({ db });
  // `/v1/orders/*` matches `/v1/orders` itself too: registering both ran auth twice.
  for (const path of TENANT_PATHS) app.use(`${path}/*`, auth);

  const idempotencyOptions = {
    db,
    // c.get, not c.var: Hono builds a new object for every c.var access.
    tenantId: (c: Context<AppEnv>) => c.get("tenant").id,
    ttlMs: deps.config.IDEMPOTENCY_TTL_MS,
    waitMs: deps.config.IDEMPOTENCY_WAIT_MS,
    onOutcome: (_c: Context<AppEnv>, event: IdempotencyEvent) => {
      metrics.observeIdempotency(event);
      deps.onIdempotencyOutcome?.(event);
    },
    onRejection: throwRejection,
    newRecordId: () => newId("idk"),
    cache:
      deps.config.IDEMPOTENCY_CACHE_BYTES > 0
        ? new ReplayCache(deps.config.IDEMPOTENCY_CACHE_BYTES)
        : undefined,
  };
  // One transaction per request for local writes; atomic phases around the provider call.
  const idempotent = idempotency<AppEnv>(idempotencyOptions);
  const phased = phasedIdempotency<AppEnv>({
    ...idempotencyOptions,
    leaseMs: deps.config.PAYMENT_LEASE_MS,
  });
  const paymentDeps = { db, provider: deps.provider };

  const routes = createRouter();
  registerCreateOrder(routes, idempotent);
  registerListOrders(routes);
  registerGetOrder(routes);
  registerCancelOrder(routes, idempotent);
  registerCreatePayment(routes, phased, paymentDeps);
  registerGetPayment(routes);
  registerCreateRefund(routes, phased, paymentDeps);
  registerGetRefund(routes);
  registerReceiveStripeWebhook(routes, { ...paymentDeps, logger });
  app.route("/", routes);

  documentApi(app);
  return app;
}

export type App = ReturnType<typeof createApp>;

const streamingBodyLimit = bodyLimit({
  maxSize: MAX_BODY_BYTES,
  onError: () => {
    throw new ApiError("payload_too_large");
  },
});

/**
 * 413 for a body over 1 MB, then 415 for a body that is not JSON; one middleware, so each
 * request's headers are read once.
 *
 * With a `Content-Length` the header decides the size (Node's HTTP parser never delivers more
 * than it announced), which keeps the body unread until the handler reads it, on
 * @hono/node-server's fast path; only a chunked body is counted as it streams, by Hono's
 * `bodyLimit`, whose stream wrapping costs several times the rest of a replay.
 *
 * A POST without a body (cancel) needs no content type; the check runs before any idempotency
 * work so such a request stores nothing.
 */
const checkBody: MiddlewareHandler<AppEnv> = async function checkBody(c, next) {
  const length = c.req.header("content-length");
  const chunked = c.req.header("transfer-encoding") !== undefined;
  if (!chunked && length !== undefined && Number(length) > MAX_BODY_BYTES) {
    throw new ApiError("payload_too_large");
  }
  const hasBody = chunked || (length !== undefined && length !== "0");
  if (hasBody && !isJsonMediaType(c.req.header("content-type"))) {
    throw new ApiError("unsupported_media_type");
  }
  if (length === undefined || chunked) return streamingBodyLimit(c, next);
  await next();
};
