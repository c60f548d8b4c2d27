"""Study: which free-text parity metric ranks real models like human-validated leaderboards.

Run: ``python benchmarks/study_free_text.py [--n 200] [--mt 80]`` (CPU: about 8,000 answers to
embed with the defaults; vectors are cached in ``--cache``, default ``/tmp/migrate-eval-study``).

Data: ``../shared/data/alpaca_eval`` (GPT-4-turbo ``gpt4_1106_preview`` as the logged baseline,
15 candidates, first ``--n`` instructions) and ``../shared/data/mt_bench`` (``gpt-4`` as the
baseline, 30 candidates, first ``--mt`` questions, both turns). Per candidate the mean of each
metric is ranked against published figures (Spearman, Kendall): AlpacaEval 2.0 length-controlled
win rates (tatsu-lab/alpaca_eval, src/alpaca_eval/leaderboards/data_AlpacaEval_2/
weighted_alpaca_eval_gpt4_turbo_leaderboard.csv) and MT-bench scores / Arena Elo
(lm-sys/lm-sys.github.io, blog/2023-06-22-leaderboard.md, Table 1). Also printed: the level of
an unrelated answer (another item's logged answer) per metric. Results: docs/free-text-parity.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scipy.stats import kendalltau, spearmanr  # noqa: E402

from migrate_eval.core import _minilm  # noqa: E402
from migrate_eval.score.overlap import token_f1_score  # noqa: E402
from migrate_eval.score.text import chrf_score, rouge_l_score  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
AE_LC = {
    "gpt-4o-2024-05-13": 57.46, "gpt-4-turbo-2024-04-09": 55.02,
    "claude-3-5-sonnet-20240620": 52.37, "gpt-4o-mini-2024-07-18": 50.73,
    "claude-3-opus-20240229": 40.51, "Qwen2-72B-Instruct": 38.07,
    "Meta-Llama-3-70B-Instruct": 34.42, "gpt4_0613": 30.18, "Mixtral-8x7B-Instruct-v0.1": 23.69,
    "gpt-3.5-turbo-0613": 22.35, "Meta-Llama-3.1-8B-Instruct-Turbo": 20.85,
    "gpt-3.5-turbo-1106": 19.30, "Mistral-7B-Instruct-v0.2": 17.11, "gemma-2b-it": 5.44,
    "llama-2-7b-chat-hf": 5.35,
}  # fmt: skip
MT_BENCH = {
    "gpt-3.5-turbo": (7.94, 1130), "claude-v1": (7.9, 1178), "claude-instant-v1": (7.85, 1156),
    "vicuna-33b-v1.3": (7.12, None), "wizardlm-30b": (7.01, None), "guanaco-33b": (6.53, 1065),
    "tulu-30b": (6.43, None), "guanaco-65b": (6.41, None), "oasst-sft-7-llama-30b": (6.41, None),
    "palm-2-chat-bison-001": (6.4, 1038), "vicuna-13b-v1.3": (6.39, 1061),
    "mpt-30b-chat": (6.39, None), "wizardlm-13b": (6.35, 1048), "vicuna-7b-v1.3": (6.0, 1008),
    "baize-v2-13b": (5.75, None), "nous-hermes-13b": (5.51, None), "mpt-7b-chat": (5.42, 956),
    "gpt4all-13b-snoozy": (5.41, 986), "koala-13b": (5.35, 992), "mpt-30b-instruct": (5.22, None),
    "falcon-40b-instruct": (5.17, None), "h2ogpt-oasst-open-llama-13b": (4.63, None),
    "alpaca-13b": (4.53, 930), "chatglm-6b": (4.5, 905), "oasst-sft-4-pythia-12b": (4.32, 924),
    "rwkv-4-raven-14b": (3.98, 950), "dolly-v2-12b": (3.28, 850), "fastchat-t5-3b": (3.04, 897),
    "stablelm-tuned-alpha-7b": (2.75, 871), "llama-13b": (2.61, 826),
}  # fmt: skip
LEXICAL: dict[str, Callable[[str, str], float]] = {
    "chrf": chrf_score,
    "token_f1": token_f1_score,
    "rouge_l": rouge_l_score,
    "length_ratio": lambda a, b: (
        1.0 if len(a) == len(b) else min(len(a), len(b)) / max(len(a), len(b))
    ),
}


def _alpaca(n: int) -> dict[str, list[str]]:
    base = json.loads((DATA / "alpaca_eval" / "gpt4_1106_preview.json").read_text())[:n]
    out = {}
    for path in sorted((DATA / "alpaca_eval").glob("*.json")):
        by = {r["instruction"]: r["output"] for r in json.loads(path.read_text())}
        out[path.stem] = [by.get(r["instruction"], "") for r in base]
    return out


def _mt(questions: int, turn: int) -> dict[str, list[str]]:
    lines = (DATA / "mt_bench" / "question.jsonl").read_text().splitlines()
    qids = [json.loads(line)["question_id"] for line in lines][:questions]
    out = {}
    for path in sorted((DATA / "mt_bench" / "model_answer").glob("*.jsonl")):
        ans = {}
        for line in path.read_text().splitlines():
            r = json.loads(line)
            ans[r["question_id"]] = r["choices"][0]["turns"]
        out[path.stem] = [ans[q][turn] if len(ans.get(q, [])) > turn else "" for q in qids]
    return out


def _embed(texts: list[str], cache: Path) -> np.ndarray:
    if cache.exists():
        return np.load(cache)
    vectors = _minilm.encode(texts)
    np.save(cache, vectors)
    return vectors


def _means(base: list[str], cand: list[str], eb: np.ndarray, ec: np.ndarray) -> dict[str, float]:
    out = {
        k: float(np.mean([f(a, b) for a, b in zip(base, cand, strict=True)]))
        for k, f in LEXICAL.items()
    }
    out["cosine"] = float(np.clip((eb * ec).sum(axis=1), 0, 1).mean())
    out["(cosine+token_f1)/2"] = (out["cosine"] + out["token_f1"]) / 2
    out["(cosine+rouge_l)/2"] = (out["cosine"] + out["rouge_l"]) / 2
    return out


def _study(
    name: str, baseline: str, answers: dict[str, list[str]], cache: Path
) -> dict[str, dict[str, float]]:
    vec = {m: _embed(t, cache / f"{name}-{len(t)}-{m}.npy") for m, t in answers.items()}
    base = answers[baseline]
    rows = {m: _means(base, t, vec[baseline], vec[m]) for m, t in answers.items() if m != baseline}
    shifted = base[1:] + base[:1]
    rows["(unrelated answer)"] = _means(
        base, shifted, vec[baseline], np.roll(vec[baseline], -1, axis=0)
    )
    return rows


def _print(title: str, rows: dict[str, dict[str, float]], truth: dict[str, float | None]) -> None:
    models = [m for m in rows if truth.get(m) is not None]
    print(f"\n{title} (n={len(models)} models): Spearman / Kendall; unrelated-answer level")
    for k in rows[models[0]]:
        x, y = [rows[m][k] for m in models], [truth[m] for m in models]
        print(
            f"  {k:22s} {spearmanr(x, y)[0]:+.3f} / {kendalltau(x, y)[0]:+.3f}   {rows['(unrelated answer)'][k]:.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="AlpacaEval instructions (of 805)")
    ap.add_argument("--mt", type=int, default=80, help="MT-bench questions (of 80)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/migrate-eval-study"))
    args = ap.parse_args()
    if not (DATA / "alpaca_eval").is_dir() or not (DATA / "mt_bench").is_dir():
        sys.exit("needs ../shared/data/alpaca_eval and ../shared/data/mt_bench")
    args.cache.mkdir(parents=True, exist_ok=True)
    _print(
        "AlpacaEval vs AlpacaEval 2.0 LC",
        _study("alpaca", "gpt4_1106_preview", _alpaca(args.n), args.cache),
        dict(AE_LC),
    )
    turns = [_study(f"mt{t}", "gpt-4", _mt(args.mt, t), args.cache) for t in (0, 1)]
    both = {m: {k: (turns[0][m][k] + turns[1][m][k]) / 2 for k in turns[0][m]} for m in turns[0]}
    _print("MT-bench (both turns) vs MT-bench score", both, {m: v[0] for m, v in MT_BENCH.items()})
    _print("MT-bench (both turns) vs Arena Elo", both, {m: v[1] for m, v in MT_BENCH.items()})


if __name__ == "__main__":
    main()
