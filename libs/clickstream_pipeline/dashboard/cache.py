"""A per-key cache that serves its last value while a background thread reloads it (stale
while revalidate): under many viewers of one view, one database read per `max_age_s`, and no
viewer waits for it but the first of each view."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)


class StaleWhileReloading(Generic[K, V]):
    """`load(key)`, remembered per key for `max_age_s`, at most `max_keys` keys (the least
    recently loaded go first). A key's first caller loads it (the others of that key wait for
    it); once its value is older, the next caller starts a reload in a thread and every caller
    gets the old value until it lands. A reload that fails drops the value and raises for the
    next caller, as that caller's own load would have; the one after loads again.

    Ages are read on `clock` (seconds); reloads behind run on `executor` (default: a daemon
    thread each)."""

    def __init__(
        self,
        load: Callable[[K], V],
        max_age_s: float,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
        executor: Executor | None = None,
    ):
        self._load, self._max_age, self._max_keys = load, max_age_s, max_keys
        self._clock, self._executor = clock, executor
        self._values: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, threading.Event] = {}
        self._failed: dict[K, Exception] = {}
        self._lock = threading.Lock()

    def __call__(self, key: K) -> V:
        with self._lock:
            failure = self._failed.pop(key, None)
            if failure is not None:
                raise failure
            held = self._values.get(key)
            if held is not None:
                if self._clock() - held[0] >= self._max_age and key not in self._loading:
                    self._loading[key] = threading.Event()
                    self._start_behind(key)
                return held[1]
            loading = self._loading.get(key)
            mine = loading is None
            if loading is None:
                loading = self._loading[key] = threading.Event()
        if mine:
            return self._reload(key)
        loading.wait()  # the key's first value is on its way
        with self._lock:
            held = self._values.get(key)
        return held[1] if held is not None else self._load(key)  # that load failed: try

    def _start_behind(self, key: K) -> None:
        if self._executor is None:
            threading.Thread(target=self._reload_behind, args=(key,), daemon=True).start()
        else:
            self._executor.submit(self._reload_behind, key)

    def _reload(self, key: K) -> V:
        """Load `key` for a caller who waits for it."""
        try:
            value = self._load(key)
        except BaseException:
            self._settle(key)
            raise
        self._settle(key, value)
        return value

    def _reload_behind(self, key: K) -> None:
        """Load `key` while callers get its old value; a failure is kept for the next one."""
        try:
            value = self._load(key)
        except Exception as exc:  # the next caller sees it, as if its own load had failed
            log.debug("reload of %s failed: %s", key, exc)
            self._settle(key, failure=exc)
        except BaseException:
            self._settle(key)
            raise
        else:
            self._settle(key, value)

    def _settle(self, key: K, value: V | None = None, failure: Exception | None = None) -> None:
        """A load's outcome in place (`value` when it loaded), then the key no longer loading,
        in one step: a caller in between would start a second reload of a value that is
        about to be dropped."""
        with self._lock:
            if failure is None and value is not None:
                self._values[key] = (self._clock(), value)
                self._values.move_to_end(key)
                while len(self._values) > self._max_keys:
                    self._values.popitem(last=False)
            elif failure is not None:
                self._values.pop(key, None)
                self._failed[key] = failure
            self._loading.pop(key).set()
