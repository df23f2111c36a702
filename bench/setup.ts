import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { migrateDatabase } from "../src/db/migrate.js";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A database created for one benchmark run. */
/** The order every benchmark creates: two items, a customer email and one metadata pair. */
export const BENCH_ORDER_BODY = JSON.stringify({
  currency: "EUR",
  items: [
    { sku: "TSHIRT", name: "T-shirt", quantity: 2, unit_amount: 1500 },
    { sku: "MUG", name: "Mug", quantity: 1, unit_amount: 900 },
  ],
  customer_email: "ada@example.com",
  metadata: { cart_id: "cart_42" },
});

export interface BenchDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * Creates an empty database next to the one `adminUrl` names and applies the migrations, so
 * every run starts from empty tables and leaves nothing behind on a shared server.
 */
export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `bench_${process.pid}_${Date.now()}`;
  await onAdmin(adminUrl, (admin) => admin.unsafe(`CREATE DATABASE "${name}"`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const drop = () =>
    onAdmin(adminUrl, (admin) => admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
  try {
    await migrateDatabase(url.toString());
  } catch (error) {
    await drop();
    throw error;
  }
  return { url: url.toString(), drop };
}

async function onAdmin(adminUrl: string, fn: (admin: postgres.Sql) => Promise<unknown>) {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await fn(admin);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** The real server running as a child process. */
export interface BenchServer {
  url: string;
  pid: number;
  /** SIGTERM, and SIGKILL if it has not exited after 15 s. */
  stop(): Promise<void>;
}

/** Where the server keeps its data and how its `node` runs. */
export interface StartServerOptions {
  databaseUrl: string;
  /** Extra flags for the server's `node`, such as `--cpu-prof`. */
  nodeArgs?: string[];
}

/**
 * Starts `src/main.ts` the way `npm start` does, on a port of its choosing, with
 * `LOG_LEVEL=info`: the per-request log line is part of what the product costs, so it is
 * measured. stdout (the log) is a pipe, as under a process manager or log collector: read for
 * the `listening` line, then drained and discarded. stderr is kept to explain a failed start.
 */
export async function startBenchServer(options: StartServerOptions): Promise<BenchServer> {
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), "--import", "tsx", "src/main.ts"],
    {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        DATABASE_URL: options.databaseUrl,
        PORT: "0",
        HOST: "127.0.0.1",
        LOG_LEVEL: "info",
        MIGRATE_ON_START: "false",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-8000);
  });
  const exited = once(child, "exit");
  let stopping = false;

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not listen within 30 s:\n${stderr}`));
    }, 30_000);
    let buffered = "";
    const onData = (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        const listening = listeningUrl(line);
        if (listening === undefined) continue;
        clearTimeout(timer);
        child.stdout.off("data", onData);
        // Flowing with no listener: the rest of the log is read and dropped.
        child.stdout.resume();
        resolve(listening);
        return;
      }
    };
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? signal}) before listening:\n${stderr}`));
    });
  });
  child.once("exit", (code, signal) => {
    if (!stopping) process.stderr.write(`[bench] server exited (${code ?? signal}):\n${stderr}\n`);
  });

  return {
    url,
    pid: child.pid as number,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      stopping = true;
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      child.kill("SIGTERM");
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The URL of pino's `listening` line, if `line` is that line. */
function listeningUrl(line: string): string | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const entry = JSON.parse(line) as { msg?: unknown; url?: unknown };
    return entry.msg === "listening" && typeof entry.url === "string" ? entry.url : undefined;
  } catch {
    return undefined;
  }
}

/** The naive peer (`bench/naive-peer.ts`) running as a child process. */
export async function startNaivePeer(options: {
  databaseUrl: string;
  tenantId: string;
}): Promise<BenchServer> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/naive-peer.ts"], {
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: options.databaseUrl, BENCH_TENANT_ID: options.tenantId },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = once(child, "exit");
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`naive peer did not listen within 30 s:\n${output}`));
    }, 30_000);
    const onData = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-8000);
      const match = /listening (http:\/\/\S+)/.exec(output);
      if (!match?.[1]) return;
      clearTimeout(timer);
      child.stdout.off("data", onData);
      child.stdout.resume();
      resolve(match[1]);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-8000);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`naive peer exited (${code ?? signal}) before listening:\n${output}`));
    });
  });
  return {
    url,
    pid: child.pid as number,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      child.kill("SIGTERM");
      await exited;
      clearTimeout(timer);
    },
  };
}
