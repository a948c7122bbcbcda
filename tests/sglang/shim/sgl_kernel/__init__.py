"""Import-only stand-in for SGLang's kernel package (``sgl_kernel``), for CPUs without AMX.

NOT the kernels. SGLang imports ``sgl_kernel`` at start-up even on paths that never call it; the
kit's CPU wheel (../shared/sglang-cpu) needs AMX/AVX-512 and dies with "Illegal instruction" on
other x86 CPUs. With this package on the path instead, the real ``sglang.Engine`` runs on SGLang's
own torch-native layer paths (``attention_backend="torch_native"``): every name exists, and calling
any of them raises ``NotImplementedError`` naming the kernel, so a path that does need a kernel
fails loudly instead of computing something else. ``scripts/setup-sglang.sh`` puts this directory
on ``.venv-sglang``'s path only when the CPU has no AMX ("shim" mode); where AMX exists the kit's
real wheel is installed instead ("real kernels" mode).
"""

SHIM = True  # lets the tier say which mode it runs in


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise NotImplementedError(
            f"sgl_kernel.{name} called: this is the import-only shim (no AMX CPU "
            "kernels here); the path that called it needs the real kernel package"
        )

    missing.__name__ = name
    return missing
