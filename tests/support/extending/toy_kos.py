"""A toy output object: a Key Object Selection document (PS3.3 A.35.4, TID 2010) that flags each
segment's key slice "Of Interest" — the worked example of docs/extending.md, "Adding an output
object". A builder receives what every builder gets (EncodeInputs), writes its object(s) with
save_dataset and returns the files; the row that registers it names this function."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.sr.codedict import codes

from dicom_node.contracts import ResultFile
from dicom_node.result_kinds import ResultKind
from dicom_node.results.inputs import EncodeInputs, SkipKind, save_dataset


def encode_toy_kos(inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]) -> list[ResultFile]:
    key_slices = sorted(
        {box.slice0 + (box.slice1 - box.slice0) // 2 for box in inputs.stats.boxes if box is not None}
    )
    if not key_slices:
        raise SkipKind("no segment, so no key slice")
    referenced = [inputs.sources[k] for k in key_slices]
    document = hd.ko.KeyObjectSelectionDocument(
        evidence=referenced,
        content=hd.ko.KeyObjectSelection(
            document_title=codes.DCM.OfInterest,
            referenced_objects=referenced,
            description=f"Key slices of {inputs.title}"[:64],
        ),
        series_instance_uid=inputs.uid(f"{kind.role}-series"),
        series_number=kind.series_number,
        sop_instance_uid=inputs.uid(f"{kind.role}-instance"),
        instance_number=1,
        manufacturer=inputs.manufacturer,
    )
    return [save_dataset(kind, document, inputs.out_dir / f"{kind.role}.dcm")]
