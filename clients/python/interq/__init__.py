"""A client for interq's HTTP API, and a worker loop.

Standard library only::

    from interq import Client, Worker

    iq = Client("http://127.0.0.1:7700", key=None)
    iq.set_interests("emails", {"to": r"@example\\.com$"})
    iq.publish({"to": "ada@example.com"})

    def send(task):
        print("sending to", task.data["to"])
        return {"sent": True}          # the task's output

    Worker(iq, ["emails"], send, concurrency=4).run()   # until SIGTERM or SIGINT
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ["Client", "InterqError", "Task", "Worker", "__version__"]

__version__ = "0.1.0"

log = logging.getLogger("interq")


class InterqError(Exception):
    """interq refused a call (`status` and its stable `code`), or could not be
    reached (`status` 0, `code` "unreachable")."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"interq answered {status} ({code}): {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def unreachable(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class Task:
    """A claimed copy of a task."""

    task_id: str
    queue: str
    data: Dict[str, Any]
    attempt: int
    max_attempts: int
    ttr: int
    #: The whole record as interq answered it.
    raw: Dict[str, Any] = field(repr=False)
    #: Set when a heartbeat learns the task was cancelled: a handler that
    #: runs for long should look at it and stop.
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def from_record(cls, record: Dict[str, Any]) -> "Task":
        return cls(
            task_id=record["taskId"],
            queue=record["queue"],
            data=record.get("data", {}),
            attempt=record.get("attempt", 1),
            max_attempts=record.get("maxAttempts", 1),
            ttr=record.get("ttr", 300),
            raw=record,
        )


class Client:
    """One interq, over HTTP (`http://` or `https://`)."""

    def __init__(self, url: str = "http://127.0.0.1:7700", key: Optional[str] = None, timeout: float = 30.0):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, query: Optional[Dict[str, Any]] = None, wait: float = 0.0) -> Any:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: _text(v) for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("User-Agent", f"interq-python/{__version__}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout + wait) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)["error"]
                raise InterqError(e.code, err.get("code", "unknown"), err.get("message", "")) from None
            except (ValueError, KeyError, TypeError):
                raise InterqError(e.code, "unknown", raw.decode(errors="replace")) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            raise InterqError(0, "unreachable", f"cannot reach interq at {self.url}: {e}") from None

    # Publishing.

    def publish(self, data: Dict[str, Any], **options: Any) -> Dict[str, Any]:
        """Publishes one task; `options` are those of `PUT /task` in their API
        spelling (`priority="high"`, `key="k"`, `runAt=…`, `maxAttempts=3`)."""
        return self._call("PUT", "/task", {"data": data, **options})

    def publish_batch(self, tasks: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Publishes `[{"data": {...}, ...}, ...]` in one durable commit."""
        return self._call("PUT", "/task", list(tasks))

    def open_batch(
        self,
        tasks: Sequence[Dict[str, Any]],
        batch: Optional[str] = None,
        on_complete: Optional[Dict[str, Any]] = None,
        more: bool = False,
    ) -> Dict[str, Any]:
        """`PUT /batch`: `tasks` published in one commit as one batch (named
        `batch`, or one is made), `on_complete` (a task) published once every
        copy has ended, `more=True` to add to it later. Answers
        `{"batch": id, "published": [...]}`."""
        body: Dict[str, Any] = {"tasks": list(tasks)}
        if batch is not None:
            body["batch"] = batch
        if on_complete is not None:
            body["onComplete"] = on_complete
        if more:
            body["more"] = True
        return self._call("PUT", "/batch", body)

    def batch(self, batch_id: str) -> Dict[str, Any]:
        """A batch's totals, whether it ended, and its callback."""
        return self._call("GET", "/status", query={"batch": batch_id})["batch"]

    def cancel(self, task_id: Optional[str] = None, key: Optional[str] = None) -> Dict[str, Any]:
        return self._call("DELETE", "/task", {"taskId": task_id} if task_id else {"key": key})

    # Set-up (an admin key).

    def set_interests(self, queue: str, interests: Any) -> Dict[str, Any]:
        return self._call("PUT", "/interest", {"queue": queue, "interests": interests})

    def status(self, **params: Any) -> Dict[str, Any]:
        """`GET /status`: `status(queue="q")`, `status(counters=True)`."""
        return self._call("GET", "/status", query={k: ("" if v is True else v) for k, v in params.items()})

    # Working.

    def set_queue(self, queue: str, **settings: Any) -> Dict[str, Any]:
        """Sets a queue's settings in their API spelling (`maxRunning=5`,
        `groupMaxRunning=1`, `groups={"vip": {"weight": 3}}`; `None`
        clears one). Answers the queue's settings as they now are."""
        return self._call("PUT", "/queue", {"queue": queue, **settings})["settings"]

    def groups(self, queue: str, limit: Optional[int] = None) -> Dict[str, Any]:
        """A queue's fairness groups, the most ready first."""
        query: Dict[str, Any] = {"groups": queue}
        if limit is not None:
            query["limit"] = limit
        return self._call("GET", "/status", query=query)["groups"]

    def register(
        self,
        queues: Sequence[str],
        name: Optional[str] = None,
        weights: Optional[Dict[str, int]] = None,
    ) -> str:
        """Registers a worker on `queues` in order, or with `weights`
        (queue -> 1..1000) in proportion to them."""
        body: Dict[str, Any] = {"queues": list(queues)}
        if name:
            body["name"] = name
        if weights:
            body["weights"] = dict(weights)
        return self._call("PUT", "/worker", body)["workerId"]

    def deregister(self, worker_id: str) -> None:
        self._call("DELETE", "/worker", {"workerId": worker_id})

    def claim(self, worker_id: str, wait: Optional[float] = None, count: Optional[int] = None) -> List[Task]:
        """Up to `count` tasks (1 without it), waiting up to `wait` seconds."""
        answer = self._call(
            "GET", "/task", query={"workerId": worker_id, "wait": wait, "count": count}, wait=wait or 0.0
        )
        if answer is None:
            return []
        records = answer if isinstance(answer, list) else [answer]
        return [Task.from_record(r) for r in records]

    def complete(self, worker_id: str, task_id: str, output: Any = None) -> Dict[str, Any]:
        body: Dict[str, Any] = {"workerId": worker_id, "taskId": task_id, "state": "complete"}
        if output is not None:
            body["output"] = output
        return self._call("POST", "/task", body)

    def fail(self, worker_id: str, task_id: str, reason: str, re_enqueue: bool = False) -> Dict[str, Any]:
        body = {"workerId": worker_id, "taskId": task_id, "state": "fail", "failReason": reason[:4000]}
        if re_enqueue:
            body["reEnqueue"] = True
        return self._call("POST", "/task", body)

    def heartbeat(self, worker_id: str, task_id: str, progress: Any = None) -> Dict[str, Any]:
        """Renews the lease; the answer's `cancelled` says whether to stop."""
        body: Dict[str, Any] = {"workerId": worker_id, "taskId": task_id, "state": "progress"}
        if progress is not None:
            body["progress"] = progress
        return self._call("POST", "/task", body)

    def append_log(self, worker_id: str, task_id: str, text: str) -> int:
        """Adds to the log of a task the worker holds (followed live in the
        console and by `interq log --follow`); returns the log's length. The
        server takes one append per task every `tasks.log_every_ms`: a
        refusal's code is then `too_soon`, and the text goes with the next."""
        body = {"workerId": worker_id, "taskId": task_id, "text": text}
        return self._call("POST", "/task/log", body)["total"]

    def task_log(self, task_id: str, offset: Optional[int] = None) -> Dict[str, Any]:
        """A task's log (admin): `text` from `offset` (a previous answer's
        `next`), or all that is kept."""
        return self._call("GET", "/task/log", query={"taskId": task_id, "offset": offset})


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


# What a report answers when the lease is no longer ours: stop, report nothing.
_LEASE_GONE = {"not_lease_holder", "task_not_running", "unknown_task", "unknown_worker"}


class Worker:
    """Claims from `queues` and runs `handler(task)` for each, up to
    `concurrency` at once: its return value completes the task (as `output`),
    an exception fails it (with the exception as the reason, and interq's
    retries apply). Heartbeats renew the lease while the handler runs and set
    `task.cancelled` when the task is cancelled. Registers again under its
    name when interq forgets it, and waits out an interq that is down."""

    def __init__(
        self,
        client: Client,
        queues: Sequence[str],
        handler: Callable[[Task], Any],
        concurrency: int = 1,
        name: Optional[str] = None,
        poll_wait: float = 20.0,
        heartbeat_every: Optional[float] = None,
        grace: float = 30.0,
    ):
        if concurrency < 1:
            raise ValueError("concurrency is at least 1")
        self.client = client
        self.queues = list(queues)
        self.handler = handler
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.poll_wait = poll_wait
        self.heartbeat_every = heartbeat_every
        self.grace = grace
        self.worker_id: Optional[str] = None
        self._stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._running: List[threading.Thread] = []
        self._lock = threading.Lock()
        #: How each task ended: completed, failed, cancelled, lost.
        self.counts: Dict[str, int] = {"completed": 0, "failed": 0, "cancelled": 0, "lost": 0}

    def stop(self) -> None:
        """Stops claiming; `run` returns once running handlers are done."""
        self._stopping.set()

    def _register(self) -> bool:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                self.worker_id = self.client.register(self.queues, self.name)
                log.info("registered as %s (%s)", self.worker_id, self.name)
                return True
            except InterqError as e:
                if not e.unreachable:
                    raise
                log.warning("cannot register yet (%s); retrying in %.1f s", e.message, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 10.0)
        return False

    def run(self, handle_signals: bool = True) -> None:
        """Works until `stop()`, SIGTERM or SIGINT (when `handle_signals` and
        on the main thread)."""
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        if not self._register():
            return
        delay = 0.2
        while not self._stopping.is_set():
            self._slots.acquire()
            if self._stopping.is_set():
                self._slots.release()
                break
            free = 1
            while free < self.concurrency and self._slots.acquire(blocking=False):
                free += 1
            try:
                tasks = self.client.claim(self.worker_id, wait=self.poll_wait, count=free)
                delay = 0.2
            except InterqError as e:
                for _ in range(free):
                    self._slots.release()
                if e.code == "unknown_worker":
                    log.info("interq no longer knew worker %s; registering again", self.worker_id)
                    if not self._register():
                        break
                    continue
                log.warning("claim failed (%s); retrying in %.1f s", e.message, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            for _ in range(free - len(tasks)):
                self._slots.release()
            for task in tasks:
                t = threading.Thread(target=self._run_task, args=(self.worker_id, task), daemon=True)
                with self._lock:
                    self._running = [r for r in self._running if r.is_alive()] + [t]
                t.start()
        deadline = time.monotonic() + self.grace
        with self._lock:
            running = list(self._running)
        for t in running:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.worker_id:
            try:
                self.client.deregister(self.worker_id)
            except InterqError as e:
                log.warning("deregistering failed (%s); interq removes idle workers", e.message)
        log.info("worker stopped: %s", self.counts)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def _run_task(self, worker_id: str, task: Task) -> None:
        every = self.heartbeat_every or max(1.0, min(10.0, task.ttr / 3))
        done = threading.Event()

        def beat() -> None:
            while not done.wait(every):
                try:
                    if self.client.heartbeat(worker_id, task.task_id).get("cancelled"):
                        task.cancelled.set()
                except InterqError as e:
                    if e.code in _LEASE_GONE:
                        task.cancelled.set()
                        return
                    log.warning("heartbeat of %s failed: %s", task.task_id, e.message)

        beater = threading.Thread(target=beat, daemon=True)
        beater.start()
        try:
            try:
                output = self.handler(task)
                failure = None
            except Exception as e:  # the handler's failure is the task's
                output, failure = None, f"{type(e).__name__}: {e}"
            finally:
                done.set()
            if task.cancelled.is_set():
                self.client.fail(worker_id, task.task_id, "cancelled")
                self._count("cancelled")
            elif failure is not None:
                self.client.fail(worker_id, task.task_id, failure)
                self._count("failed")
            else:
                self.client.complete(worker_id, task.task_id, output)
                self._count("completed")
        except InterqError as e:
            log.warning("report of %s failed (%s); its lease will return it", task.task_id, e.message)
            self._count("lost")
        finally:
            self._slots.release()
