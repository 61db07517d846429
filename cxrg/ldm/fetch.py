"""Download the LDM's weights with huggingface_hub into the layout of weights.py.

The text encoder and tokenizer come from stabilityai/stable-diffusion-2-1-base (text_encoder/, tokenizer/).
The bundle comes from a Hugging Face repository holding the MONAI bundle's files (configs/, models/); its id
is an option because the bundle's canonical home is the MONAI model zoo (GenerativeModels), whose large
files are linked from its large_files.yml. Offline, this fails fast with one clear message.
"""

from __future__ import annotations

from pathlib import Path

from cxrg.errors import CxrgError
from cxrg.ldm.weights import BUNDLE, TEXT_REPO, TEXT_REPO_ID, WeightPaths

DEFAULT_BUNDLE_REPO = f"MONAI/{BUNDLE}"


def snapshot(repo_id: str, local_dir: Path, patterns: list[str] | None) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=repo_id, local_dir=str(local_dir), allow_patterns=patterns, etag_timeout=10)


def fetch_weights(root: Path, bundle_repo: str = DEFAULT_BUNDLE_REPO,
                  text_repo: str = TEXT_REPO_ID) -> WeightPaths:
    """Fetch what is missing under `root`; returns the paths (check `.status()`)."""
    paths = WeightPaths(root)
    jobs = []
    if not (paths.autoencoder.is_file() and paths.unet.is_file()):
        jobs.append((bundle_repo, root / BUNDLE, ["configs/*", "models/*", "LICENSE*", "docs/*"]))
    if paths.text_encoder_weights() is None:
        jobs.append((text_repo, root / TEXT_REPO, ["text_encoder/*", "tokenizer/*"]))
    for repo_id, target, patterns in jobs:
        try:
            snapshot(repo_id, target, patterns)
        except Exception as exc:
            raise CxrgError(f"could not download {repo_id}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                            where=str(target),
                            hint="this machine may be offline or the repository unavailable; place the files "
                                 "by hand as `cxrg weights status` lists them") from exc
    return paths
