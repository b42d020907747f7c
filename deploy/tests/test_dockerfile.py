"""The Dockerfile cannot be built here (no Docker engine), so these check what can be checked
without one: hadolint's lint, that every path it copies from the build context exists and is
not excluded by .dockerignore, that its versions agree with the Makefile's, and that the model
it serves by default is in the repository."""
import fnmatch
import re
import shlex
import subprocess

from deploytools import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions():
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def arg_defaults():
    args = {}
    for word, rest in instructions():
        if word == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args.setdefault(name, value)
    return args


def expand(text, args):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], text)


def context_sources():
    """Every source path of COPY/ADD that reads the build context (not --from a stage)."""
    args = arg_defaults()
    sources = []
    for word, rest in instructions():
        if word not in ("COPY", "ADD"):
            continue
        parts = shlex.split(rest)
        flags = [p for p in parts if p.startswith("--")]
        paths = [p for p in parts if not p.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        sources += [expand(p, args) for p in paths[:-1]]
    return sources


def dockerignore_excludes(path):
    """Docker's rule, for the patterns used here: the last matching pattern wins, a pattern
    matches the path or any folder above it, `!` re-includes."""
    excluded = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(p.split("/")[-1], pattern[3:]) for p in prefixes)
        else:
            hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_hadolint_passes():
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_path_exists_and_is_in_the_build_context():
    sources = context_sources()
    assert "Cargo.lock" in sources and "models/" in sources, sources
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
        assert not dockerignore_excludes(source), f"Dockerfile copies {source}, which .dockerignore excludes"


def test_cargo_declared_targets_are_copied():
    """cargo refuses a manifest whose declared [[bench]]/[[bin]] files are missing."""
    sources = {s.rstrip("/") for s in context_sources()}
    for path in re.findall(r'^path\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M):
        assert any(path == s or path.startswith(s + "/") for s in sources), f"{path} not copied into the build stage"


def test_build_script_and_its_inputs_are_copied():
    """build.rs compiles proto/ (gRPC); the build stage needs both when they exist."""
    sources = {s.rstrip("/") for s in context_sources()}
    for path in ("build.rs", "proto"):
        if (ROOT / path).exists():
            assert path in sources, f"{path} exists but the Dockerfile does not copy it"


def test_onnx_runtime_version_matches_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^ORT_VERSION\s*:=\s*(\S+)", makefile, re.M).group(1) == arg_defaults()["ORT_VERSION"]


def test_runs_as_non_root_with_a_healthcheck_on_ready():
    words = dict(instructions())
    assert words["USER"].split(":")[0] not in ("0", "root")
    assert "healthcheck.sh" in words["HEALTHCHECK"]
    assert "/ready" in (ROOT / "deploy/docker/healthcheck.sh").read_text()


DEFAULT_MODEL = re.search(r"MODEL_DIR=/app/models/(\S+)", DOCKERFILE.read_text()).group(1)


def test_default_model_folder_is_in_the_repository():
    folder = ROOT / "models" / DEFAULT_MODEL
    for name in ("model.onnx", "tokenizer.json", "manifest.json"):
        assert (folder / name).is_file(), f"{folder / name} missing"
    assert not dockerignore_excludes(f"models/{DEFAULT_MODEL}/model.onnx")
