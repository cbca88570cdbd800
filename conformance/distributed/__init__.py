"""Sharded and distributed AdamW: torch.distributed strategies, sharded checkpoints, JAX sharding
and federated averaging, checked against the reference (docs/conformance/distributed.md).

One concept per module:

* :mod:`.problem`: the distributed scenarios, their configurations, the per-rank gradient pieces;
* :mod:`.torch_common`, :mod:`.torch_ddp`, :mod:`.torch_zero`, :mod:`.torch_fsdp`: the torch
  strategies (imported only inside rank processes);
* :mod:`.checkpoint`: ``torch.distributed.checkpoint`` save and resume, the load modes;
* :mod:`.rank`: one rank's process; :mod:`.supervise`: starting and watching the ranks;
* :mod:`.jax_sharding`: optax over 8 virtual devices; :mod:`.federated`: FedAvg with local AdamW
  and the reference's own simulation of it;
* :mod:`.grading`: a trajectory against the reference; :mod:`.cases`: the tier, as report rows
  (:func:`conformance.distributed.cases.run_distributed`); :mod:`.launcher`: the command line,
  also under ``torchrun``.

Importing this package imports no framework.
"""
