"""Short, stable hashes of the parameters that shape an artifact."""
import hashlib
import json


def param_hash(params: dict, length: int = 10) -> str:
    """sha1 of the canonical JSON of `params` (sorted keys), first `length` hex digits."""
    text = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:length]
