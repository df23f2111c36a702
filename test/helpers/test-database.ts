import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";

/** A PostgreSQL server for the test run, and where it came from. */
export interface TestServer {
  /** URL of a maintenance database on the server (for CREATE DATABASE). */
  adminUrl: string;
  source: "DATABASE_URL" | "testcontainers" | "embedded" | "CITUS_NODES";
  stop(): Promise<void>;
}

/**
 * The fallback chain: `DATABASE_URL` if set, else a testcontainers
 * PostgreSQL if a container runtime answers, else embedded PostgreSQL. Importing
 * testcontainers costs seconds, so it is only tried when a runtime is configured at all.
 */
export async function startTestServer(log: (line: string) => void): Promise<TestServer> {
  const nodes = citusNodes();
  if (nodes) {
    const [coordinator] = nodes as [string, ...string[]];
    log(`Citus mode: coordinator ${coordinator}, workers ${nodes.slice(1).join(", ")}`);
    return {
      adminUrl: nodeUrl(coordinator, "postgres"),
      source: "CITUS_NODES",
      stop: async () => {},
    };
  }
  const url = process.env.DATABASE_URL;
  if (url) return { adminUrl: url, source: "DATABASE_URL", stop: async () => {} };

  if (containerRuntimeConfigured()) {
    try {
      const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
      const container = await new PostgreSqlContainer("postgres:17-alpine").start();
      return {
        adminUrl: container.getConnectionUri(),
        source: "testcontainers",
        stop: async () => {
          await container.stop();
        },
      };
    } catch (error) {
      log(
        `testcontainers unavailable (${String(error).split("\n")[0]}); using embedded PostgreSQL`,
      );
    }
  }

  const dir = await mkdtemp(join(tmpdir(), "idempotent-payments-test-"));
  // mkdtemp makes a 0700 directory; the server runs as the postgres user and must enter it.
  await chmod(dir, 0o755);
  const embedded = await startEmbeddedPostgres({
    dataDir: join(dir, "postgres"),
    // A throwaway cluster: durability buys nothing and costs seconds.
    postgresFlags: [
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
    ],
  });
  return {
    adminUrl: embedded.url,
    source: "embedded",
    stop: async () => {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function containerRuntimeConfigured(): boolean {
  if (process.env.DOCKER_HOST || process.env.TESTCONTAINERS_HOST_OVERRIDE) return true;
  const sockets = [
    join(homedir(), ".testcontainers.properties"),
    "/var/run/docker.sock",
    join(homedir(), ".docker", "run", "docker.sock"),
    process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, "podman", "podman.sock") : "",
  ];
  return sockets.some((path) => path && existsSync(path));
}

/**
 * The Citus cluster of the opt-in mode, `CITUS_NODES=coordinator:port,worker:port,...` (user
 * `CITUS_USER`, default postgres), or undefined for a plain PostgreSQL run.
 */
export function citusNodes(): string[] | undefined {
  const nodes = process.env.CITUS_NODES?.split(",").map((node) => node.trim());
  if (!nodes || nodes.length === 0 || nodes[0] === "") return undefined;
  if (nodes.length < 2) throw new Error("CITUS_NODES needs the coordinator and at least a worker");
  return nodes;
}

/** A URL of database `name` on one node, `host:port`. */
export function nodeUrl(node: string, name: string): string {
  const user = encodeURIComponent(process.env.CITUS_USER ?? "postgres");
  return `postgres://${user}@${node}/${name}`;
}

async function onServer(url: string, statements: string[]): Promise<void> {
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  try {
    for (const statement of statements) await admin.unsafe(statement);
  } finally {
    await admin.end();
  }
}

/**
 * Creates a new, empty database on the server and returns its URL. In Citus mode the database
 * is created on every node with the extension, and the coordinator registers itself and the
 * workers, so the migrations that follow distribute the tables (a database copied from a
 * template would carry the extension but no nodes, and every table would stay local).
 */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const nodes = citusNodes();
  if (nodes) {
    const [coordinator, ...workers] = nodes as [string, ...string[]];
    for (const node of nodes) {
      await onServer(nodeUrl(node, "postgres"), [`CREATE DATABASE "${name}"`]);
      await onServer(nodeUrl(node, name), ["CREATE EXTENSION IF NOT EXISTS citus"]);
    }
    const [host, port] = coordinator.split(":");
    await onServer(nodeUrl(coordinator, name), [
      `SELECT citus_set_coordinator_host('${host}', ${Number(port)})`,
      ...workers.map((worker) => {
        const [h, p] = worker.split(":");
        return `SELECT citus_add_node('${h}', ${Number(p)})`;
      }),
    ]);
    return nodeUrl(coordinator, name);
  }
  await onServer(adminUrl, [`CREATE DATABASE "${name}"`]);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const drop = `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`;
  const nodes = citusNodes();
  if (nodes) {
    for (const node of nodes) await onServer(nodeUrl(node, "postgres"), [drop]);
    return;
  }
  await onServer(adminUrl, [drop]);
}
