import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createRoute, z } from "@hono/zod-openapi";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  CLIENT_TYPES_PATH,
  OPENAPI_YAML_PATH,
  renderClientTypes,
  renderOpenApiFiles,
} from "../scripts/openapi-files.js";
import { ERROR_CODES, type ErrorCode } from "../src/http/errors.js";
import {
  IdempotencyKeyHeaderSchema,
  IdempotencyKeyHeaders,
  problemResponses,
  WRITE_ERRORS,
} from "../src/http/openapi.js";
import { documentApi, openApiDocument } from "../src/http/openapi-document.js";
import { createRouter } from "../src/http/router.js";
import { IDEMPOTENCY_KEY_HEADER_PATTERN } from "../src/idempotency/key.js";
import { apiClient, testApp, useDatabase } from "./helpers/harness.js";
import { OpenApiMismatchError, OpenApiValidator } from "./helpers/openapi-validator.js";
import { REPO_ROOT } from "./helpers/server-process.js";

/** The contract itself: openapi.yaml is what the code generates, served as is, and complete. */
const { db } = useDatabase();
const app = testApp(db);
const committed = (path: string) => readFile(join(REPO_ROOT, path), "utf8");
const document = parse(await committed(OPENAPI_YAML_PATH));

type Operation = {
  operationId?: string;
  summary?: string;
  description?: string;
  tags?: string[];
  security?: unknown[];
  parameters?: { $ref?: string }[];
  responses: Record<string, Response>;
};
type Response = {
  description: string;
  headers?: Record<string, { $ref: string }>;
  content?: Record<string, MediaType>;
};
type MediaType = {
  schema: { allOf?: { properties?: { code?: { enum: ErrorCode[] } } }[] };
  example?: unknown;
  examples?: Record<string, { value: unknown }>;
};

const operations: [string, Operation][] = Object.entries(
  document.paths as Record<string, Record<string, Operation>>,
).flatMap(([path, item]) =>
  Object.entries(item).map(([method, op]): [string, Operation] => [
    `${method.toUpperCase()} ${path}`,
    op,
  ]),
);
/** The operations behind the API key: /v1, except those that authenticate otherwise (webhooks). */
const apiOperations = operations.filter(
  ([name, op]) => name.split(" ")[1]?.startsWith("/v1/") && op.security === undefined,
);
const writes = apiOperations.filter(([name]) => name.startsWith("POST "));

/** The `code` values a problem response lists. */
function problemCodes(response: Response | undefined): ErrorCode[] {
  const schema = response?.content?.["application/problem+json"]?.schema;
  return schema?.allOf?.flatMap((part) => part.properties?.code?.enum ?? []) ?? [];
}

describe("openapi.yaml", () => {
  it("is exactly what the code generates, and so are the client types", async () => {
    const generated = await renderOpenApiFiles();
    expect(generated[OPENAPI_YAML_PATH]).toBe(await committed(OPENAPI_YAML_PATH));
    expect(await renderClientTypes(generated[OPENAPI_YAML_PATH] as string)).toBe(
      await committed(CLIENT_TYPES_PATH),
    );
  });

  it("is served unchanged at /openapi.json", async () => {
    const res = await apiClient(app, null).get("/openapi.json");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual(document);
  });

  it("is rendered by the reference page at /docs", async () => {
    const res = await apiClient(app, null).get("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain("<title>Idempotent Payments API</title>");
    expect(html).toContain('"url": "/openapi.json"');
    expect(html).toContain("Scalar.createApiReference");
  });

  it.each(operations)("describes %s fully", (_name, op) => {
    expect(op.operationId).toMatch(/^[a-z][A-Za-z]+$/);
    expect(op.summary).toBeTruthy();
    expect(op.description).toBeTruthy();
    expect(op.tags?.length).toBeGreaterThan(0);
    for (const tag of op.tags ?? []) {
      expect(document.tags.map((t: { name: string }) => t.name)).toContain(tag);
    }
    for (const response of Object.values(op.responses)) {
      expect(response.description).toBeTruthy();
      expect(response.headers?.["X-Request-Id"]).toEqual({
        $ref: "#/components/headers/RequestId",
      });
    }
  });

  it.each(apiOperations)("%s needs the API key and lists its 401 and 500", (_name, op) => {
    expect(document.security).toEqual([{ bearerAuth: [] }]);
    expect(problemCodes(op.responses["401"])).toEqual([
      "authentication_required",
      "api_key_invalid",
    ]);
    expect(op.responses["401"]?.headers?.["WWW-Authenticate"]).toBeDefined();
    expect(problemCodes(op.responses["500"])).toEqual(["internal_error"]);
  });

  it.each(writes)("%s documents the whole idempotency contract", (_name, op) => {
    expect(op.parameters).toContainEqual({ $ref: "#/components/parameters/IdempotencyKey" });
    expect(problemCodes(op.responses["400"])).toEqual(
      expect.arrayContaining(["idempotency_key_missing", "idempotency_key_invalid"]),
    );
    expect(problemCodes(op.responses["409"])).toContain("idempotency_key_in_progress");
    expect(op.responses["409"]?.headers?.["Retry-After"]).toBeDefined();
    expect(problemCodes(op.responses["422"])).toContain("idempotency_key_reused");
    expect(problemCodes(op.responses["413"])).toEqual(["payload_too_large"]);
    expect(problemCodes(op.responses["415"])).toEqual([
      "unsupported_media_type",
      "content_encoding_unsupported",
    ]);
    const success = Object.entries(op.responses).find(([status]) => status.startsWith("2"));
    expect(success?.[1].headers?.["Idempotent-Replayed"]).toBeDefined();
  });

  it("lists every error code some operation can answer (all but those of no operation)", () => {
    const listed = new Set(
      operations.flatMap(([, op]) => Object.values(op.responses).flatMap(problemCodes)),
    );
    // A path no route serves, a method a path does not serve, and what Node's HTTP parser
    // refuses before any route is known: docs/operations.md lists them.
    expect(ERROR_CODES.filter((code) => !listed.has(code))).toEqual([
      "route_not_found",
      "method_not_allowed",
      "malformed_request",
      "request_timeout",
      "request_header_fields_too_large",
    ]);
  });

  it("has one valid example per code on every problem response", () => {
    for (const [name, op] of operations) {
      for (const [status, response] of Object.entries(op.responses)) {
        const problem = response.content?.["application/problem+json"];
        if (!problem) continue;
        expect(Object.keys(problem.examples ?? {}), `${name} ${status}`).toEqual(
          problemCodes(response),
        );
      }
    }
  });

  it("has examples that match their schemas", () => {
    const validator = new OpenApiValidator(document);
    const failures: string[] = [];
    for (const [name, schema] of Object.entries(document.components.schemas)) {
      const { example } = schema as { example?: unknown };
      if (example === undefined) continue;
      const errors = validator.schemaErrors(schema as object, example);
      if (errors) failures.push(`components.schemas.${name}: ${errors}`);
    }
    for (const [name, op] of operations) {
      for (const [status, response] of Object.entries(op.responses)) {
        for (const [type, media] of Object.entries(response.content ?? {})) {
          const values = [
            ...(media.example === undefined ? [] : [media.example]),
            ...Object.values(media.examples ?? {}).map((example) => example.value),
          ];
          for (const value of values) {
            const errors = validator.schemaErrors(media.schema, value);
            if (errors) failures.push(`${name} ${status} ${type}: ${errors}`);
          }
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it("declares the Idempotency-Key parameter with the pattern the server applies", () => {
    const parameter = document.components.parameters.IdempotencyKey;
    expect(parameter).toMatchObject({ name: "Idempotency-Key", in: "header", required: true });
    expect(document.components.schemas.IdempotencyKey.pattern).toBe(
      IDEMPOTENCY_KEY_HEADER_PATTERN.source,
    );
    expect(parameter.description).toContain("kept for 24 hours");
  });
});

describe("openApiDocument", () => {
  function routerWith(route: { tags: string[]; headers: z.ZodObject }) {
    const router = createRouter();
    const config = createRoute({
      method: "post",
      path: "/v1/things",
      operationId: "createThing",
      summary: "Create a thing",
      tags: route.tags,
      request: { headers: route.headers },
      responses: { 204: { description: "Done." }, ...problemResponses(WRITE_ERRORS) },
    });
    router.openapi(config, (c) => c.body(null, 204));
    documentApi(router);
    return router;
  }

  it("makes one Idempotency-Key parameter however a route spells the header", () => {
    const lower = routerWith({
      tags: ["Orders"],
      headers: z.object({ "idempotency-key": IdempotencyKeyHeaderSchema }),
    });
    const generated = openApiDocument(lower);
    expect(generated.paths?.["/v1/things"]?.post?.parameters).toEqual([
      { $ref: "#/components/parameters/IdempotencyKey" },
    ]);
    expect(generated.components?.parameters).toEqual(document.components.parameters);
  });

  it("refuses a tag without a description", () => {
    const untagged = routerWith({ tags: ["Things"], headers: IdempotencyKeyHeaders });
    expect(() => openApiDocument(untagged)).toThrow(
      'POST /v1/things has the tag "Things", which has no description',
    );
  });
});

describe("the response validator behind apiClient", () => {
  const validator = new OpenApiValidator(document);
  const order = {
    id: "ord_01jdq3v6x6m7e9z5k2c8r4t1ya",
    object: "order",
    status: "pending",
    currency: "EUR",
    amount_total: 3500,
    amount_refunded: 0,
    items: [{ sku: "S", name: "N", quantity: 1, unit_amount: 3500, amount: 3500 }],
    customer_email: null,
    metadata: {},
    created_at: "2026-11-28T12:00:00.000Z",
    updated_at: "2026-11-28T12:00:00.000Z",
  };
  const created = {
    "Content-Type": "application/json",
    Location: `/v1/orders/${order.id}`,
    "Idempotent-Replayed": "false",
    "X-Request-Id": "r1",
  };
  const respond = (body: unknown, status: number, headers: Record<string, string>) =>
    new Response(typeof body === "string" ? body : JSON.stringify(body), { status, headers });

  const { Location: _location, ...withoutLocation } = created;

  it("accepts a documented response and names what it matched", async () => {
    await expect(
      validator.validate("POST", "/v1/orders", respond(order, 201, created)),
    ).resolves.toBe("POST /v1/orders 201");
    await expect(
      validator.validate(
        "GET",
        `/v1/orders/${order.id}?expand=x`,
        respond(order, 200, {
          "Content-Type": "application/json",
          "X-Request-Id": "r1",
        }),
      ),
    ).resolves.toBe("GET /v1/orders/{id} 200");
  });

  it.each([
    [
      "an undocumented status",
      "POST",
      "/v1/orders",
      respond(order, 418, created),
      "not documented",
    ],
    ["an unknown path", "GET", "/v1/nothing", respond(order, 200, created), "not in openapi.yaml"],
    ["an undocumented method", "DELETE", "/v1/orders", respond("", 200, {}), "documents only"],
    [
      "a body missing a field",
      "POST",
      "/v1/orders",
      respond({ ...order, currency: undefined }, 201, created),
      "must have required property 'currency'",
    ],
    [
      "a body with a field the schema does not declare",
      "POST",
      "/v1/orders",
      respond({ ...order, discount: 0 }, 201, created),
      "must NOT have unevaluated properties",
    ],
    [
      "a problem with a field the schema does not declare",
      "GET",
      "/v1/orders",
      respond(
        {
          type: "tag:x",
          title: "t",
          status: 500,
          detail: "d",
          code: "internal_error",
          request_id: "r1",
          stack: "Error: at ...",
        },
        500,
        { "Content-Type": "application/problem+json", "X-Request-Id": "r1" },
      ),
      "must NOT have unevaluated properties",
    ],
    [
      "a list item with a field the schema does not declare",
      "GET",
      "/v1/orders",
      respond({ object: "list", data: [{ ...order, secret: 1 }], has_more: false }, 200, {
        "Content-Type": "application/json",
        "X-Request-Id": "r1",
      }),
      "/data/0 must NOT have unevaluated properties",
    ],
    [
      "a body of the wrong type",
      "POST",
      "/v1/orders",
      respond({ ...order, amount_total: "35.00" }, 201, created),
      "/amount_total must be integer",
    ],
    [
      "a problem with a code the status does not list",
      "POST",
      "/v1/orders",
      respond(
        {
          type: "tag:x",
          title: "t",
          status: 409,
          detail: "d",
          code: "order_not_cancellable",
          request_id: "r1",
        },
        409,
        { "Content-Type": "application/problem+json", "X-Request-Id": "r1" },
      ),
      "/code must be equal to one of the allowed values",
    ],
    [
      "a required header missing",
      "POST",
      "/v1/orders",
      respond(order, 201, withoutLocation),
      "the required header Location is missing",
    ],
    [
      "a header the operation does not declare",
      "GET",
      `/v1/orders/${order.id}`,
      respond(order, 200, {
        "Content-Type": "application/json",
        "X-Request-Id": "r1",
        Location: "/",
      }),
      "the response sends the header location",
    ],
    [
      "an undeclared header",
      "POST",
      "/v1/orders",
      respond(order, 201, { ...created, "X-Debug": "1" }),
      "does not declare",
    ],
    [
      "a header outside its schema",
      "POST",
      "/v1/orders",
      respond(order, 201, { ...created, "Idempotent-Replayed": "yes" }),
      "Idempotent-Replayed",
    ],
    [
      "an undeclared content type",
      "POST",
      "/v1/orders",
      respond(order, 201, { ...created, "Content-Type": "text/plain" }),
      "is not declared",
    ],
  ] as const)("rejects %s", async (_label, method, path, res, message) => {
    await expect(validator.validate(method, path, res)).rejects.toThrow(OpenApiMismatchError);
    await expect(validator.validate(method, path, res)).rejects.toThrow(message);
  });
});
