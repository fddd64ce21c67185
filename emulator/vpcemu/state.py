"""Emulator-wide state outside moto: the EC2 lock, the state version,
call counters, injected faults and the throttling token buckets."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# Every EC2 call runs under this lock (moto is not thread-safe), and so do the
# readers of moto's state (instance metadata, network snapshot).
LOCK = threading.RLock()


class Version:
    """Monotonic counter bumped on every successful mutating EC2 call, and for each instance the
    value at which its metadata last changed (instance metadata caches on it)."""

    def __init__(self) -> None:
        self._value = 0
        self._everyone = 0
        self._instances: dict[str, int] = {}
        self._cond = threading.Condition()

    @property
    def value(self) -> int:
        with self._cond:
            return self._value

    def bump(self, instances: set[str] | None = None) -> int:
        """One more change; ``instances`` are the only ones whose metadata it may change (None:
        any instance's)."""
        with self._cond:
            self._value += 1
            if instances is None:
                self._everyone = self._value
            else:
                for instance_id in instances:
                    self._instances[instance_id] = self._value
            self._cond.notify_all()
            return self._value

    def of_instance(self, instance_id: str) -> int:
        """The value of the last change that may concern ``instance_id``'s metadata."""
        with self._cond:
            return max(self._everyone, self._instances.get(instance_id, 0))

    def wait_after(self, after: int, timeout: float) -> int:
        """Block until the version exceeds ``after`` or ``timeout`` elapses."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._value <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._value


class CallCounter:
    """Calls per action, and per caller (the access key id that signed the call) and action,
    so a fleet's calls can be told apart by node when each node signs with its own key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, Any]] = {}
        self._by_caller: dict[str, dict[str, dict[str, Any]]] = {}

    @staticmethod
    def _add(counts: dict[str, dict[str, Any]], action: str, ok: bool, code: str | None) -> None:
        entry = counts.setdefault(action, {"ok": 0, "error": 0, "error_codes": {}})
        if ok:
            entry["ok"] += 1
        else:
            entry["error"] += 1
            if code:
                entry["error_codes"][code] = entry["error_codes"].get(code, 0) + 1

    def record(self, action: str, ok: bool, code: str | None = None, caller: str | None = None) -> None:
        with self._lock:
            self._add(self._counts, action, ok, code)
            self._add(self._by_caller.setdefault(caller or "", {}), action, ok, code)

    @staticmethod
    def _copy(counts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            k: {"ok": v["ok"], "error": v["error"], "error_codes": dict(v["error_codes"])}
            for k, v in sorted(counts.items())
        }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._copy(self._counts)

    def by_caller(self) -> dict[str, Any]:
        """{caller: {action: counts}}; calls without a signature are under ""."""
        with self._lock:
            return {c: self._copy(v) for c, v in sorted(self._by_caller.items())}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._by_caller.clear()


DEFAULT_STATUS = {"UnauthorizedOperation": 403, "RequestLimitExceeded": 503, "Throttling": 503}


@dataclass
class Fault:
    action: str  # EC2 action name or "*"
    error_code: str | None = None
    message: str | None = None
    rate: float = 1.0
    count: int | None = None  # errors still to inject; None = unlimited
    latency_ms: int = 0
    http_status: int | None = None
    # Delay of the answer after EC2 has done the action: the caller times out on a call that
    # took effect (the "did it or not?" case). Counted by ``count`` when there is no error.
    after_ms: int = 0
    # The injected error is returned after EC2 has done the action.
    done: bool = False

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Fault":
        action = doc.get("action")
        if not isinstance(action, str) or not action:
            raise ValueError("'action' (an EC2 action name or \"*\") is required")
        count = doc.get("count")
        status = doc.get("http_status")
        return cls(
            action=action,
            error_code=doc.get("error_code") or None,
            message=doc.get("message") or None,
            rate=float(doc.get("rate", 1.0)),
            count=None if count is None else int(count),
            latency_ms=int(doc.get("latency_ms", 0) or 0),
            http_status=None if status is None else int(status),
            after_ms=int(doc.get("after_ms", 0) or 0),
            done=bool(doc.get("done", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "error_code": self.error_code,
            "message": self.message,
            "rate": self.rate,
            "count": self.count,
            "latency_ms": self.latency_ms,
            "http_status": self.status(),
            "after_ms": self.after_ms,
            "done": self.done,
        }

    def status(self) -> int | None:
        if not self.error_code:
            return None
        return self.http_status or DEFAULT_STATUS.get(self.error_code, 400)


class Faults:
    """Injected latency and errors, one rule per action (a new rule for the
    same action replaces the old one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, Fault] = {}
        self._rng = random.Random()

    def set(self, fault: Fault) -> None:
        with self._lock:
            self._rules[fault.action] = fault

    def clear(self, action: str | None = None) -> None:
        with self._lock:
            if action is None:
                self._rules.clear()
            else:
                self._rules.pop(action, None)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._rules.values()]

    def decide(self, action: str) -> tuple[float, Fault | None, float]:
        """(latency in seconds, the fault whose error to return or None, the delay of the
        answer after the action was done)."""
        latency = 0.0
        after = 0.0
        chosen = None
        with self._lock:
            for key in (action, "*"):
                rule = self._rules.get(key)
                if rule is None:
                    continue
                latency = max(latency, rule.latency_ms / 1000.0)
                if chosen is None and rule.error_code and (rule.count is None or rule.count > 0):
                    if self._rng.random() < rule.rate:
                        if rule.count is not None:
                            rule.count -= 1
                        chosen = rule
                if rule.after_ms and not rule.error_code and (rule.count is None or rule.count > 0):
                    if self._rng.random() < rule.rate:
                        if rule.count is not None:
                            rule.count -= 1
                        after = max(after, rule.after_ms / 1000.0)
        return latency, chosen, after


# EC2's published token-bucket sizes (bucket capacity, refill per second).
NON_MUTATING = (100, 20.0)
MUTATING = (50, 5.0)
SPECIAL_BUCKETS = {
    "CreateNetworkInterface": (100, 5.0),
    "DeleteNetworkInterface": (100, 5.0),
    "AssignPrivateIpAddresses": (100, 5.0),
    "UnassignPrivateIpAddresses": (100, 5.0),
    "ModifyNetworkInterfaceAttribute": (100, 5.0),
    "CreateTags": (100, 10.0),
}


def is_mutating(action: str) -> bool:
    return not action.startswith(("Describe", "Get", "List"))


class _Bucket:
    def __init__(self, capacity: float, rate: float):
        self.capacity = capacity
        self.rate = rate
        self.tokens = float(capacity)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Throttle:
    """Per-action token buckets; off unless enabled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enabled = False
        self._buckets: dict[str, _Bucket] = {}
        self._overrides: dict[str, tuple[float, float]] = {}

    def configure(self, enabled: bool, overrides: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.enabled = bool(enabled)
            self._buckets.clear()  # start full
            if overrides is not None:
                self._overrides = {
                    k: (float(v["burst"]), float(v["rate"])) for k, v in overrides.items()
                }

    def sizes(self, action: str) -> tuple[float, float]:
        if action in self._overrides:
            return self._overrides[action]
        if action in SPECIAL_BUCKETS:
            return SPECIAL_BUCKETS[action]
        return MUTATING if is_mutating(action) else NON_MUTATING

    def allow(self, action: str) -> bool:
        with self._lock:
            if not self.enabled:
                return True
            bucket = self._buckets.get(action)
            if bucket is None:
                bucket = self._buckets[action] = _Bucket(*self.sizes(action))
            return bucket.take()

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "enabled": self.enabled,
                "overrides": {k: {"burst": b, "rate": r} for k, (b, r) in self._overrides.items()},
            }


@dataclass
class Emulator:
    version: Version = field(default_factory=Version)
    calls: CallCounter = field(default_factory=CallCounter)
    faults: Faults = field(default_factory=Faults)
    throttle: Throttle = field(default_factory=Throttle)
