"""Toy RL tasks for the RL tests (importable by `accelerate launch` workers via PYTHONPATH=tests)."""
from transformers import AutoTokenizer

PROMPTS = ["Ada Vell was born in", "The quick brown fox", "Question : where", "It is likely"]


def target_token_reward(model_dir: str, token: str = "Qorvath", per_token: bool = False):
    "Reward = the fraction of completion tokens equal to `token` (or, per token, 1 on each such token)."
    target = AutoTokenizer.from_pretrained(model_dir).convert_tokens_to_ids(token)

    def reward(prompts, completions, completion_ids, **columns):
        if per_token: return [[float(i == target) for i in ids] for ids in completion_ids]
        return [sum(i == target for i in ids) / max(len(ids), 1) for ids in completion_ids]
    reward.__name__ = f"fraction_of_{token}"
    return reward


def write_prompts(path, repeat: int = 8):
    "A JSONL prompt file for the toy task."
    from lcal.core import write_jsonl
    return write_jsonl(path, [{"prompt": p} for p in PROMPTS * repeat])
