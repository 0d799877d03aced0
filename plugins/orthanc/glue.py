"""The only code that touches the ``orthanc`` module: callbacks, REST reads, log bridge.

Kept thin on purpose: :func:`install` builds the pure parts (config, classifier, spool, publisher,
:class:`~plugins.orthanc.dispatcher.Dispatcher`) and registers one ``OnChange`` callback that maps
Orthanc change types to dispatcher events and returns at once. No REST call, no broker call and no
disk write happens on Orthanc's change thread.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from dicom_node.phi import PHIFilter
from dicom_node.settings import load_settings
from plugins.orthanc.config import configuration_warnings, plugin_config_from
from plugins.orthanc.dispatcher import Dispatcher, Event, EventKind
from plugins.orthanc.guard import NodeResultClassifier
from plugins.orthanc.publisher import CeleryRoutingPublisher
from plugins.orthanc.snapshot import OrthancNotFound
from plugins.orthanc.spool import Spool

log = logging.getLogger(__name__)

# orthanc.ErrorCode.UNKNOWN_RESOURCE: what RestApiGet raises for a missing resource (HTTP 404).
_UNKNOWN_RESOURCE = 17
# Structured context fields appended to the Orthanc log line (never patient identifiers).
_CONTEXT_FIELDS = ("orthanc_study_id", "study", "task_id")


class OrthancRestApi:
    """:class:`~plugins.orthanc.snapshot.OrthancApi` over ``orthanc.RestApiGet`` (in-process, no HTTP)."""

    def __init__(self, orthanc: Any) -> None:
        self._orthanc = orthanc

    def get_json(self, uri: str) -> Any:
        try:
            body = self._orthanc.RestApiGet(uri)
        except self._orthanc.OrthancException as exc:
            if exc.args and exc.args[0] == _UNKNOWN_RESOURCE:
                raise OrthancNotFound(uri) from exc
            raise
        return json.loads(body)


class OrthancLogHandler(logging.Handler):
    """Route Python logging into Orthanc's log (LogError / LogWarning / LogInfo)."""

    def __init__(self, orthanc: Any) -> None:
        super().__init__()
        self._orthanc = orthanc
        self.addFilter(PHIFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = f"[ctnode] {record.name}: {record.getMessage()}"
            context = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT_FIELDS if hasattr(record, k))
            if context:
                message = f"{message} ({context})"
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            if record.levelno >= logging.ERROR:
                self._orthanc.LogError(message)
            elif record.levelno >= logging.WARNING:
                self._orthanc.LogWarning(message)
            else:
                self._orthanc.LogInfo(message)
        except Exception:  # logging must never break the plugin
            self.handleError(record)


def make_on_change(orthanc: Any, dispatcher: Dispatcher) -> Callable[[int, int, str], None]:
    """The ``OnChange`` callback: translate and enqueue, nothing else."""
    change = orthanc.ChangeType
    level_series = int(orthanc.ResourceType.SERIES)
    level_study = int(orthanc.ResourceType.STUDY)

    def on_change(change_type: int, level: int, resource_id: str) -> None:
        if change_type == change.STABLE_STUDY:
            dispatcher.notify(Event(EventKind.STABLE_STUDY, resource_id))
        elif change_type == change.NEW_CHILD_INSTANCE:
            if int(level) == level_series:
                dispatcher.notify(Event(EventKind.INSTANCE_IN_SERIES, resource_id))
            elif int(level) == level_study:
                dispatcher.notify(Event(EventKind.INSTANCE_IN_STUDY, resource_id))
        elif change_type == change.ORTHANC_STARTED:
            dispatcher.notify(Event(EventKind.STARTED))
        elif change_type == change.ORTHANC_STOPPED:
            dispatcher.stop()

    return on_change


def install(orthanc: Any, environ: Mapping[str, str] | None = None) -> Dispatcher:
    """Wire the plugin into a running Orthanc; called once by the PythonScript entry file."""
    env = os.environ if environ is None else environ
    root = logging.getLogger()
    if not any(isinstance(h, OrthancLogHandler) for h in root.handlers):
        root.addHandler(OrthancLogHandler(orthanc))
    logging.getLogger("plugins").setLevel(logging.INFO)

    configuration = json.loads(orthanc.GetConfiguration())
    config = plugin_config_from(configuration, env)
    for warning in configuration_warnings(configuration):
        log.error("configuration: %s", warning)
    settings = load_settings(config.node_config)
    dispatcher = Dispatcher(
        api=OrthancRestApi(orthanc),
        spool=Spool(config.spool_path),
        publisher=CeleryRoutingPublisher(
            settings.broker_url, visibility_timeout_s=settings.queue.visibility_timeout_s
        ),
        classifier=NodeResultClassifier(uid_root=settings.uid_root, manufacturer=settings.manufacturer),
        config=config,
    )
    dispatcher.start()
    orthanc.RegisterOnChangeCallback(make_on_change(orthanc, dispatcher))
    log.info(
        "ct-ai-node plugin ready: spool %s, workers read studies from %s, early completion by counts %s",
        config.spool_path,
        config.orthanc_url,
        "on" if config.expected_counts else "off",
    )
    return dispatcher
