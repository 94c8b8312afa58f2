"""Sampling throughput of the ternary models: ``vaeforge sample``'s path against a bare loop.

Both draw N operations from the same model in the same process, alternating
rounds, and the median samples per second are compared:

- bare: ``decoder(torch.randn(chunk, d)).argmax(-1)`` in a loop under ``no_grad`` (for the dual
  model, VAE-A's decoder on the first half of each chunk and VAE-B's on the rest, as it samples);
- vaeforge: :func:`vaeforge.samples.draw`, which ``vaeforge sample`` calls (``model.sample``
  in chunks of 65,536, collected on the CPU).

Printed, never asserted:

    python benchmarks/ternary_sampling.py [--model ternary_vae] [-n 1000000] [--rounds 5]

Goal: vaeforge / bare >= 0.95 (the same work, no extra copies).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vaeforge.config import load_config
from vaeforge.plugins import load_registry
from vaeforge.samples import SAMPLE_CHUNK, draw
from vaeforge_ternary.data import TernaryOps, TernaryOpsConfig

PRESET_OF_MODEL = {"ternary_vae": "ternary", "ternary_dual_vae": "ternary-dual"}


@torch.no_grad()
def bare(decoders: list[torch.nn.Module], latent_dim: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Prior draws decoded by argmax, chunk by chunk; each chunk is split evenly among ``decoders``."""
    chunks = []
    for start in range(0, n, SAMPLE_CHUNK):
        z = torch.randn(min(SAMPLE_CHUNK, n - start), latent_dim, generator=generator)
        share = -(-len(z) // len(decoders))
        chunks += [decoder(part).argmax(-1) for decoder, part in zip(decoders, z.split(share))]
    return torch.cat(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PRESET_OF_MODEL), default="ternary_vae")
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    _, registry = load_registry()
    config = load_config(PRESET_OF_MODEL[args.model], registry)
    data = TernaryOps(TernaryOpsConfig()).load()
    model = registry.build("model", config.model.name, config.model.params, data.info).eval()
    # the dual model (sample_from: both) decodes each chunk's first half with VAE-A, the rest with VAE-B
    decoders = [model.decoder] if args.model == "ternary_vae" else [model.decoder_a, model.decoder_b]
    timings: dict[str, list[float]] = {"bare": [], "vaeforge": []}
    for _ in range(args.rounds):
        for name in timings:
            generator = torch.Generator().manual_seed(0)
            start = time.perf_counter()
            if name == "bare":
                out = bare(decoders, model.latent_dim, args.n, generator)
            else:
                out = draw(model, args.n, generator)
            timings[name].append(args.n / (time.perf_counter() - start))
            assert out.shape == (args.n, 9)
    b, v = statistics.median(timings["bare"]), statistics.median(timings["vaeforge"])
    print(f"model {args.model}, N = {args.n:,}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    print(f"bare decoder(z).argmax(-1) : {b:12,.0f} samples/s (median)")
    print(f"vaeforge sample (draw)     : {v:12,.0f} samples/s (median)")
    print(f"vaeforge / bare            : {v / b:12.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
