"""rlkit against its authors' released code, update for update: ``python -m bench.fidelity --ref NAME=PATH``.

Same weights, same batches, same random draws; compare targets, each loss term, gradients and updated
parameters (:mod:`bench.fidelity.core`).  The references are local clones given on the command line, imported
from there and never copied into rlkit.  Adapters: :mod:`bench.fidelity.registry`.
"""
