"""ViRanker model configuration (a plain dataclass, saved as ``config.json``).

Defaults are the multilingual-e5-small dimensions (the encoder we initialize from), with RoPE and the
Blockwise Parallel Transformer switched on, as in ViRanker (arXiv 2509.09131).

``architecture`` picks the model class (one config, one factory: :func:`reranker.factory.create_model`):

* ``"joint"`` (default; every model dir written before the switch existed): :class:`reranker.model.ViRanker`,
  query and passage encoded jointly as ``<s> q </s></s> p </s>``.
* ``"gated"``: :class:`reranker.gated.GatedRanker`, e5's bi-encoder (two segments, e5's absolute positions)
  plus per-head tanh-gated cross-segment attention that starts closed; ``rope`` must be False there (RoPE
  only on the cross path, switched by ``cross_rope``) and the head is the pair head.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_NAME = "config.json"
ARCHITECTURES = ("joint", "gated")
# What config.json carries for the Hugging Face ecosystem (reranker.hf_model: AutoConfig, CrossEncoder) beside the
# ViRankerConfig fields; read back, these keys are ignored (any other unknown key is still an error).
HF_MODEL_TYPE = "viranker"
HF_KEYS = frozenset({
    "model_type", "architectures", "auto_map", "transformers_version", "torch_dtype", "dtype", "num_labels",
    "id2label", "label2id", "problem_type", "sentence_transformers", "initializer_range", "_name_or_path",
    "bos_token_id", "eos_token_id", "return_dict", "output_hidden_states", "output_attentions", "use_cache",
    "tie_word_embeddings", "chunk_size_feed_forward", "is_encoder_decoder", "tokenizer_class",
})


@dataclass
class ViRankerConfig:
    """Hyper-parameters of :class:`reranker.model.ViRanker`.

    Layer indices in ``exit_layers`` are 1-based; layer ``num_layers`` always has the main scoring head,
    every index listed here gets an extra early-exit head.
    """

    architecture: str = "joint"  # "joint" | "gated" (see the module docstring)
    vocab_size: int = 250037
    hidden_size: int = 384
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 514  # absolute positions (rope=False); XLM-R ids start at pad_token_id+1
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 1
    hidden_act: str = "gelu"  # exact erf GELU, as BERT / XLM-R
    rope: bool | None = None  # None -> True for "joint", False for "gated" (e5's absolute positions kept)
    cross_rope: bool = True  # "gated" only: RoPE on the cross-segment path (query then passage, one index space)
    rope_base: float = 10000.0
    use_bpt: bool = True  # blockwise attention + chunked FFN; False -> torch SDPA + whole FFN
    attn_block_size: int = 128
    ffn_chunk_size: int = 128
    head_hidden_size: int | None = None  # None -> hidden_size
    head_activation: str = "gelu"  # "gelu" or "tanh" (tanh == the HF XLM-R classification head)
    # What the scoring head reads: "cls" = the first token (BGE-M3 / XLM-R classifiers, the paper);
    # "mean" = masked mean of the layer's states (models initialized from mean-pooled encoders such as
    # multilingual-e5, whose first-token state barely varies between inputs: std 0.001 vs norm 4.9);
    # "pair" = the query tokens' mean q and the passage tokens' mean p of the joint encoding, scored as
    # MLP([q*p, |q-p|]) + s * cos(q, p) with a learnable s starting at ``pair_cos_init``: the
    # head starts from the encoder's own similarity instead of noise (see reranker.model.PairScoreHead).
    # "gated" needs "pair" (None resolves to it): the means of each e5 segment, specials included, as e5 pools.
    pooling: str | None = None  # None -> "cls" for "joint", "pair" for "gated"
    pair_cos_init: float = 20.0
    sep_token_id: int = 2  # </s>: splits query and passage for pooling="pair" (pairs are <s> q </s></s> p </s>)
    exit_layers: tuple[int, ...] = field(default_factory=tuple)
    dropout: float = 0.1
    attention_dropout: float = 0.1
    gradient_checkpointing: bool = False
    max_query_length: int = 64  # query content tokens kept (specials excluded)
    max_length: int = 256  # whole pair, specials included

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        gated = self.architecture == "gated"
        if self.rope is None:
            self.rope = not gated
        if self.pooling is None:
            self.pooling = "pair" if gated else "cls"
        if gated and self.rope:
            raise ValueError("architecture 'gated' keeps e5's absolute positions (rope must be False); "
                             "RoPE sits on the cross path only (cross_rope)")
        if gated and self.pooling != "pair":
            raise ValueError(f"architecture 'gated' scores the two segment means (pooling 'pair'), got {self.pooling!r}")
        self.exit_layers = tuple(sorted({int(i) for i in self.exit_layers}))
        if self.head_hidden_size is None:
            self.head_hidden_size = self.hidden_size
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if (self.rope or (gated and self.cross_rope)) and (self.hidden_size // self.num_heads) % 2:
            raise ValueError("RoPE needs an even head dimension")
        for i in self.exit_layers:
            if not 1 <= i <= self.num_layers:
                raise ValueError(f"exit layer {i} is outside 1..{self.num_layers}")
        if self.hidden_act != "gelu":
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported (only 'gelu')")
        if self.head_activation not in ("gelu", "tanh"):
            raise ValueError(f"head_activation must be 'gelu' or 'tanh', got {self.head_activation!r}")
        if self.pooling not in ("cls", "mean", "pair"):
            raise ValueError(f"pooling must be 'cls', 'mean' or 'pair', got {self.pooling!r}")
        if self.attn_block_size < 1 or self.ffn_chunk_size < 1:
            raise ValueError("attn_block_size and ffn_chunk_size must be >= 1")
        if self.max_query_length < 1 or self.max_length < self.max_query_length + 5:
            raise ValueError("need max_length >= max_query_length + 5 (4 specials + 1 passage token)")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def all_exit_layers(self) -> tuple[int, ...]:
        """Every layer that has a scoring head: the early exits plus the last layer."""
        return tuple(sorted(set(self.exit_layers) | {self.num_layers}))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["exit_layers"] = list(self.exit_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ViRankerConfig:
        """Build from a dict; unknown keys are an error (a typo must not silently change the model), the
        Hugging Face keys of :data:`HF_KEYS` are skipped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - HF_KEYS)
        if unknown:
            raise ValueError(f"unknown ViRankerConfig keys: {unknown}")
        d = {k: v for k, v in d.items() if k in names}
        if "exit_layers" in d:
            d["exit_layers"] = tuple(d["exit_layers"])
        return cls(**d)

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write ``config.json`` into directory ``path`` (or to ``path`` if it ends in .json); ``extra``: keys
        of :data:`HF_KEYS` to write beside the fields (``model_type``, ``architectures``, ``auto_map``, ...)."""
        bad = sorted(set(extra or {}) - HF_KEYS)
        if bad:
            raise ValueError(f"extra config keys must be Hugging Face keys ({sorted(HF_KEYS)}), got {bad}")
        path = Path(path)
        if path.suffix != ".json":
            path.mkdir(parents=True, exist_ok=True)
            path = path / CONFIG_NAME
        data = {**(extra or {}), **self.to_dict()}
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ViRankerConfig:
        """Read ``config.json`` from a directory or a .json file path."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no ViRanker config at {path}")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def replace(self, **changes) -> ViRankerConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
