// The Node client against the real server: `interq serve` as a child
// process on a free port (INTERQ_BIN names the binary; by default the
// workspace's debug build).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Client, InterqError, Worker } from "../dist/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const bin = process.env.INTERQ_BIN ?? path.join(root, "target/debug/interq");

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(check, what, withinMs = 20_000) {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await sleep(50);
  }
}

async function startServer(dir, port) {
  const proc = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dir], {
    env: { ...process.env, RUST_LOG: "warn" },
    stdio: "ignore",
  });
  const url = `http://127.0.0.1:${port}`;
  const probe = new Client(url, { timeoutMs: 1000 });
  await until(() => probe.status().then(() => true, () => false), "interq started");
  return {
    url,
    stop: () =>
      new Promise((resolve) => {
        proc.on("exit", resolve);
        proc.kill("SIGTERM");
      }),
  };
}

async function withServer(body) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "interq-node-"));
  const port = await freePort();
  const server = { current: await startServer(dir, port) };
  try {
    await body(new Client(server.current.url), {
      restart: async () => {
        await server.current.stop();
        server.current = await startServer(dir, port);
      },
    });
  } finally {
    await server.current.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const stateOf = async (iq, id) => (await iq.status({ task: id })).task.state;

test("publish, claim, heartbeat, complete and fail", () =>
  withServer(async (iq) => {
    await iq.setInterests("emails", { to: "@x\\.com$" });
    const one = await iq.publish({ to: "a@x.com" }, { priority: "high", key: "k1" });
    assert.deepEqual(one.queues, ["emails"]);
    const batch = await iq.publishBatch([{ data: { to: "b@x.com" } }, { data: { to: "c@y.com" } }]);
    assert.deepEqual(batch.map((p) => p.queues), [["emails"], []]);
    const worker = await iq.register(["emails"], "node");
    const tasks = await iq.claim(worker, { wait: 1, count: 5 });
    assert.deepEqual(tasks.map((t) => t.data.to), ["a@x.com", "b@x.com"]);
    const beat = await iq.heartbeat(worker, tasks[0].taskId, 50);
    assert.equal(beat.cancelled ?? false, false);
    assert.equal(await iq.appendLog(worker, tasks[0].taskId, "sending…\n"), 11);
    const log = await iq.taskLog(tasks[0].taskId);
    assert.deepEqual([log.text, log.next], ["sending…\n", 11]);
    assert.equal((await iq.taskLog(tasks[0].taskId, 3)).text, "ding…\n");
    assert.equal((await iq.complete(worker, tasks[0].taskId, { sent: true })).state, "completed");
    assert.equal((await iq.fail(worker, tasks[1].taskId, "smtp down")).state, "scheduled");
    assert.deepEqual(await iq.claim(worker, { wait: 0 }), []);
  }));

test("groups take turns and a group limit holds", () =>
  withServer(async (iq) => {
    await iq.setInterests("tenants", "*");
    const settings = await iq.setQueue("tenants", { groupMaxRunning: 1 });
    assert.equal(settings.groupMaxRunning, 1);
    await iq.publishBatch([0, 1, 2, 3, 4].map((n) => ({ data: { n }, group: "big" })));
    await iq.publish({ n: 9 }, { group: "small" });
    const worker = await iq.register(["tenants"], "node", { tenants: 2 });
    const tasks = await iq.claim(worker, { count: 10 });
    assert.deepEqual(tasks.map((t) => t.group).sort(), ["big", "small"]);
    const groups = await iq.groups("tenants");
    assert.equal(groups.total, 2);
    assert.equal(groups.groups[0].group, "big");
    assert.equal(groups.groups[0].held, "maxRunning");
    await assert.rejects(iq.setQueue("tenants", { groupMaxRunning: 0 }), { code: "invalid_field" });
    assert.equal((await iq.setQueue("tenants", { groupMaxRunning: null })).groupMaxRunning, undefined);
  }));

test("a batch's pipeline ends in its callback, and a dependant waits", () =>
  withServer(async (iq) => {
    await iq.setInterests("a", { step: "^a$" });
    await iq.setInterests("b", { step: "^b$" });
    await iq.setInterests("summary", { summary: "." });
    const opened = await iq.openBatch([{ data: { step: "a" }, publishOutput: true }], {
      batch: "node-1",
      onComplete: { data: { summary: "done" } },
    });
    assert.equal(opened.batch, "node-1");
    const worker = await iq.register(["a", "b", "summary"], "node");
    const [a] = await iq.claim(worker);
    await iq.complete(worker, a.taskId, { step: "b" });
    const [b] = await iq.claim(worker);
    assert.equal(b.parent, a.taskId);
    assert.equal((await iq.batch("node-1")).ended, false);
    await iq.complete(worker, b.taskId);
    const batch = await iq.batch("node-1");
    assert.equal(batch.ended, true);
    assert.equal(batch.totals.completed, 2);
    const [summary] = await iq.claim(worker);
    assert.equal(summary.data.batch.copies, 2);
    // A task that waits for another.
    const first = await iq.publish({ step: "a" });
    const then = await iq.publish({ step: "b" }, { dependsOn: [first.taskId] });
    const waiting = (await iq.status({ task: then.copies[0].taskId })).task;
    assert.equal(waiting.state, "blocked");
    await assert.rejects(iq.openBatch([{ data: { step: "a" } }], { batch: "node-1" }), { code: "batch_closed" });
  }));

test("refusals reject with the API's code", () =>
  withServer(async (iq) => {
    await assert.rejects(iq.publish({ a: 1 }, { priority: "soon" }), (e) => {
      assert.ok(e instanceof InterqError);
      assert.equal(e.status, 400);
      assert.equal(e.code, "invalid_field");
      assert.match(e.message, /priority/);
      return true;
    });
    await assert.rejects(iq.claim("01a2383c-426f-77df-87f5-82d4b2be0000"), { code: "unknown_worker" });
    assert.throws(() => new Client("ftp://x"), TypeError);
    const nobody = new Client(`http://127.0.0.1:${await freePort()}`, { timeoutMs: 2000 });
    await assert.rejects(nobody.status(), (e) => e.unreachable === true);
  }));

test("a worker completes, fails and runs tasks at once", () =>
  withServer(async (iq) => {
    await iq.setInterests("q", "*");
    let running = 0;
    let most = 0;
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push((await iq.publish({ n: i })).copies[0].taskId);
    const bad = (await iq.publish({ bad: true }, { maxAttempts: 1 })).copies[0].taskId;
    const w = new Worker(
      iq,
      ["q"],
      async (task) => {
        running++;
        most = Math.max(most, running);
        await sleep(300);
        running--;
        if (task.data.bad) throw new Error("bad input");
        return { n: task.data.n };
      },
      { concurrency: 3, pollWait: 1, handleSignals: false },
    );
    const done = w.run();
    for (const id of ids) await until(async () => (await stateOf(iq, id)) === "completed", `${id} completed`);
    await until(async () => (await stateOf(iq, bad)) === "failed", "the bad task failed");
    assert.equal((await iq.status({ task: bad })).task.failReason, "Error: bad input");
    assert.deepEqual((await iq.status({ task: ids[0] })).task.output, { n: 0 });
    assert.equal(most, 3);
    w.stop();
    await done;
    assert.deepEqual(w.counts, { completed: 6, failed: 1, cancelled: 0, lost: 0 });
    assert.deepEqual((await iq.status({ workers: true })).workers, []);
  }));

test("a running task learns it was cancelled", () =>
  withServer(async (iq) => {
    await iq.setInterests("q", "*");
    let started;
    const startedP = new Promise((r) => (started = r));
    await iq.publish({ n: 1 }, { key: "stop-me" });
    const w = new Worker(
      iq,
      ["q"],
      (task) =>
        new Promise((resolve, reject) => {
          started();
          const never = setTimeout(() => reject(new Error("never told")), 20_000);
          task.signal.addEventListener("abort", () => {
            clearTimeout(never);
            resolve(null);
          });
        }),
      { pollWait: 1, heartbeatEvery: 0.2, handleSignals: false },
    );
    const done = w.run();
    await startedP;
    await iq.cancel({ key: "stop-me" });
    await until(async () => (await iq.status({ key: "stop-me" })).key[0].state === "cancelled", "cancelled");
    w.stop();
    await done;
    assert.equal(w.counts.cancelled, 1);
  }));

test("a worker outlives a restart and being forgotten", () =>
  withServer(async (iq, server) => {
    await iq.setInterests("q", "*");
    const w = new Worker(iq, ["q"], () => "ok", { name: "survivor", pollWait: 1, handleSignals: false });
    const done = w.run();
    await until(async () => (await iq.status({ workers: true })).workers.length > 0, "registered");
    await server.restart();
    const first = (await iq.publish({ n: 1 })).copies[0].taskId;
    await until(async () => (await stateOf(iq, first)) === "completed", "done after the restart");
    const old = (await iq.status({ workers: true })).workers[0].workerId;
    await fetch(`${iq.url}/worker`, {
      method: "DELETE",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ workerId: old }),
    });
    const again = await until(async () => {
      const ws = (await iq.status({ workers: true })).workers.filter((x) => x.workerId !== old);
      return ws.length ? ws : null;
    }, "registered again");
    assert.equal(again[0].name, "survivor");
    const second = (await iq.publish({ n: 2 })).copies[0].taskId;
    await until(async () => (await stateOf(iq, second)) === "completed", "done after being forgotten");
    w.stop();
    await done;
  }));
