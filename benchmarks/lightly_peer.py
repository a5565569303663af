"""The PEER training loop for ``train_throughput.py``: DINOv2 assembled from lightly's public parts.

It follows lightly's own DINOv2 example (``examples/pytorch/dinov2.py`` in the lightly repository)
the way a user would write it: a timm ``VisionTransformer`` wrapped in
``MaskedVisionTransformerTIMM``, ``DINOv2ProjectionHead`` heads, ``DINOLoss`` + ``IBOTPatchLoss`` +
``KoLeoLoss``, ``random_block_mask`` masks, lightly's torchvision ``DINOTransform`` per image in
``DataLoader`` workers, ``torch.optim.AdamW`` with its default kernel, ``update_momentum`` for the
EMA teacher and lightly's schedule helpers. Its sizes (crops, widths, prototypes, masking ratios,
drop-path, gradient clipping) come from a :class:`PeerConfig` that ``train_throughput.py`` derives
from the sslkit recipe, so that both loops do the same work per step: three backbone passes
(teacher global, student masked global, student local), the same heads and the same loss terms.

lightly is a benchmark-only dependency (the ``bench`` extra); sslkit never imports it.
"""

from __future__ import annotations

import copy
import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset


@dataclass
class PeerConfig:
    """Everything the peer loop needs to do the same work per step as the sslkit recipe."""

    tar_path: str
    batch_size: int = 64
    num_workers: int = 2
    n_local: int = 8
    global_crop_size: int = 32
    local_crop_size: int = 16
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    patch_size: int = 4
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    layerscale_init: float | None = 1e-5
    drop_path_rate: float = 0.0
    drop_path_mode: str = "linear"
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    dino_prototypes: int = 65536
    ibot_prototypes: int = 65536
    separate_ibot_head: bool = False
    koleo_weight: float = 0.1
    ibot_weight: float = 1.0
    dino_weight: float = 1.0
    mask_sample_probability: float = 0.5
    mask_ratio_min: float = 0.1
    mask_ratio_max: float = 0.5
    clip_grad: float | None = 3.0
    peak_lr: float = 0.004 * (64 / 1024) ** 0.5
    min_lr: float = 1e-6
    warmup_steps: int = 12500
    weight_decay: tuple[float, float] = (0.04, 0.4)
    momentum: tuple[float, float] = (0.992, 1.0)
    teacher_temp: tuple[float, float] = (0.04, 0.07)
    teacher_temp_warmup_steps: int = 37500
    max_steps: int = 1000
    epoch_length: int = 1250
    precision: str = "fp32"
    seed: int = 0


class TarJPEGImages(Dataset):
    """The ``train/<class>/<n>.jpg`` members of a tar, decoded to RGB PIL images on demand.

    The member index is built once (in the parent process); each loader worker opens its own
    file handle on first use and reads a member with one seek + read.
    """

    def __init__(self, tar_path: str, transform: Callable[[Image.Image], Any]) -> None:
        self.tar_path = tar_path
        self.transform = transform
        with tarfile.open(tar_path) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        members.sort(key=lambda m: m.name)
        self.classes = sorted({Path(m.name).parent.name for m in members})
        index = {name: i for i, name in enumerate(self.classes)}
        self.entries = [(m.offset_data, m.size, index[Path(m.name).parent.name]) for m in members]
        self._handle: io.BufferedReader | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if self._handle is None:
            self._handle = open(self.tar_path, "rb")  # noqa: SIM115 - one handle per worker, kept open
        offset, size, label = self.entries[i]
        self._handle.seek(offset)
        image = Image.open(io.BytesIO(self._handle.read(size))).convert("RGB")
        return self.transform(image), label

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None}


class DINOv2Peer(nn.Module):
    """Student and teacher (backbone + DINO head + iBOT head), as in lightly's DINOv2 example."""

    def __init__(self, cfg: PeerConfig) -> None:
        from lightly.models.modules import DINOv2ProjectionHead, MaskedVisionTransformerTIMM
        from lightly.models.utils import update_drop_path_rate
        from timm.models.vision_transformer import VisionTransformer

        super().__init__()
        vit = VisionTransformer(
            img_size=cfg.global_crop_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=4.0,
            qkv_bias=True,
            init_values=cfg.layerscale_init,
            num_classes=0,
            dynamic_img_size=True,
            pos_embed="learn",
        )
        self.teacher_backbone = MaskedVisionTransformerTIMM(vit=vit, antialias=False, pos_embed_initialization="skip")
        self.student_backbone = copy.deepcopy(self.teacher_backbone)
        if cfg.drop_path_rate > 0:
            update_drop_path_rate(self.student_backbone.vit, drop_path_rate=cfg.drop_path_rate, mode=cfg.drop_path_mode)
        head = partial(
            DINOv2ProjectionHead,
            input_dim=cfg.embed_dim,
            hidden_dim=cfg.head_hidden_dim,
            bottleneck_dim=cfg.head_bottleneck_dim,
        )
        self.student_dino_head = head(output_dim=cfg.dino_prototypes)
        self.student_ibot_head = (
            head(output_dim=cfg.ibot_prototypes) if cfg.separate_ibot_head else self.student_dino_head
        )
        # weight-normalised heads cannot be deep-copied: build the teacher's and copy the weights
        self.teacher_dino_head = head(output_dim=cfg.dino_prototypes)
        self.teacher_dino_head.load_state_dict(self.student_dino_head.state_dict())
        self.teacher_ibot_head = self.teacher_dino_head
        if cfg.separate_ibot_head:
            self.teacher_ibot_head = head(output_dim=cfg.ibot_prototypes)
            self.teacher_ibot_head.load_state_dict(self.student_ibot_head.state_dict())
        for module in (self.teacher_backbone, self.teacher_dino_head, self.teacher_ibot_head):
            module.requires_grad_(False)
            module.eval()

    def student_modules(self) -> list[nn.Module]:
        heads = [self.student_dino_head] + (
            [self.student_ibot_head] if self.student_ibot_head is not self.student_dino_head else []
        )
        return [self.student_backbone, *heads]

    def teacher_modules(self) -> list[nn.Module]:
        heads = [self.teacher_dino_head] + (
            [self.teacher_ibot_head] if self.teacher_ibot_head is not self.teacher_dino_head else []
        )
        return [self.teacher_backbone, *heads]


def config_from_recipe(resolved: Any, tar_path: str, precision: str) -> PeerConfig:
    """The :class:`PeerConfig` that does the same work per step as the sslkit recipe ``resolved``
    (a :class:`sslkit.recipe.ResolvedRecipe`); exits when the recipe uses something the peer lacks."""
    d, r = resolved.data, resolved.recipe
    aug, bb = d["data"]["augmentation"], d["model"]["backbone"]
    losses, heads = d["losses"], d["model"]["heads"]
    kinds = {spec["name"]: spec for spec in losses.values()}
    missing = {"dino", "ibot", "koleo"} - set(kinds)
    if missing:
        raise SystemExit(f"the peer implements DINO + iBOT + KoLeo; the recipe lacks {sorted(missing)}")
    masker, policy = d["masking"]["masker"], d["masking"]["crop_policy"]
    unsupported = [
        f"{key}: {value!r}"
        for key, value in (
            ("dino normalization", kinds["dino"]["normalization"]),
            ("ibot normalization", kinds["ibot"]["normalization"]),
            ("crop policy", policy["name"]),
            ("masker", masker["name"]),
            ("n_global", aug["n_global"]),
        )
        if value not in ("centering", "random_fraction", "block", 2)
    ]
    if unsupported or not masker["stratified"] or not kinds["dino"]["use_local_crops"]:
        raise SystemExit(f"the peer (lightly's DINOv2 example) cannot follow this recipe: {unsupported}")
    dino_head, ibot_head = heads[kinds["dino"]["head"]], heads[kinds["ibot"]["head"]]
    if dino_head["hidden_dim"] != ibot_head["hidden_dim"] or dino_head["bottleneck_dim"] != ibot_head["bottleneck_dim"]:
        raise SystemExit("the peer's iBOT head has the DINO head's MLP widths; the recipe's differ")
    from sslkit.engine.schedules import peak_lr
    from sslkit.recipe.param_schedule import ParamSchedule
    from sslkit_plugins.backbones.vit_params import VIT_SIZES

    sizes = dict(zip(("embed_dim", "depth", "num_heads"), VIT_SIZES[bb["size"]], strict=True))
    embed_dim, depth, num_heads = (bb.get(key) or default for key, default in sizes.items())
    epoch = r.train.epoch_length
    dino_key = next(f"losses.{name}" for name, spec in losses.items() if spec["name"] == "dino")
    dino_temp = resolved.spec(dino_key)
    temp = dino_temp.schedules.get("teacher_temp") or ParamSchedule(
        "constant", start=dino_temp.params.teacher_temp, end=dino_temp.params.teacher_temp)
    return PeerConfig(
        tar_path=tar_path,
        batch_size=r.data.batch_size,
        num_workers=r.data.num_workers,
        n_local=aug["n_local"],
        global_crop_size=aug["global_crop_size"],
        local_crop_size=aug["local_crop_size"],
        global_scale=tuple(aug["global_scale"]),
        local_scale=tuple(aug["local_scale"]),
        patch_size=bb["patch_size"],
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        layerscale_init=bb["layerscale_init"],
        drop_path_rate=bb["drop_path_rate"],
        drop_path_mode="uniform" if bb["drop_path_uniform"] else "linear",
        head_hidden_dim=dino_head["hidden_dim"],
        head_bottleneck_dim=dino_head["bottleneck_dim"],
        dino_prototypes=dino_head["out_dim"],
        ibot_prototypes=ibot_head["out_dim"],
        separate_ibot_head=kinds["dino"]["head"] != kinds["ibot"]["head"],
        dino_weight=kinds["dino"]["weight"],
        ibot_weight=kinds["ibot"]["weight"],
        koleo_weight=kinds["koleo"]["weight"] / aug["n_global"],  # sslkit averages over crops, lightly sums
        mask_sample_probability=policy["fraction"],
        mask_ratio_min=masker["min_ratio"],
        mask_ratio_max=masker["max_ratio"],
        clip_grad=r.optim.clip_grad,
        peak_lr=peak_lr(r.optim.base_lr, r.data.batch_size, r.optim.reference_batch_size, r.optim.lr_scaling),
        min_lr=r.optim.min_lr,
        warmup_steps=round(r.optim.warmup_epochs * epoch),
        weight_decay=(r.optim.weight_decay, r.optim.weight_decay_end),
        momentum=(r.teacher.momentum, r.teacher.momentum_end),
        teacher_temp=(temp.start, temp.end),
        teacher_temp_warmup_steps=round((temp.length or 0) * (epoch if temp.unit == "epochs" else 1)),
        max_steps=r.train.max_steps,
        epoch_length=epoch,
        precision=precision,
        seed=r.run.seed,
    )


def build_transform(cfg: PeerConfig) -> Callable[[Image.Image], list[Tensor]]:
    """lightly's DINO multi-crop (torchvision, per image) with the recipe's crop geometry."""
    from lightly.transforms.dino_transform import DINOTransform

    return DINOTransform(
        global_crop_size=cfg.global_crop_size,
        global_crop_scale=tuple(cfg.global_scale),
        local_crop_size=cfg.local_crop_size,
        local_crop_scale=tuple(cfg.local_scale),
        n_local_views=cfg.n_local,
        gaussian_blur=(1.0, 0.1, 0.5),
        solarization_prob=0.2,
    )


def _param_groups(model: DINOv2Peer) -> list[dict[str, Any]]:
    """No weight decay on biases / norms / LayerScale / tokens; the prototype layers apart (frozen first epoch)."""
    decay, no_decay, last = [], [], []
    for module in model.student_modules():
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if "last_layer" in name:
                last.append(p)
            elif p.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "mask_token")):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "name": "decay"},
        {"params": no_decay, "name": "no_decay", "weight_decay": 0.0},
        {"params": last, "name": "last_layer"},
    ]


class PeerLoop:
    """One lightly-style DINOv2 training step at a time, over a real DataLoader."""

    def __init__(self, cfg: PeerConfig, device: torch.device) -> None:
        from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss

        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)
        self.model = DINOv2Peer(cfg).to(device)
        self.dino_loss = DINOLoss(output_dim=cfg.dino_prototypes).to(device)
        self.ibot_loss = IBOTPatchLoss(output_dim=cfg.ibot_prototypes).to(device)
        self.koleo_loss = KoLeoLoss().to(device)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model), lr=0.0, weight_decay=0.04)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.dataset = TarJPEGImages(cfg.tar_path, build_transform(cfg))
        self.grid = cfg.global_crop_size // cfg.patch_size

    def loader(self) -> Iterator[Any]:
        generator = torch.Generator().manual_seed(self.cfg.seed)
        return iter(
            DataLoader(
                self.dataset,
                batch_size=self.cfg.batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=self.cfg.num_workers,
                generator=generator,
                persistent_workers=self.cfg.num_workers > 0,
            )
        )

    def _schedules(self, step: int) -> tuple[float, float, float, float]:
        from lightly.utils.scheduler import cosine_schedule, linear_warmup_schedule

        cfg = self.cfg
        if step < cfg.warmup_steps:
            lr = linear_warmup_schedule(step, cfg.warmup_steps, 0.0, cfg.peak_lr)
        else:
            decay_steps = max(cfg.max_steps - cfg.warmup_steps, 1)
            lr = cosine_schedule(step - cfg.warmup_steps, decay_steps, cfg.peak_lr, cfg.min_lr)
        wd = cosine_schedule(step, cfg.max_steps, *cfg.weight_decay)
        momentum = cosine_schedule(step, cfg.max_steps, *cfg.momentum)
        temp = linear_warmup_schedule(step, cfg.teacher_temp_warmup_steps, *cfg.teacher_temp)
        return lr, wd, momentum, temp

    def step(self, step: int, batch: Any) -> Tensor:
        """One optimizer step on ``batch`` (lightly's DINOv2 example, with the recipe's sizes)."""
        from lightly.models.utils import random_block_mask, update_momentum

        cfg, model = self.cfg, self.model
        views = [v.to(self.device, non_blocking=True) for v in batch[0]]
        global_views = torch.cat(views[:2])
        local_views = torch.cat(views[2:])
        n = len(global_views)
        block_mask = random_block_mask(
            size=(n, self.grid, self.grid),
            batch_mask_ratio=cfg.mask_sample_probability,
            min_image_mask_ratio=cfg.mask_ratio_min,
            max_image_mask_ratio=cfg.mask_ratio_max,
            device=self.device,
        )
        mask = global_views.new_zeros((n, model.teacher_backbone.sequence_length), dtype=torch.bool)
        mask[:, 1:] = block_mask.flatten(start_dim=1)
        lr, wd, momentum, temp = self._schedules(step)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
        with autocast:
            with torch.no_grad():
                teacher_features = model.teacher_backbone.encode(global_views)
                teacher_cls_out = model.teacher_dino_head(teacher_features[:, 0])
                teacher_masked_out = model.teacher_ibot_head(teacher_features[mask])
            student_features = model.student_backbone.encode(global_views, mask=mask)
            student_global_cls = student_features[:, 0]
            student_global_cls_out = model.student_dino_head(student_global_cls)
            student_masked_out = model.student_ibot_head(student_features[mask])
            student_local_cls = model.student_backbone.encode(local_views)[:, 0]
            student_local_cls_out = model.student_dino_head(student_local_cls)
            student_cls_out = torch.cat([student_global_cls_out, student_local_cls_out])
            dino = self.dino_loss(
                teacher_out=teacher_cls_out.float().chunk(2),
                student_out=student_cls_out.float().chunk(len(views)),
                teacher_temp=temp,
            )
            ibot = self.ibot_loss(
                teacher_out=teacher_masked_out.float(),
                student_out=student_masked_out.float(),
                mask=block_mask,
                teacher_temp=temp,
            )
            koleo = sum(self.koleo_loss(t.float()) for t in student_global_cls.chunk(2))
            loss = cfg.dino_weight * dino + cfg.ibot_weight * ibot + cfg.koleo_weight * koleo
        loss.backward()
        if cfg.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.clip_grad)
        for group in self.optimizer.param_groups:
            frozen = group["name"] == "last_layer" and step < cfg.epoch_length
            group["lr"] = 0.0 if frozen else lr
            if group["name"] != "no_decay":
                group["weight_decay"] = wd
        self.optimizer.step()
        self.optimizer.zero_grad()
        for student, teacher in zip(model.student_modules(), model.teacher_modules(), strict=True):
            update_momentum(student, teacher, m=momentum)
        return loss.detach()
