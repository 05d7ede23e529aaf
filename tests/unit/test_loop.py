"""The shared training loop in one process: exact resume, checkpoints, frozen word embeddings, the code fingerprint."""

import pytest
import torch
from safetensors.torch import load_file

from soho.config import ObjectiveParams, OptimParams
from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.objectives.pretraining import Pretraining
from soho.train import checkpoint
from soho.train.loop import Trainer

from ..conftest import tiny_model
from ..support.noisy import Noisy, train_noisy


def tiny_soho():
    torch.manual_seed(0)
    tokenizer = load_tokenizer("minilm")
    model = SohoModel(tiny_model(vd=16, dead_after=3))
    return Pretraining(model, ObjectiveParams(), tokenizer), model, tokenizer


def soho_batches(tokenizer):
    captions = ["a small red circle", "two shapes in blue", "a large green square above a triangle", "one shape"]

    def batches(epoch):
        generator = torch.Generator().manual_seed(epoch)
        for _ in range(3):
            enc = tokenizer(captions, padding=True, return_tensors="pt")
            yield {
                "pixels": torch.randn(4, 3, 64, 64, generator=generator),
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
            }

    return batches


class Epoch(torch.utils.data.IterableDataset):
    """One epoch of ``soho_batches`` behind a DataLoader, as the stages feed the loop."""

    def __init__(self, batches, epoch: int):
        self.batches, self.epoch = batches, epoch

    def __iter__(self):
        return iter(self.batches(self.epoch))


def loader_batches(tokenizer):
    """Why: ``iter(DataLoader)`` draws its base seed from the global RNG, which the masks use too."""
    batches = soho_batches(tokenizer)
    return lambda epoch: torch.utils.data.DataLoader(Epoch(batches, epoch), batch_size=None)


def train_soho(directory, stop_after=None, checkpoint_every=2, feed=soho_batches):
    module, model, tokenizer = tiny_soho()
    cfg = OptimParams(steps=5, warmup_steps=2, checkpoint_every=checkpoint_every, log_every=1)
    trainer = Trainer(module, model.trainable_groups(), cfg, 3, directory, progress=False)
    trainer.fit(feed(tokenizer), stop_after=stop_after)
    return trainer


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    """Bitwise: an exact resume repeats every operation of the uninterrupted run."""
    first, second = a.module.state_dict(), b.module.state_dict()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_kill_and_resume_reaches_the_same_weights(tmp_path):
    straight = train_soho(tmp_path / "straight")
    train_soho(tmp_path / "resumed", stop_after=3)  # "killed" after step 3; newest checkpoint is step 2
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "resumed")] == ["step-00000002"]
    resumed = train_soho(tmp_path / "resumed")
    assert resumed.step == straight.step == 5 and resumed.epoch == straight.epoch
    assert_same_weights(straight, resumed)


@pytest.mark.parametrize(("stop_after", "every", "newest"), [(3, 2, 2), (4, 3, 3)])  # mid-epoch; an epoch's end
def test_kill_and_resume_through_a_dataloader_reaches_the_same_weights(tmp_path, stop_after, every, newest):
    straight = train_soho(tmp_path / "straight", checkpoint_every=every, feed=loader_batches)
    train_soho(tmp_path / "resumed", stop_after=stop_after, checkpoint_every=every, feed=loader_batches)
    assert checkpoint.list_checkpoints(tmp_path / "resumed")[-1].name == f"step-{newest:08d}"
    resumed = train_soho(tmp_path / "resumed", checkpoint_every=every, feed=loader_batches)
    assert resumed.step == straight.step == 5
    assert_same_weights(straight, resumed)


@pytest.mark.parametrize(
    ("workers", "stop_after", "every", "newest"),
    [(0, 3, 2, 2), (2, 3, 2, 2), (2, 6, 5, 5)],  # mid-epoch, without and with workers; at an epoch's end
)
def test_kill_and_resume_with_loader_workers_reaches_bitwise_the_same_weights(
    tmp_path, workers, stop_after, every, newest
):
    straight = train_noisy(tmp_path / "straight", workers, every)
    train_noisy(tmp_path / "resumed", workers, every, stop_after=stop_after)
    assert checkpoint.list_checkpoints(tmp_path / "resumed")[-1].name == f"step-{newest:08d}"
    resumed = train_noisy(tmp_path / "resumed", workers, every)
    assert resumed.step == straight.step == 8 and resumed.epoch == straight.epoch == 1
    assert_same_weights(straight, resumed)
    assert not torch.equal(straight.module.net[0].weight, Noisy().net[0].weight)  # it did train


def test_checkpoints_load_weights_only_and_prune(tmp_path):
    trainer = train_soho(tmp_path / "ck")
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path / "ck")]
    assert names == ["step-00000004", "step-00000005"]  # keep=2
    state = torch.load(tmp_path / "ck" / "step-00000005" / "state.pt", weights_only=True)
    assert state["step"] == 5 and [rank["batch_in_epoch"] for rank in state["ranks"]] == [2]
    tensors = load_file(tmp_path / "ck" / "step-00000005" / "model.safetensors")
    assert torch.equal(tensors["model.vd.embedding"], trainer.module.model.vd.embedding)
    fresh, _, _ = tiny_soho()
    checkpoint.load_weights(fresh, tmp_path / "ck" / "step-00000005")
    assert torch.equal(fresh.model.vision.project.weight, trainer.module.model.vision.project.weight)


def test_checkpoint_every_zero_writes_no_step_checkpoint(tmp_path):
    trainer = train_soho(tmp_path / "none", checkpoint_every=0)
    assert trainer.step == 5 and checkpoint.list_checkpoints(tmp_path / "none") == []


def test_frozen_word_embeddings_and_their_tied_decoder_stay_fixed_while_the_rest_trains(tmp_path):
    torch.manual_seed(0)
    tokenizer = load_tokenizer("minilm")
    model = SohoModel(tiny_model(vd=16, freeze_words=True))
    words = model.fusion.bert.embeddings.word_embeddings.weight
    assert model.mlm_head.predictions.decoder.weight is words
    assert all(p is not words for group in model.trainable_groups().values() for p in group)
    before_words, before_layer = (
        words.detach().clone(),
        model.fusion.bert.encoder.layer[0].output.dense.weight.detach().clone(),
    )
    cfg = OptimParams(steps=3, lr=1e-3, checkpoint_every=0, log_every=1)
    trainer = Trainer(
        Pretraining(model, ObjectiveParams(), tokenizer), model.trainable_groups(), cfg, 3, None, progress=False
    )
    trainer.fit(soho_batches(tokenizer))
    assert torch.equal(words, before_words)
    assert not torch.equal(model.fusion.bert.encoder.layer[0].output.dense.weight, before_layer)


def test_a_code_change_changes_the_fingerprint_a_finished_run_is_kept_under(tmp_path):
    from soho.train.variants import code_digest

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.py").write_text("x = 1\n")
    (tmp_path / "loaders.py").write_text("y = 2\n")
    before = code_digest(("models", "loaders.py"), tmp_path)
    assert code_digest(("models", "loaders.py"), tmp_path) == before
    (tmp_path / "models" / "a.py").write_text("x = 2\n")
    edited = code_digest(("models", "loaders.py"), tmp_path)
    (tmp_path / "models" / "b.py").write_text("")
    assert len({before, edited, code_digest(("models", "loaders.py"), tmp_path)}) == 3


def test_a_stated_global_batch_sets_the_accumulation_from_the_process_count():
    """Issue 16 (2): the paper's global batch holds on 1 GPU or 8; one that does not divide is a one-line error."""
    from soho.overrides import ConfigError
    from soho.train.loop import accumulation

    cfg = OptimParams(batch_size=32, grad_accum=3, global_batch=512)
    assert [accumulation(cfg, world) for world in (1, 2, 8, 16)] == [16, 8, 2, 1]
    assert accumulation(OptimParams(batch_size=32, grad_accum=3), 8) == 3  # no global batch: as given
    with pytest.raises(
        ConfigError, match=r"optim.global_batch: 512 is not a multiple of batch_size x processes \(32 x 3 = 96\)"
    ):
        accumulation(cfg, 3)


def test_a_seeded_run_uses_torchs_deterministic_kernels():
    """Two threads reduced in a varying order on an AMX Xeon: one seed gave two pre-trainings (issue 13)."""
    from soho.train.loop import seed_everything

    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        seed_everything(0)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before)


def test_a_resumed_run_in_a_new_process_uses_torchs_deterministic_kernels_too(tmp_path):
    """A resume restores RNG states instead of seeding, so the kernels cannot hang on ``seed_everything``."""
    module, model, tokenizer = tiny_soho()
    cfg = OptimParams(steps=1, warmup_steps=0, checkpoint_every=0, log_every=1)
    trainer = Trainer(module, model.trainable_groups(), cfg, 3, tmp_path, progress=False)
    trainer.resume = lambda: True  # as if a checkpoint had been found: no seed_everything
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        trainer.fit(soho_batches(tokenizer))
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before)


def test_an_epoch_without_a_batch_is_an_error_not_a_silent_spin():
    model = torch.nn.Linear(2, 1)
    cfg = OptimParams(steps=2, lr=0.1, cnn_lr=0.1, warmup_steps=0, checkpoint_every=0, log_every=1)
    trainer = Trainer(model, {"transformer": list(model.parameters())}, cfg, 0, None, progress=False)
    with pytest.raises(ValueError, match=r"rank 0: epoch 0 gave no batch at step 0; a split needs at least one shard"):
        trainer.fit(lambda epoch: iter([]))
