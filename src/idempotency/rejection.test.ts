import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { describe, expect, it } from "vitest";
import type { IdempotencyDatabase } from "./database.js";
import { idempotency } from "./middleware.js";
import { IDEMPOTENCY_PROBLEMS, IdempotencyRejection } from "./rejection.js";

/** Rejections happen before the database is asked anything, so a database that throws is fine. */
const unusedDb = new Proxy({} as IdempotencyDatabase, {
  get: () => {
    throw new Error("the database was used");
  },
});

function post(app: Hono, headers: Record<string, string>, body = '{"a":1}') {
  return app.request("/things", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body,
  });
}

describe("the layer's default rejections", () => {
  it.each([
    ["idempotency_key_missing", {}, '{"a":1}'],
    ["idempotency_key_invalid", { "Idempotency-Key": "short" }, '{"a":1}'],
    ["malformed_json", { "Idempotency-Key": "a-valid-key-0000001" }, '{"a":'],
  ] as const)(
    "answers %s as problem+json under Hono's own error handler",
    async (code, headers, body) => {
      const app = new Hono();
      app.use(requestId({ generator: () => "req_1" }));
      app.post("/things", idempotency({ db: unusedDb }), (c) => c.text("ran", 201));
      const res = await post(app, headers, body);
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(await res.json()).toEqual({
        type: `tag:idempotent-payments.dev,2026:problems/${code}`,
        title: IDEMPOTENCY_PROBLEMS[code].title,
        status: 400,
        detail: IDEMPOTENCY_PROBLEMS[code].detail,
        code,
        request_id: "req_1",
      });
    },
  );

  it("hands the rejection to onRejection, which may answer it its own way", async () => {
    const seen: IdempotencyRejection[] = [];
    const app = new Hono();
    const onRejection = (_c: unknown, rejection: IdempotencyRejection) => {
      seen.push(rejection);
      return new Response(`no: ${rejection.code}`, { status: rejection.status });
    };
    app.post("/things", idempotency({ db: unusedDb, onRejection }), (c) => c.text("ran", 201));
    const res = await post(app, {});
    expect(res.status).toBe(400);
    expect(await res.text()).toBe("no: idempotency_key_missing");
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeInstanceOf(IdempotencyRejection);
  });
});
