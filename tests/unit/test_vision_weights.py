"""ResNet weights (``model.vision.weights``) load strictly: a file that does not fit is one error line."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock

from soho.models.vision import build_resnet
from soho.overrides import ConfigError
from soho.stage import USER_ERRORS

LAYERS = [1, 1, 1, 1]


def _torchvision_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return resnet.ResNet(BasicBlock, LAYERS).state_dict()


def test_a_torchvision_state_dict_loads_with_its_classifier_ignored(tmp_path):
    state = _torchvision_state()
    assert "fc.weight" in state
    file = tmp_path / "resnet.pt"
    torch.save(state, file)
    trunk, _ = build_resnet("resnet", LAYERS, file)
    assert torch.equal(trunk[0].weight, state["conv1.weight"])  # conv1
    assert torch.equal(trunk[7][0].bn2.running_var, state["layer4.0.bn2.running_var"])


def test_a_prefixed_state_dict_is_refused_naming_the_file_and_keys(tmp_path):
    file = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in _torchvision_state().items()}, file)
    with pytest.raises(ConfigError) as caught:
        build_resnet("resnet", LAYERS, file)
    message = str(caught.value)
    assert isinstance(caught.value, USER_ERRORS) and "\n" not in message
    assert message.startswith(f"model.vision.weights: {file}: ")
    assert "missing conv1.weight, bn1.weight, bn1.bias (+" in message
    assert "unexpected module.conv1.weight" in message
    assert "module.fc" not in message  # the classifier's keys are not named: only ``fc.`` ones are skipped


def test_a_deeper_file_is_refused_for_its_extra_blocks(tmp_path):
    file = tmp_path / "resnet18.pt"
    torch.save(resnet.resnet18(weights=None).state_dict(), file)  # two blocks per stage, the model has one
    with pytest.raises(ConfigError, match=r"unexpected layer1\.1\.conv1\.weight"):
        build_resnet("resnet", LAYERS, file)


def test_a_file_that_is_not_a_state_dict_is_one_line(tmp_path):
    file = tmp_path / "notes.pt"
    file.write_text("not a checkpoint\n")
    with pytest.raises(ConfigError, match=r"^model\.vision\.weights: .*notes\.pt: not a torch state dict") as caught:
        build_resnet("resnet", LAYERS, file)
    assert "\n" not in str(caught.value)


def test_a_missing_starting_weight_is_one_line_naming_the_key_and_the_command_that_fetches_it(tmp_path):
    """Issue 16 (6): the paper profile's weights live in weights/; one not there says how to get it."""
    from soho.models.fusion import resolve_text_model
    from soho.models.vision import build_resnet

    with pytest.raises(ConfigError) as bert:
        resolve_text_model(str(tmp_path / "weights" / "bert-base-uncased"))
    message = str(bert.value)
    assert message.startswith(f"model.text.init: {tmp_path}/weights/bert-base-uncased has no config.json")
    assert "huggingface-cli download google-bert/bert-base-uncased --revision 86b5e093" in message
    assert "\n" not in message
    with pytest.raises(ConfigError) as resnet:
        build_resnet("resnet101", None, tmp_path / "weights" / "resnet101-imagenet.pth")
    message = str(resnet.value)
    assert message.startswith(f"model.vision.weights: {tmp_path}/weights/resnet101-imagenet.pth does not exist")
    assert "https://download.pytorch.org/models/resnet101-63fe2227.pth" in message and "\n" not in message
