"""The MLM head's transform and bias start from the text checkpoint where it has them (bert-base), else random."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, BertModel

from soho.models.fusion import load_tokenizer
from soho.models.soho import SohoModel
from soho.sections import ModelParams, TextParams, VdParams, VisionParams


def _tiny_bert(folder: Path, with_head: bool) -> dict[str, torch.Tensor]:
    """A 16-wide, 1-layer BERT saved as transformers saves it, with or without ``cls.predictions.*``."""
    torch.manual_seed(1)
    config = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    model = BertForMaskedLM(config) if with_head else BertModel(config)
    if with_head:  # far from any init: loaded, not re-initialised
        with torch.no_grad():
            model.cls.predictions.transform.LayerNorm.weight.fill_(3.0)
            model.cls.predictions.bias.uniform_(-1, 1)
    model.save_pretrained(folder)
    load_tokenizer("minilm").save_pretrained(folder)  # MiniLM's word pieces: the vocabulary sizes agree
    return {k: v.clone() for k, v in model.state_dict().items()}


def _model(folder: Path) -> SohoModel:
    text = TextParams(init=str(folder), num_layers=1, pooling="cls")
    return SohoModel(ModelParams(image_size=32, vision=VisionParams(), text=text, vd=VdParams(size=8)))


def test_mlm_transform_and_bias_come_from_a_checkpoint_that_has_them(tmp_path):
    saved = _tiny_bert(tmp_path, with_head=True)
    predictions = _model(tmp_path).mlm_head.predictions
    for key in ("dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias"):
        assert torch.equal(predictions.transform.state_dict()[key], saved[f"cls.predictions.transform.{key}"]), key
    assert torch.equal(predictions.bias, saved["cls.predictions.bias"])
    assert predictions.decoder.bias is predictions.bias  # still one parameter


def test_a_checkpoint_without_a_head_keeps_the_random_init_and_the_tied_decoder(tmp_path):
    _tiny_bert(tmp_path, with_head=False)  # as the embedded profile's MiniLM: no cls.* in the file
    model = _model(tmp_path)
    predictions = model.mlm_head.predictions
    assert model.fusion.pretrained_mlm is None
    assert torch.equal(predictions.transform.LayerNorm.weight, torch.ones(16)) and not predictions.bias.any()
    assert predictions.decoder.weight is model.fusion.bert.embeddings.word_embeddings.weight


def test_what_the_file_lacks_is_initialised_without_moving_the_global_rng(tmp_path):
    """The rest of the model draws the same numbers whatever heads the text checkpoint has."""
    built = []
    for with_head in (True, False):
        _tiny_bert(tmp_path / str(with_head), with_head)
        torch.manual_seed(0)
        built.append(_model(tmp_path / str(with_head)))
    assert torch.equal(built[0].itm_head.weight, built[1].itm_head.weight)
    assert torch.equal(built[0].vision.project.weight, built[1].vision.project.weight)
