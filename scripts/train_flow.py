"""Train the embedded model's flow UNet (on folded pixels) at 64², 128² and 256², then export it.

    python scripts/prepare_data.py                                    # renders + caption embeddings
    python scripts/train_flow.py --steps 600 --export DIR             # a first model
    python scripts/train_flow.py --steps 3000 --resume --export DIR   # continue the same run
    python scripts/train_flow.py --init DIR --out DIR2 --steps 2800 --precision bf16 --lr-schedule cosine
                                                                      # a second run from that model
    python scripts/train_flow.py --device cuda --precision bf16 --steps 30000 --export DIR   # on a GPU

The README gives the run that made the shipped weights (``--prediction edm --skip-std 0.06``).

Each step trains at one resolution drawn from ``--size-weights`` with that size's batch; σ is drawn
from a logit-normal / uniform / refine-range mixture (:class:`mrflow.tiny.training.SigmaSampling`);
captions are dropped with ``--drop`` for classifier-free guidance. ``--prediction`` and
``--skip-std`` set how the UNet's output becomes the clean image (:mod:`mrflow.tiny.training`);
``--fold`` and ``--channels``/``--layers-per-block`` set its pixel fold and size (the shipped model
keeps their defaults). An EMA of the weights is kept and exported. Checkpoints (``last.pt``) and
``train.log`` go to ``--out`` (default ``~/.cache/mrflow/train/flow``); ``--export`` writes the
complete model folder.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from tqdm import tqdm

from mrflow.cli_args import resolve_device
from mrflow.tiny.data import (
    default_train_dir,
    load_caption_cache,
    load_checkpoint,
    load_images,
    save_checkpoint,
    to_unit_batch,
)
from mrflow.tiny.models import (
    FOLD,
    FOLDS,
    PREDICTIONS,
    SIGMA_DATA,
    SchedulerConfig,
    TinyModelConfig,
    UNetConfig,
    build_scheduler,
    build_unet,
    check_skip_std,
    count_parameters,
    fold,
    read_model_index,
    save_model_folder,
)
from mrflow.tiny.training import (
    LR_SCHEDULES,
    SigmaSampling,
    drop_captions,
    flow_loss,
    learning_rate,
    sample_sigmas,
)

SIZES = (64, 128, 256)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - decay)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_train_dir() / "data")
    parser.add_argument("--out", type=Path, default=default_train_dir() / "flow")
    parser.add_argument("--export", type=Path, default=None, help="model folder to write at the end")
    parser.add_argument("--steps", type=int, default=3000, help="total steps (a resumed run continues to it)")
    parser.add_argument("--size-weights", type=float, nargs=3, default=[0.35, 0.3, 0.35], help="for 64, 128, 256")
    parser.add_argument("--batch", type=int, nargs=3, default=[32, 16, 6], help="for 64, 128, 256")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default="constant",
        help="after warmup: constant, or cosine decay to --lr-final × lr at --steps",
    )
    parser.add_argument("--lr-final", type=float, default=0.1, help="final lr ratio of the cosine schedule")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: autocast the UNet (fp32 weights, optimizer and loss); ~1.4x faster on CPUs with AMX",
    )
    parser.add_argument(
        "--prediction",
        choices=PREDICTIONS,
        default=None,
        help="the UNet predicts the clean image (sample) or a correction to EDM's skip of the input (edm); "
        "default: that of --init or the resumed checkpoint, else sample",
    )
    parser.add_argument(
        "--skip-std",
        type=float,
        default=None,
        help="with --prediction edm: the data std the skip is sized for (smaller passes less noise through "
        f"at mid σ); default: that of --init or the resumed checkpoint, else {SIGMA_DATA} (EDM's)",
    )
    parser.add_argument(
        "--channels", type=int, nargs="+", default=None, help="UNet block_out_channels (default: UNetConfig's)"
    )
    parser.add_argument("--layers-per-block", type=int, default=None, help="default: UNetConfig's")
    parser.add_argument("--fold", type=int, choices=FOLDS, default=FOLD, help="pixels per latent side")
    parser.add_argument("--drop", type=float, default=0.1, help="caption dropout probability (CFG)")
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the UNet trains: cpu (default), cuda[:N] or auto; data and σ draws stay on the CPU generator, "
        "so a run resumes on either",
    )
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    parser.add_argument("--init", type=Path, default=None, help="start from the UNet of this model folder")
    return parser.parse_args()


def settle_prediction(args: argparse.Namespace, found: tuple[str, float], source: str) -> None:
    """Take ``--prediction``/``--skip-std`` from a model folder or checkpoint where they were not
    given; refuse to train a network on a prediction other than the one it was trained for."""
    if args.prediction is None:
        args.prediction = found[0]
    if args.skip_std is None:
        args.skip_std = found[1]
    if (args.prediction, args.skip_std) != found:
        raise SystemExit(
            f"{source} was trained with --prediction {found[0]!r} --skip-std {found[1]:g}, "
            f"not --prediction {args.prediction!r} --skip-std {args.skip_std:g}"
        )


def main() -> None:
    args = parse_args()
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        raise SystemExit(f"--device: {error}") from None
    if args.skip_std is not None:
        try:
            check_skip_std(args.skip_std)
        except ValueError as error:
            raise SystemExit(f"--skip-std: {error}") from None
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(args.out / "train.log"), logging.StreamHandler()],
    )
    log = logging.getLogger("train_flow")
    unet_config = UNetConfig(fold=args.fold)
    if args.channels is not None:
        unet_config = dataclasses.replace(unet_config, block_out_channels=tuple(args.channels))
    if args.layers_per_block is not None:
        unet_config = dataclasses.replace(unet_config, layers_per_block=args.layers_per_block)
    config = TinyModelConfig(unet=unet_config, scheduler=SchedulerConfig.for_fold(args.fold))
    torch.manual_seed(args.seed)
    model = build_unet(config.unet)
    if args.init is not None:
        index = read_model_index(args.init)
        settle_prediction(args, (index.prediction, index.skip_std), f"--init {args.init}")
        model.load_state_dict(UNet2DConditionModel.from_pretrained(args.init, subfolder="unet").state_dict())
        log.info("initialised from %s", args.init)
    model.to(device)  # before the optimizer and the EMA copy, so both live on the device
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(args.seed)
    step, seconds = 0, 0.0
    checkpoint = args.out / "last.pt"
    if args.resume and checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        trained = (str(state.get("prediction", "sample")), float(state.get("skip_std", SIGMA_DATA)))
        settle_prediction(args, trained, str(checkpoint))
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, seconds = int(state["step"]), float(state["seconds"])
        log.info("resumed from %s at step %d (%.0f s trained)", checkpoint, step, seconds)
    if args.prediction is None:  # neither given nor found in --init or a checkpoint
        args.prediction = "sample"
    if args.skip_std is None:
        args.skip_std = SIGMA_DATA
    if args.prediction != "edm" and args.skip_std != SIGMA_DATA:
        raise SystemExit("--skip-std only applies to --prediction edm")
    images = {size: load_images(args.data, size) for size in SIZES}
    text, null = load_caption_cache(args.data)
    sampling = SigmaSampling()
    shifts = {size: config.scheduler.shift_for_tokens((size // args.fold) ** 2) for size in SIZES}
    size_weights = torch.tensor(args.size_weights)
    log.info(
        "UNet %.3f M params, predicts %s (skip std %g); %d steps; sizes %s weights %s batches %s; "
        "σ shifts %s; lr %g %s; %s on %s",
        count_parameters(model) / 1e6,
        args.prediction,
        args.skip_std,
        args.steps,
        SIZES,
        args.size_weights,
        args.batch,
        {size: round(shift, 2) for size, shift in shifts.items()},
        args.lr,
        args.lr_schedule,
        args.precision,
        device,
    )
    smoothed: dict[int, float] = {}
    model.train()
    start = time.time() - seconds
    with tqdm(total=args.steps, initial=step, desc="flow") as bar:
        while step < args.steps:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, args.lr, args.warmup, args.steps, args.lr_schedule, args.lr_final)
            which = int(torch.multinomial(size_weights, 1, generator=generator))
            size, batch = SIZES[which], args.batch[which]
            index = torch.randint(len(images[size]), (batch,), generator=generator).sort().values
            x0 = fold(to_unit_batch(images[size][index.numpy()]), args.fold)  # sorted: sequential reads of the memmap
            noise = torch.randn(x0.shape, generator=generator).to(device)
            sigmas = sample_sigmas(batch, sampling, generator, shifts[size]).to(device)
            conditioning = drop_captions(text[index], null, args.drop, generator).to(device)
            x0 = x0.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                loss = flow_loss(model, x0, conditioning, sigmas, noise, args.prediction, args.skip_std)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            update_ema(ema, model, min(args.ema, (step + 1) / (step + 10)))
            step += 1
            value = float(loss.detach())
            smoothed[size] = value if size not in smoothed else 0.97 * smoothed[size] + 0.03 * value
            bar.update(1)
            bar.set_postfix({str(s): f"{v:.3f}" for s, v in smoothed.items()})
            if step % 25 == 0:
                log.info(
                    "step %d size %d loss %.4f lr %.2e smoothed %s %.0fs",
                    step,
                    size,
                    value,
                    optimizer.param_groups[0]["lr"],
                    {s: round(v, 4) for s, v in sorted(smoothed.items())},
                    time.time() - start,
                )
            if step % args.save_every == 0 or step == args.steps:
                state = {
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "step": step,
                    "seconds": time.time() - start,
                    "prediction": args.prediction,
                    "skip_std": args.skip_std,
                }
                save_checkpoint(checkpoint, state)
    log.info("trained %d steps, %.0f s in all", step, time.time() - start)
    if args.export is not None:
        save_model_folder(
            args.export,
            ema,
            build_scheduler(config.scheduler),
            config.text,
            prediction=args.prediction,
            skip_std=args.skip_std,
        )
        log.info("exported EMA weights to %s", args.export)


if __name__ == "__main__":
    main()
