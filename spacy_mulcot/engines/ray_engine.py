"""``predict --engine ray``: shards predicted by Ray actors, one pipeline per actor.

Each actor reserves ``cpus_per_worker`` CPUs (and ``gpus_per_worker`` GPUs) and runs
PyTorch with that many threads, so N actors fill N x cpus cores without contending.
A worker process that dies (killed, out of memory) is restarted by Ray and its shard
is run again (``max_retries`` times): shards commit atomically (see
:mod:`.shards`), so nothing is lost or written twice. On a real cluster, pass its
address (``ray://head:10001`` or ``auto``) and make the model and input paths
reachable from every node (shared storage); the shards folder must be shared too.
"""

import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable, List, Optional

from ..extras import require
from .shards import Settings, Shard, ShardResult, ShardWorker


def run_shards(
    model: str,
    shards: List[Shard],
    out_dir: Path,
    settings: Settings,
    *,
    workers: Optional[int] = None,
    cpus_per_worker: int = 1,
    gpus_per_worker: float = 0.0,
    address: Optional[str] = None,
    code: Optional[str] = None,
    max_retries: int = 3,
    on_result: Optional[Callable[[ShardResult], None]] = None,
    on_start: Optional[Callable[[List[int]], None]] = None,
) -> List[ShardResult]:
    """Predict ``shards`` into ``out_dir`` with a pool of Ray actors; the results in
    completion order. ``on_start`` gets the workers' process ids (for monitoring, or a
    test that kills one)."""
    ray = require("ray", "scale", "predict --engine ray")
    from ray.util import ActorPool

    started_here = not ray.is_initialized()
    if started_here:
        init = {"address": address} if address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
        ray.init(**init, ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
    try:
        if workers is None:
            workers = max(1, math.floor(ray.cluster_resources().get("CPU", 1) / cpus_per_worker))
        workers = max(1, min(workers, len(shards))) if shards else 0
        actor = ray.remote(ShardWorker).options(
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
            max_restarts=-1,
            max_task_retries=max_retries,
        )
        pool_actors = [actor.remote(model, asdict(settings), code, cpus_per_worker) for _ in range(workers)]
        if on_start is not None and pool_actors:
            on_start(ray.get([a.pid.remote() for a in pool_actors]))
        results = []
        pool = ActorPool(pool_actors)
        for result in pool.map_unordered(lambda a, shard: a.run.remote(shard, str(out_dir)), shards):
            results.append(result)
            if on_result is not None:
                on_result(result)
        for a in pool_actors:
            ray.kill(a)
        return results
    finally:
        if started_here:
            ray.shutdown()
