"""The benchmarks' measuring kit, and the PostgreSQL the benchmarks and the test suite run on.

Measuring: the CPU seconds a process has spent and the machine's busy time, read from /proc as
proc(5) describes them; a process's peak resident set size. Figures: the `Rate` every
benchmark reports (rate, seconds, peak memory) and the `Headline` of one that runs a baseline
(the baseline of the same run and the ratio besides), printed as a two-column table or as one
JSON object. Calls: a desk call that waits out the operator rate limit as the node asks.
Populations: valid resident ID numbers, distinct per index.

PostgreSQL: `postgres_server` hands out fresh, empty databases on the server `DATABASE_URL` names
(SQLAlchemy form, `postgresql+psycopg://user:password@host:port/anydb`; its role must be allowed
to CREATE DATABASE) or, without it, on a real PostgreSQL it starts from the `pgserver` package
in a data directory of the caller's, reached over a Unix socket. When it closes, every database
it created is dropped and a server it started is stopped.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import URL, make_url

from adapters.desk_batches import rate_limit_pause
from cli.launcher import LocalFederation
from signing.identity import resident_id_check_character

DATABASE_URL_ENV = "DATABASE_URL"
Request = TypeVar("Request")
Response = TypeVar("Response")


# PostgreSQL.


class PostgresServer:
    """Throwaway databases on one PostgreSQL server, all dropped by `drop_databases`."""

    def __init__(self, server_url: URL, prefix: str, data_dir: Path | None) -> None:
        self._server_url = server_url.set(drivername="postgresql+psycopg")
        # psycopg takes libpq's form of the URL, without the SQLAlchemy driver name.
        self._admin_conninfo = self._server_url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._prefix = prefix
        self._counter = itertools.count(1)
        self._created: list[str] = []
        self.data_dir = data_dir

    @property
    def source(self) -> str:
        """Where the server came from, as the benchmark figures name it."""
        return "pgserver" if self.data_dir is not None else DATABASE_URL_ENV

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database (named after `name`, else numbered); its SQLAlchemy URL."""
        suffix = name.replace("-", "_") if name is not None else str(next(self._counter))
        database = f"{self._prefix}_{suffix}"
        with psycopg.connect(self._admin_conninfo, autocommit=True) as connection:
            # A run killed before it cleaned up may have left one of the same name.
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        self._created.append(database)
        return self._server_url.set(database=database).render_as_string(hide_password=False)

    def drop_databases(self) -> None:
        if not self._created:
            return
        with psycopg.connect(self._admin_conninfo, autocommit=True) as connection:
            for database in reversed(self._created):
                connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
        self._created.clear()

    def postmaster_pid(self) -> int | None:
        """The server's main process when `postgres_server` started it, else None."""
        if self.data_dir is None:
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None


def _start_pgserver(data_dir: Path) -> tuple[Any, URL]:
    # Imported here so that runs on DATABASE_URL never pay for it. platformdirs warns at import
    # time when XDG_RUNTIME_DIR is unset (CI, containers); pgserver copes without it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

    server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    # get_uri() looks like postgresql://postgres:@/postgres?host=/tmp/xyz
    raw = make_url(server.get_uri())
    url = URL.create(
        "postgresql+psycopg",
        username=raw.username,
        password=raw.password or None,  # URL.set() treats None as "keep", hence create()
        host=raw.host,
        port=raw.port,
        database=raw.database,
        query=raw.query,
    )
    return server, url


@contextmanager
def postgres_server(data_dir: Path, prefix: str) -> Iterator[PostgresServer]:
    """Databases named `<prefix>_...` on DATABASE_URL's server, or on one pgserver starts in
    `data_dir`; see the module docstring."""
    server: Any = None
    given = os.environ.get(DATABASE_URL_ENV)
    if given:
        postgres = PostgresServer(make_url(given), prefix, None)
    else:
        server, url = _start_pgserver(data_dir)
        postgres = PostgresServer(url, prefix, data_dir)
    try:
        yield postgres
    finally:
        try:
            postgres.drop_databases()
        finally:
            if server is not None:
                server.cleanup()


# Measurements.


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, 0 once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    # proc(5): utime and stime are fields 14 and 15; fields[0] here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def machine_busy_s() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, over all cores (proc(5))."""
    first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()
    ticks = [int(value) for value in first[1:]]
    # user nice system idle iowait irq softirq steal ...; idle and iowait are not busy.
    idle = ticks[3] + ticks[4]
    total = sum(ticks[:8])
    hertz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hertz, total / hertz


# Names of groups `federation_processes` returns besides the nodes'.
_BENCH, _REGISTRY, _DATABASE = "bench", "registry", "postgres"


def federation_processes(
    federation: LocalFederation, postgres: PostgresServer | None
) -> dict[str, list[int]]:
    """A local federation's processes by name, for `CpuMeter`: this process (`bench`: the
    clients and importers a benchmark runs), the registry, each node and, apart, its child
    processes (`<node> workers`: its signing workers, started at its first bulk batch), and
    PostgreSQL when the benchmark started it."""
    groups = {_BENCH: [os.getpid()]}
    if federation.registry_process is not None:
        groups[_REGISTRY] = [federation.registry_process.pid]
    for node_id, handle in federation.nodes.items():
        if handle.process is not None:
            groups[node_id] = [handle.process.pid]
            groups[_workers_of(node_id)] = child_pids(handle.process.pid)
    postmaster = postgres.postmaster_pid() if postgres is not None else None
    if postmaster is not None:
        groups[_DATABASE] = [postmaster, *child_pids(postmaster)]
    return groups


def _workers_of(node_id: str) -> str:
    return f"{node_id} workers"


@dataclass(frozen=True)
class NodeCpu:
    """CPU seconds one node's work cost, by process: read from what a `CpuMeter` over
    `federation_processes` spent. `importer` is this process; `database` is 0 unless the
    benchmark started PostgreSQL."""

    node: float
    workers: float
    registry: float
    importer: float
    database: float

    @classmethod
    def of(cls, spent: dict[str, float], node_id: str) -> NodeCpu:
        return cls(
            node=spent[node_id],
            workers=spent[_workers_of(node_id)],
            registry=spent.get(_REGISTRY, 0.0),
            importer=spent[_BENCH],
            database=spent.get(_DATABASE, 0.0),
        )


def cpu_ms_per(cpu_s: float, count: int) -> float:
    """CPU seconds spent on `count` items, in milliseconds an item (0 for none)."""
    return round(1000 * cpu_s / count, 3) if count else 0.0


class CpuMeter:
    """CPU seconds spent by named groups of processes between `start` and `stop`, and how busy
    the whole machine was meanwhile (other work on a shared machine shows up there). The groups
    are read again at `stop`: a process started meanwhile counts all it spent."""

    def __init__(self, groups: Callable[[], dict[str, list[int]]]) -> None:
        self._groups = groups
        self._before: dict[str, dict[int, float]] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)
        self.machine_busy = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: process_cpu_s(pid) for pid in pids} for name, pids in self._groups().items()
        }

    def start(self) -> None:
        self._before = self._read()
        self._machine = machine_busy_s()

    def stop(self) -> dict[str, float]:
        after = self._read()
        busy, total = machine_busy_s()
        spent = total - self._machine[1]
        self.machine_busy = (busy - self._machine[0]) / spent if spent > 0 else 0.0
        return {
            name: sum(
                spent - self._before.get(name, {}).get(pid, 0.0) for pid, spent in pids.items()
            )
            for name, pids in after.items()
        }


def own_peak_rss_mib() -> float:
    """Peak resident set size of this process, in MiB (getrusage: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a running process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


# Populations.


def resident_id(region: str, first_born: date, index: int) -> str:
    """A valid resident ID number in `region`, distinct for each index below 36,500,000: a
    thousand people born on each day from `first_born` on (GB 11643)."""
    born = first_born + timedelta(days=index // 1000)
    first_17 = f"{region}{born:%Y%m%d}{index % 1000:03d}"
    return first_17 + resident_id_check_character(first_17)


# Calls.


def call_within_limits(
    call: Callable[[Request], Response], request: Request, *, patience_s: float = 120.0
) -> Response:
    """`call(request)`; refused by the node's rate limit, called again after the pause the node
    names (retry-after), for up to `patience_s` in all. Any other failure is raised at once."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return call(request)
        except grpc.RpcError as error:
            pause = rate_limit_pause(error)
            if pause is None or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)


# Figures.


# The keys every benchmark's JSON holds at its top level (`figures_json` refuses figures without
# them), and the two a benchmark that runs a baseline adds.
RATE_FIELDS = ("rate_per_s", "seconds", "peak_rss_mib")
BASELINE_FIELDS = ("baseline_per_s", "ratio")


@dataclass(frozen=True)
class Rate:
    """What every benchmark reports first, under the same names in its JSON: the rate of the
    path measured, its seconds and the peak memory of the process that drove it. A benchmark
    that runs a baseline in the same run reports a `Headline` instead."""

    rate_per_s: float
    seconds: float
    peak_rss_mib: float

    @staticmethod
    def measure_rate(count: int, seconds: float) -> dict[str, float]:
        """The rate fields of `count` items in `seconds`, with this process's peak memory so
        far: `Figures(**Rate.measure_rate(...), ...)`."""
        return {
            "rate_per_s": round(count / seconds, 1) if seconds > 0 else 0.0,
            "seconds": round(seconds, 3),
            "peak_rss_mib": round(own_peak_rss_mib(), 1),
        }


@dataclass(frozen=True)
class Headline(Rate):
    """The `Rate` of the path measured and the rate of the baseline measured in the same run,
    with the ratio between the two (figures from one run on one machine compare; figures from
    two machines or two runs do not).

    A benchmark's figures are a dataclass that extends this one, so `figures_json` prints these
    keys at the top level beside its own."""

    baseline_per_s: float
    ratio: float

    @staticmethod
    def measure(
        count: int, seconds: float, baseline_count: int, baseline_seconds: float
    ) -> dict[str, float]:
        """The headline fields of `count` items in `seconds` against the baseline's, with this
        process's peak memory so far: `Figures(**Headline.measure(...), ...)`."""
        rate = count / seconds if seconds > 0 else 0.0
        baseline = baseline_count / baseline_seconds if baseline_seconds > 0 else 0.0
        return {
            "rate_per_s": round(rate, 1),
            "seconds": round(seconds, 3),
            "peak_rss_mib": round(own_peak_rss_mib(), 1),
            "baseline_per_s": round(baseline, 1),
            "ratio": round(rate / baseline, 2) if baseline > 0 else 0.0,
        }

    def headline_rows(self, unit: str, baseline: str) -> list[tuple[str, str]]:
        """The headline as table rows: `unit` names what is counted, `baseline` the baseline."""
        return [
            (f"{unit}/s", f"{self.rate_per_s:,.0f}"),
            ("seconds", f"{self.seconds:,.2f}"),
            (f"baseline ({baseline}), {unit}/s, same run", f"{self.baseline_per_s:,.0f}"),
            ("ratio to the baseline", f"{self.ratio:,.1f}x"),
            ("peak RSS, benchmark process", f"{self.peak_rss_mib:,.0f} MiB"),
        ]


# Printing.


@contextmanager
def bench_workdir(given: Path | None, name: str) -> Iterator[Path]:
    """`given` (created if need be, kept afterwards), or a temporary folder removed at the end."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix=f"certfed-bench-{name}-") as temporary:
        yield Path(temporary)


def figures_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def print_figures(
    figures: object, *, as_json: bool, title: str, rows: list[tuple[str, str]], console: Console
) -> None:
    """The figures as one JSON object on stdout (`--json`), else as a table."""
    if as_json:
        print(figures_json(figures))
    else:
        console.print(figures_table(title, rows))


def figures_json(figures: object) -> str:
    """A dataclass of figures as indented JSON, one key per field; figures without the
    `RATE_FIELDS`, or with half of the `BASELINE_FIELDS`, are a benchmark's bug."""
    fields = asdict(figures)  # type: ignore[call-overload]
    missing = [name for name in RATE_FIELDS if name not in fields]
    baseline = [name for name in BASELINE_FIELDS if name in fields]
    if missing or len(baseline) not in (0, len(BASELINE_FIELDS)):
        missing += [name for name in BASELINE_FIELDS if name not in baseline]
        raise TypeError(f"{type(figures).__name__} lacks the benchmark fields {missing}")
    return json.dumps(fields, indent=2)
