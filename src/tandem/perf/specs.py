"""Model and hardware specifications: the nouns every cost model is built from.

``ModelSpec`` holds the transformer shape (what decides FLOPs, weight bytes and KV bytes);
``HardwareSpec`` holds one GPU's peak numbers and the link that carries KV between instances.
Both are frozen; the built-in tables are read-only mappings keyed by short lowercase names
(``llama3-8b``, ``h100``). Numbers and their sources are listed next to each entry and in
``docs/perf_model.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tandem.errors import ConfigError, UnknownNameError

GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Shape of a dense decoder-only transformer (weights and KV cache in ``dtype_bytes``)."""

    name: str
    hf_id: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_params: int
    dtype_bytes: int = 2
    #: SwiGLU-style MLP (gate, up, down) rather than two matrices (up, down).
    gated_mlp: bool = True
    max_context_tokens: int = 4096

    def __post_init__(self) -> None:
        for field_name in (
            "num_layers",
            "hidden_size",
            "num_attention_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "num_params",
            "dtype_bytes",
            "max_context_tokens",
        ):
            if getattr(self, field_name) <= 0:
                raise ConfigError(f"model '{self.name}': {field_name} must be > 0")
        if self.num_attention_heads % self.num_kv_heads:
            raise ConfigError(
                f"model '{self.name}': num_attention_heads must be a multiple of num_kv_heads"
            )

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of every layer for one token: 2 x layers x KV heads x head dim x bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    @property
    def weight_bytes(self) -> int:
        """Bytes of all parameters (embeddings included)."""
        return self.num_params * self.dtype_bytes

    @property
    def matmul_params_per_layer(self) -> int:
        """Parameters of the projections of one layer (what a token multiplies by)."""
        q_out = self.num_attention_heads * self.head_dim
        kv_out = 2 * self.num_kv_heads * self.head_dim
        attention = self.hidden_size * (q_out + kv_out) + q_out * self.hidden_size
        mlp = (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size
        return attention + mlp

    def check_tensor_parallel(self, tensor_parallel: int) -> None:
        """Raise ``ConfigError`` unless the heads split evenly over ``tensor_parallel`` GPUs."""
        if tensor_parallel <= 0:
            raise ConfigError(f"tensor parallel degree must be >= 1, got {tensor_parallel}")
        if self.num_attention_heads % tensor_parallel:
            raise ConfigError(
                f"model '{self.name}': {self.num_attention_heads} attention heads do not split "
                f"over tensor parallel {tensor_parallel}"
            )


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """Peak numbers of one GPU and of the links around it (bytes and seconds)."""

    name: str
    description: str
    peak_bf16_flops: float
    hbm_bandwidth_bytes_per_s: float
    hbm_capacity_bytes: int
    #: NVLink bandwidth per GPU, one direction (tensor-parallel all-reduce inside an instance).
    intra_node_bandwidth_bytes_per_s: float
    #: Inter-node NIC bandwidth per GPU, one direction: what carries KV between instances.
    kv_link_bandwidth_bytes_per_s: float
    kv_link_latency_s: float
    gpus_per_node: int
    source: str

    def __post_init__(self) -> None:
        for field_name in (
            "peak_bf16_flops",
            "hbm_bandwidth_bytes_per_s",
            "hbm_capacity_bytes",
            "intra_node_bandwidth_bytes_per_s",
            "kv_link_bandwidth_bytes_per_s",
            "gpus_per_node",
        ):
            if getattr(self, field_name) <= 0:
                raise ConfigError(f"hardware '{self.name}': {field_name} must be > 0")
        if self.kv_link_latency_s < 0:
            raise ConfigError(f"hardware '{self.name}': kv_link_latency_s must be >= 0")


_AIC = "aiconfigurator systems/{}.yaml (commit 095f58a)"


def _model(
    name: str,
    hf_id: str,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    ffn: int,
    vocab: int,
    params: int,
    max_context: int,
    gated: bool = True,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        hf_id=hf_id,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=hidden // heads,
        intermediate_size=ffn,
        vocab_size=vocab,
        num_params=params,
        gated_mlp=gated,
        max_context_tokens=max_context,
    )


# Shapes from each model's Hugging Face config.json; parameter counts from the safetensors
# index (OPT's are computed from the shapes). All in bf16 (2 bytes).
MODELS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        m.name: m
        for m in (
            # name, Hugging Face id, layers, hidden size, heads, KV heads, MLP size
            _model(
                "llama2-7b",
                "meta-llama/Llama-2-7b-hf",
                32,
                4096,
                32,
                32,
                11008,
                vocab=32000,
                params=6_738_415_616,
                max_context=4096,
            ),
            _model(
                "llama2-70b",
                "meta-llama/Llama-2-70b-hf",
                80,
                8192,
                64,
                8,
                28672,
                vocab=32000,
                params=68_976_648_192,
                max_context=4096,
            ),
            _model(
                "llama3-8b",
                "meta-llama/Meta-Llama-3-8B",
                32,
                4096,
                32,
                8,
                14336,
                vocab=128256,
                params=8_030_261_248,
                max_context=8192,
            ),
            _model(
                "llama3-70b",
                "meta-llama/Meta-Llama-3-70B",
                80,
                8192,
                64,
                8,
                28672,
                vocab=128256,
                params=70_553_706_496,
                max_context=8192,
            ),
            _model(
                "codellama-34b",
                "codellama/CodeLlama-34b-Instruct-hf",
                48,
                8192,
                64,
                8,
                22016,
                vocab=32000,
                params=33_743_970_304,
                max_context=16384,
            ),
            # DeepSeek-R1-Distill-Qwen-7B has exactly this architecture (see ALIASES).
            _model(
                "qwen2.5-7b",
                "Qwen/Qwen2.5-7B",
                28,
                3584,
                28,
                4,
                18944,
                vocab=152064,
                params=7_615_616_512,
                max_context=32768,
            ),
            _model(
                "opt-13b",
                "facebook/opt-13b",
                40,
                5120,
                40,
                40,
                20480,
                vocab=50272,
                params=12_853_000_000,
                max_context=2048,
                gated=False,
            ),
            _model(
                "opt-66b",
                "facebook/opt-66b",
                64,
                9216,
                72,
                72,
                36864,
                vocab=50272,
                params=65_700_000_000,
                max_context=2048,
                gated=False,
            ),
            _model(
                "bloom-176b",
                "bigscience/bloom",
                70,
                14336,
                112,
                112,
                57344,
                vocab=250880,
                params=176_247_271_424,
                max_context=8192,
                gated=False,
            ),
        )
    }
)

#: Other names for the same architecture.
ALIASES: Mapping[str, str] = MappingProxyType({"deepseek-r1-distill-qwen-7b": "qwen2.5-7b"})

HARDWARE: Mapping[str, HardwareSpec] = MappingProxyType(
    {
        h.name: h
        for h in (
            HardwareSpec(
                "a100",
                "NVIDIA A100-SXM4-80GB",
                312e12,
                2.039e12,
                80 * GIB,
                300e9,
                25e9,
                10e-6,
                8,
                _AIC.format("a100_sxm") + "; NVIDIA A100 datasheet (312 TFLOPS dense "
                "BF16, 2,039 GB/s HBM2e, NVLink 600 GB/s total); HDR 200 Gb/s NIC",
            ),
            HardwareSpec(
                "h100",
                "NVIDIA H100 80GB HBM3 (SXM5)",
                989e12,
                3.35e12,
                80 * GIB,
                450e9,
                50e9,
                10e-6,
                8,
                _AIC.format("h100_sxm") + "; NVIDIA H100 datasheet (989 TFLOPS dense "
                "BF16, 3.35 TB/s, NVLink 900 GB/s total); NDR 400 Gb/s NIC",
            ),
            HardwareSpec(
                "h200",
                "NVIDIA H200 141GB HBM3e (SXM)",
                989e12,
                4.8e12,
                141 * GIB,
                450e9,
                50e9,
                10e-6,
                8,
                _AIC.format("h200_sxm") + "; NVIDIA H200 datasheet (4.8 TB/s, 141 GB "
                "(aiconfigurator counts 141 GiB)); NDR 400 Gb/s NIC",
            ),
            HardwareSpec(
                "b200",
                "NVIDIA B200 (HGX, 180 GiB usable)",
                2.25e15,
                7.7e12,
                180 * GIB,
                900e9,
                100e9,
                10e-6,
                8,
                _AIC.format("b200_sxm") + "; NVIDIA Blackwell datasheet (2.25 PFLOPS "
                "dense BF16, NVLink 1.8 TB/s total); XDR 800 Gb/s NIC",
            ),
        )
    }
)


def get_model(name: str) -> ModelSpec:
    """The built-in ``ModelSpec`` called ``name`` (case-insensitive; aliases accepted)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in MODELS:
        raise UnknownNameError("model", name, [*MODELS, *ALIASES])
    return MODELS[key]


def get_hardware(name: str) -> HardwareSpec:
    """The built-in ``HardwareSpec`` called ``name`` (``a100``, ``h100``, ``h200``, ``b200``)."""
    key = name.strip().lower()
    if key not in HARDWARE:
        raise UnknownNameError("hardware", name, HARDWARE)
    return HARDWARE[key]
