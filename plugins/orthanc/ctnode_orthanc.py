"""Orthanc ``PythonScript`` entry point of the ct-ai-node plugin.

Point Orthanc at this file (``"PythonScript": "/opt/ct-ai-node/plugins/orthanc/ctnode_orthanc.py"``)
and name the project's virtualenv with ``$CTNODE_VENV`` or ``"CtNode": {"Venv": ...}``
(deploy/orthanc/README.md). This file runs inside Debian's embedded CPython before the venv is on
``sys.path``, so it imports only the standard library until :func:`activate_from` has run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orthanc  # the module orthanc-python provides; exists only inside Orthanc

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parents[1]

# orthanc-python puts this script's folder first on sys.path: drop it, so that module names in it
# (config, spool, ...) can never shadow a package, and import ours as ``plugins.orthanc.*``.
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

from plugins.orthanc.venv import activate_from  # noqa: E402 (stdlib-only module, path set above)

activate_from(json.loads(orthanc.GetConfiguration()))

from plugins.orthanc.glue import install  # noqa: E402 (needs the venv on sys.path)

DISPATCHER = install(orthanc)
