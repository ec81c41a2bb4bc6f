"""The LiteRT interpreter as every host-side stage builds it: quiet, reference kernels on request, one clear error.

Used by convert (calibration, rewrite checks, bias correction), evaluate (predictions, per-layer error) and the
benchmarks. The board runner builds its own: it runs with nothing of edgecnn installed.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.errors import EdgecnnError


def make_interpreter(model: str | Path | bytes, threads: int = 2, preserve_all: bool = False, delegate=True):
    """A LiteRT interpreter (not allocated) of a path or bytes, LiteRT's start-up line silenced; `delegate=False`
    (or `preserve_all`, which needs it) runs the builtin reference kernels only. One clear error if it cannot load."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgecnn._tf import silenced_fd

    kw = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    if preserve_all or not delegate:
        kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with silenced_fd(2):
            return Interpreter(num_threads=threads, experimental_preserve_all_tensors=preserve_all, **kw)
    except (ValueError, RuntimeError) as exc:
        name = "model bytes" if "model_content" in kw else kw["model_path"]
        raise EdgecnnError(f"{name}: LiteRT cannot load it ({str(exc).splitlines()[0][:200]})") from None


def allocate(interp) -> None:
    """allocate_tensors without the "Created TensorFlow Lite XNNPACK delegate" line LiteRT prints from C++."""
    from edgecnn._tf import silenced_fd

    with silenced_fd(2):
        interp.allocate_tensors()
