"""Several processes, one run: `jax.distributed` set-up, meshes, and moving host data between processes.

Render and train share this module (neither imports the other). A run of N processes is N
copies of the same command, each with `--process-id I`; without the flags, JAX's cluster
detection (Slurm, Open MPI, Cloud TPU, ...) is used where it finds a cluster, and a plain
machine runs as one process. Nothing here opens sockets of its own: set-up goes through
`jax.distributed.initialize`, data through `jax.experimental.multihost_utils`.

    initialize(coordinator, num_processes, process_id)  once, before any other jax call
    local_mesh(axis) / global_mesh(axis)                 1-D meshes over this process's / every device
    put_global(tree, sharding)                           host arrays (this process's part) -> global arrays
    to_host(tree)                                        global arrays -> numpy on this process
    gather_bytes(blobs)                                  every process's bytes, on process 0
    sync(what)                                           all processes reach this point, or a clear error
    peers_guard(what)                                    a dead peer inside a block -> ProcessLost
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator, Sequence

import numpy as np

from gvjax.errors import GvjaxError

# Short enough that a dead peer is noticed within a test, long enough for a slow compile.
HEARTBEAT_SECONDS = 30
CHUNK_BYTES = 1 << 26  # bytes per broadcast when gathering encoded video


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """What `jax.distributed.initialize` is told; all None: detect a cluster, or run alone."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.coordinator_address, self.num_processes, self.process_id))


class ProcessLost(GvjaxError):
    """Another process of a multi-process run stopped (it failed, or was killed)."""


def check_spec(spec: ProcessSpec) -> ProcessSpec:
    """GvjaxError for flags that cannot describe a run; returns `spec`."""
    if not spec.given:
        return spec
    if spec.coordinator_address is None or spec.num_processes is None or spec.process_id is None:
        raise GvjaxError("--coordinator, --num-processes and --process-id go together (give all three, or none)")
    host, sep, port = spec.coordinator_address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GvjaxError(f"--coordinator must be HOST:PORT, got {spec.coordinator_address!r}")
    if spec.num_processes < 1:
        raise GvjaxError(f"--num-processes must be at least 1, got {spec.num_processes}")
    if not 0 <= spec.process_id < spec.num_processes:
        raise GvjaxError(f"--process-id must be from 0 to {spec.num_processes - 1}, got {spec.process_id}")
    return spec


def initialize(spec: ProcessSpec = ProcessSpec()) -> int:
    """Join the run `spec` describes (or the cluster JAX detects); returns the process count.

    Without flags, JAX's cluster detection decides; where it finds no cluster, the run is
    one process and nothing is initialized. On CPU the collectives go through
    gloo. Recoverability is on, so the coordinator does not abort when another process dies:
    the next collective raises instead, and `sync`/`gather_bytes` turn that into ProcessLost.
    """
    import jax

    from gvjax import chatter

    check_spec(spec)
    if jax.distributed.is_initialized():  # the caller (a notebook, a launcher) joined the run already
        return jax.process_count()
    if spec.given and spec.num_processes == 1:
        return 1
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_recoverability", True)
    try:
        with chatter.quiet_stderr("jax.distributed", stdout=True):
            jax.distributed.initialize(
                spec.coordinator_address, spec.num_processes, spec.process_id,
                initialization_timeout=120, heartbeat_timeout_seconds=HEARTBEAT_SECONDS, shutdown_timeout_seconds=30,
            )
    except Exception as e:  # jaxlib raises its own types for an unreachable coordinator
        if not spec.given and isinstance(e, (ValueError, RuntimeError)):
            return jax.process_count()  # no cluster detected, or jax is in use already (in-process callers): one process
        where = spec.coordinator_address or "the detected cluster"
        raise GvjaxError(f"could not join the run at {where}: {str(e).splitlines()[0][:200]}") from None
    return jax.process_count()


def local_mesh(axis: str):
    """A 1-D mesh over this process's devices (a render's frames never leave the process)."""
    import jax
    from jax.sharding import Mesh

    return Mesh(np.array(jax.local_devices()), (axis,))


def global_mesh(axis: str, divides: int | None = None):
    """A 1-D mesh over every process's devices; `divides` (a global batch) must split evenly over them."""
    import jax
    from jax.sharding import Mesh

    devices = jax.devices()
    if divides is not None and divides % len(devices):
        raise GvjaxError(f"--batch {divides} is not a multiple of the {len(devices)} devices")
    return Mesh(np.array(devices), (axis,))


def put_global(tree: Any, sharding) -> Any:
    """Host arrays -> global arrays with `sharding`; each process passes its own part of the
    sharded axis (all of it when the sharding replicates)."""
    import jax

    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def to_host(tree: Any) -> Any:
    """Arrays -> numpy on this process: replicated global arrays from a local copy, sharded ones
    gathered from every process (a collective then: every process must call it)."""
    import jax
    from jax.experimental import multihost_utils

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def _lost(e: Exception, what: str) -> ProcessLost:
    import jax

    return ProcessLost(
        f"another process of this run ({jax.process_count()} processes) stopped {what}; see its own error. "
        f"Process {jax.process_index()} wrote nothing"
    )


@contextlib.contextmanager
def peers_guard(what: str) -> Iterator[None]:
    """In a multi-process run, a runtime error of a collective in the block (a peer closed its
    connection) becomes ProcessLost; one process is left alone."""
    import jax

    try:
        yield
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() > 1:
            raise _lost(e, what) from None
        raise


def sync(what: str) -> None:
    """Every process reaches this point; ProcessLost when one has stopped instead."""
    import jax
    from jax.experimental import multihost_utils

    from gvjax import chatter

    if jax.process_count() == 1:
        return
    try:
        with chatter.quiet_stderr("jax.distributed", stdout=True):
            multihost_utils.process_allgather(np.zeros(1, np.int32))
    except Exception as e:  # gloo reports a closed peer as a runtime error
        raise _lost(e, what) from None


def gather_bytes(blobs: Sequence[bytes], slots: int, first: int) -> list[bytes] | None:
    """Byte strings from every process, in slot order, on process 0 (None on the others).

    Process p holds `blobs` for slots `first .. first+len(blobs)-1` of `slots` in all; the
    slot ranges follow one another in process order and cover every slot. Sizes go first (one
    all-gather), then each process broadcasts its bytes in chunks of `CHUNK_BYTES`.
    """
    import jax
    from jax.experimental import multihost_utils

    from gvjax import chatter

    pid, nproc = jax.process_index(), jax.process_count()
    if nproc == 1:
        return list(blobs)
    sizes = np.zeros(slots, np.int64)
    sizes[first:first + len(blobs)] = [len(b) for b in blobs]
    payload = b"".join(blobs)
    try:
        with chatter.quiet_stderr("jax.distributed", stdout=True):
            spans = np.asarray(multihost_utils.process_allgather(np.array([first, len(blobs)], np.int64)))  # [P, (first, count)]
            sizes = np.asarray(multihost_utils.process_allgather(sizes)).sum(0)
            if (spans[:, 0] != np.cumsum(spans[:, 1]) - spans[:, 1]).any() or spans[:, 1].sum() != slots:
                raise GvjaxError("the processes' parts of the run overlap or leave gaps")
            received: list[bytes] = []
            for src, (a, n) in enumerate(spans):
                total = int(sizes[a:a + n].sum())
                data = bytearray()
                for start in range(0, total, CHUNK_BYTES):
                    size = min(CHUNK_BYTES, total - start)
                    chunk = np.frombuffer(payload, np.uint8, size, start) if src == pid else np.zeros(size, np.uint8)
                    got = multihost_utils.broadcast_one_to_all(chunk, is_source=src == pid)
                    if pid == 0:
                        data += np.asarray(got, np.uint8).tobytes()
                if pid == 0:
                    ends = np.cumsum(sizes[a:a + n])
                    received += [bytes(data[end - size:end]) for end, size in zip(ends, sizes[a:a + n])]
    except GvjaxError:
        raise
    except Exception as e:  # gloo reports a closed peer as a runtime error
        raise _lost(e, "before sending its part") from None
    return received if pid == 0 else None


def process_range(count: int, process_id: int, num_processes: int) -> tuple[int, int]:
    """[first, last) of `count` items for one process: contiguous, sizes differing by at most one."""
    return count * process_id // num_processes, count * (process_id + 1) // num_processes
