"""A real PostgreSQL for tests: a throw-away schema on the local server, or a private server.

``postgres_url(work_dir)`` yields a SQLAlchemy URL whose ``search_path`` is a fresh schema
(``ctnode_test_<random>``), dropped with everything in it afterwards. It uses the server at
``$CTNODE_TEST_POSTGRES_URL`` (default: the local trust-auth server,
``postgresql+psycopg2://postgres@127.0.0.1:5432/test``). When that server is not running (CI may
stop services), it starts a private one from Debian's binaries (``initdb`` + ``postgres`` on a free
port, trust auth, data under ``work_dir``, as the ``postgres`` user when run as root) and stops it
by PID afterwards: the test starts what it needs and stops only what it started.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import free_port, managed, port_open, wait_until

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _server_answers(url: str) -> bool:
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"PostgreSQL {name} not found: install Debian postgresql to run these tests")
    return path


@contextlib.contextmanager
def _private_server(work_dir: Path) -> Iterator[str]:
    """initdb + postgres on a free port (trust auth); yields the URL of database ``postgres``."""
    # Its own folder under the system temp dir: pytest's tmp_path parents are private to root,
    # and the postgres user must be able to reach its data directory.
    work_dir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="ctnode-pg-"))
    try:
        yield from _run_private_server(home, log_path=work_dir / "postgres.log")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run_private_server(home: Path, *, log_path: Path) -> Iterator[str]:
    data = home / "pgdata"
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    argv = [*as_user, _pg_bin("postgres"), "-D", str(data), "-p", str(port)]
    argv += ["-c", "listen_addresses=127.0.0.1", "-k", str(home), "-c", "fsync=off"]
    with managed(argv, log_path=log_path, ready=lambda: port_open(port), ready_timeout_s=60):
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        wait_until(lambda: _server_answers(url), timeout_s=30, interval_s=0.2, what="private PostgreSQL")
        yield url


@contextlib.contextmanager
def postgres_url(work_dir: Path) -> Iterator[str]:
    """A URL to a fresh, empty schema on a real PostgreSQL (dropped afterwards)."""
    import sqlalchemy as sa

    base = os.environ.get("CTNODE_TEST_POSTGRES_URL", DEFAULT_URL)
    with contextlib.ExitStack() as stack:
        if not _server_answers(base):
            base = stack.enter_context(_private_server(work_dir / "postgres"))
        schema = f"ctnode_test_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in base else "?"
        try:
            yield f"{base}{sep}options=-csearch_path%3D{schema}"
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
