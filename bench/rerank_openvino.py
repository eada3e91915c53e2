"""OpenVINO on our reranker's weights: fp32, and int8 by NNCF post-training quantization (a probe, issue 17).

    python bench/rerank_openvino.py --ov-python /tmp/vOV/bin/python [--work /tmp/rerank-ov] [--json]

OpenVINO is not a dependency of the project (optimum-intel, sentence-transformers' route to it, requires
transformers < 5.6; we lock 5.24), so it runs in a separate virtual environment given by ``--ov-python``
(``python3 -m venv /tmp/vOV && /tmp/vOV/bin/pip install openvino==2026.4.1 nncf==3.4.0 onnx scipy``). This
script, in the project's environment, builds the model of ``bench/rerank_speed.py`` (e5-small as a ``rope=False``
ViRanker with a seeded tanh head), exports it to a stock HF classifier and ONNX, tokenizes the same 100
Nanibot-train pairs (and 300 other train pairs for calibration), scores them with ONNX Runtime fp32 (the
reference) and times sentence-transformers' ``CrossEncoder``; then it runs itself under ``--ov-python``
(``--part ov``) to compile the ONNX graph with OpenVINO (CPU, 2 threads, latency hint) in fp32 and in int8
(``nncf.quantize``, default and ``ModelType.TRANSFORMER`` presets), each pair alone and in CrossEncoder-style
padded batches of 32: seconds per 100 pairs, max |Δ| and Spearman against the reference, and the batch drift
(a pair alone vs in its batch). Best of 2. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export(work: Path) -> dict:
    """Project side: graph, token ids, reference scores, CrossEncoder time → a summary dict."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import numpy as np
    import torch
    from rerank_speed import DATA, load_pairs, onnx_of_hf
    from sentence_transformers import CrossEncoder

    from reranker.e5_init import build_from_e5
    from reranker.hf_convert import export_hf_classifier
    from reranker.onnx_export import session
    from reranker.tokenizer import load_tokenizer

    pairs, calib = load_pairs(DATA, 100), load_pairs(DATA, 400, seed=7)[100:]
    torch.manual_seed(0)
    model = build_from_e5(rope=False, head_activation="tanh", use_bpt=False, dropout=0.0,
                          attention_dropout=0.0).eval()
    with torch.no_grad():
        model.heads[str(model.config.num_layers)].out.weight.normal_(0.0, 1.0)
    tok = load_tokenizer()
    hf_dir = export_hf_classifier(model, work / "hf", tokenizer=tok)
    graph = onnx_of_hf(hf_dir, work / "stock.onnx")

    def ids_of(ps: list[tuple[str, str]]) -> list[np.ndarray]:
        return [np.array(tok(q, p, truncation=True, max_length=256)["input_ids"], dtype=np.int64) for q, p in ps]

    ids = ids_of(pairs)
    np.savez(work / "pairs.npz", *ids)
    np.savez(work / "calib.npz", *ids_of(calib))
    sess = session(graph, 2)
    ref = np.array([float(np.ravel(sess.run(None, {"input_ids": x[None], "attention_mask": np.ones_like(x)[None]})[0])[0])
                    for x in ids])
    np.save(work / "ref.npy", ref)
    ce = CrossEncoder(str(hf_dir), max_length=256, device="cpu", local_files_only=True,
                      activation_fn=torch.nn.Identity())
    best, scores = 1e9, None
    for _ in range(2):
        t = time.perf_counter()
        scores = ce.predict(pairs, batch_size=32)
        best = min(best, time.perf_counter() - t)
    return {"crossencoder_s": round(best, 3), "crossencoder_maxdiff_vs_ort": float(np.abs(np.asarray(scores) - ref).max()),
            "torch_threads": torch.get_num_threads()}


def openvino_part(work: Path) -> dict:
    """OpenVINO side (run under ``--ov-python``)."""
    import nncf
    import numpy as np
    import openvino as ov
    from scipy.stats import spearmanr

    ids = list(np.load(work / "pairs.npz").values())
    cal = list(np.load(work / "calib.npz").values())
    ref = np.load(work / "ref.npy")
    core = ov.Core()

    def feed(x: np.ndarray) -> dict:
        return {"input_ids": x[None], "attention_mask": np.ones_like(x)[None]}

    def alone(cm: object) -> np.ndarray:
        req = cm.create_infer_request()  # type: ignore[attr-defined]
        return np.array([float(np.ravel(req.infer(feed(x))[0])[0]) for x in ids])

    def batched(cm: object, bs: int = 32) -> np.ndarray:
        req, out = cm.create_infer_request(), np.zeros(len(ids))  # type: ignore[attr-defined]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for a in range(0, len(order), bs):
            rows = order[a : a + bs]
            length = max(len(ids[i]) for i in rows)
            x, m = np.ones((len(rows), length), np.int64), np.zeros((len(rows), length), np.int64)
            for r, i in enumerate(rows):
                x[r, : len(ids[i])], m[r, : len(ids[i])] = ids[i], 1
            out[rows] = np.ravel(req.infer({"input_ids": x, "attention_mask": m})[0])
        return out

    def best(fn: object) -> tuple[float, np.ndarray]:
        b, r = 1e9, None
        for _ in range(2):
            t = time.perf_counter()
            r = fn()  # type: ignore[operator]
            b = min(b, time.perf_counter() - t)
        return round(b, 3), r

    cfg = {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY"}
    res: dict = {"openvino": ov.__version__, "nncf": nncf.__version__}
    c32 = core.compile_model(core.read_model(str(work / "stock.onnx")), "CPU", {**cfg, "INFERENCE_PRECISION_HINT": "f32"})
    res["fp32_alone_s"], s32 = best(lambda: alone(c32))
    res["fp32_batched_s"], b32 = best(lambda: batched(c32))
    res["fp32_maxdiff_vs_ort"] = float(max(np.abs(s32 - ref).max(), np.abs(b32 - ref).max()))
    calib = nncf.Dataset(cal, feed)
    for name, kw in {"int8_transformer": {"model_type": nncf.ModelType.TRANSFORMER}, "int8_default": {}}.items():
        q = nncf.quantize(core.read_model(str(work / "stock.onnx")), calib, subset_size=len(cal), **kw)
        cq = core.compile_model(q, "CPU", cfg)
        res[f"{name}_alone_s"], sq = best(lambda cq=cq: alone(cq))
        res[f"{name}_batched_s"], bq = best(lambda cq=cq: batched(cq))
        res[f"{name}_spearman_vs_fp32"] = round(float(spearmanr(sq, ref).correlation), 4)
        res[f"{name}_maxdiff_vs_fp32"] = float(np.abs(sq - ref).max())
        res[f"{name}_batch_drift"] = float(np.abs(sq - bq).max())
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ov-python", default=None, help="python of a venv with openvino + nncf")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rerank-ov"))
    ap.add_argument("--part", choices=("all", "ov"), default="all")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.part == "ov":
        print(json.dumps(openvino_part(a.work)))
        return 0
    if not a.ov_python:
        raise SystemExit("--ov-python is required (a venv with openvino and nncf; see the docstring)")
    out = {"bench": "rerank_openvino", "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
           "load_before": [round(x, 2) for x in os.getloadavg()], **export(a.work)}
    run = subprocess.run([a.ov_python, __file__, "--part", "ov", "--work", str(a.work)], capture_output=True,
                         text=True, check=True)
    ov_res = json.loads(run.stdout.strip().splitlines()[-1])
    ce = out["crossencoder_s"]
    ov_res.update({f"{k[:-2]}_speedup_vs_crossencoder": round(ce / v, 3) for k, v in list(ov_res.items())
                   if k.endswith("_s") and isinstance(v, float)})
    out.update(openvino=ov_res, load_after=[round(x, 2) for x in os.getloadavg()])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
