"""``diag gradcheck TARGET``: check a function's gradient (and its custom VJPs) and report per layer."""

from __future__ import annotations

from diag.cli import add_command
from diag.errors import EXIT_FINDINGS, EXIT_OK, DiagInputError


def register(subparsers) -> None:
    parser = add_command(subparsers, "gradcheck", _run)
    parser.add_argument("target", metavar="TARGET", help="module:function or file.py:function returning (fn, args)")
    parser.add_argument("--directions", "-k", type=int, default=32, metavar="K",
                        help="random directions, jointly and per tensor where needed (default 32)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="precision of the check (default float64; float32 sees only gross errors)")
    parser.add_argument("--argnums", type=int, default=0, help="which of args holds the parameters (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    parser.add_argument("--threshold", type=float, default=None, help="relative error above which a check fails")
    parser.add_argument("--trace", metavar="OUT", default=None,
                        help="write check records to this trace (a new file gets a header; an existing trace is appended to)")
    parser.add_argument("--torch", action="store_true", help="treat the target as PyTorch (default: detected from the args)")
    parser.add_argument("--no-custom-vjp", action="store_true", help="skip comparing custom VJPs with autodiff (JAX)")
    parser.add_argument("--compile-cache", nargs="?", const="", default=None, metavar="DIR",
                        help="keep compiled JAX checks on disk (default folder: xla in diag's cache, $DIAG_CACHE_DIR or the user cache) so a "
                             "later run of the same check skips compilation")


def _run(args) -> int:
    """Check a function's gradients and custom VJPs against finite differences.

    Check the gradient of a JAX, Flax NNX or PyTorch function against finite differences along
    K random directions, in one compiled program, in float64 by default: JAX checks all parameter
    tensors together first (2K evaluations) and each tensor on its own only where that does not
    clear them. For JAX functions, every custom VJP is also compared with automatic
    differentiation of its primal. Reports the relative error per parameter (per layer), the
    threshold used, and the elements most responsible for a failure.

    TARGET is package.module:function or path/to/file.py:function, naming a function that takes
    no arguments and returns (fn, args):
      JAX        fn(*args) -> scalar or arrays; the gradient with respect to args[0] (a pytree of
                 parameters, e.g. {"dense1": {"w": ..., "b": ...}}) is checked (--argnums to change)
      Flax NNX   args[0] is an nnx.Module and fn(model, *args[1:]) its loss: every nnx.Param
      PyTorch    args hold tensors (args[0] a tensor or dict of tensors), or args[0] is an nn.Module
                 and fn(module, *args[1:]) its loss; detected from the types (or --torch)

    Thresholds on the relative error: 1e-6 in float64 (correct code measures ~1e-9), 2e-2 in
    float32 (only gross errors such as a sign, a transpose or a missing term show there); custom
    VJP vs autodiff: 1e-7 / 1e-3. Exit codes: 0 all checks pass, 1 a check failed, 2 bad target.

    Examples:
      diag gradcheck examples/gradcheck_target.py:target_with_bug --trace checks.jsonl
      diag gradcheck examples/gradcheck_target.py:target --compile-cache
    """
    from diag.gradcheck.target import framework_of, load_target

    if args.directions < 1:
        raise DiagInputError(f"--directions must be at least 1, got {args.directions}")
    fn, fargs, name = load_target(args.target)
    framework = "torch" if args.torch else framework_of(fn, fargs)
    if args.compile_cache is not None and framework != "torch":
        from diag.gradcheck.compile_cache import use_compile_cache

        use_compile_cache(args.compile_cache or None)
    common = dict(directions=args.directions, dtype=args.dtype, seed=args.seed, threshold=args.threshold, target=name)
    reports = []
    if framework == "torch":
        from diag.gradcheck.torch_check import check_torch, check_torch_module

        import torch

        if isinstance(fargs[0], torch.nn.Module):
            reports.append(check_torch_module(fargs[0], fn, *fargs[1:], **common))
        else:
            reports.append(check_torch(fn, *fargs, argnums=args.argnums, **common))
    elif framework == "flax":
        from diag.gradcheck.jax_check import check_model

        reports.append(check_model(fargs[0], fn, *fargs[1:], **common))
    else:
        from diag.gradcheck.custom_vjp import check_custom_vjp
        from diag.gradcheck.jax_check import check_gradients

        reports.append(check_gradients(fn, *fargs, argnums=args.argnums, **common))
        if not args.no_custom_vjp:
            vjp = check_custom_vjp(fn, *fargs, argnums=args.argnums, dtype=args.dtype, seed=args.seed, target=name)
            if vjp.results or any("cannot be differentiated" in n or "not compared" in n for n in vjp.notes):
                reports.append(vjp)
    for report in reports:
        print(report.format())
    if args.trace:
        from diag.gradcheck.records import write_check_trace

        path = write_check_trace(args.trace, *reports)
        print(f"check records written to {path}")
    return EXIT_OK if all(r.passed for r in reports) else EXIT_FINDINGS
