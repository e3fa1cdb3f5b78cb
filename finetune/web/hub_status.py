"""Whether the Hugging Face Hub can be reached from this server, learned once and re-checked
at most every few minutes, so that an offline server says so at once instead of letting each
request wait for the hub client's own network timeouts.

>>> hub = HubStatus()                       # doctest: +SKIP
>>> hub.reachable()                         # one probe, then remembered for `ttl_s`  # doctest: +SKIP
False
>>> hub.reason()                            # doctest: +SKIP
'the Hugging Face Hub cannot be reached from this server (checked 12 s ago)'
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable

PROBE_TIMEOUT_S = 3.0
TTL_S = 300.0  # how long an answer is trusted
_OFFLINE_VALUES = ("1", "true", "yes", "on")


def offline_by_setting() -> bool:
    """HF_HUB_OFFLINE: the operator switched the hub off (cached snapshots still load)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE_VALUES


def probe_hub(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One short request to the hub's API; any answer from it counts as reachable."""
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        httpx.head(f"{endpoint}/api/models/gpt2", timeout=timeout, follow_redirects=False)
    except (httpx.HTTPError, OSError):
        return False
    return True


class HubStatus:
    """Remembered reachability of the hub; thread-safe, one probe at a time."""

    def __init__(self, probe: Callable[[], bool] | None = None, *, ttl_s: float = TTL_S) -> None:
        self._probe, self.ttl_s = probe, ttl_s  # None: `probe_hub`
        self._lock = threading.Lock()
        self._probing = threading.Lock()
        self._known: tuple[float, bool] | None = None  # (when, reachable)

    def reachable(self, *, wait: bool = True) -> bool | None:
        """True or False; None when unknown and `wait` is False (a probe then starts in the
        background). HF_HUB_OFFLINE answers False without a probe."""
        if offline_by_setting():
            return False
        known = self._fresh()
        if known is not None:
            return known
        if not wait:
            self.check_in_background()
            return None
        return self._check()

    def reason(self) -> str:
        """Why hub models are not offered now (empty while the hub is reachable)."""
        if offline_by_setting():
            return "the Hugging Face Hub is switched off on this server (HF_HUB_OFFLINE)"
        with self._lock:
            known = self._known
        if known is None or known[1]:
            return ""
        ago = max(0, round(time.monotonic() - known[0]))
        return f"the Hugging Face Hub cannot be reached from this server (checked {ago} s ago)"

    def check_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self._check, name="textgen-hub-probe", daemon=True)
        thread.start()
        return thread

    def _fresh(self) -> bool | None:
        with self._lock:
            if self._known is not None and time.monotonic() - self._known[0] < self.ttl_s:
                return self._known[1]
        return None

    def _check(self) -> bool:
        with self._probing:  # callers arriving meanwhile take this probe's answer
            known = self._fresh()
            if known is not None:
                return known
            try:
                ok = bool(self._probe() if self._probe is not None else probe_hub())
            except Exception:  # noqa: BLE001 - a probe that breaks means we cannot reach the hub
                ok = False
            with self._lock:
                self._known = (time.monotonic(), ok)
            return ok
