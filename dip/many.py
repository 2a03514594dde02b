"""Several images in one `dip fit`: ``--image a.png b.png`` or ``--image photos/`` (``--observed`` likewise)
restores each image as its own fit into ``OUT/<name>/`` (the file's name without its suffix), with its
own record, as ``dip fit --image a.png --out OUT/a`` would.

The loop over images sits outside a fit: one `FitRequest` per image (`dataclasses.replace` of the command's
request), each run by `dip.request.run_fit`, which holds its folder while it runs. The whole of ``OUT`` is
held for the batch too (dip.folders), so a second batch into the same folder is refused at once.

What is checked before any fitting: every named file exists, every folder holds images, no two images
share a name (their results would share a folder), and the options themselves (an error that names no
image file is the options' own, and refuses the command). A single image that cannot be restored (too
small, unreadable, its fit failed) is reported in one line and the others are done; the command then
exits 2. ``--failure-ok`` keeps a diverged fit's record, as for one image, and does not count against
the exit status.

With ``--stack N`` (`restore_many`'s `stack`) up to N images of the same size and channel count are fitted
together as one batched network (`dip.request.run_stacked`): every (image, network seed) one fit of the
batch, each with its own weights, stopping, backtracking and record, written where the unstacked command
writes it. Images are stacked in the order given, those of another size in stacks of their own (`stacks`).

Example::

    from dip.many import restore_many
    from dip.request import FitRequest

    outcomes = restore_many(FitRequest(task="denoise", sigma=25, image="photos/a.png", out="runs"),
                            ["photos/a.png", "photos/b.png"])
    [o.out for o in outcomes]        # [PosixPath('runs/a'), PosixPath('runs/b')]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from dip.image_io import InputError
from dip.record import FitRecord, printed_line
from dip.request import FitRequest, log_line

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""The files a folder given as --image or --observed contributes: those dip.image_io reads (Pillow and
tifffile), by suffix, in any case; hidden files are skipped."""


@dataclass
class Outcome:
    """One image of a batch: where its fit went, the records written (one per network seed; none if the
    image failed before fitting) and why it failed, if it did."""

    image: Path
    out: Path
    records: list[FitRecord] = field(default_factory=list)
    error: str | None = None
    folders: dict[int, Path] = field(default_factory=dict)  # each network seed's own folder (FitRequest.outputs)

    def folder(self, record: FitRecord) -> Path:
        """The folder of one of the image's fits (``OUT/<name>/seed3`` with --seeds; ``out`` if not known)."""
        return self.folders.get(record.seed, self.out)

    @property
    def failed(self) -> bool:
        """Not restored: refused, or every fit of it failed (a failed record kept under --failure-ok)."""
        return self.error is not None or not self.records or all(r.status != "ok" for r in self.records)

    def line(self) -> str:
        """What the progress line says after the image's name."""
        if self.error is not None:
            return f"failed: {self.error}"
        ok = [r for r in self.records if r.status == "ok"]
        if not ok:
            return f"failed (recorded in {self.out}): {self.records[0].error}"
        scored = [r for r in ok if r.psnr_restored is not None]
        if not scored:
            return f"restored in {ok[0].seconds:.0f} s (no ground truth), {self.folder(ok[0])}"
        best = max(scored, key=lambda r: r.psnr_restored)
        observed = ok[0].psnr_observed
        before = f" (observed {observed:.2f} dB)" if observed is not None else ""
        seeds = f", the best of {len(self.records)} seeds" if len(self.records) > 1 else ""
        return f"{best.psnr_restored:.2f} dB{before}{seeds}, {self.folder(best)}"


def images(paths: Sequence[str | Path], option: str = "--image") -> list[Path]:
    """The image files that `paths` name: files as given, folders as their images (SUFFIXES) sorted by
    name.

    :raises InputError: one line: a path that does not exist, a folder without images, or two images with
        the same name (file name without suffix), whose results would share a folder.
    """
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            inside = sorted(
                p
                for p in given.iterdir()
                if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
            )
            if not inside:
                raise InputError(f"{option} {given}: the folder holds no images ({', '.join(SUFFIXES)})")
            found += inside
        elif not given.exists():
            raise InputError(f"{given}: file not found")
        else:
            found.append(given)
    seen: dict[str, Path] = {}
    for path in found:
        if path.stem in seen:
            raise InputError(
                f"{option}: {seen[path.stem]} and {path} have the same name {path.stem!r}; each image is restored "
                f"into OUT/<name>, so rename one"
            )
        seen[path.stem] = path
    return found


def requests(base: FitRequest, paths: Sequence[Path]) -> list[FitRequest]:
    """One request per image: `base` with its image (or observation) and ``out/<name>``; without the
    per-iteration progress (a batch shows one line per image)."""
    key = "image" if base.image else "observed"
    return [replace(base, **{key: str(p)}, out=str(Path(base.out) / p.stem), progress=False) for p in paths]


def stacks(sizes: dict, n: int) -> list[list]:
    """The keys of `sizes` (an image's id → its size, any value) in stacks of at most `n` images of one
    size: the keys of each size in their order, cut into chunks of `n`; sizes in order of first appearance.

    >>> stacks({"a": (32, 32, 3), "b": (64, 64, 3), "c": (32, 32, 3), "d": (32, 32, 3)}, 2)
    [['a', 'c'], ['d'], ['b']]
    """
    groups: dict = {}
    for key, size in sizes.items():
        groups.setdefault(size, []).append(key)
    return [keys[i : i + n] for keys in groups.values() for i in range(0, len(keys), n)]


def restore_many(
    base: FitRequest,
    paths: Sequence[str | Path],
    log: Callable[[str], None] = log_line,
    done: Callable[[Outcome], None] | None = None,
    stack: int = 1,
) -> list[Outcome]:
    """Restore each image of `paths` as `base` restores one (see the module's docstring).

    :param base: the request for one image; its image (or observed) is replaced by each of `paths`, its
        out by ``out/<name>``.
    :param log: where the fits' messages and the progress lines ``[3/10] name: ...`` go.
    :param done: called with each image's outcome as soon as it is known.
    :param stack: fit up to this many images of one size as one batched network (1: one after another).
    :returns: one outcome per image, in order of their fits.
    :raises InputError: before any fitting, for bad paths (`images`) or bad options (and options that
        cannot be stacked, `dip.request.run_stacked`); or ``out`` in use by a running fit.
    """
    from dip.folders import hold
    from dip.request import run_stacked

    option = "--image" if base.image else "--observed"
    paths = images(paths, option)
    _refuse_per_image_files(base, option)
    batch = dict(zip(paths, requests(base, paths)))
    refused, sizes = _check_each(list(batch.values()), paths, log)
    if stack == 1:
        groups = [[p] for p in paths]
    else:
        groups = stacks({p: sizes.get(p) for p in paths}, stack)  # the refused ones in a group of their own
        largest = max((g for g in groups if g[0] not in refused), key=len, default=[])
        _check_stacking([batch[p] for p in largest], log)
        described = [
            f"[{', '.join(p.name for p in g)}] {'x'.join(map(str, sizes[g[0]]))}" for g in groups if g[0] in sizes
        ]
        if len({sizes[p] for p in sizes}) > 1:
            apart = "; ".join(described)
            log(f"--stack {stack}: images of different sizes or channel counts are stacked apart: {apart}")
    outcomes = []
    with hold([] if "{seed}" in base.out else [base.out]):
        for group in groups:
            run = [p for p in group if p not in refused]
            results: list = [[] for _ in run]
            error = None
            try:
                if run:
                    results = run_stacked([batch[p] for p in run], log)
            except InputError as err:
                error = str(err)
            except (RuntimeError, ValueError, OSError) as err:  # these images' trouble, not the batch's
                error = f"{type(err).__name__}: {err}"
            found = dict(zip(run, results))
            for path in group:
                folders = dict(batch[path].outputs())
                outcome = Outcome(path, Path(batch[path].out), error=refused.get(path) or error, folders=folders)
                if outcome.error is None:
                    outcome.records = found[path]
                log(f"[{len(outcomes) + 1}/{len(paths)}] {path.name}: {outcome.line()}")
                if done is not None:
                    done(outcome)
                outcomes.append(outcome)
    return outcomes


def _check_stacking(largest: list[FitRequest], log: Callable[[str], None]) -> None:
    """What cannot be stacked, refused in one line before any fitting: `dip.request.run_stacked`'s checks of
    the options (on two images of the `largest` stack) and of the memory that stack needs."""
    from dip.request import _check_stack, _resolve

    if len(largest) > 1:
        jobs = [_resolve(r, log) for r in largest[:2]]
        _check_stack(jobs, len(jobs[0].fitted) * len(largest))


def _refuse_per_image_files(base: FitRequest, option: str) -> None:
    """Files that belong to one image (a ground truth, a flash photograph) cannot serve several."""
    for name, given in (("--clean", base.clean), ("--flash", base.flash)):
        if given:
            raise InputError(f"{name}: belongs to one image; restore several images ({option}) without it")


def _check_each(
    batch: list[FitRequest], paths: list[Path], log: Callable[[str], None]
) -> tuple[dict[Path, str], dict[Path, tuple]]:
    """Resolve every image's request (options, file headers; nothing is fitted or written): the images
    that cannot be restored and why, and the size (H, W, channels) each other image is fitted at. An error
    that names no image file is the options' own: raised."""
    from dip.request import _resolve  # the checks of one fit, as run_fit makes them

    refused, sizes = {}, {}
    for path, request in zip(paths, batch):
        try:
            plan = _resolve(request, log).plan
            sizes[path] = (plan["height"], plan["width"], plan["channels"])
        except InputError as err:
            if str(path) not in str(err):
                raise
            refused[path] = str(err)
    return refused, sizes


def _stacked_plans(base: FitRequest, paths: list[Path], stack: int) -> dict[Path, dict | InputError]:
    """`--dry-run --stack N`: for each image fitted with others, its stack (the images, the fits of the one
    network) and the memory plan of the whole stack, which replaces the image's own; or why the stack would
    be refused. The time fields stay those of the image's own fits, timed alone."""
    from dip.request import _check_stack, _resolve

    def quiet(line: str) -> None:  # the fits' messages belong to the real run
        pass

    batch = dict(zip(paths, requests(base, paths)))
    refused, sizes = _check_each(list(batch.values()), paths, quiet)
    plans: dict[Path, dict | InputError] = {}
    for group in stacks({p: sizes.get(p) for p in paths}, stack):
        run = [p for p in group if p not in refused]
        if len(run) < 2:
            continue
        jobs = [_resolve(batch[p], quiet) for p in run]
        fits = sum(len(job.fitted) for job in jobs)
        try:
            plan = {**_check_stack(jobs, fits), "fits": fits, "stack": [str(p) for p in run]}
            plan["estimated_minutes"] = None  # timed for one image's fits; the stack's iteration is longer
        except InputError as err:
            plan = err
        plans.update(dict.fromkeys(run, plan))
    return plans


def main(args: argparse.Namespace, paths: list[Path]) -> int:
    """`dip fit` with several images (the namespace's --image or --observed as given; `paths` its files):
    one JSON line per fit on stdout (with its "image"), one progress line per image and a summary on
    stderr. Returns 0, or 2 if an image failed."""
    from dip.request import plan_fit
    from dip.strict_json import dumps

    option = "image" if args.image else "observed"
    base = FitRequest.from_namespace(argparse.Namespace(**{**vars(args), option: str(paths[0])}))
    if args.dry_run:
        failed = 0
        stacked = _stacked_plans(base, paths, args.stack) if args.stack > 1 else {}
        for path, request in zip(paths, requests(base, paths)):
            try:
                plan = plan_fit(request)
                if isinstance(stacked.get(path), InputError):
                    raise stacked[path]
                print(dumps({"image": str(path), **plan, **stacked.get(path, {})}), flush=True)
            except InputError as err:
                failed += 1
                print(f"dip fit: {path}: {err}", file=sys.stderr)
        return 2 if failed else 0

    def done(outcome: Outcome) -> None:
        for record in outcome.records:
            line = printed_line(record, outcome.folder(record))
            print(dumps({"image": str(outcome.image), **line, "status": record.status}))
        sys.stdout.flush()

    outcomes = restore_many(base, paths, done=done, stack=args.stack)
    failed = [o for o in outcomes if o.failed]
    counted = [o for o in failed if o.error is not None or not base.failure_ok]
    names = ", ".join(o.image.name for o in failed)
    print(
        f"dip fit: {len(outcomes)} images: {len(outcomes) - len(failed)} restored, {len(failed)} failed"
        + (f" ({names})" if failed else ""),
        file=sys.stderr,
    )
    return 2 if counted else 0


class OneOrMore(argparse.Action):
    """An argparse action for ``nargs="+"``: one value is stored as it is (a string, what one fit reads),
    several as a list (several images)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0] if len(values) == 1 else list(values))


def inputs(args: argparse.Namespace) -> list[Path] | None:
    """`dip fit`'s --image/--observed (`OneOrMore`): None for one file, the one fit it always was; else
    the image files (`images`) of the files and folders given."""
    given = [(name, getattr(args, name)) for name in ("image", "observed") if getattr(args, name)]
    if len(given) != 1:  # none or both: the one fit's own error ("give exactly one of ...")
        for name, value in given:
            setattr(args, name, value if isinstance(value, str) else " ".join(value))
        return None
    name, value = given[0]
    if isinstance(value, str) and not Path(value).is_dir():
        return None
    return images([value] if isinstance(value, str) else value, f"--{name}")
