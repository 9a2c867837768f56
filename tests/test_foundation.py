"""The package installs as a console script, imports without the gpu extra, and loads tiny models via Auto*."""
import subprocess
import sys
from pathlib import Path

import lcal

ROOT = Path(__file__).resolve().parent.parent


def test_console_script_help_and_errors():
    exe = Path(sys.executable).parent / "lcal"
    assert exe.exists(), "the `lcal` console script is not installed"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "info" in out.stdout
    bad = subprocess.run([str(exe), "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_runs_command_lists_stages(tmp_path):
    from lcal.stages import run_stage
    run_stage(tmp_path / "run" / "sample", "sample", {"n": 2}, lambda tmp: (tmp / "rows.jsonl").write_text(""))
    (tmp_path / "run" / ".train.partial").mkdir()
    exe = Path(sys.executable).parent / "lcal"
    out = subprocess.run([str(exe), "runs", str(tmp_path / "run")], capture_output=True, text=True)
    rows = [line.split()[:2] for line in out.stdout.splitlines()]
    assert out.returncode == 0 and rows == [["name", "status"], ["train", "partial"], ["sample", "finished"]], out.stdout
    bad = subprocess.run([str(exe), "runs", str(tmp_path / "nope")], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "no such directory" in bad.stderr


def test_ctrl_c_ends_a_command_with_one_line_and_no_traceback(tmp_path):
    "SIGINT while a stage runs (pretraining a world model): exit 130, `interrupted; rerun to resume`, no traceback."
    import os
    import signal
    exe = Path(sys.executable).parent / "lcal"
    env = {**os.environ, "LCAL_HOME": str(tmp_path)}
    proc = subprocess.Popen([str(exe), "world", "report", "--size", "tiny", "--figure", ""], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    err = ""
    while "stage base_model: running" not in err:       # interrupt in the middle of the stage
        line = proc.stderr.readline()
        assert line, err
        err += line
    proc.send_signal(signal.SIGINT)
    err += proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "lcal world: interrupted; rerun to resume"


def test_every_module_imports_without_gpu_extras():
    "Block the gpu-extra packages and import every generated module in a fresh interpreter."
    modules = sorted(p.stem for p in (ROOT / "lcal").glob("*.py") if not p.stem.startswith("_"))
    code = ("import sys\n"
            "for m in ['vllm', 'flash_attn', 'deepspeed', 'bitsandbytes']: sys.modules[m] = None\n"
            "import importlib\n"
            f"for m in {modules!r}: importlib.import_module('lcal.' + m)\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_tiny_models_reload_through_auto_classes(tiny_lm_dir, tiny_word_lm_dir):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    for d in (tiny_lm_dir, tiny_word_lm_dir):
        tok = AutoTokenizer.from_pretrained(d)
        lm = AutoModelForCausalLM.from_pretrained(d)
        enc = tok(["one prompt", "a second, longer prompt"], return_tensors="pt", padding=True)
        assert lm(**enc).logits.shape[:2] == enc["input_ids"].shape
        assert AutoModelForSequenceClassification.from_pretrained(d, num_labels=1)(**enc).logits.shape == (2, 1)


def test_version_is_exposed():
    assert isinstance(lcal.__version__, str) and lcal.__version__
