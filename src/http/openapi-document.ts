import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { createRoute, z } from "@hono/zod-openapi";
import { Scalar } from "@scalar/hono-api-reference";
import { CONFIG_DEFAULTS } from "../config.js";
import type { AppEnv } from "./env.js";
import { headerRef, registerSharedComponents } from "./openapi.js";
import type { Router } from "./router.js";

type OpenApiDocument = ReturnType<Router["getOpenAPI31Document"]>;
type DocumentConfig = Parameters<Router["getOpenAPI31Document"]>[0];
type GeneratedObject = Record<string, unknown>;
type GeneratedObjects = Record<string, GeneratedObject>;

export const OPENAPI_DOCUMENT_PATH = "/openapi.json";
export const API_REFERENCE_PATH = "/docs";
/** The reference page's script, served from the installed package rather than a CDN. */
export const API_REFERENCE_SCRIPT_PATH = `${API_REFERENCE_PATH}/scalar.js`;

/** Scalar's standalone browser bundle, as `@scalar/api-reference` ships it. */
const SCALAR_BUNDLE_FILE = createRequire(import.meta.url).resolve(
  "@scalar/api-reference/browser/standalone.js",
);
let scalarBundle: Promise<Buffer> | undefined;

const TTL_HOURS = CONFIG_DEFAULTS.IDEMPOTENCY_TTL_MS / 3_600_000;
const WAIT_SECONDS = CONFIG_DEFAULTS.IDEMPOTENCY_WAIT_MS / 1000;

/** What a client author reads first: how to call this API safely, the decision table. */
const API_DESCRIPTION = `
An order and payment API whose writes are **idempotent**: retry any \`POST\` with the same
\`Idempotency-Key\` as often as you like, concurrently, across server restarts and crashes; the
effect happens once and the answer is always the same.

## Conventions

- **Authentication**: \`Authorization: Bearer <api key>\`. Every object belongs to the account of
  the key; another account's id answers 404.
- **JSON, snake_case** on the wire. Ids carry a prefix (\`ord_\`, \`pay_\`, \`re_\`).
- **Money** is an integer \`amount\` in the currency's minor units (2500 with \`EUR\` is 25.00 EUR),
  with an ISO 4217 \`currency\` in upper case.
- **Lists** answer \`{"object": "list", "data": [...], "has_more": ...}\`, newest first; pass
  \`limit\` (1-100, default 10) and the last id of a page as \`starting_after\`.
- **Errors** are \`application/problem+json\` (RFC 9457) with a stable \`code\` and the
  \`request_id\`. Each operation lists, per status, every \`code\` it can answer. Request bodies
  are JSON of at most 1 MB (413 beyond, 415 for another content type).
- Every response carries \`X-Request-Id\`.

## Idempotency

Every \`POST\` requires an \`Idempotency-Key\` header: 16-255 characters of
\`A-Z a-z 0-9 - _ . : ~ + / =\` (a UUID works), bare or as a quoted Structured Field string.
Generate a new key for each new request and reuse it for each retry of that request. The
response is stored in the same database transaction as the request's writes, so either both
exist or neither does.

| situation | answer | stored? |
|---|---|---|
| \`POST\` without \`Idempotency-Key\` | 400 \`idempotency_key_missing\` | no |
| key malformed, or several values | 400 \`idempotency_key_invalid\` | no |
| key as a Structured Field string (\`"…"\`) or a bare token | both accepted, same key | - |
| first request | executed; \`Idempotent-Replayed: false\` | yes |
| same key, same request | the stored response: same status, body, \`Content-Type\` and \`Location\`, with \`Idempotent-Replayed: true\` | - |
| same key, different body, path or method | 422 \`idempotency_key_reused\` | no |
| same key from another account | an unrelated key: executed for that account | yes |
| same key while the first is still running | waits up to ${WAIT_SECONDS} s for its outcome and replays it; then 409 \`idempotency_key_in_progress\` with \`Retry-After\` | no |
| rejected before the handler: 401, 400 (bad JSON, schema), 413, 415 | the error | no: fix the request and retry with the same key |
| the operation's own outcome: 2xx, 402 declined, 404, 409 state conflict | that response | yes |
| 5xx, crash, lost connection | nothing was written | no: a retry executes afresh |
| key older than ${TTL_HOURS} hours | treated as new | - |

"Same request" means the same method, path and body, with the JSON body canonicalised
(RFC 8785): key order and whitespace do not matter, values do. Keys are kept for ${TTL_HOURS} hours
by default (the server's \`IDEMPOTENCY_TTL_MS\`).
`.trim();

/** Each tag an operation may carry, in the order the reference shows them. */
const TAGS = [
  {
    name: "Orders",
    description:
      "What a customer buys: items with amounts in one currency. An order is `pending`, then " +
      "`paid` or `cancelled`; a paid order becomes `partially_refunded` or `refunded`.",
  },
  {
    name: "Payments",
    description:
      "A payment charges an order through the payment provider: `processing`, then " +
      "`succeeded` or `failed`. A declined card is a 402 that is stored like a success.",
  },
  {
    name: "Refunds",
    description:
      "A refund returns part or all of a succeeded payment: `pending`, then `succeeded` or " +
      "`failed`. Refunding more than was paid is a 409.",
  },
  {
    name: "Webhooks",
    description:
      "Events the payment provider sends. Authenticated by signature instead of an API key, " +
      "and deduplicated by event id.",
  },
  {
    name: "Operations",
    description:
      "For running the service: probes, metrics, this document and its reference page. " +
      "No API key needed.",
  },
] as const;

const DOCUMENT_CONFIG: DocumentConfig = {
  openapi: "3.1.0",
  info: {
    title: "Idempotent Payments API",
    version: "0.1.0",
    description: API_DESCRIPTION,
    license: { name: "MIT", url: "https://spdx.org/licenses/MIT.html" },
  },
  servers: [
    {
      url: "/",
      description: "The server that serves this document (`npm start`: http://localhost:3000).",
    },
  ],
  security: [{ bearerAuth: [] }],
};

const METHOD_ORDER = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

const documents = new WeakMap<Router, OpenApiDocument>();

/**
 * The OpenAPI 3.1 document of an app: generated from its `router.openapi(...)` routes, with the
 * info, tags and description above, and shaped so the committed `openapi.yaml` is stable: paths,
 * methods and components in a fixed order, only the tags operations use, `X-Request-Id` on
 * every response. Computed once per app.
 */
export function openApiDocument(app: Router): OpenApiDocument {
  const cached = documents.get(app);
  if (cached) return cached;
  const generated = app.getOpenAPI31Document(structuredClone(DOCUMENT_CONFIG));
  const paths = sortedBy((generated.paths ?? {}) as Record<string, GeneratedObjects>, byCodePoint);
  const usedTags = new Set<string>();
  const parameters: GeneratedObjects = {};
  for (const [path, item] of Object.entries(paths)) {
    paths[path] = sortedBy(item, (a, b) => METHOD_ORDER.indexOf(a) - METHOD_ORDER.indexOf(b));
    for (const [method, operation] of Object.entries(paths[path])) {
      const name = `${method.toUpperCase()} ${path}`;
      for (const tag of checkedTags(name, operation)) usedTags.add(tag);
      if (Array.isArray(operation.parameters)) {
        operation.parameters = operation.parameters.map((generatedParameter: GeneratedObject) => {
          const parameter = nameFirst(generatedParameter);
          if (!isIdempotencyKey(parameter)) return parameter;
          parameters.IdempotencyKey = { ...parameter, name: IDEMPOTENCY_KEY_HEADER };
          return { $ref: "#/components/parameters/IdempotencyKey" };
        });
      }
      const responses = operation.responses as GeneratedObjects;
      for (const [status, response] of Object.entries(responses)) {
        responses[status] = withRequestId(response);
      }
    }
  }
  const components = Object.fromEntries(
    Object.entries({ ...generated.components, parameters } as GeneratedObjects)
      .filter(([, group]) => Object.keys(group).length > 0)
      .sort(([a], [b]) => byCodePoint(a, b))
      .map(([kind, group]) => [kind, sortedBy(group, byCodePoint)]),
  );
  const document: OpenApiDocument = {
    openapi: generated.openapi,
    info: generated.info,
    servers: generated.servers,
    security: generated.security,
    tags: TAGS.filter((tag) => usedTags.has(tag.name)).map((tag) => ({ ...tag })),
    paths,
    components,
  };
  documents.set(app, document);
  return document;
}

/** An operation's tags, each of which must have a description in TAGS. */
function checkedTags(name: string, operation: GeneratedObject): string[] {
  const tags = (operation.tags as string[] | undefined) ?? [];
  for (const tag of tags) {
    if (!TAGS.some((known) => known.name === tag)) {
      throw new Error(
        `${name} has the tag "${tag}", which has no description: add it to TAGS in ` +
          "src/http/openapi-document.ts",
      );
    }
  }
  return tags;
}

/** A response with the `X-Request-Id` every response carries, in reading order. */
function withRequestId({ description, headers, content, ...rest }: GeneratedObject) {
  return {
    description,
    headers: { ...(headers as object), "X-Request-Id": headerRef("RequestId") },
    ...(content ? { content: schemaFirst(content as GeneratedObjects) } : {}),
    ...rest,
  };
}

const OpenApiDocumentSchema = z
  .looseObject({ openapi: z.string().openapi({ example: "3.1.0" }) })
  .openapi({ description: "An OpenAPI 3.1 document." });

const getOpenApiDocumentRoute = createRoute({
  method: "get",
  path: OPENAPI_DOCUMENT_PATH,
  operationId: "getOpenApiDocument",
  tags: ["Operations"],
  summary: "This OpenAPI document",
  description:
    "The OpenAPI 3.1 document of this API as JSON, the same as `openapi.yaml` in the " +
    "repository. Generate a client from it.",
  security: [],
  responses: {
    200: {
      description: "The document.",
      content: { "application/json": { schema: OpenApiDocumentSchema } },
    },
  },
});

const getApiReferenceRoute = createRoute({
  method: "get",
  path: API_REFERENCE_PATH,
  operationId: "getApiReference",
  tags: ["Operations"],
  summary: "Interactive API reference",
  description:
    `An HTML page that renders \`${OPENAPI_DOCUMENT_PATH}\` with Scalar and lets you try each ` +
    "operation. The server serves the page's script itself, so it works without internet access.",
  security: [],
  responses: {
    200: {
      description: "The reference page.",
      content: { "text/html": { schema: z.string() } },
    },
  },
});

/**
 * Documents the app: registers the shared components and the bearer scheme, and serves the
 * document at `/openapi.json` and a Scalar reference page at `/docs`. Call it once, after the
 * other routes; both answer without an API key.
 */
export function documentApi(app: Router): void {
  registerSharedComponents(app.openAPIRegistry);
  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    description:
      "Your API key: `Authorization: Bearer sk_...`. `npm start` prints a demo key; " +
      "`npm run tenant:create -- <name>` makes one per account.",
  });
  app.openapi(getOpenApiDocumentRoute, (c) => c.json(openApiDocument(app), 200));
  // The page needs no validation, so the route is registered for the document and served by
  // the middleware as it is.
  app.openAPIRegistry.registerPath(getApiReferenceRoute);
  app.get(
    API_REFERENCE_PATH,
    Scalar<AppEnv>({
      url: OPENAPI_DOCUMENT_PATH,
      pageTitle: DOCUMENT_CONFIG.info.title,
      cdn: API_REFERENCE_SCRIPT_PATH,
      // The default fonts come from Scalar's servers; the system's fonts need no network.
      withDefaultFonts: false,
    }),
  );
  // A static asset of the page, not an operation of the API: left out of the document.
  app.get(API_REFERENCE_SCRIPT_PATH, async function serveScalarBundle(c) {
    scalarBundle ??= readFile(SCALAR_BUNDLE_FILE);
    return c.body(new Uint8Array(await scalarBundle), 200, {
      "Content-Type": "text/javascript; charset=utf-8",
      "Cache-Control": "public, max-age=86400",
    });
  });
}

const IDEMPOTENCY_KEY_HEADER = "Idempotency-Key";

/**
 * The Idempotency-Key header parameter, however the route's header object spells it (header
 * names are case-insensitive, and so is the validator): every operation refers to one component.
 */
function isIdempotencyKey(parameter: GeneratedObject): boolean {
  return (
    parameter.in === "header" &&
    String(parameter.name).toLowerCase() === IDEMPOTENCY_KEY_HEADER.toLowerCase()
  );
}

/** A parameter as a reader scans it: name, location, required, description, then the rest. */
function nameFirst(parameter: GeneratedObject): GeneratedObject {
  if ("$ref" in parameter) return parameter;
  const { name, in: location, required, description, ...rest } = parameter;
  return { name, in: location, required, ...(description ? { description } : {}), ...rest };
}

/** Media types with `schema` ahead of the examples, as a reader looks for it. */
function schemaFirst(content: GeneratedObjects): GeneratedObjects {
  return Object.fromEntries(
    Object.entries(content).map(([type, { schema, ...rest }]) => [type, { schema, ...rest }]),
  );
}

function sortedBy<T>(object: Record<string, T>, compare: (a: string, b: string) => number) {
  return Object.fromEntries(Object.entries(object).sort(([a], [b]) => compare(a, b)));
}

/** Code point order: the same on every machine, whatever its locale. */
function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
