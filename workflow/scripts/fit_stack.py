"""A stacked fit job: each fit's `dip fit` options (params.fits: one image and network seed each, the options
rule `fit` gives it) parsed into a request, the requests run as one batched network
(dip.request.run_stacked), then the job's manifest: every fit's folder and status."""

import shlex
import sys

sys.stderr = open(snakemake.log[0], "w")

from dip.cli import parser
from dip.image_io import save_json
from dip.request import FitRequest, run_stacked

common = ["--record-stops", "--failure-ok", "--threads", str(snakemake.threads)]
requests = [
    FitRequest.from_namespace(parser().parse_args(["fit", *shlex.split(fit), *common])) for fit in snakemake.params.fits
]
records = run_stacked(requests)
fits = [
    {"out": str(out), "seed": seed, "status": record.status}
    for request, mine in zip(requests, records)
    for record, (seed, out) in zip(mine, request.outputs())
]
save_json({"stack": records[0][0].stack, "fits": fits}, snakemake.output[0])
