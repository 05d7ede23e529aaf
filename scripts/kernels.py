"""The CPU kernel settings of the reference matrix, and whether each changes floating-point results here.

Usage:
  python scripts/kernels.py exports KERNEL        shell lines that select KERNEL, clearing the others (seed_run.sh evals them)
  python scripts/kernels.py fingerprint           the float fingerprint of this process's kernels (JSON)
  python scripts/kernels.py compare [KERNEL ...]  each setting's fingerprint, side by side (default: all)

Why: the bands hold on any CPU only if the runs behind them differ in their kernels as well as
their seeds (issue 13), and a setting can silently change nothing. On a 2-core AVX-512 AMD EPYC,
``MKL_CBWR=AVX`` gave the same pre-trained weights bit for bit as the native kernels, while the
AVX2 setting changed them. The fingerprint runs, forward and backward, the kinds of operations the
embedded SOHO model runs (a convolution, a BERT-sized matmul, softmax, GELU, layer norm, a long
sum) on seeded inputs, so runs at different commits stay comparable; the same fingerprint means
the same results for those operations, not for every operation of a training run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

# Each setting's environment. avx2: an AVX2 CPU's kernels on an AVX-512 one; avx: MKL's AVX code
# path (for AVX2 CPUs); one-thread: one torch thread, other reduction orders.
KERNELS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx": {"MKL_CBWR": "AVX"},
    "one-thread": {"OMP_NUM_THREADS": "1"},
}


KERNEL_VARIABLES = sorted({key for env in KERNELS.values() for key in env})  # cleared before a setting applies


def kernel_env(kernel: str) -> dict[str, str]:
    """The variables that select ``kernel``; an unknown name is refused, naming the known ones."""
    if kernel not in KERNELS:
        raise SystemExit(f"error: kernels.py: unknown KERNEL '{kernel}' ({', '.join(KERNELS)})")
    return KERNELS[kernel]


def fingerprint() -> dict:
    """A hash of seeded forward and backward passes through the model's kinds of operations."""
    import torch  # only here: `exports` runs before the environment has torch

    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).requires_grad_()

    pixels, conv = randn(8, 64, 18, 18), randn(64, 64, 3, 3)  # a ResNet stage
    tokens, ffn = randn(8 * 33, 384), randn(384, 1536)  # BERT-sized hidden states, feed-forward
    feature = torch.nn.functional.conv2d(pixels, conv, padding=1)  # (8, 64, 18, 18)
    hidden = torch.nn.functional.gelu(tokens @ ffn)  # (264, 1536)
    normed = torch.nn.functional.layer_norm(hidden, (1536,))
    attention = torch.softmax(normed[:, :264] @ normed[:, :264].T / 8, dim=-1)  # (264, 264)
    loss = feature.square().mean() + (attention @ normed).sum() + hidden.exp().clamp(max=1e4).sum()
    loss.backward()
    digest = hashlib.sha256()
    for tensor in (loss, feature, attention, pixels.grad, conv.grad, tokens.grad, ffn.grad):
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return {
        "fingerprint": digest.hexdigest()[:16],
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }


def compare(kernels: list[str]) -> list[dict]:
    """Each setting's fingerprint, from a fresh process (the variables are read at start-up)."""
    rows = []
    for kernel in kernels:
        env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARIABLES} | kernel_env(kernel)
        done = subprocess.run(
            [sys.executable, __file__, "fingerprint"], env=env, capture_output=True, text=True, check=True
        )
        rows.append({"kernel": kernel, **json.loads(done.stdout)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("exports").add_argument("kernel")
    commands.add_parser("fingerprint")
    commands.add_parser("compare").add_argument("kernels", nargs="*", default=list(KERNELS))
    args = parser.parse_args()
    if args.command == "exports":
        chosen = kernel_env(args.kernel)  # the caller's own settings must not leak into `native`
        print(f"unset {' '.join(KERNEL_VARIABLES)}")
        print("".join(f"export {key}={value}\n" for key, value in chosen.items()), end="")
    elif args.command == "fingerprint":
        print(json.dumps(fingerprint()))
    else:
        rows = compare(args.kernels)
        native = next((row["fingerprint"] for row in rows if row["kernel"] == "native"), None)
        for row in rows:
            same = (
                " (the same results as native here)"
                if row["kernel"] != "native" and row["fingerprint"] == native
                else ""
            )
            print(
                f"{row['kernel']:<11} {row['fingerprint']}  {row['torch_cpu_capability']}, {row['torch_threads']} threads{same}"
            )


if __name__ == "__main__":
    main()
