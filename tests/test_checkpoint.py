import pytest
import torch

from dip.checkpoint import CheckpointMismatch, check_checkpoint, differences, fingerprint, what_differs
from dip.fit import FitSettings


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a checkpoint", r"not a readable checkpoint \(UnpicklingError\)"),
        ("OLD", "belongs to a fit of an older dip, which recorded no fingerprint"),
    ],
)
def test_an_unreadable_or_unfingerprinted_checkpoint_is_refused(tmp_path, content, message):
    ckpt = tmp_path / "checkpoint.pt"
    if content == "OLD":  # what dip wrote before checkpoints carried a fingerprint
        torch.save({"settings": {}, "seeds": [0], "elapsed": 0.0, "tracks": []}, ckpt)
    else:
        ckpt.write_bytes(content)
    with pytest.raises(CheckpointMismatch, match=f"checkpoint.pt: {message}; delete it or choose another --out"):
        check_checkpoint(ckpt, {"iterations": 30})
    assert not check_checkpoint(tmp_path / "none.pt", {})


def test_a_fingerprint_holds_every_setting_and_names_what_differs():
    a = fingerprint(FitSettings(), [0], {"observation": "x"})
    b = fingerprint(FitSettings(lr=0.001), [0, 1], {"observation": "x"})
    assert a["lr"] == 0.01 and a["seeds"] == [0] and a["observation"] == "x"
    assert differences(a, b) == ["lr", "seeds"] and what_differs(["lr", "seeds"]) == "lr, seeds differ"
    assert differences(a, {**a, "extra": 1}) == ["extra"] and what_differs(["extra"]) == "extra differs"
