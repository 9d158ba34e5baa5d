"""Saved SSVD-O adapters load with stock ``PeftModel.from_pretrained`` in either import order,
and one target list (peft names/suffixes and the plugins' globs) works in both places."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

import cl_ssvdo  # noqa: E402
from cl_ssvdo.baselines import resolve_targets, target_matches  # noqa: E402
from cl_ssvdo.ssvdo.peft_registration import targets_regex  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

LOAD = """
import sys, torch
from torch import nn
if sys.argv[2] == "cl_ssvdo_first":
    import cl_ssvdo
    import peft
else:
    import peft
    import cl_ssvdo
torch.manual_seed(1)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 8))).double()
model.load_state_dict(torch.load(sys.argv[1] + "/base.pt"))
loaded = peft.PeftModel.from_pretrained(model, sys.argv[1])
x = torch.load(sys.argv[1] + "/x.pt")
torch.save(loaded(x).detach(), sys.argv[1] + "/y_" + sys.argv[2] + ".pt")
print(loaded.peft_config["default"].peft_type)
"""


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 8))).double()


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    folder = tmp_path_factory.mktemp("adapter")
    model = _model()
    torch.save(model.state_dict(), folder / "base.pt")
    # a glob ("2.*") next to a peft name ("0"): one list for both syntaxes
    config = cl_ssvdo.SSVDOConfig(target_modules=["0", "2.*"], inner_ratio=0.5)
    peft_model = peft.get_peft_model(model, config)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.save(x, folder / "x.pt")
    peft_model.save_pretrained(folder)
    return folder, peft_model(x).detach()


@pytest.mark.parametrize("order", ["cl_ssvdo_first", "peft_first"])
def test_from_pretrained_in_either_import_order(saved_adapter, order: str) -> None:
    folder, expected = saved_adapter
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(folder), order],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SSVDO" in done.stdout
    got = torch.load(folder / f"y_{order}.pt")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert not torch.allclose(got, _model()(torch.load(folder / "x.pt")))  # the adapter acts


def test_glob_and_suffix_name_the_same_layers() -> None:
    model = _model()
    assert resolve_targets(model, ["2.0"]) == resolve_targets(model, ["*.0"]) == ["2.0"]
    assert resolve_targets(model, ["0"]) == ["0", "2.0"]  # peft's suffix rule
    assert not target_matches("12.0", "2.0")  # suffix means a whole name component
    rx = targets_regex(["0", "2.*"])
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert [n for n in names if re.fullmatch(rx, n)] == ["0", "2.0"]
    peft_model = peft.get_peft_model(
        _model(), cl_ssvdo.SSVDOConfig(target_modules=["*.0"], inner_ratio=0.5)
    )
    wrapped = [n for n, m in peft_model.named_modules() if type(m).__name__ == "SSVDOPeftLinear"]
    assert [n.split("model.", 2)[-1] for n in wrapped] == ["2.0"]
