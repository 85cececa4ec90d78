"""Build the profile kernel's passes ahead of time: `python -m core.kernel_build` (`make kernel`).

numba's ahead-of-time compiler turns core/kernel_passes.py into the extension module
core/_kernel_passes_aot (a C compiler is needed once, for linking). It carries the digest of
the source it was built from: `load_passes` returns it only while that matches, and otherwise
the same functions compiled just in time, so a stale build never runs old code.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
import warnings
from pathlib import Path

MODULE = "_kernel_passes_aot"
SOURCE = Path(__file__).with_name("kernel_passes.py")


def source_digest() -> int:
    """A 63-bit digest of kernel_passes.py: what a build was made from."""
    return int.from_bytes(hashlib.sha256(SOURCE.read_bytes()).digest()[:8], "big") >> 1


def load_passes():
    """(module, "aot") when the ahead-of-time build matches kernel_passes.py, else (kernel_passes, "jit")."""
    try:
        from core import _kernel_passes_aot as built
    except ImportError:
        built = None
    if built is not None and built.source_digest() == source_digest():
        return built, "aot"
    from core import kernel_passes

    return kernel_passes, "jit"


def built_digest(output_dir: Path = SOURCE.parent) -> int | None:
    """The digest the build in `output_dir` was made from, or None when there is none."""
    import importlib.util

    for path in sorted(output_dir.glob(f"{MODULE}.*.so")):
        spec = importlib.util.spec_from_file_location(MODULE, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ImportError:
            continue
        return int(module.source_digest())
    return None


def build(output_dir: Path = SOURCE.parent) -> Path:
    """Compile every function of kernel_passes.SIGNATURES into `output_dir`/_kernel_passes_aot.*.so."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
        from numba.pycc import CC

        from core import kernel_passes

        compiler = CC(MODULE)
        compiler.output_dir = str(output_dir)
        compiler.verbose = False
        compiler.target_cpu = "x86-64-v3"  # built where it runs (make), as the JIT would; generic x86-64 ran at half speed
        for name, signature in kernel_passes.SIGNATURES.items():
            compiler.export(name, signature)(getattr(kernel_passes, name).py_func)
        digest = source_digest()
        compiler.export("source_digest", "i8()")(lambda: digest)
        compiler.compile()
    built = sorted(Path(output_dir).glob(f"{MODULE}.*.so"))
    if not built:
        raise RuntimeError(f"numba's compiler wrote no {MODULE} module into {output_dir}")
    return built[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.kernel_build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=SOURCE.parent)
    parser.add_argument("--force", action="store_true", help="build even when the build is up to date")
    args = parser.parse_args(argv)
    if not args.force and built_digest(args.output_dir) == source_digest():
        print(f"{MODULE} is up to date")
        return 0
    try:
        path = build(args.output_dir)
    except Exception as error:  # noqa: BLE001  (no compiler, or a numba without pycc: the JIT still works)
        print(f"core.kernel_build: not built ({type(error).__name__}: {error}); the numeric kernel will be "
              "compiled just in time instead (slower start, ~130 MiB more memory)", file=sys.stderr)
        return 1
    print(f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
