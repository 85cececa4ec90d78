"""Build compiled kernels ahead of time: `python -m core.kernel_build [MODULE ...]` (`make kernel`).

A kernel module is numba code with a `SIGNATURES` dict (function name -> numba signature):
core.kernel_passes (the profile kernel) and checks._cdf_kernels (Wasserstein scores). numba's
ahead-of-time compiler turns each into an extension module beside it, `_<name>_aot` (a C
compiler is needed once, for linking), which imports neither numba nor LLVM: a process saves
~0.6 s and ~130-160 MiB. A build carries the digest of what it was made from (the kernel's
source and this recipe); `load` returns it only while that matches, and otherwise the module
itself, compiled just in time by numba, so a stale build never runs old code.

Like the just-in-time functions (`nogil=True`), the built ones release the GIL while they run.
numba's ahead-of-time compiler does not do that by itself, and without it the profile kernel's
two workers took turns on the GIL in every compiled pass.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import platform
import sys
import warnings
from pathlib import Path
from types import ModuleType

PROFILE_KERNEL = "core.kernel_passes"


def _locate(module: str) -> tuple[Path, str, str]:
    """(source file, package, name of the ahead-of-time module) of a kernel module, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no kernel module {module}")
    source = Path(spec.origin)
    return source, module.rpartition(".")[0], f"_{source.stem.lstrip('_')}_aot"


def source_digest(module: str = PROFILE_KERNEL) -> int:
    """A 63-bit digest of what a build is made from: the kernel module's source and this recipe."""
    made_from = _locate(module)[0].read_bytes() + b"\0" + Path(__file__).read_bytes()
    return int.from_bytes(hashlib.sha256(made_from).digest()[:8], "big") >> 1


def ahead_of_time(module: str = PROFILE_KERNEL) -> ModuleType | None:
    """The ahead-of-time build of `module` if there is one made from its current source."""
    _, package, name = _locate(module)
    try:
        built = importlib.import_module(f"{package}.{name}")
    except ImportError:
        return None
    return built if built.source_digest() == source_digest(module) else None


def load(module: str = PROFILE_KERNEL) -> tuple[ModuleType, str]:
    """(the ahead-of-time build, "aot") when it matches the source, else (the module itself, "jit")."""
    built = ahead_of_time(module)
    if built is not None:
        return built, "aot"
    return importlib.import_module(module), "jit"


def built_digest(module: str = PROFILE_KERNEL, output_dir: Path | None = None) -> int | None:
    """The digest the build of `module` in `output_dir` (default: beside it) was made from, or None."""
    source, _, name = _locate(module)
    for path in sorted((output_dir or source.parent).glob(f"{name}.*.so")):
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            continue
        built = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(built)
        except ImportError:
            continue
        return int(built.source_digest())
    return None


def build(module: str = PROFILE_KERNEL, output_dir: Path | None = None) -> Path:
    """Compile every function of the module's SIGNATURES into `output_dir` (default: beside it)."""
    source, _, name = _locate(module)
    output_dir = Path(output_dir or source.parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
        from numba.pycc import CC

        kernels = importlib.import_module(module)
        compiler = CC(name)
        compiler.output_dir = str(output_dir)
        compiler.verbose = False
        # SSE4.2 (every x86-64 CPU since 2009): generic x86-64 code ran at half speed, and "host" would
        # tie the build to this CPU. Elsewhere (arm64) the build targets the machine it is made on.
        compiler.target_cpu = "x86-64-v2" if platform.machine().lower() in ("x86_64", "amd64") else "host"
        for function, signature in kernels.SIGNATURES.items():
            compiler.export(function, signature)(getattr(kernels, function).py_func)
        digest = source_digest(module)
        compiler.export("source_digest", "i8()")(lambda: digest)
        with _releasing_the_gil():
            compiler.compile()
    built = sorted(output_dir.glob(f"{name}.*.so"))
    if not built:
        raise RuntimeError(f"numba's compiler wrote no {name} module into {output_dir}")
    return built[-1]


@contextlib.contextmanager
def _releasing_the_gil():
    """Within: numba's ahead-of-time compiler wraps each function so that it releases the GIL while
    it runs, as `nogil=True` does for the JIT (pycc compiles with default flags, which hold it)."""
    from numba.pycc import compiler as pycc_compiler

    default_flags = pycc_compiler.Flags

    class ReleasingFlags(default_flags):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = ReleasingFlags
    try:
        yield
    finally:
        pycc_compiler.Flags = default_flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.kernel_build", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=[PROFILE_KERNEL], help="kernel modules (dotted names)")
    parser.add_argument("--force", action="store_true", help="build even when a build is up to date")
    args = parser.parse_args(argv)
    failed = 0
    for module in args.modules:
        if not args.force and built_digest(module) == source_digest(module):
            print(f"{module}: up to date")
            continue
        try:
            path = build(module)
        except Exception as error:  # noqa: BLE001  (no compiler, or a numba without pycc: the JIT still works)
            print(f"core.kernel_build: {module} not built ({type(error).__name__}: {error}); it will be compiled "
                  "just in time instead (a slower start, ~130 MiB more memory)", file=sys.stderr)
            failed = 1
            continue
        print(f"{module}: built {path}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
