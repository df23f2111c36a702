import qs from "qs";
import {
  amountAboveMaximum,
  notExpandable,
  parameterInvalid,
  parameterInvalidEmpty,
  parameterInvalidInteger,
  parameterMissing,
  parameterUnknown,
} from "./errors.js";

/** Parsed form (or query string) parameters, nested the way Stripe nests them: `a[b]=c`. */
export type Params = qs.ParsedQs;
type ParamValue = Params[string];

/** Stripe's cap on a single charge, eight digits in the smallest currency unit. */
export const MAX_AMOUNT = 99_999_999;

/** Stripe's metadata limits: keys per object, key length, value length. */
const METADATA_MAX_KEYS = 50;
const METADATA_KEY_MAX_LENGTH = 40;
const METADATA_VALUE_MAX_LENGTH = 500;

/**
 * Parses an `application/x-www-form-urlencoded` body or a query string the way Stripe does,
 * including stripe-node's indexed arrays (`expand[0]=latest_charge`).
 */
export function parseParams(text: string): Params {
  return qs.parse(text, { depth: 5, arrayLimit: 100, parameterLimit: 1000 });
}

/**
 * A canonical text for a parameter set: keys sorted at every level, so two requests carrying
 * the same parameters in a different order compare equal.
 */
export function canonicalParams(params: Params): string {
  const sort = (value: ParamValue): unknown => {
    if (Array.isArray(value)) {
      return value.map(sort);
    }
    if (typeof value === "object" && value !== null) {
      return Object.fromEntries(
        Object.keys(value)
          .sort()
          .map((key) => [key, sort(value[key])]),
      );
    }
    return value;
  };
  return JSON.stringify(sort(params));
}

/** Throws `parameter_unknown` for the first top-level parameter not in `allowed`. */
export function rejectUnknownParams(params: Params, allowed: readonly string[]): void {
  for (const name of Object.keys(params)) {
    if (!allowed.includes(name)) {
      throw parameterUnknown(name);
    }
  }
}

function describe(value: ParamValue): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** A string parameter; `""` counts as absent (Stripe reads it as "unset"). */
export function optionalString(params: Params, name: string): string | null {
  const value = params[name];
  if (value === undefined || value === "") {
    return null;
  }
  if (typeof value !== "string") {
    throw parameterInvalid(name, `Invalid string: ${describe(value)}`);
  }
  return value;
}

/** A string parameter that must be present and non-empty. */
export function requiredString(params: Params, name: string): string {
  if (params[name] === "") {
    throw parameterInvalidEmpty(name);
  }
  const value = optionalString(params, name);
  if (value === null) {
    throw parameterMissing(name);
  }
  return value;
}

/** An integer parameter of at least `min`, or null when absent. */
export function optionalInteger(params: Params, name: string, min: number): number | null {
  const value = params[name];
  if (value === undefined) {
    return null;
  }
  if (value === "") {
    throw parameterInvalidEmpty(name);
  }
  if (typeof value !== "string" || !/^-?\d+$/.test(value)) {
    throw parameterInvalidInteger(name, describe(value));
  }
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed)) {
    throw parameterInvalidInteger(name, value);
  }
  if (parsed < min) {
    throw parameterInvalidInteger(name, value, min);
  }
  return parsed;
}

/** A positive amount in the smallest currency unit, at most {@link MAX_AMOUNT}. */
export function optionalAmount(params: Params, name: string): number | null {
  const amount = optionalInteger(params, name, 1);
  if (amount !== null && amount > MAX_AMOUNT) {
    throw amountAboveMaximum(MAX_AMOUNT);
  }
  return amount;
}

/** A boolean parameter (`true`/`false`), or null when absent. */
export function optionalBoolean(params: Params, name: string): boolean | null {
  const value = params[name];
  if (value === undefined || value === "") {
    return null;
  }
  if (value === "true" || value === "false") {
    return value === "true";
  }
  throw parameterInvalid(name, `Invalid boolean: ${describe(value)}`);
}

/** A parameter restricted to `values`, or null when absent. */
export function optionalEnum<const T extends string>(
  params: Params,
  name: string,
  values: readonly T[],
): T | null {
  const value = optionalString(params, name);
  if (value === null) {
    return null;
  }
  const match = values.find((candidate) => candidate === value);
  if (match === undefined) {
    throw parameterInvalid(
      name,
      `Invalid ${name}: must be one of ${values.join(", ")} (got ${value}).`,
    );
  }
  return match;
}

/** An array of strings (`name[0]=a&name[1]=b`), or null when absent. */
export function optionalStringArray(params: Params, name: string): string[] | null {
  const value = params[name];
  if (value === undefined || value === "") {
    return null;
  }
  // qs turns `name[]=a` into an array but sparse or large indices into an object.
  const items = Array.isArray(value)
    ? value
    : typeof value === "object"
      ? Object.values(value)
      : [value];
  return items.map((item, index) => {
    if (typeof item !== "string") {
      throw parameterInvalid(`${name}[${index}]`, `Invalid string: ${describe(item)}`);
    }
    return item;
  });
}

/**
 * `metadata[key]=value` pairs, with Stripe's limits. `metadata=` (empty) means none; a key
 * with an empty value is dropped, as Stripe drops it.
 */
export function readMetadata(params: Params): Record<string, string> {
  const value = params.metadata;
  if (value === undefined || value === "") {
    return {};
  }
  if (typeof value !== "object" || Array.isArray(value)) {
    throw parameterInvalid("metadata", "Invalid metadata: must be an object of string values.");
  }
  const entries = Object.entries(value);
  if (entries.length > METADATA_MAX_KEYS) {
    throw parameterInvalid(
      "metadata",
      `Invalid metadata: at most ${METADATA_MAX_KEYS} keys are allowed.`,
    );
  }
  const metadata: Record<string, string> = {};
  for (const [key, item] of entries) {
    const param = `metadata[${key}]`;
    if (typeof item !== "string") {
      throw parameterInvalid(param, `Invalid string: ${describe(item)}`);
    }
    if (key.length > METADATA_KEY_MAX_LENGTH) {
      throw parameterInvalid(
        param,
        `Metadata keys can have up to ${METADATA_KEY_MAX_LENGTH} characters.`,
      );
    }
    if (item.length > METADATA_VALUE_MAX_LENGTH) {
      throw parameterInvalid(
        param,
        `Metadata values can have up to ${METADATA_VALUE_MAX_LENGTH} characters.`,
      );
    }
    if (item !== "") {
      metadata[key] = item;
    }
  }
  return metadata;
}

/** The `expand[]` paths of a request, each of which must be one of `expandable`. */
export function readExpand(params: Params, expandable: readonly string[]): Set<string> {
  const paths = optionalStringArray(params, "expand") ?? [];
  paths.forEach((path, index) => {
    if (!expandable.includes(path)) {
      throw notExpandable(path, `expand[${index}]`);
    }
  });
  return new Set(paths);
}
