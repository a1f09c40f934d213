"""Batch prediction engines beyond one process: the corpus is cut into shards of
posts, each shard is predicted by a worker and committed atomically, and the shards
are merged in order (:mod:`.shards`); :mod:`.ray_engine` runs the workers as Ray
actors on a local or remote cluster."""
