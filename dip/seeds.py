"""One seed, one independent random stream per purpose: the only place in the package that seeds.

A fit is fixed by two integers. The *observation seed* fixes what the degradation draws (the noise,
a random pixel-drop mask); the *network seed* fixes the network's initial weights, its input z,
the per-iteration perturbation of z, which observed pixels the fit holds out of its loss (the
`holdout` stopping rule's validation pixels), the Monte-Carlo probe of the SURE/PURE data term's
divergence (`divergence`, dip.risk) and the network seeds of an ensemble's other members (`ensemble`,
`ensemble_seeds`). Each (seed, purpose) pair becomes its own generator seed through
NumPy's `SeedSequence`: the seed is the entropy and the purpose's index the spawn key, which is what
`SeedSequence(seed).spawn(5)[index]` yields:

    observation -> SeedSequence(seed, spawn_key=(0,))     weights      -> SeedSequence(seed, spawn_key=(1,))
    input       -> SeedSequence(seed, spawn_key=(2,))     perturbation -> SeedSequence(seed, spawn_key=(3,))
    holdout     -> SeedSequence(seed, spawn_key=(4,))     divergence   -> SeedSequence(seed, spawn_key=(5,))
    ensemble    -> SeedSequence(seed, spawn_key=(6,))

and the generator is seeded with the first 64-bit word of that sequence's state (a purpose is only ever
appended, so adding one leaves every earlier stream, and result, as it was). So the purposes
of one seed never share a stream, and neither do the observation of seed S and the network of the same
seed S: the network cannot be handed the noise it is asked not to fit. (Drawing the noise and z from
two generators seeded alike did exactly that: torch's normal sampler turns the very uniforms that make
z into the noise, and denoising lost 1-2.5 dB.)

torch's CPU generator (a Mersenne Twister) keeps only the low 32 bits of its seed; the tests check
that the streams of one seed differ there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

PURPOSES = ("observation", "weights", "input", "perturbation", "holdout", "divergence", "ensemble")
SCHEME = "seedsequence-v1"  # recorded in every result's config hash: a changed scheme is a new result


def stream_seed(seed: int, purpose: str) -> int:
    """The 64-bit generator seed of one purpose of `seed` (see the module docstring)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random stream {purpose!r}; choose one of {', '.join(PURPOSES)}")
    if int(seed) < 0:
        raise ValueError(f"seeds must be >= 0, got {seed}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(PURPOSES.index(purpose),))
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def generator(seed: int, purpose: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator on `device` drawing the `purpose` stream of `seed`."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, purpose))


@contextmanager
def weights_stream(seed: int) -> Iterator[None]:
    """Build networks inside this block to draw their initial weights from the `weights` stream of `seed`.

    torch's layer initialisers draw from the global generator and take none of their own, so the
    global CPU generator is seeded here, inside `fork_rng`, and left as it was afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, "weights"))
        yield


def ensemble_seeds(seed: int, members: int) -> list[int]:
    """The network seeds of an ensemble of `members` fits of network seed `seed`: `seed` itself first (so
    that the ensemble's first member is the plain fit of that seed), then `members` − 1 distinct seeds drawn
    from the `ensemble` stream of `seed` (32-bit words of its SeedSequence, each distinct from `seed` and
    from one another). Each member then draws its own streams from its own seed, so no two members, and no
    member and another purpose of `seed`, share a generator.

    :param seed: the network seed, >= 0.
    :param members: how many fits the ensemble averages, >= 1.
    :returns: a list of `members` distinct integers >= 0, the first being `seed`.
    :raises ValueError: a negative seed or fewer than one member.
    """
    if int(seed) < 0:
        raise ValueError(f"seeds must be >= 0, got {seed}")
    if int(members) < 1:
        raise ValueError(f"an ensemble has at least 1 member, got {members}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(PURPOSES.index("ensemble"),))
    chosen, words = [int(seed)], 4 * int(members) + 8
    # Distinct words are all but certain; drawing more than needed makes a repeat harmless.
    for word in sequence.generate_state(words, dtype=np.uint32):
        if len(chosen) == members:
            break
        if int(word) not in chosen:
            chosen.append(int(word))
    return chosen
