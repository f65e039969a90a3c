"""A throwaway PostgreSQL server for tests, CI and benchmarks, from the distribution's `postgresql`
package: `initdb` into a temporary folder, `pg_ctl start` on a free local port, one database per
user of it, and everything removed on `stop`. PostgreSQL refuses to run as root, so when we are root
the server runs as the package's `postgres` user (or `nobody`).

    python -m swarm_learn_assets.testing.postgres start    # prints the URL and the folder to stop
    python -m swarm_learn_assets.testing.postgres stop DIR

Durability is switched off (`fsync`, `synchronous_commit`, `full_page_writes`): a test server is
thrown away, and Dagster's many small writes would otherwise wait for the disk.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

SERVER_USER_CANDIDATES = ("postgres", "nobody")
DB_USER = "swarm"
SCHEME = "postgresql+psycopg2://"  # the SQLAlchemy dialect dagster-postgres works with (see runner.py)
INSTALL_HINT = "apt-get install postgresql (Debian's package; initdb and pg_ctl under /usr/lib/postgresql/<v>/bin)"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, said with how to get them."""


def server_bin_dir() -> Path:
    """The newest installed server's bin folder (`initdb`, `pg_ctl`), or PostgresUnavailable."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(f"no PostgreSQL server found (initdb); install it: {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: ourselves unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_USER_CANDIDATES:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable(f"running as root and none of the users {SERVER_USER_CANDIDATES} exists to run "
                              "PostgreSQL as")


class ThrowawayPostgres:
    """One server in its own temporary folder. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else None
        self.port = 0
        self._bin: Path | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"{SCHEME}{DB_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        user = _server_user()

        def drop_privileges() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        proc = subprocess.run([str(self._bin / argv[0]), *argv[1:]], capture_output=True, text=True,
                              preexec_fn=drop_privileges, cwd=self.root)
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-1500:] if log.is_file() else ""
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}\n{tail}")

    def start(self) -> ThrowawayPostgres:
        self._bin = server_bin_dir()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="swarm-learn-pg-"))
        self.root.mkdir(parents=True, exist_ok=True)
        user = _server_user()
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data_dir), "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        self.port = _free_port()
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")
        return self

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its URL."""
        import psycopg2

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        connection = psycopg2.connect(self.url().replace(SCHEME, "postgresql://"))
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)

    def stop(self) -> None:
        if self.root is None or not self.data_dir.is_dir():
            return
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["start"]:
        server = ThrowawayPostgres().start()
        print(f"{server.url()} {server.root}")
        return 0
    if args[:1] == ["stop"] and len(args) == 2:
        server = ThrowawayPostgres(Path(args[1]))
        server._bin = server_bin_dir()
        server.stop()
        return 0
    print("usage: python -m swarm_learn_assets.testing.postgres start | stop DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
