/**
 * A client for interq's HTTP API and a worker loop, for Node 20+ with no
 * runtime dependencies (the built-in fetch).
 *
 * ```ts
 * import { Client, Worker } from "interq";
 * const iq = new Client("http://127.0.0.1:7700");
 * await iq.setInterests("emails", { to: "@example\\.com$" });
 * await iq.publish({ to: "ada@example.com" });
 * const worker = new Worker(iq, ["emails"], async (task) => ({ sent: task.data.to }));
 * await worker.run(); // until SIGTERM or SIGINT, or worker.stop()
 * ```
 */

import os from "node:os";

export const VERSION = "0.1.0";

/** interq refused a call (its `status` and stable `code`), or could not be
 * reached (`status` 0, `code` "unreachable"). */
export class InterqError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`interq answered ${status} (${code}): ${message}`);
    this.name = "InterqError";
  }

  /** Down, restarting, or failing on its side: worth waiting for. */
  get unreachable(): boolean {
    return this.status === 0 || this.status >= 500;
  }
}

/** A task record as interq answers it. */
export interface TaskRecord {
  taskId: string;
  publishId: string;
  queue: string;
  state: string;
  data?: Record<string, unknown>;
  attempt: number;
  maxAttempts: number;
  ttr: number;
  cancelled?: boolean;
  key?: string;
  group?: string;
  failReason?: string;
  /** The copy whose output this task is (`publishOutput`). */
  parent?: string;
  depth?: number;
  batch?: string;
  /** The copies it waits for. */
  dependsOn?: string[];
  [field: string]: unknown;
}

/** What a publish answers. */
export interface Published {
  taskId: string;
  queues: string[];
  copies: { queue: string; taskId: string; existing?: boolean }[];
}

/** The options of `PUT /task`, in the API's spelling. */
export interface PublishOptions {
  publisher?: string;
  runAt?: number;
  scope?: "any" | "all";
  singularlyEnqueue?: boolean | "replace";
  singularlyRun?: boolean;
  priority?: number | "urgent" | "high" | "normal" | "low" | "bulk";
  maxAttempts?: number;
  ttr?: number;
  key?: string;
  /** Its fairness group (a tenant, a customer). */
  group?: string;
  expireAt?: number;
  ttl?: number;
  /** A completed copy's object output is published on as a task. */
  publishOutput?: boolean;
  /** Task ids, publish ids or `{ key }`: its copies wait until all completed. */
  dependsOn?: (string | { key: string })[];
  /** What a dependency that fails for good does: cancel (default) or run. */
  dependencyFailed?: "cancel" | "run";
}

/** A batch's totals, by the state its copies are in or ended in. */
export interface BatchTotals {
  blocked: number;
  scheduled: number;
  ready: number;
  running: number;
  completed: number;
  failed: number;
  cancelled: number;
  expired: number;
  removed: number;
}

/** A batch as `GET /status?batch=` shows it. */
export interface Batch {
  id: string;
  createdAt: number;
  totals: BatchTotals;
  copies: number;
  ended: boolean;
  openForMore?: boolean;
  endedAt?: number;
  onComplete?: Record<string, unknown>;
  /** The publish its callback became. */
  callback?: string;
}

/** A fairness group's settings of its own in its queue. */
export interface GroupSettings {
  maxRunning?: number;
  rateLimit?: number;
  weight?: number;
}

/** The settings of `PUT /queue`, in the API's spelling; `null` clears one. */
export interface QueueSettings {
  maxRunning?: number | null;
  rateLimit?: number | null;
  paused?: boolean;
  groupMaxRunning?: number | null;
  groupRateLimit?: number | null;
  strictPriority?: boolean;
  groups?: Record<string, GroupSettings | null>;
}

/** A queue's fairness groups as `GET /status?groups=` answers them. */
export interface QueueGroups {
  queue: string;
  total: number;
  groups: { group: string; ready: number; running: number; held?: "maxRunning" | "rateLimit"; heldUntil?: number }[];
}

/** A claimed copy, as a handler gets it. */
export interface Task {
  taskId: string;
  queue: string;
  data: Record<string, unknown>;
  attempt: number;
  maxAttempts: number;
  ttr: number;
  /** Aborted when a heartbeat learns the task was cancelled. */
  signal: AbortSignal;
  record: TaskRecord;
}

export class Client {
  readonly url: string;

  constructor(
    url = "http://127.0.0.1:7700",
    private readonly options: { key?: string; timeoutMs?: number } = {},
  ) {
    if (!/^https?:\/\//.test(url)) {
      throw new TypeError(`${url} is not an http(s) URL`);
    }
    this.url = url.replace(/\/+$/, "");
  }

  private async call<T>(
    method: string,
    path: string,
    body?: unknown,
    query?: Record<string, string | number | boolean | undefined>,
    waitSecs = 0,
  ): Promise<T> {
    let url = this.url + path;
    if (query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) {
        if (v !== undefined) q.set(k, String(v));
      }
      url += `?${q}`;
    }
    const headers: Record<string, string> = { "user-agent": `interq-node/${VERSION}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.options.key) headers.authorization = `Bearer ${this.options.key}`;
    let resp: Response;
    try {
      resp = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout((this.options.timeoutMs ?? 30_000) + waitSecs * 1000),
      });
    } catch (e) {
      throw new InterqError(0, "unreachable", `cannot reach interq at ${this.url}: ${(e as Error).message}`);
    }
    const text = await resp.text();
    if (!resp.ok) {
      let code = "unknown";
      let message = text;
      try {
        const err = JSON.parse(text).error;
        code = err.code;
        message = err.message;
      } catch {
        // Not an answer of interq's: keep the text.
      }
      throw new InterqError(resp.status, code, message);
    }
    return (text ? JSON.parse(text) : null) as T;
  }

  publish(data: Record<string, unknown>, options: PublishOptions = {}): Promise<Published> {
    return this.call("PUT", "/task", { data, ...options });
  }

  /** `[{data, ...options}, ...]` in one durable commit. */
  publishBatch(tasks: ({ data: Record<string, unknown> } & PublishOptions)[]): Promise<Published[]> {
    return this.call("PUT", "/task", tasks);
  }

  /** `PUT /batch`: `tasks` published in one commit as one batch (`batch`
   * names it; one is made otherwise), `onComplete` published once every
   * copy has ended, `more` to add to it later. */
  async openBatch(
    tasks: ({ data: Record<string, unknown> } & PublishOptions)[],
    opts: { batch?: string; onComplete?: { data: Record<string, unknown> } & PublishOptions; more?: boolean } = {},
  ): Promise<{ batch: string; published: Published[] }> {
    return this.call("PUT", "/batch", { tasks, ...opts });
  }

  /** A batch's totals, whether it ended, and its callback. */
  async batch(id: string): Promise<Batch> {
    const answer = await this.call<{ batch: Batch }>("GET", "/status", undefined, { batch: id });
    return answer.batch;
  }

  cancel(target: { taskId: string } | { key: string }): Promise<Record<string, unknown>> {
    return this.call("DELETE", "/task", target);
  }

  setInterests(queue: string, interests: unknown): Promise<{ queue: string; interests: unknown }> {
    return this.call("PUT", "/interest", { queue, interests });
  }

  /** `GET /status`: `status({ queue: "q" })`, `status({ counters: true })`. */
  status(params: Record<string, string | number | boolean> = {}): Promise<Record<string, any>> {
    const query: Record<string, string> = {};
    for (const [k, v] of Object.entries(params)) query[k] = v === true ? "" : String(v);
    return this.call("GET", "/status", undefined, query);
  }

  /** Registers a worker on `queues` in order, or with `weights` (queue ->
   * 1..1000) in proportion to them. */
  async register(queues: string[], name?: string, weights?: Record<string, number>): Promise<string> {
    const body: Record<string, unknown> = { queues };
    if (name) body.name = name;
    if (weights) body.weights = weights;
    const answer = await this.call<{ workerId: string }>("PUT", "/worker", body);
    return answer.workerId;
  }

  /** Sets a queue's settings; answers them as they now are. */
  async setQueue(queue: string, settings: QueueSettings): Promise<QueueSettings> {
    const answer = await this.call<{ settings: QueueSettings }>("PUT", "/queue", { queue, ...settings });
    return answer.settings;
  }

  /** A queue's fairness groups, the most ready first. */
  async groups(queue: string, limit?: number): Promise<QueueGroups> {
    const query: Record<string, string | number> = { groups: queue };
    if (limit !== undefined) query.limit = limit;
    const answer = await this.call<{ groups: QueueGroups }>("GET", "/status", undefined, query);
    return answer.groups;
  }

  async deregister(workerId: string): Promise<void> {
    await this.call("DELETE", "/worker", { workerId });
  }

  /** Up to `count` copies (1 without it), waiting up to `wait` seconds. */
  async claim(workerId: string, opts: { wait?: number; count?: number } = {}): Promise<TaskRecord[]> {
    const answer = await this.call<TaskRecord | TaskRecord[] | null>(
      "GET",
      "/task",
      undefined,
      { workerId, wait: opts.wait, count: opts.count },
      opts.wait ?? 0,
    );
    if (answer === null) return [];
    return Array.isArray(answer) ? answer : [answer];
  }

  complete(workerId: string, taskId: string, output?: unknown): Promise<TaskRecord> {
    const body: Record<string, unknown> = { workerId, taskId, state: "complete" };
    if (output !== undefined) body.output = output;
    return this.call("POST", "/task", body);
  }

  fail(workerId: string, taskId: string, reason: string, reEnqueue = false): Promise<TaskRecord> {
    const body: Record<string, unknown> = { workerId, taskId, state: "fail", failReason: reason.slice(0, 4000) };
    if (reEnqueue) body.reEnqueue = true;
    return this.call("POST", "/task", body);
  }

  /** Renews the lease; the answer's `cancelled` says whether to stop. */
  heartbeat(workerId: string, taskId: string, progress?: unknown): Promise<TaskRecord> {
    const body: Record<string, unknown> = { workerId, taskId, state: "progress" };
    if (progress !== undefined) body.progress = progress;
    return this.call("POST", "/task", body);
  }

  /**
   * Adds to the log of a task the worker holds (followed live in the console
   * and by `interq log --follow`); resolves to the log's length. The server
   * takes one append per task every `tasks.log_every_ms`: a refusal's code is
   * then `too_soon`, and the text goes with the next.
   */
  async appendLog(workerId: string, taskId: string, text: string): Promise<number> {
    const answer = await this.call<{ total: number }>("POST", "/task/log", { workerId, taskId, text });
    return answer.total;
  }

  /** A task's log (admin): `text` from `offset` (a previous answer's `next`), or all that is kept. */
  taskLog(taskId: string, offset?: number): Promise<TaskLog> {
    return this.call("GET", "/task/log", undefined, { taskId, offset });
  }
}

/** A task's log, or the part of it asked for. */
export interface TaskLog {
  taskId: string;
  queue: string;
  state: string;
  /** The offset of the first byte still kept. */
  start: number;
  /** Where `text` begins. */
  offset: number;
  /** Where `text` ends: the offset to read on from. */
  next: number;
  /** Bytes ever written. */
  total: number;
  text: string;
}

/** A report's refusal when the lease is no longer ours. */
const LEASE_GONE = new Set(["not_lease_holder", "task_not_running", "unknown_task", "unknown_worker"]);

export interface WorkerOptions {
  concurrency?: number;
  name?: string;
  /** Seconds a claim long-polls. */
  pollWait?: number;
  /** Seconds between heartbeats (a third of the ttr, at most 10, by default). */
  heartbeatEvery?: number;
  /** Seconds running handlers get to finish once stopped. */
  grace?: number;
  /** Stop on SIGTERM and SIGINT (true by default). */
  handleSignals?: boolean;
}

/** Resolves after `ms`, or at once when `signal` aborts; leaves no timer
 * or listener behind either way. */
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });

/** Claims from `queues` and runs `handler` for each task, up to
 * `concurrency` at once: what it resolves to completes the task (as its
 * output), a rejection fails it (interq's retries apply). Heartbeats renew
 * the lease and abort `task.signal` when the task is cancelled. Registers
 * again under its name when interq forgets it; waits out an interq that is
 * down. */
export class Worker {
  workerId?: string;
  readonly counts = { completed: 0, failed: 0, cancelled: 0, lost: 0 };
  private readonly stopping = new AbortController();
  private readonly stopped = new Promise<void>((resolve) =>
    this.stopping.signal.addEventListener("abort", () => resolve(), { once: true }),
  );
  private readonly running = new Set<Promise<void>>();
  private readonly name: string;

  constructor(
    private readonly client: Client,
    private readonly queues: string[],
    private readonly handler: (task: Task) => unknown | Promise<unknown>,
    private readonly opts: WorkerOptions = {},
  ) {
    if ((opts.concurrency ?? 1) < 1) throw new RangeError("concurrency is at least 1");
    this.name = opts.name ?? `${os.hostname()}:${process.pid}`;
  }

  stop(): void {
    this.stopping.abort();
  }

  private async register(): Promise<boolean> {
    let delay = 200;
    while (!this.stopping.signal.aborted) {
      try {
        this.workerId = await this.client.register(this.queues, this.name);
        return true;
      } catch (e) {
        if (!(e instanceof InterqError) || !e.unreachable) throw e;
        await sleep(delay, this.stopping.signal);
        delay = Math.min(delay * 2, 10_000);
      }
    }
    return false;
  }

  /** Works until `stop()` (or a signal); then lets running handlers finish
   * and deregisters. */
  async run(): Promise<void> {
    const onSignal = () => this.stop();
    if (this.opts.handleSignals ?? true) {
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    }
    try {
      if (!(await this.register())) return;
      const concurrency = this.opts.concurrency ?? 1;
      let delay = 200;
      while (!this.stopping.signal.aborted) {
        const free = concurrency - this.running.size;
        if (free === 0) {
          await Promise.race([...this.running, this.stopped]);
          continue;
        }
        let tasks: TaskRecord[];
        try {
          tasks = await this.client.claim(this.workerId!, { wait: this.opts.pollWait ?? 20, count: free });
          delay = 200;
        } catch (e) {
          if (e instanceof InterqError && e.code === "unknown_worker") {
            if (!(await this.register())) break;
            continue;
          }
          await sleep(delay, this.stopping.signal);
          delay = Math.min(delay * 2, 10_000);
          continue;
        }
        for (const record of tasks) {
          const p: Promise<void> = this.runTask(this.workerId!, record).finally(() => this.running.delete(p));
          this.running.add(p);
        }
      }
      const graceOver = new AbortController();
      await Promise.race([
        Promise.allSettled([...this.running]).then(() => graceOver.abort()),
        sleep((this.opts.grace ?? 30) * 1000, graceOver.signal),
      ]);
      graceOver.abort();
      if (this.workerId) {
        await this.client.deregister(this.workerId).catch(() => undefined);
      }
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    }
  }

  private async runTask(workerId: string, record: TaskRecord): Promise<void> {
    const cancelled = new AbortController();
    const task: Task = {
      taskId: record.taskId,
      queue: record.queue,
      data: record.data ?? {},
      attempt: record.attempt,
      maxAttempts: record.maxAttempts,
      ttr: record.ttr,
      signal: cancelled.signal,
      record,
    };
    const every = (this.opts.heartbeatEvery ?? Math.max(1, Math.min(10, record.ttr / 3))) * 1000;
    const beat = setInterval(() => {
      this.client.heartbeat(workerId, record.taskId).then(
        (t) => {
          if (t.cancelled) cancelled.abort();
        },
        (e) => {
          if (e instanceof InterqError && LEASE_GONE.has(e.code)) cancelled.abort();
        },
      );
    }, every);
    let output: unknown;
    let failure: string | undefined;
    try {
      output = await this.handler(task);
    } catch (e) {
      failure = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    } finally {
      clearInterval(beat);
    }
    try {
      if (cancelled.signal.aborted) {
        await this.client.fail(workerId, record.taskId, "cancelled");
        this.counts.cancelled++;
      } else if (failure !== undefined) {
        await this.client.fail(workerId, record.taskId, failure);
        this.counts.failed++;
      } else {
        await this.client.complete(workerId, record.taskId, output ?? undefined);
        this.counts.completed++;
      }
    } catch {
      // The lease returns the task.
      this.counts.lost++;
    }
  }
}
