"""Data parallelism with jax.sharding: one 'data' mesh axis over all devices of all processes.

The train state is replicated and each batch is split along its first axis; `jax.jit` with these
shardings inserts the gradient all-reduce (and the cross-device BatchNorm statistics) itself, so the
same step function runs on 1 device, all local devices, or several hosts. Multi-host runs call
`initialize_distributed()` first; each process then loads only its share of every global batch.
"""
from __future__ import annotations

import collections
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """`jax.distributed.initialize`; with no arguments it auto-detects SLURM, Open MPI, Kubernetes or
    Cloud TPU environments. Must run before anything else touches JAX devices."""
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (0: all devices of all processes)."""
    devices = jax.devices()
    if num_devices:
        if jax.process_count() > 1 or num_devices > len(devices):
            raise ValueError(f"num_devices={num_devices} must be at most the {len(devices)} devices of a "
                             f"single-process run; use 0 for all devices")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
    if batch_size % mesh.size:
        raise ValueError(f"{what}={batch_size} is not divisible by the {mesh.size} devices of the mesh")


def replicate(tree, sharding: NamedSharding):
    """Host values that every process computed identically -> replicated global jax.Arrays. Unlike
    `jax.device_put`, this works when the mesh spans devices of other processes (multi-host)."""
    def put(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def put_batch(local_batch: dict, sharding: NamedSharding) -> dict:
    """This process's numpy batch -> global jax.Arrays sharded along the batch axis (async copy)."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def prefetch_to_device(batches: Iterator[dict], sharding: NamedSharding, size: int = 2,
                       state_fn=None) -> Iterator[tuple[dict, object]]:
    """Keep `size` batches in flight to the devices. Yields (device_batch, position) where position is
    `state_fn()` taken right after that batch left the host iterator: the position to save with a
    checkpoint once the batch has been consumed (batches still in flight are not lost on resume)."""
    queue = collections.deque()

    def enqueue():
        batch = next(batches, None)
        if batch is not None:
            queue.append((put_batch(batch, sharding), state_fn() if state_fn else None))

    for _ in range(size):
        enqueue()
    while queue:
        item = queue.popleft()
        enqueue()
        yield item
