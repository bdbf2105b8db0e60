"""The Python client against the real server: `interq serve` as a child
process on a free port (INTERQ_BIN names the binary; by default the
workspace's debug build)."""

import logging
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

from interq import Client, InterqError, Worker

# The worker's warnings while the server restarts are expected here.
logging.getLogger("interq").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parents[3]
BIN = os.environ.get("INTERQ_BIN", str(ROOT / "target" / "debug" / "interq"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`interq serve` on `port` over `data_dir`, until stopped."""

    def __init__(self, data_dir: str, port: int):
        env = dict(os.environ, RUST_LOG="warn", INTERQ_LOG__FORMAT="json")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                Client(self.url, timeout=1).status()
                return
            except InterqError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("interq did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def wait_until(check, what: str, within: float = 20.0):
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.05)


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.server = Server(self.dir.name, self.port)
        self.iq = Client(self.server.url)

    def tearDown(self):
        self.server.stop()
        self.dir.cleanup()

    def task_state(self, task_id: str) -> str:
        return self.iq.status(task=task_id)["task"]["state"]

    def test_groups_take_turns_and_a_group_limit_holds(self):
        self.iq.set_interests("tenants", "*")
        settings = self.iq.set_queue("tenants", groupMaxRunning=1)
        self.assertEqual(settings["groupMaxRunning"], 1)
        self.iq.publish_batch([{"data": {"n": i}, "group": "big"} for i in range(5)])
        self.iq.publish({"n": 9}, group="small")
        worker = self.iq.register(["tenants"], weights={"tenants": 2})
        tasks = self.iq.claim(worker, count=10)
        self.assertEqual(sorted(t.raw["group"] for t in tasks), ["big", "small"])
        groups = self.iq.groups("tenants")
        self.assertEqual(groups["total"], 2)
        self.assertEqual(groups["groups"][0]["group"], "big")
        self.assertEqual(groups["groups"][0]["held"], "maxRunning")
        with self.assertRaises(InterqError) as bad:
            self.iq.set_queue("tenants", groupMaxRunning=0)
        self.assertEqual((bad.exception.status, bad.exception.code), (400, "invalid_field"))
        self.assertEqual(self.iq.set_queue("tenants", groupMaxRunning=None).get("groupMaxRunning"), None)

    def test_publish_claim_complete(self):
        self.iq.set_interests("emails", {"to": r"@x\.com$"})
        one = self.iq.publish({"to": "a@x.com"}, priority="high", key="k1")
        self.assertEqual(one["queues"], ["emails"])
        batch = self.iq.publish_batch([{"data": {"to": "b@x.com"}}, {"data": {"to": "c@y.com"}}])
        self.assertEqual([p["queues"] for p in batch], [["emails"], []])
        worker = self.iq.register(["emails"], name="py")
        tasks = self.iq.claim(worker, wait=1, count=5)
        self.assertEqual([t.data["to"] for t in tasks], ["a@x.com", "b@x.com"])
        self.assertEqual(tasks[0].attempt, 1)
        beat = self.iq.heartbeat(worker, tasks[0].task_id, progress=50)
        self.assertFalse(beat.get("cancelled", False))
        self.assertEqual(self.iq.append_log(worker, tasks[0].task_id, "sending…\n"), 11)
        log = self.iq.task_log(tasks[0].task_id)
        self.assertEqual((log["text"], log["next"]), ("sending…\n", 11))
        self.assertEqual(self.iq.task_log(tasks[0].task_id, offset=3)["text"], "ding…\n")
        done = self.iq.complete(worker, tasks[0].task_id, {"sent": True})
        self.assertEqual(done["state"], "completed")
        failed = self.iq.fail(worker, tasks[1].task_id, "smtp down")
        self.assertEqual(failed["state"], "scheduled")
        self.assertEqual(self.iq.claim(worker, wait=0), [])
        self.assertEqual(self.iq.status(queue="emails")["queue"]["scheduled"], 1)

    def test_a_batchs_pipeline_ends_in_its_callback_and_a_dependant_waits(self):
        self.iq.set_interests("a", {"step": "^a$"})
        self.iq.set_interests("b", {"step": "^b$"})
        self.iq.set_interests("summary", {"summary": "."})
        opened = self.iq.open_batch(
            [{"data": {"step": "a"}, "publishOutput": True}],
            batch="py-1",
            on_complete={"data": {"summary": "done"}},
        )
        self.assertEqual(opened["batch"], "py-1")
        worker = self.iq.register(["a", "b", "summary"], name="py")
        (a,) = self.iq.claim(worker, count=1)
        self.iq.complete(worker, a.task_id, {"step": "b"})
        (b,) = self.iq.claim(worker, count=1)
        self.assertEqual(b.raw["parent"], a.task_id)
        self.assertFalse(self.iq.batch("py-1")["ended"])
        self.iq.complete(worker, b.task_id)
        batch = self.iq.batch("py-1")
        self.assertTrue(batch["ended"])
        self.assertEqual(batch["totals"]["completed"], 2)
        (summary,) = self.iq.claim(worker, count=1)
        self.assertEqual(summary.data["batch"]["copies"], 2)
        first = self.iq.publish({"step": "a"})
        then = self.iq.publish({"step": "b"}, dependsOn=[first["taskId"]])
        waiting = self.iq.status(task=then["copies"][0]["taskId"])["task"]
        self.assertEqual(waiting["state"], "blocked")
        with self.assertRaises(InterqError) as closed:
            self.iq.open_batch([{"data": {"step": "a"}}], batch="py-1")
        self.assertEqual((closed.exception.status, closed.exception.code), (409, "batch_closed"))

    def test_refusals_raise_with_the_apis_code(self):
        with self.assertRaises(InterqError) as e:
            self.iq.publish({"a": 1}, priority="soon")
        self.assertEqual((e.exception.status, e.exception.code), (400, "invalid_field"))
        self.assertIn("priority", e.exception.message)
        with self.assertRaises(InterqError) as e:
            self.iq.claim("01a2383c-426f-77df-87f5-82d4b2be0000")
        self.assertEqual(e.exception.code, "unknown_worker")
        with self.assertRaises(ValueError):
            Client("ftp://x")
        with self.assertRaises(InterqError) as e:
            Client(f"http://127.0.0.1:{free_port()}", timeout=2).status()
        self.assertTrue(e.exception.unreachable)

    def start_worker(self, handler, **options) -> Worker:
        w = Worker(self.iq, ["q"], handler, poll_wait=1, **options)
        t = threading.Thread(target=w.run, kwargs={"handle_signals": False}, daemon=True)
        t.start()
        w.thread = t
        return w

    def stop_worker(self, w: Worker):
        w.stop()
        w.thread.join(30)
        self.assertFalse(w.thread.is_alive())

    def test_a_worker_completes_fails_and_runs_tasks_at_once(self):
        self.iq.set_interests("q", "*")
        running, most = [0], [0]
        lock = threading.Lock()

        def handler(task):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.3)
            with lock:
                running[0] -= 1
            if task.data.get("bad"):
                raise RuntimeError("bad input")
            return {"n": task.data["n"]}

        ids = [self.iq.publish({"n": i})["copies"][0]["taskId"] for i in range(6)]
        bad = self.iq.publish({"bad": True}, maxAttempts=1)["copies"][0]["taskId"]
        w = self.start_worker(handler, concurrency=3)
        for i in ids:
            wait_until(lambda: self.task_state(i) == "completed", f"{i} completed")
        wait_until(lambda: self.task_state(bad) == "failed", "the bad task failed")
        record = self.iq.status(task=bad)["task"]
        self.assertEqual(record["failReason"], "RuntimeError: bad input")
        self.assertEqual(self.iq.status(task=ids[0])["task"]["output"], {"n": 0})
        self.assertEqual(most[0], 3)
        self.stop_worker(w)
        self.assertEqual(w.counts["completed"], 6)
        self.assertEqual(w.counts["failed"], 1)
        # It deregistered.
        self.assertEqual(self.iq.status(workers=True)["workers"], [])

    def test_a_running_task_learns_it_was_cancelled(self):
        self.iq.set_interests("q", "*")
        started = threading.Event()

        def handler(task):
            started.set()
            if not task.cancelled.wait(20):
                raise RuntimeError("never told")
            return None

        self.iq.publish({"n": 1}, key="stop-me")
        w = self.start_worker(handler, heartbeat_every=0.2)
        self.assertTrue(started.wait(20))
        self.iq.cancel(key="stop-me")
        copy = wait_until(lambda: self.iq.status(key="stop-me")["key"][0], "the copy")
        wait_until(
            lambda: self.iq.status(key="stop-me")["key"][0]["state"] == "cancelled", "cancelled"
        )
        self.stop_worker(w)
        self.assertEqual(w.counts["cancelled"], 1, copy)

    def test_a_worker_outlives_a_restart_and_being_forgotten(self):
        self.iq.set_interests("q", "*")
        w = self.start_worker(lambda task: "ok", name="survivor")
        wait_until(lambda: self.iq.status(workers=True)["workers"], "registered")
        # The server restarts on the same port and data.
        self.server.stop()
        time.sleep(0.5)
        self.server = Server(self.dir.name, self.port)
        first = self.iq.publish({"n": 1})["copies"][0]["taskId"]
        wait_until(lambda: self.task_state(first) == "completed", "done after the restart")
        # Removed by an operator: it registers again under its name.
        old = self.iq.status(workers=True)["workers"][0]["workerId"]
        self.iq._call("DELETE", "/worker", {"workerId": old})
        again = wait_until(
            lambda: [x for x in self.iq.status(workers=True)["workers"] if x["workerId"] != old],
            "registered again",
        )
        self.assertEqual(again[0]["name"], "survivor")
        second = self.iq.publish({"n": 2})["copies"][0]["taskId"]
        wait_until(lambda: self.task_state(second) == "completed", "done after being forgotten")
        self.stop_worker(w)


if __name__ == "__main__":
    unittest.main()
