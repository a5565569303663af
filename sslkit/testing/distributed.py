"""Check that a loss computed on several processes trains like one process holding the whole batch.

Data-parallel training (DDP) runs the loss on each process's share of the global batch and
averages the parameter gradients over the ``W`` processes, so it optimises the mean of the
per-process losses. A loss is correct under DDP when

- the mean over processes of the per-process losses equals the loss of one process holding the
  whole batch, and
- for every input row, ``1 / W`` times the gradient its process computed equals the
  single-process gradient of that row (the all-gather of :func:`sslkit.distributed.all_gather`
  with ``with_grad=True`` sums every process's gradient for the rows it gathered, so DDP's
  averaging then propagates exactly the single-process gradient to the parameters), and the
  mean over processes of the gradients of the loss's own parameters equals theirs in one process.

A loss that computes a batch statistic (a mean, a covariance, a nearest neighbour, a
normalisation over samples) from its own process's rows only fails these checks.
:func:`assert_loss_distributed` runs the comparison on real gloo processes on the CPU;
:func:`run_on_processes` runs any function that way.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from torch.multiprocessing.spawn import spawn

from sslkit.components import Loss
from sslkit.outputs import Output, StepInputs
from sslkit.testing.step import RandomStep, make_step_context

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _process(rank: int, fn: Callable[[int, int], Any], world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        torch.save(fn(rank, world_size), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_on_processes(fn: Callable[[int, int], T], world_size: int = 2) -> list[T]:
    """Run ``fn(rank, world_size)`` on ``world_size`` new CPU processes joined in a gloo process group
    (one thread each) and return their results in rank order.

    ``fn`` must be picklable (a module-level function, or a :func:`functools.partial` of one) and
    return something :func:`torch.save` can write (tensors, numbers, dicts and lists of them).
    """
    with tempfile.TemporaryDirectory() as out_dir:
        args = (fn, world_size, free_port(), out_dir)
        spawn(_process, args=args, nprocs=world_size, join=True)  # type: ignore[no-untyped-call]  # unannotated in torch
        return [torch.load(Path(out_dir) / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]


def share_rows(request: Output, value: Tensor, step: RandomStep, rank: int, world_size: int) -> Tensor:
    """Indices of the rows of ``value`` (the whole step's tensor for ``request``) that process ``rank``
    of ``world_size`` holds: its contiguous ``B / W`` images of every crop.

    Rows are crop-major (row ``c * B + b``); a ``positions="masked"`` / ``"visible"`` tensor has one
    row per masked / visible token in ``masks.nonzero()`` order, so the process keeps the tokens of
    its images, in the same order as the nonzero entries of its own share of the masks.
    """
    batch = step.batch_size
    share = batch // world_size
    first, last = rank * share, (rank + 1) * share
    if request.positions != "all":
        selected = step.masks if request.positions == "masked" else ~step.masks
        image = selected.nonzero()[:, 0] % batch  # the image of each token row
        return ((image >= first) & (image < last)).nonzero().flatten()
    if value.shape[0] % batch:
        raise AssertionError(f"{request.describe()}: {value.shape[0]} rows are not crops x {batch} images")
    crops = value.shape[0] // batch
    return torch.cat([torch.arange(c * batch + first, c * batch + last) for c in range(crops)])


def _compute(make_loss: Callable[[], Loss], step_options: Mapping[str, Any], seed: int, rank: int,
             world_size: int) -> dict[str, Any]:
    """The loss on process ``rank``'s share of the step (the whole step when ``world_size`` is 1):
    value, gradients of the student inputs, of the loss's parameters, and its state after ``commit``."""
    step = RandomStep(seed=seed, **step_options)
    torch.manual_seed(seed)  # every process builds the same loss (random prototypes, ...)
    loss = make_loss()
    inputs: dict[str, Any] = {}
    rows: dict[str, Tensor] = {}
    for name, request in loss.inputs.items():
        value = step.value(request)  # the whole step's tensor (a module for kind "backbone")
        if isinstance(value, Tensor):
            rows[name] = share_rows(request, value, step, rank, world_size)
            value = value.detach()[rows[name]]
            value.requires_grad_(request.model == "student" and value.is_floating_point())
        inputs[name] = value
    ctx = make_step_context(batch_size=step.batch_size // world_size, n_global=step.n_global, n_local=step.n_local,
                            world_size=world_size)
    value = loss(StepInputs(inputs), ctx)
    value.backward()
    loss.commit()
    return {
        "loss": type(loss).__name__,
        "value": float(value.detach()),
        "grad": {k: t.grad for k, t in inputs.items() if isinstance(t, Tensor) and t.grad is not None},
        "param": {k: p.grad for k, p in loss.named_parameters() if p.grad is not None},
        "state": {k: b.detach().clone() for k, b in loss.named_buffers()},
        "rows": rows,
    }


@dataclass
class DistributedCheck:
    """What :func:`assert_loss_distributed` measured."""

    single_value: float  # the loss of one process holding the whole batch
    rank_values: list[float]  # each process's loss
    max_grad_difference: dict[str, float] = field(default_factory=dict)  # input / "param:<name>" -> max |diff|
    max_state_difference: dict[str, float] = field(default_factory=dict)  # buffer -> max |diff| over processes


def _max_difference(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _close(a: Tensor, b: Tensor, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol))


def assert_loss_distributed(make_loss: Callable[[], Loss], *, batch_size: int = 8, world_size: int = 2,
                            seed: int = 0, rtol: float = 1e-4, atol: float = 1e-5,
                            **step_options: Any) -> DistributedCheck:
    """Assert that ``make_loss()`` on ``world_size`` gloo processes, each holding ``batch_size / world_size``
    images of one random step, trains like one process holding all ``batch_size`` images.

    One :class:`~sslkit.testing.RandomStep` (``seed``; ``step_options`` such as ``head_dims``,
    ``n_local``, ``mask_ratio`` go to it) provides the loss's declared inputs. The loss is computed
    with its gradients in this process on the whole step, then on ``world_size`` new processes, each
    on its contiguous share of every crop's rows (masks and masked tokens split consistently). It
    asserts that

    - the mean of the per-process losses equals the single-process loss (DDP optimises that mean);
    - for each student input, the per-process gradients divided by ``world_size`` and put back in
      their rows equal the single-process gradient;
    - the mean over processes of the gradients of the loss's parameters equals the single-process one;
    - after ``commit()`` every process holds the single-process buffers (e.g. a center).

    ``make_loss`` must be picklable (a module-level function or a :func:`functools.partial` of one);
    it is called after ``torch.manual_seed(seed)`` in every process. The AssertionError lists the
    loss of each process against the single-process loss and the largest gradient difference per
    input. Returns the measurements (e.g. to also require ``rank_values`` to be the global value).
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by world_size {world_size}")
    options = {"batch_size": batch_size, **step_options}
    single = _compute(make_loss, options, seed, 0, 1)
    if not single["grad"]:
        raise AssertionError("the loss gives no gradient to any student input in one process: nothing to compare")
    ranks = run_on_processes(partial(_compute, make_loss, options, seed), world_size)
    check = DistributedCheck(single["value"], [r["value"] for r in ranks])
    problems = []
    mean = sum(check.rank_values) / world_size
    if abs(mean - check.single_value) > atol + rtol * abs(check.single_value):
        values = ", ".join(f"rank {r}: {v:.6g}" for r, v in enumerate(check.rank_values))
        problems.append(f"loss: mean over processes {mean:.6g} != single process {check.single_value:.6g} "
                        f"({values})")
    for name, expected in single["grad"].items():
        assembled = torch.zeros_like(expected)
        for result in ranks:
            if name in result["grad"]:
                assembled[result["rows"][name]] = result["grad"][name] / world_size
        check.max_grad_difference[name] = _max_difference(assembled, expected)
        if not _close(assembled, expected, rtol, atol):
            problems.append(f"d loss / d {name}: max |grad / world_size - single| = "
                            f"{check.max_grad_difference[name]:.3g} (largest single-process |grad| "
                            f"{float(expected.abs().max()):.3g})")
    for name, expected in single["param"].items():
        grads = [r["param"].get(name, torch.zeros_like(expected)) for r in ranks]
        averaged = torch.stack(grads).mean(dim=0)  # what DDP's gradient averaging does
        key = f"param:{name}"
        check.max_grad_difference[key] = _max_difference(averaged, expected)
        if not _close(averaged, expected, rtol, atol):
            problems.append(f"d loss / d parameter {name}: max |mean over processes - single| = "
                            f"{check.max_grad_difference[key]:.3g}")
    for name, expected in single["state"].items():
        check.max_state_difference[name] = max(_max_difference(r["state"][name], expected) for r in ranks)
        if not all(_close(r["state"][name], expected, rtol, atol) for r in ranks):
            problems.append(f"buffer {name} after commit(): max |process - single| = "
                            f"{check.max_state_difference[name]:.3g}")
    if problems:
        raise AssertionError(f"{single['loss']}: "
                             f"{world_size} processes with {batch_size // world_size} images each differ from "
                             f"one process with {batch_size}:\n  " + "\n  ".join(problems))
    return check
