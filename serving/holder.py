"""The model holder: the version answering requests, swapped in atomically when `champion` moves,
and what clients may be told when a version fails to load."""

from __future__ import annotations

import gc
import logging
import re
import threading
from typing import Any

from registry import CHAMPION, ModelNotFoundError, get_alias
from serving.model import ModelLoadError, ModelScoringError, ServedModel, load_version
from serving.validation import clip

logger = logging.getLogger("driftloop.serving")
#: Longest error sentence an HTTP body carries.
_MAX_ERROR_CHARS = 300
#: Absolute file paths and file URIs in messages from libraries (never sent to clients).
_PATH = re.compile(r"(?:file://)?(?:[A-Za-z]:)?(?:/[\w.@%+~-]+){2,}/?")
#: Load failures whose message is ours (names the model, version and file, never a local path)
#: and may be shown in HTTP bodies; any other exception is shown by its type only. The registry's
#: family: a missing version or alias, a version driftloop did not register (ModelLoadError), a
#: failed integrity check (ModelIntegrityError).
_PUBLIC_ERRORS = (ModelNotFoundError, ModelScoringError)


def redact(text: str) -> str:
    """A library's error message fit for a client: no file paths, bounded length."""
    return clip(_PATH.sub("<path>", text), _MAX_ERROR_CHARS)


def public_error(exc: BaseException) -> str:
    """What `/ready`, `/model` and `/reload` may say about a failed load."""
    if isinstance(exc, _PUBLIC_ERRORS):
        return str(exc)
    return f"{type(exc).__name__} while checking or loading the model; see the service log"


class ModelHolder:
    """The model answering requests; swapped atomically when the alias moves.

    A version that fails to load (integrity check, tags, warm-up) is never swapped in: the loaded
    one keeps answering, and the failure is logged, counted in `load_failures` and kept in
    `last_error` until a version loads.
    """

    def __init__(self, client: Any, model_name: str, alias: str = CHAMPION) -> None:
        self.client = client
        self.model_name = model_name
        self.alias = alias
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self.reloads = 0
        self.load_failures = 0
        self._lock = threading.Lock()

    def unavailable(self) -> str:
        """Why no model is loaded, fit for a client."""
        return redact(self.last_error or "loading the model")

    def refresh(self) -> bool:
        """Check the alias; load, warm up and swap in a new version. True when it changed."""
        with self._lock:
            try:
                found = get_alias(self.client, self.model_name, self.alias)
                if found is None:
                    raise ModelLoadError(
                        f"model {self.model_name!r} has no `{self.alias}` alias yet; "
                        "train one with `driftloop train`"
                    )
                version = int(found.version)
                if self.current is not None and self.current.version == version:
                    return False
                model = load_version(self.client, self.model_name, version, alias=self.alias)
                model.score_columns(
                    model.example_columns()
                )  # a model that cannot score is not swapped in
            except Exception as exc:
                self.last_error = public_error(exc)
                self.load_failures += 1
                kept = self.current.version if self.current is not None else "none"
                logger.error(
                    "%s@%s not loaded (still serving version %s): %s",
                    self.model_name,
                    self.alias,
                    kept,
                    exc,
                )
                raise
            previous = self.current
            self.current = model
            self.last_error = None
            gc.freeze()  # the loaded model and libraries are never garbage: keep them out of GC scans
            if previous is not None:
                self.reloads += 1
            logger.warning(
                "serving %s version %s (was %s)",
                self.model_name,
                version,
                previous.version if previous else "none",
            )
            return True
