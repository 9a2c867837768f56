"""`lcal study lc` for real on the tiny world with a shrunk config: 1 world seed x 2 training seeds, each cell in its
own `lcal lc all` subprocess. Checks study.json's schema, that the claims are booleans, that each cell's machine record
names the CPU, and that a second invocation skips both cells."""
import json
import shutil

from lcal.core import lcal_home
from lcal.lc import LCConfig
from lcal.lc_results import RESULT_KEYS
from lcal.study import study_command
from lcal.world_model import world_dir

# tests/test_lc_demo.py's quick_config as LCConfig overrides
QUICK = {"sampling": {"m_samples": 4, "max_new_tokens": 24},
         "policy_sft": {"sft": {"max_steps": 3, "per_device_train_batch_size": 16}, "replay_docs": 20},
         "reader": {"paragraphs": 1, "max_new_tokens": 24, "rm_epochs": 0.2,
                    "extractor_sft": {"max_steps": 3, "per_device_train_batch_size": 16, "freeze_embeddings": False}},
         "rl": {"algorithm": "grpo", "max_steps": 2, "prompts_per_step": 2, "generations": 4, "seconds": 60,
                "max_new_tokens": 24},
         "evaluation": {"samples": 1, "max_new_tokens": 24}}
CLAIMS = 4


def test_study_runs_cells_records_them_and_resumes(tmp_path, tiny_world, capsys):
    out, config = tmp_path / "study", tmp_path / "quick.json"
    config.write_text(json.dumps(QUICK))
    # the default-kernel cells' lcal home starts with the session's tiny world (built with the default kernels)
    world = world_dir(tiny_world.world)
    shutil.copytree(world, out / "homes" / "default" / world.relative_to(lcal_home()))
    argv = ["lc", "--world", "tiny", "--world-seeds", "0", "--seeds", "0,1", "--config", str(config),
            "--out", str(out), "--n-resamples", "200"]
    assert study_command(argv) == 0
    printed = capsys.readouterr().out
    assert "[1/2] start tiny_w0_s0_default" in printed and "[2/2] done  tiny_w0_s1_default in" in printed

    study = json.loads((out / "study.json").read_text())
    assert {"study", "config", "config_hash", "written", "cells", "summary"} <= set(study)
    assert [(c["world"], c["world_seed"], c["seed"], c["kernel"]) for c in study["cells"]] == \
           [("tiny", 0, 0, "default"), ("tiny", 0, 1, "default")]
    for cell in study["cells"]:
        assert cell["status"] == "finished" and cell["seconds"] > 0 and cell["pipeline_seconds"] > 0
        assert list(cell["methods"]) == list(LCConfig().methods)
        assert all(tuple(row) == RESULT_KEYS for row in cell["methods"].values())
        assert len(cell["claims"]) == CLAIMS and all(isinstance(v, bool) for v in cell["claims"].values())
        machine = cell["machine"]
        assert machine["cpu_model"] and machine["cpu_model"] != "unknown" and machine["kernel"] == "default"
        assert machine["torch_threads"] >= 1 and {"python", "torch", "transformers", "trl", "lcal"} == set(machine["versions"])
        assert (out / "cells" / cell["cell"] / "log.txt").stat().st_size > 0
    assert not (out / "homes" / "AVX2").exists()
    summary = study["summary"]
    assert (summary["cells"], summary["finished"], summary["failed"]) == (2, 2, 0)
    assert set(summary["mean"]) == set(LCConfig().methods) and isinstance(summary["ece_criterion"]["holds"], bool)
    assert summary["ece_criterion"]["difference"]["units"] == 2 and len(summary["ece_criterion"]["difference"]["ci"]) == 2
    table = (out / "study.md").read_text()
    assert "| tiny_w0_s0_default | default | finished |" in table and "paired bootstrap 95% CI" in table

    records = {c["cell"]: (out / "cells" / c["cell"] / "cell.json").read_text() for c in study["cells"]}
    assert study_command(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("skip  tiny_w0_s") == 2 and "start" not in printed
    assert {name: (out / "cells" / name / "cell.json").read_text() for name in records} == records
    again = json.loads((out / "study.json").read_text())
    assert [c["methods"] for c in again["cells"]] == [c["methods"] for c in study["cells"]]
