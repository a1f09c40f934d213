"""Where the project keeps large things outside the work tree: converted weights, the
teacher's replies, the seed runner's models. One place, one environment variable."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$MULCOT_CACHE`` (default ``~/.cache/spacy-mulcot``). It usually survives on the
    same machine; nothing may depend on it."""
    return Path(os.environ.get("MULCOT_CACHE") or Path.home() / ".cache" / "spacy-mulcot")
