import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsPlugin from "ajv-formats";
import { parse } from "yaml";
import { REPO_ROOT } from "./server-process.js";

type Json = Record<string, unknown>;

/** A response as both `app.request()` and `fetch()` give it. */
export interface ValidatedResponse {
  status: number;
  headers: Headers;
  clone(): { text(): Promise<string> };
}

/** A response that the document does not describe. */
export class OpenApiMismatchError extends Error {
  override name = "OpenApiMismatchError";
}

// ajv-formats is CommonJS with a default export; under NodeNext the plugin is that default.
const addFormats = addFormatsPlugin as unknown as typeof addFormatsPlugin.default;

const COMPONENTS_ID = "https://openapi.local/components.json";
const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
/** Headers of the HTTP message itself, which OpenAPI does not describe per response. */
const FRAMING_HEADERS = new Set([
  "content-type",
  "content-length",
  "date",
  "connection",
  "keep-alive",
  "transfer-encoding",
]);

/**
 * Checks responses against an OpenAPI 3.1 document: the path and method are documented, the
 * status is documented for them, the content type is one the response declares and the body
 * matches its schema (JSON Schema 2020-12, `$ref`s resolved), every required header is there,
 * every header sent is declared and matches its schema.
 */
export class OpenApiValidator {
  private readonly ajv: Ajv2020;
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly templates: { template: string; pattern: RegExp }[];

  constructor(private readonly document: Json) {
    this.ajv = new Ajv2020({ allErrors: true, strictTypes: false, strictRequired: false });
    addFormats(this.ajv);
    // The OpenAPI 3.1 dialect's annotations, which carry no validation.
    this.ajv.addVocabulary(["example", "discriminator", "xml", "externalDocs"]);
    const schemas = ((document.components as Json | undefined)?.schemas ?? {}) as Json;
    const openComponents = allOfComponents(document);
    const closed = Object.fromEntries(
      Object.entries(schemas).map(([name, schema]) => [
        name,
        closeObjects(schema, openComponents.has(name)),
      ]),
    );
    this.ajv.addSchema({ $id: COMPONENTS_ID, $defs: absoluteRefs(closed) });
    this.templates = Object.keys(document.paths as Json)
      .map((template) => ({
        template,
        params: template.split("{").length - 1,
        pattern: new RegExp(
          `^${template
            .split(/\{[^}]+\}/)
            .map((part) => part.replace(/[.*+?^$()|[\]\\]/g, "\\$&"))
            .join("[^/]+")}$`,
        ),
      }))
      // A literal path wins over a template that also matches it (`/orders/search` vs `/{id}`).
      .sort((a, b) => a.params - b.params);
  }

  /** Loads `openapi.yaml` at the repository root. */
  static fromRepository(): OpenApiValidator {
    return new OpenApiValidator(parse(readFileSync(join(REPO_ROOT, "openapi.yaml"), "utf8")));
  }

  /** Every `METHOD /path status` the document lists. */
  documentedResponses(): string[] {
    const keys: string[] = [];
    for (const [path, item] of Object.entries(this.document.paths as Record<string, Json>)) {
      for (const method of HTTP_METHODS) {
        const operation = item[method] as Json | undefined;
        if (!operation) continue;
        for (const status of Object.keys(operation.responses as Json)) {
          keys.push(`${method.toUpperCase()} ${path} ${status}`);
        }
      }
    }
    return keys;
  }

  /**
   * Throws an OpenApiMismatchError naming the first way `response` departs from the document;
   * otherwise resolves with what it matched, `METHOD /path/{template} status`.
   */
  async validate(method: string, url: string, response: ValidatedResponse): Promise<string> {
    const path = new URL(url, "http://localhost").pathname;
    const request = `${method.toUpperCase()} ${path}`;
    const match = this.templates.find(({ pattern }) => pattern.test(path));
    if (!match) throw new OpenApiMismatchError(`${request}: the path is not in openapi.yaml`);
    const item = (this.document.paths as Record<string, Json>)[match.template] as Json;
    const operation = item[method.toLowerCase()] as Json | undefined;
    if (!operation) {
      const documented = HTTP_METHODS.filter((m) => item[m]).map((m) => m.toUpperCase());
      throw new OpenApiMismatchError(
        `${request}: openapi.yaml documents only ${documented.join(", ")} on ${match.template}`,
      );
    }
    const responses = operation.responses as Json;
    const status = String(response.status);
    const statusKey = [status, `${status[0]}XX`, "default"].find((key) => key in responses);
    const context = `${request} -> ${status}`;
    if (!statusKey) {
      throw new OpenApiMismatchError(
        `${context}: the status is not documented for ${method.toUpperCase()} ${match.template} ` +
          `(documented: ${Object.keys(responses).join(", ")})`,
      );
    }
    const pointer = `#/paths/${pointerToken(match.template)}/${method.toLowerCase()}/responses/${statusKey}`;
    const documented = this.resolve(responses[statusKey] as Json);
    const headerNames = this.checkHeaders(context, pointer, documented, response.headers);
    await this.checkBody(context, pointer, documented, response);
    for (const name of response.headers.keys()) {
      if (!FRAMING_HEADERS.has(name) && !headerNames.has(name)) {
        throw new OpenApiMismatchError(
          `${context}: the response sends the header ${name}, which ${pointer} does not declare`,
        );
      }
    }
    return `${method.toUpperCase()} ${match.template} ${statusKey}`;
  }

  private checkHeaders(context: string, pointer: string, documented: Json, headers: Headers) {
    const names = new Set<string>();
    for (const [name, declared] of Object.entries((documented.headers ?? {}) as Json)) {
      const header = this.resolve(declared as Json);
      names.add(name.toLowerCase());
      const value = headers.get(name);
      if (value === null) {
        if (header.required) {
          throw new OpenApiMismatchError(`${context}: the required header ${name} is missing`);
        }
        continue;
      }
      const schema = this.resolve((header.schema ?? {}) as Json);
      const validate = this.validator(`${pointer}/headers/${name}`, schema);
      if (!validate(headerValue(value, schema))) {
        throw new OpenApiMismatchError(
          `${context}: the header ${name}: ${JSON.stringify(value)} does not match its schema: ` +
            this.ajv.errorsText(validate.errors),
        );
      }
    }
    return names;
  }

  private async checkBody(
    context: string,
    pointer: string,
    documented: Json,
    response: ValidatedResponse,
  ) {
    const text = await response.clone().text();
    const content = (documented.content ?? {}) as Record<string, Json>;
    if (Object.keys(content).length === 0) {
      if (text.length > 0) {
        throw new OpenApiMismatchError(`${context}: a body was sent, but ${pointer} has none`);
      }
      return;
    }
    const contentType = response.headers.get("content-type") ?? "";
    const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
    const declared = Object.keys(content).find(
      (type) =>
        type === mediaType ||
        type === "*/*" ||
        (type.endsWith("/*") && mediaType.startsWith(type.slice(0, -1))),
    );
    if (!declared) {
      throw new OpenApiMismatchError(
        `${context}: Content-Type ${JSON.stringify(contentType)} is not declared ` +
          `(declared: ${Object.keys(content).join(", ")})`,
      );
    }
    const schema = (content[declared] as Json).schema as Json | undefined;
    if (!schema) return;
    let body: unknown = text;
    if (/^application\/(.+\+)?json$/.test(mediaType)) {
      try {
        body = JSON.parse(text);
      } catch {
        throw new OpenApiMismatchError(`${context}: the ${mediaType} body is not JSON: ${text}`);
      }
    }
    const validate = this.validator(`${pointer}/content/${pointerToken(declared)}/schema`, schema);
    if (!validate(body)) {
      throw new OpenApiMismatchError(
        `${context}: the body does not match ${pointer}:\n  ` +
          [
            ...new Set(
              (validate.errors ?? []).map(
                (error) =>
                  `${error.instancePath || "(body)"} ${error.message} ${JSON.stringify(error.params)}`,
              ),
            ),
          ].join("\n  ") +
          `\nbody: ${text.slice(0, 2000)}`,
      );
    }
  }

  /** Why `value` does not match `schema` (a schema of this document), or undefined. */
  schemaErrors(schema: object, value: unknown): string | undefined {
    const validate = this.ajv.compile(absoluteRefs(closeObjects(schema)) as Json);
    return validate(value) ? undefined : this.ajv.errorsText(validate.errors);
  }

  private validator(key: string, schema: Json): ValidateFunction {
    let validate = this.validators.get(key);
    if (!validate) {
      validate = this.ajv.compile(absoluteRefs(closeObjects(schema)) as Json);
      this.validators.set(key, validate);
    }
    return validate;
  }

  /** Follows a `$ref` to a component (response, header, parameter), or returns the object. */
  private resolve(object: Json): Json {
    const ref = object.$ref;
    if (typeof ref !== "string") return object;
    if (!ref.startsWith("#/")) throw new Error(`only local $refs are supported: ${ref}`);
    const target = ref
      .slice(2)
      .split("/")
      .reduce<unknown>(
        (node, token) =>
          (node as Json | undefined)?.[token.replace(/~1/g, "/").replace(/~0/g, "~")],
        this.document,
      );
    if (target === undefined) throw new Error(`unresolved $ref in openapi.yaml: ${ref}`);
    return this.resolve(target as Json);
  }
}

/** Keywords whose values are data, not schemas. */
const VALUE_KEYWORDS = new Set(["example", "examples", "enum", "const", "default"]);

/**
 * Closes every object schema (`unevaluatedProperties: false`) that leaves its extra properties
 * unsaid, so a response field the document does not declare fails like a wrong one. The
 * branches of an `allOf` stay open, and so do the components used as such branches
 * (`openBranch`): the schema holding the `allOf` closes over all of them together.
 */
function closeObjects(schema: unknown, openBranch = false): unknown {
  if (Array.isArray(schema)) return schema.map((item) => closeObjects(item));
  if (schema === null || typeof schema !== "object") return schema;
  const closed: Json = {};
  for (const [key, child] of Object.entries(schema)) {
    if (VALUE_KEYWORDS.has(key)) closed[key] = child;
    else if (key === "allOf" && Array.isArray(child)) {
      closed[key] = child.map((branch) => closeObjects(branch, true));
    } else if (key === "properties" && child && typeof child === "object") {
      closed[key] = Object.fromEntries(
        Object.entries(child).map(([name, property]) => [name, closeObjects(property)]),
      );
    } else closed[key] = closeObjects(child);
  }
  const isObject = "properties" in schema || "allOf" in schema;
  const saysExtra = "additionalProperties" in schema || "unevaluatedProperties" in schema;
  if (isObject && !saysExtra && !openBranch) closed.unevaluatedProperties = false;
  return closed;
}

/** The component schemas some `allOf` extends. */
function allOfComponents(document: unknown): Set<string> {
  const names = new Set<string>();
  const visit = (node: unknown) => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (node === null || typeof node !== "object") return;
    const { allOf } = node as Json;
    if (Array.isArray(allOf)) {
      for (const branch of allOf) {
        const ref = (branch as Json).$ref;
        if (typeof ref === "string") names.add(ref.replace("#/components/schemas/", ""));
      }
    }
    Object.values(node).forEach(visit);
  };
  visit(document);
  return names;
}

/** Points every schema `$ref` at the components schema Ajv holds. */
function absoluteRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(absoluteRefs);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, child]) => [
      key,
      key === "$ref" && typeof child === "string" && child.startsWith("#/components/schemas/")
        ? `${COMPONENTS_ID}#/$defs/${child.slice("#/components/schemas/".length)}`
        : absoluteRefs(child),
    ]),
  );
}

/** Header values are strings on the wire; compare numbers and booleans as their schema types. */
function headerValue(value: string, schema: Json): unknown {
  const type = schema.type;
  if ((type === "integer" || type === "number") && /^-?\d+(\.\d+)?$/.test(value)) {
    return Number(value);
  }
  if (type === "boolean" && (value === "true" || value === "false")) return value === "true";
  return value;
}

/** A JSON pointer token. */
function pointerToken(token: string): string {
  return token.replace(/~/g, "~0").replace(/\//g, "~1");
}
