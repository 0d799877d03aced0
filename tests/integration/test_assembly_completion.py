"""Study completion wired as ``ctnode serve`` wires it: DCMTK storescu → StoreSCP → StudyTracker
(sweeper thread) → StudyStable, with real time, real files and a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from dicom_node.assembly.tracker import StudyTracker
from dicom_node.contracts import CompletionReason, StudyStable
from dicom_node.ingest.scp import StoreSCP
from dicom_node.ingest.staging import read_staged_instance
from dicom_node.settings import Settings
from tests.integration.test_ingest_scp import (
    _secondary_capture_8bit,
    node_settings,
    store_successes,
    storescu,
)
from tests.support.ct_series import TEST_UID_ROOT, make_ct_series
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

FAST = {"quiet_period_s": 1.5, "association_release_grace_s": 0.3, "sweep_interval_s": 0.1}


@dataclass
class Service:
    settings: Settings
    scp: StoreSCP
    tracker: StudyTracker
    stable: list[StudyStable] = field(default_factory=list)
    broker_up: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        assert self.scp.port is not None
        return self.scp.port

    def wait_stable(self, count: int, timeout_s: float = 15.0) -> list[StudyStable]:
        wait_until(lambda: len(self.stable) >= count, timeout_s=timeout_s, what=f"{count} StudyStable")
        return self.stable


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    running: list[Service] = []

    def start(
        *,
        recover: bool = False,
        broker_up: bool = True,
        one_association_per_study: bool = False,
        **completion: Any,
    ) -> Service:
        peer = {"ae_title": "STORESCU", "networks": ["127.0.0.1/32"]}
        settings = node_settings(
            tmp_path / "var",
            completion={**FAST, **completion},
            dicom={"allowed_peers": [peer | {"one_association_per_study": one_association_per_study}]},
        )
        service = Service(settings=settings, scp=None, tracker=None)  # type: ignore[arg-type]
        if broker_up:
            service.broker_up.set()

        def submit(event: StudyStable) -> None:  # stands in for the Celery send_task
            if not service.broker_up.is_set():
                raise ConnectionError("broker unavailable")
            service.stable.append(event)

        service.tracker = StudyTracker(settings, on_stable=submit)
        if recover:
            service.tracker.recover(
                settings.storage.staging_dir,
                read_instance=partial(read_staged_instance, uid_root=settings.uid_root),
            )
        service.scp = StoreSCP(
            settings,
            on_instance=service.tracker.instance_stored,
            on_association_released=lambda s: service.tracker.association_released(
                s.association_id, released=s.released
            ),
            port=0,
        )
        service.tracker.start()
        service.scp.start()
        running.append(service)
        return service

    yield start
    for service in running:
        stop(service)


def stop(service: Service) -> None:
    service.scp.stop()
    service.tracker.stop()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("study")
    uid = generate_uid(prefix=TEST_UID_ROOT)
    return {
        "axial": make_ct_series(out / "axial", n_slices=20, study_uid=uid, series_number=1),
        "late": make_ct_series(out / "late", n_slices=4, rows=128, cols=128, study_uid=uid, series_number=2),
        "announced": make_ct_series(
            out / "announced", n_slices=6, rows=128, cols=128, images_in_acquisition=True
        ),
    }


def test_association_release_completes_the_study_of_a_one_association_sender(
    serve: Any, study: dict[str, list[Path]]
) -> None:
    # a long quiet period: only the release can complete the study within the wait below
    service = serve(one_association_per_study=True, quiet_period_s=600.0)
    assert store_successes(storescu(service.port, study["axial"])) == 20
    [event] = service.wait_stable(1, timeout_s=60)
    assert event.reason == CompletionReason.ASSOCIATION_RELEASED
    assert event.instance_count == 20
    assert event.calling_ae_title == "STORESCU" and event.called_ae_title == "CTAINODE"
    assert event.study_instance_uid == dcmread(study["axial"][0], stop_before_pixels=True).StudyInstanceUID
    assert event.source.kind == "staging"
    assert (
        Path(event.source.staging_path or "")
        == service.settings.storage.staging_dir / event.study_instance_uid
    )


def test_series_sent_in_separate_associations_make_one_stable_study(
    serve: Any, study: dict[str, list[Path]]
) -> None:
    """A PACS sending series by series, one association each, a second apart: one StudyStable."""
    service = serve(quiet_period_s=5.0)  # the sender is not one association per study (default)
    assert store_successes(storescu(service.port, study["axial"])) == 20
    time.sleep(1.0)  # the sender's pause between series (the old default fired 0.3 s after release)
    assert service.stable == []
    assert store_successes(storescu(service.port, study["late"])) == 4
    [event] = service.wait_stable(1, timeout_s=60)
    assert event.reason == CompletionReason.QUIET_PERIOD
    assert event.instance_count == 24
    time.sleep(FAST["quiet_period_s"])
    assert len(service.stable) == 1


def test_a_series_short_of_its_announced_count_waits(serve: Any, study: dict[str, list[Path]]) -> None:
    service = serve(one_association_per_study=True, incomplete_series_quiet_s=600.0)
    assert store_successes(storescu(service.port, study["announced"][:4])) == 4  # 4 of 6 announced
    time.sleep(FAST["quiet_period_s"] + 1.5)  # past the quiet period and the release grace
    assert service.stable == []
    assert store_successes(storescu(service.port, study["announced"][4:])) == 2
    [event] = service.wait_stable(1, timeout_s=60)
    assert event.reason == CompletionReason.ASSOCIATION_RELEASED
    assert event.instance_count == 6


def test_quiet_period_when_the_sender_keeps_its_association(serve: Any, study: dict[str, list[Path]]) -> None:
    service = serve()
    assert store_successes(storescu(service.port, study["axial"][:5])) == 5
    [event] = service.wait_stable(1)
    assert event.reason == CompletionReason.QUIET_PERIOD
    assert "quiet period 1.5 s" in event.reason_detail


def test_late_series_duplicates_and_results(serve: Any, study: dict[str, list[Path]], tmp_path: Path) -> None:
    service = serve()
    assert store_successes(storescu(service.port, study["axial"])) == 20
    service.wait_stable(1)
    # the same series again: duplicates make no new work
    assert store_successes(storescu(service.port, study["axial"])) == 20
    # a derived object (Secondary Capture) in the same study: stored, not routed
    sc = _secondary_capture_8bit(tmp_path / "sc.dcm")
    ds = dcmread(sc)
    ds.StudyInstanceUID = dcmread(study["axial"][0], stop_before_pixels=True).StudyInstanceUID
    ds.save_as(sc, enforce_file_format=True)
    assert store_successes(storescu(service.port, [sc])) == 1
    time.sleep(FAST["quiet_period_s"] + 1.0)
    assert len(service.stable) == 1
    # a late series re-opens the study
    assert store_successes(storescu(service.port, study["late"])) == 4
    first, second = service.wait_stable(2)
    assert second.instance_count == 24
    assert "late instances after stable (4 new)" in second.reason_detail
    assert second.first_received_at == first.first_received_at


def test_restart_recovers_a_study_never_handed_on(serve: Any, study: dict[str, list[Path]]) -> None:
    down = serve(broker_up=False)  # the hand-off fails: the study stays pending
    assert store_successes(storescu(down.port, study["axial"][:8])) == 8
    time.sleep(1.0)
    assert down.stable == [] and down.tracker.pending_studies()
    stop(down)  # the node goes away before it could hand the study on

    up = serve(recover=True)
    [event] = up.wait_stable(1)
    assert event.instance_count == 8
    assert "recovered after restart" in event.reason_detail
    assert event.calling_ae_title == "STORESCU"  # read back from the staged File Meta

    # a second restart finds it dispatched (marker) and hands on nothing
    stop(up)
    again = serve(recover=True)
    time.sleep(FAST["quiet_period_s"] + 0.5)
    assert again.stable == []
