"""One process of the real-model DDP tests: the tiny ``SohoModel`` pre-trained and fine-tuned under torchrun.

``torchrun --standalone --nproc_per_node=2 tests/distributed/real_model_worker.py SHARDS OUT [--compare-only]``

* pre-trains SOHO and SOHO + SCL (``soho.train.pretrain.run``) on shards of two samples,
  so the ranks get different shard counts and short last batches of different sizes; the
  Visual Dictionary re-seeds its idle entries every step (``dead_after: 1``);
* fine-tunes every task from the SOHO checkpoint (``soho.tasks.run.finetune``);
* trains VQA, NLVR2 and SNLI-VE on fixed global batches of 8, each rank its half (dropout off,
  BatchNorm on running statistics), for the comparison with one process (``--compare-only``
  without torchrun: the same global batches whole).

Each rank writes ``OUT/fit<n>-rank<r>.pt`` (its whole state after the n-th training run:
weights and buffers) and ``OUT/report-rank<r>.json`` (VD re-seeds, batch sizes per step,
the pre-training metrics, what its evaluation readers saw).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's soho

from soho.config import OptimParams, Params, load_params, with_overrides  # noqa: E402
from soho.data.loaders import LoaderSpec, caption_pipeline  # noqa: E402
from soho.eval import heldout  # noqa: E402
from soho.models import visual_dictionary  # noqa: E402
from soho.models.fusion import load_tokenizer  # noqa: E402
from soho.models.soho import SohoModel  # noqa: E402
from soho.models.visual_dictionary import VisualDictionary  # noqa: E402
from soho.objectives import itc  # noqa: E402
from soho.objectives.pretraining import Pretraining  # noqa: E402
from soho.tasks import TASKS, finetune_params, get  # noqa: E402
from soho.tasks.evaluation import evaluate  # noqa: E402
from soho.tasks.run import build, finetune, load_finetuned  # noqa: E402
from soho.train import checkpoint, pretrain, variants  # noqa: E402
from soho.train.distributed import DistContext, init_from_env  # noqa: E402
from soho.train.loop import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = {"batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1, "num_workers": 0}
COMPARED = ("vqa", "nlvr2", "snli_ve")  # losses that are per-example means: DDP must equal one process
GLOBAL_BATCH = 8


def tiny_params(shards_root: Path, out: Path) -> Params:
    tiny = {
        "paths.shards": str(shards_root),
        "paths.checkpoints": str(out / "checkpoints"),
        "paths.results": str(out / "results"),
        "model.image_size": 64,
        "model.text.num_layers": 1,
        "model.vd": {"size": 8, "dead_after": 1},
        "pretrain.eval_samples": 1000,  # the whole held-out split
        "pretrain.optim": {**SCHEDULE, "steps": 4, "shuffle_buffer": 8},
        "finetune.optim": {**SCHEDULE, "steps": 2, "shuffle_buffer": 8},
        "finetune.tasks": {},
    }
    return with_overrides(load_params(REPO / "params.yaml"), tiny, source="test")


def count_reseeds(report: dict) -> None:
    """Count the Visual Dictionary's re-seedings (after the first) on this rank, and the rows each drew from."""
    original_seed, original_gather = VisualDictionary._seed, visual_dictionary.all_gather_rows

    def counted(self, flat, which):
        report["reseeds"] += int(bool(self.initialised))
        report["local_rows"].append(int(flat.shape[0]))
        original_seed(self, flat, which)

    def gathered(tensor):
        rows, sizes = original_gather(tensor)
        report["gathered_rows"].append(int(rows.shape[0]))
        return rows, sizes

    VisualDictionary._seed = counted
    visual_dictionary.all_gather_rows = gathered


def count_itc_rows(report: dict) -> None:
    """The rows of every training ITC on this rank (SOHO + SCL's pre-training): every rank's, gathered."""
    original = itc.itc_loss

    def counted(image, text, logit_scale, same=None):
        if torch.is_grad_enabled():  # training; the held-out evaluation scores its own batch
            report["itc_rows"].append(int(image.shape[0]))
        return original(image, text, logit_scale, same)

    itc.itc_loss = counted


def record_fits(report: dict, out: Path, rank: int) -> None:
    """Record each training run on this rank: its batch sizes, and its whole state at the end (``fit<n>-rank<r>.pt``)."""
    original = Trainer.fit

    def fit(self, batches, stop_after=None):
        sizes: list[int] = []
        report["batch_sizes"].append(sizes)

        def sized(epoch):
            for batch in batches(epoch):
                sizes.append(len(batch["input_ids"]))
                yield batch

        last = original(self, sized, stop_after)
        torch.save(state_of(self.module), out / f"fit{len(report['batch_sizes'])}-rank{rank}.pt")
        return last

    Trainer.fit = fit


def state_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def deterministic(module: nn.Module) -> None:
    """No dropout, BatchNorm on running statistics: what is left differs between 1 and 2 processes only by DDP.

    Why BatchNorm: without SyncBatchNorm each rank normalises by its own half-batch (torch's
    documented DDP behaviour), so training statistics could not match one process's.
    """
    for sub in module.modules():
        if isinstance(sub, nn.Dropout):
            sub.p = 0.0
        if hasattr(sub, "dropout_prob"):
            sub.dropout_prob = 0.0  # transformers' SDPA attention
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.register_forward_pre_hook(lambda m, _: m.train(False) and None)  # None: the input unchanged


def global_batches(params: Params, task: str, ctx: DistContext) -> list[dict]:
    """The first global batches of ``task``'s training split (every rank reads all of it), this rank's rows."""
    settings = finetune_params(params, task)
    definition = get(task)
    tokenizer = load_tokenizer(params.model.text.init)
    spec = LoaderSpec.build(
        params.paths.shards, tokenizer, params.model, params.seed, batch_size=GLOBAL_BATCH, finetune=settings
    )
    answers = definition.classes(Path(params.paths.shards), settings)
    rows = slice(ctx.rank * GLOBAL_BATCH // ctx.world_size, (ctx.rank + 1) * GLOBAL_BATCH // ctx.world_size)
    split = definition.training_split(settings)
    whole = [b for b in definition.pipeline(split, spec, answers, readers="none")]
    return [{k: v[rows] for k, v in b.items() if torch.is_tensor(v)} for b in whole if len(b["input_ids"]) == 8]


def compare(params: Params, task: str, ctx: DistContext, out: Path) -> None:
    """Three steps on fixed global batches (each rank its half); rank 0 writes the weights."""
    settings = finetune_params(params, task)
    answers = get(task).classes(Path(params.paths.shards), settings)
    module = build(params, task, "scratch", answers)
    deterministic(module)
    groups = module.model.trainable_groups() | {"head": list(module.head.parameters())}
    cfg = OptimParams(steps=3, lr=0.05, cnn_lr=0.05, warmup_steps=0, checkpoint_every=0, log_every=1, clip=0.0)
    batches = global_batches(params, task, ctx)
    assert batches, f"{task}: no full global batch of {GLOBAL_BATCH}"
    if ctx.is_main:
        torch.save(state_of(module), out / f"compare-{task}-world{ctx.world_size}-start.pt")
    trainer = Trainer(module, groups, cfg, params.seed, None, ctx, progress=False)
    # SGD, not the pipeline's AdamW: Adam scales a gradient that is zero but for rounding (a
    # key bias: softmax ignores it) to a full step, so rounding would decide those weights
    trainer.optimizer = torch.optim.SGD([p for g in groups.values() for p in g], lr=0.05)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda step: 1.0)
    trainer.fit(lambda epoch: iter(batches))
    if ctx.is_main:
        torch.save(state_of(module), out / f"compare-{task}-world{ctx.world_size}.pt")


def scored(results: dict[str, dict]) -> dict:
    """{variant: {split: (metrics, number of prediction rows)}}: what a sharded evaluation must reproduce."""
    return {
        variant: {
            split: ({k: v for k, v in values.items() if k != "_predictions"}, len(values.get("_predictions", [])))
            for split, values in splits.items()
        }
        for variant, splits in results.items()
    }


HELDOUT_SMALL_BATCH = 2  # the held-out split (4 pairs) in two batches: one per rank


def heldout_of_checkpoint(params: Params, out_dir: Path, ctx: DistContext, batch_size: int | None = None) -> dict:
    """The saved pre-training checkpoint's held-out metrics, scored by ``ctx``'s ranks (one process: no collective).

    ``batch_size``: another held-out batch than training's, so that the ranks' share of the split can be more
    than the one batch the 4 held-out pairs make at the training batch of 4.
    """
    if batch_size is not None:
        params = with_overrides(params, {"pretrain.optim.batch_size": batch_size}, source="test")
    tokenizer = load_tokenizer(params.model.text.init)
    model = SohoModel(params.model)
    checkpoint.load_weights(model, out_dir / "model.safetensors")
    return heldout.evaluate(Pretraining(model, params.pretrain.objectives, tokenizer), params, tokenizer, ctx)


def wait_for_rank0_files() -> None:
    """Rank 0 writes the checkpoints after the last step, so another rank may return before they exist:
    every rank reads them next (CI once failed with rank 1's FileNotFoundError on model.safetensors)."""
    if dist.is_initialized():
        dist.barrier()


def evaluate_sharded_and_alone(params: Params, ctx: DistContext, report: dict) -> None:
    """Every task's fine-tuned model scored with the ranks sharing the work, and (rank 0) by one process alone."""
    for task in TASKS:
        modules = {"pretrained": load_finetuned(params, task, "pretrained")}
        report["eval_sharded"][task] = scored(evaluate(params, task, modules, ctx))
        if ctx.is_main:
            report["eval_alone"][task] = scored(evaluate(params, task, modules, DistContext()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shards", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare-only", action="store_true")
    args = parser.parse_args()
    ctx = init_from_env(prefer_cuda=False)
    args.out.mkdir(parents=True, exist_ok=True)
    params = tiny_params(args.shards, args.out)
    report: dict = {"reseeds": 0, "local_rows": [], "gathered_rows": [], "batch_sizes": [], "eval_batches": {}}
    report |= {"eval_sharded": {}, "eval_alone": {}, "itc_rows": []}
    try:
        for task in COMPARED:
            compare(params, task, ctx, args.out)
        if args.compare_only:
            return
        count_reseeds(report)
        count_itc_rows(report)
        record_fits(report, args.out, ctx.rank)
        for variant in ("soho", "scl"):
            out_dir = variants.variant_dir(params, variant)
            report[f"pretrain_{variant}"] = pretrain.run(
                variants.variant_params(params, variant), ctx, progress=False, out_dir=out_dir
            )
            wait_for_rank0_files()
            run_params = variants.variant_params(params, variant)
            report[f"heldout_sharded_{variant}"] = heldout_of_checkpoint(run_params, out_dir, ctx, HELDOUT_SMALL_BATCH)
            if ctx.is_main:
                report[f"heldout_alone_{variant}"] = heldout_of_checkpoint(run_params, out_dir, DistContext())
                report[f"heldout_alone_small_{variant}"] = heldout_of_checkpoint(
                    run_params, out_dir, DistContext(), HELDOUT_SMALL_BATCH
                )
        for task in TASKS:
            finetune(params, task, "pretrained", ctx, progress=False)
        wait_for_rank0_files()
        evaluate_sharded_and_alone(params, ctx, report)
        if ctx.is_main:  # what one rank's evaluation readers see under torchrun: the whole split
            tokenizer = load_tokenizer(params.model.text.init)
            spec = LoaderSpec.build(params.paths.shards, tokenizer, params.model, params.seed, batch_size=3)
            seen = sum(len(b["input_ids"]) for b in caption_pipeline(spec, ["coco"], "val", readers="workers"))
            report["eval_batches"]["coco/val"] = seen
            report["eval_batches"]["coco/val@ranks"] = sum(
                len(b["input_ids"]) for b in caption_pipeline(spec, ["coco"], "val")
            )
            index = json.loads((Path(params.paths.shards) / "coco" / "index.json").read_text())
            report["index_total"] = index["val"]["samples"]
    finally:
        (args.out / f"report-rank{ctx.rank}.json").write_text(json.dumps(report))
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
