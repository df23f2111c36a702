import { afterAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.js";
import { CONFIG_DEFAULTS } from "../src/config.js";
import { openDatabase } from "../src/db/client.js";
import { stripeProvider } from "../src/provider/stripe-provider.js";
import {
  apiClient,
  expectedProblem,
  ORDER_BODY,
  silentLogger,
  TEST_PROVIDER,
  testApp,
  useDatabase,
} from "./helpers/harness.js";

/** The probes, and what a client sees when the database is gone. */
const { db } = useDatabase();

function appWith(options: { unreachableDatabase?: boolean; shuttingDown?: boolean }) {
  const handle = options.unreachableDatabase
    ? openDatabase("postgres://nobody@127.0.0.1:9/none", { max: 1 })
    : undefined;
  if (handle) afterAll(() => handle.close());
  return createApp({
    db: handle?.db ?? db,
    config: CONFIG_DEFAULTS,
    logger: silentLogger,
    provider: stripeProvider({ ...TEST_PROVIDER, apiUrl: "http://127.0.0.1:9" }),
    isShuttingDown: () => options.shuttingDown ?? false,
  });
}

describe("GET /healthz", () => {
  it("answers 200 without an API key", async () => {
    const res = await apiClient(testApp(db), null).get("/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });
});

describe("GET /readyz", () => {
  it("answers 200 when the database answers", async () => {
    const res = await apiClient(testApp(db), null).get("/readyz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ready" });
  });

  it("answers 503 service_unavailable once shutdown began", async () => {
    const res = await apiClient(appWith({ shuttingDown: true }), null).get("/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual(
      expectedProblem("service_unavailable", { detail: "Shutting down." }),
    );
  });

  it("answers 503 service_unavailable when the database is unreachable", async () => {
    const res = await apiClient(appWith({ unreachableDatabase: true }), null).get("/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual(
      expectedProblem("service_unavailable", { detail: "The database is unreachable." }),
    );
  });
});

describe("the API without its database", () => {
  const api = apiClient(appWith({ unreachableDatabase: true }), "sk_any");

  it.each([
    ["GET /v1/orders", () => api.get("/v1/orders")],
    ["GET /v1/orders/{id}", () => api.get("/v1/orders/ord_01aaaaaaaaaaaaaaaaaaaaaaaa")],
    ["POST /v1/orders", () => api.post("/v1/orders", ORDER_BODY)],
    [
      "POST /v1/orders/{id}/cancel",
      () => api.post("/v1/orders/ord_01aaaaaaaaaaaaaaaaaaaaaaaa/cancel"),
    ],
  ])("answers %s with 503 database_unavailable and Retry-After", async (_label, send) => {
    const res = await send();
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("2");
    expect(await res.json()).toEqual(expectedProblem("database_unavailable"));
  });
});
