import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadConfig as loadSimulatorConfig } from "../simulator/config.js";
import { ConfigSchema, loadConfig } from "../src/config.js";
import { REPO_ROOT } from "./helpers/server-process.js";

/**
 * The Dockerfile and docker-compose.yml cannot be built or started here (no container engine),
 * so this suite holds them to the code instead: every variable they set is one the code reads
 * and accepts, every path they name exists, and what the image leaves out (devDependencies)
 * is nothing the server imports. CI also validates the compose file with `docker-compose config`.
 */
const read = (path: string) => readFileSync(join(REPO_ROOT, path), "utf8");
const pkg = JSON.parse(read("package.json")) as {
  engines: { node: string };
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  scripts: Record<string, string>;
};

/** Provider settings the payments work reads; documented and set in compose like the rest. */
const PROVIDER_VARIABLES = [
  "STRIPE_SECRET_KEY",
  "STRIPE_API_URL",
  "STRIPE_WEBHOOK_SECRET",
  "PROVIDER_TIMEOUT_MS",
  "PAYMENT_LEASE_MS",
  "COMPLETER_INTERVAL_MS",
];
const APP_VARIABLES = [...new Set([...Object.keys(ConfigSchema.shape), ...PROVIDER_VARIABLES])];

type Service = {
  build?: string;
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  ports?: string[];
};
const compose = parse(read("docker-compose.yml")) as { services: Record<string, Service> };

/** The environment as compose hands it over when nothing is set: `${NAME:-default}` → default. */
function environmentOf(name: string): Record<string, string> {
  const service = compose.services[name];
  if (!service?.environment) throw new Error(`service ${name} has no environment`);
  return Object.fromEntries(
    Object.entries(service.environment).map(([key, value]) => {
      const resolved = String(value).replace(/\$\{\w+:-([^}]*)\}/g, "$1");
      if (resolved.includes("$")) throw new Error(`${name}.${key}: unresolved ${value}`);
      return [key, resolved];
    }),
  );
}

describe("docker-compose.yml", () => {
  const app = environmentOf("app");
  const sim = environmentOf("stripe-sim");
  const postgres = environmentOf("postgres");

  it("sets only variables the app reads, with values its configuration accepts", () => {
    expect(Object.keys(app).filter((name) => !APP_VARIABLES.includes(name))).toEqual([]);
    const config = loadConfig(app);
    expect(config).toMatchObject({ HOST: "0.0.0.0", MIGRATE_ON_START: true });
    expect(config.DEMO_API_KEY).toBeDefined();
  });

  it("points the app at the postgres service, which it waits for until healthy", () => {
    const url = new URL(app.DATABASE_URL ?? "");
    expect(url.hostname).toBe("postgres");
    expect(decodeURIComponent(url.username)).toBe(postgres.POSTGRES_USER);
    expect(decodeURIComponent(url.password)).toBe(postgres.POSTGRES_PASSWORD);
    expect(url.pathname).toBe(`/${postgres.POSTGRES_DB}`);
    expect(compose.services.postgres?.image).toMatch(/^postgres:17(\.|$)/);
    expect(compose.services.postgres?.healthcheck?.test.join(" ")).toContain("pg_isready");
    expect(compose.services.app?.depends_on).toEqual({
      postgres: { condition: "service_healthy" },
      "stripe-sim": { condition: "service_healthy" },
    });
  });

  it("health-checks the app on /readyz at the port it listens on and publishes", () => {
    const port = loadConfig(app).PORT;
    expect(compose.services.app?.ports).toEqual([`${port}:${port}`]);
    expect(compose.services.app?.healthcheck?.test.join(" ")).toContain(
      `http://127.0.0.1:${port}/readyz`,
    );
  });

  it("runs the simulator from source with a configuration it accepts, wired to the app both ways", () => {
    const service = compose.services["stripe-sim"];
    expect(service?.command).toEqual(["node", "--import", "tsx", "simulator/main.ts"]);
    expect(existsSync(join(REPO_ROOT, "simulator/main.ts"))).toBe(true);
    const simConfig = loadSimulatorConfig(sim);
    expect(simConfig.host).toBe("0.0.0.0");
    expect(app.STRIPE_API_URL).toBe(`http://stripe-sim:${simConfig.port}`);
    expect(simConfig.webhookUrl).toBe(`http://app:${loadConfig(app).PORT}/v1/webhooks/stripe`);
    expect(simConfig.webhookSecret).toBe(app.STRIPE_WEBHOOK_SECRET);
    expect(service?.healthcheck?.test.join(" ")).toContain(
      `http://127.0.0.1:${simConfig.port}/_sim/health`,
    );
  });

  it("builds both services from this repository's Dockerfile", () => {
    expect(compose.services.app?.build).toBe(".");
    expect(compose.services["stripe-sim"]?.build).toBe(".");
  });
});

describe("Dockerfile", () => {
  const lines = read("Dockerfile")
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));
  const instructions = (name: string) =>
    lines.filter((line) => line.startsWith(`${name} `)).map((line) => line.slice(name.length + 1));

  it("is multi-stage on the Node.js major version package.json asks for", () => {
    const major = /\d+/.exec(pkg.engines.node)?.[0];
    const stages = instructions("FROM");
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const from of stages) expect(from).toMatch(new RegExp(`^node:${major}-`));
  });

  it("installs production dependencies only, and tsx, which runs the app, is one of them", () => {
    expect(instructions("RUN").some((run) => run.includes("npm ci --omit=dev"))).toBe(true);
    expect(pkg.dependencies.tsx).toBeDefined();
  });

  it("runs as a non-root user, the server itself, health-checked on /readyz", () => {
    const users = instructions("USER");
    expect(users).toHaveLength(1);
    expect(users[0]).not.toMatch(/^(root|0)(:|$)/);
    expect(lines.indexOf(`USER ${users[0]}`)).toBeLessThan(
      lines.findIndex((line) => line.startsWith("CMD ")),
    );
    expect(JSON.parse(instructions("CMD")[0] ?? "[]")).toEqual([
      "node",
      "--import",
      "tsx",
      "src/main.ts",
    ]);
    // npm start runs the same command, exec'd so that signals to npm reach the server.
    expect(pkg.scripts.start).toBe("exec node --import tsx src/main.ts");
    expect(instructions("HEALTHCHECK").join(" ")).toContain("/readyz");
    expect(instructions("ENV").join(" ")).toContain("HOST=0.0.0.0");
  });

  it("copies paths that exist and that .dockerignore lets through", () => {
    const ignored = read(".dockerignore").split("\n").filter(Boolean);
    const sources = instructions("COPY")
      .filter((copy) => !copy.startsWith("--from="))
      .flatMap((copy) => copy.split(/\s+/).slice(0, -1));
    expect(sources).toEqual(expect.arrayContaining(["src", "drizzle", "simulator"]));
    for (const source of sources) {
      expect(existsSync(join(REPO_ROOT, source)), source).toBe(true);
      expect(ignored, source).not.toContain(source);
    }
  });

  it("leaves out nothing the server or the simulator imports (devDependencies are not installed)", () => {
    const files = ["src", "simulator"]
      .flatMap((dir) => walk(join(REPO_ROOT, dir)))
      .filter((file) => file.endsWith(".ts") && !file.endsWith(".test.ts"));
    const missing: string[] = [];
    for (const file of files) {
      for (const [, specifier] of readFileSync(file, "utf8").matchAll(
        /^\s*(?:import|export)\s+(?!type\s)[^"']*?from\s+["']([^"']+)["']/gm,
      )) {
        if (!specifier || specifier.startsWith(".") || specifier.startsWith("node:")) continue;
        const name = specifier.startsWith("@")
          ? specifier.split("/").slice(0, 2).join("/")
          : (specifier.split("/")[0] ?? specifier);
        if (!pkg.dependencies[name]) missing.push(`${relative(REPO_ROOT, file)}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe("docs/operations.md", () => {
  it("documents every variable the app reads in its configuration table", () => {
    const docs = read("docs/operations.md");
    const documented = [...docs.matchAll(/^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(APP_VARIABLES.filter((name) => !documented.includes(name))).toEqual([]);
  });
});

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}
