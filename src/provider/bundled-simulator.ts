import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../logger.js";

const PROJECT_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SIMULATOR_MAIN = join(PROJECT_ROOT, "simulator", "main.ts");
/** First start compiles the simulator's TypeScript; slow machines need the room. */
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

export interface BundledSimulator {
  url: string;
  /** False when another process of ours started it and keeps owning it. */
  owned: boolean;
  /** Tells the simulator where to deliver webhooks. */
  setWebhookUrl(url: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts the local Stripe-compatible simulator (`simulator/`) as a child process on a free
 * port, keeping its state in `stateFile` so payments made before a restart are still known.
 * The child has an IPC channel to this process and exits when it closes, so even a SIGKILL of
 * the server never leaves a simulator behind. A simulator a running server of ours already
 * started on the same state file is shared instead (a CLI run beside `npm start`).
 */
export async function startBundledSimulator(options: {
  stateFile: string;
  webhookSecret: string;
  logger: Logger;
}): Promise<BundledSimulator> {
  const endpointFile = join(dirname(options.stateFile), "endpoint.json");
  const running = runningSimulator(endpointFile);
  if (running) {
    return { url: running.url, owned: false, setWebhookUrl: async () => {}, stop: async () => {} };
  }
  await mkdir(dirname(options.stateFile), { recursive: true });
  const child = spawn(process.execPath, ["--import", "tsx", SIMULATOR_MAIN], {
    cwd: PROJECT_ROOT,
    env: {
      ...process.env,
      STRIPE_SIM_HOST: "127.0.0.1",
      STRIPE_SIM_PORT: "0",
      STRIPE_SIM_STATE_FILE: options.stateFile,
      STRIPE_WEBHOOK_SECRET: options.webhookSecret,
    },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  const log = (line: string) => options.logger.debug({ source: "stripe-simulator" }, line);
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => log(chunk.trimEnd()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the Stripe simulator did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      const match = /listening on (http:\/\/\S+)/.exec(chunk);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
      log(chunk.trimEnd());
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the Stripe simulator exited with ${code} while starting`));
    });
  });
  child.unref();
  child.channel?.unref();
  await writeFile(endpointFile, JSON.stringify({ pid: child.pid, url }));

  let stopped: Promise<void> | undefined;
  return {
    url,
    owned: true,
    async setWebhookUrl(webhookUrl) {
      const res = await fetch(`${url}/_sim/webhooks`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ url: webhookUrl }),
      });
      if (!res.ok) throw new Error(`the Stripe simulator refused the webhook URL: ${res.status}`);
    },
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once("exit", resolve));
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
        }
        await rm(endpointFile, { force: true });
      })();
      return stopped;
    },
  };
}

function runningSimulator(endpointFile: string): { url: string } | undefined {
  if (!existsSync(endpointFile)) return undefined;
  try {
    const { pid, url } = JSON.parse(readFileSync(endpointFile, "utf8")) as {
      pid: number;
      url: string;
    };
    process.kill(pid, 0);
    return { url };
  } catch {
    return undefined;
  }
}
