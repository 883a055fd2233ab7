"""Put cdk-python's generated bindings (cdk/cdk.py) into a virtualenv that lacks them.

cdk-python 0.14.2rc5's Linux wheels ship the native library (libcdk_ffi.so) and
cdk/__init__.py but not the UniFFI-generated cdk/cdk.py that __init__ imports; the macOS
wheel of the same release carries it, and the file is platform-neutral (it loads
lib<name>.so on Linux). This script downloads that wheel with pip, takes cdk/cdk.py out,
checks it against the pinned SHA-256 and writes it next to the installed package.

    python deploy/cashu/supply_cdk_py.py [--python .venv/bin/python]

Idempotent: nothing is downloaded when the installed file already has the pinned hash.
Stdlib only; it runs pip of the target interpreter.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.14.2rc5"
WHEEL_PLATFORM = "macosx_11_0_universal2"
CDK_PY_SHA256 = "75ae8724926592dbe87852f9d9cb15308692edbf7f633438dc5ab15a99e9d003"
WHEEL_SHA256 = "e70052a9a47bf1d6669f803eb79dac33d37c56f811ebc7a0702ef5ac069e20bf"


def fail(message: str) -> None:
    print(f"!!! supply_cdk_py: {message}", file=sys.stderr)
    sys.exit(1)


def package_dir(python: str) -> Path:
    out = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u; print(u.find_spec('cdk').submodule_search_locations[0])",
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        fail(f"cdk-python is not installed for {python}: pip install 'cdk-python=={VERSION}' first")
    return Path(out.stdout.strip())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the virtualenv's python")
    args = parser.parse_args()
    target = package_dir(args.python) / "cdk.py"
    if target.exists() and sha256(target) == CDK_PY_SHA256:
        return
    py_tag = subprocess.run(
        [args.python, "-c", "import sys; print(f'{sys.version_info[0]}{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(
            [
                args.python, "-m", "pip", "download", "--quiet", "--no-deps",
                "--only-binary=:all:", "--platform", WHEEL_PLATFORM,
                "--python-version", py_tag, "--dest", tmp, f"cdk-python=={VERSION}",
            ],
        )  # fmt: skip
        wheels = list(Path(tmp).glob("cdk_python-*.whl"))
        if got.returncode != 0 or len(wheels) != 1:
            fail(
                f"could not download the {WHEEL_PLATFORM} wheel of cdk-python {VERSION} "
                "(PyPI reachable?)"
            )
        if py_tag == "311" and sha256(wheels[0]) != WHEEL_SHA256:
            fail(
                f"the downloaded wheel's SHA-256 is {sha256(wheels[0])}, expected "
                f"{WHEEL_SHA256}: the release on PyPI changed. Check it, then update both "
                "pins in deploy/cashu/supply_cdk_py.py"
            )
        with zipfile.ZipFile(wheels[0]) as whl:
            data = whl.read("cdk/cdk.py")
    if hashlib.sha256(data).hexdigest() != CDK_PY_SHA256:
        fail(
            f"cdk/cdk.py from the wheel has SHA-256 {hashlib.sha256(data).hexdigest()}, "
            f"expected {CDK_PY_SHA256}: refusing to install unverified bindings. If "
            "cdk-python was re-released, review the file and update CDK_PY_SHA256"
        )
    target.write_bytes(data)
    print(f">>> cdk/cdk.py {VERSION} supplied to {target}")


if __name__ == "__main__":
    main()
