"""Convert the embedded stories260K GGUF into a Hugging Face model directory.

Third-party servers (``transformers serve``) cannot read the GGUF's config, so this writes a
plain ``LlamaForCausalLM`` directory (config, safetensors, tokenizer) with fp32 weights and no
``quantization_config``, then checks that greedy ``generate`` of the converted model equals
tandem's ``ModelRunner`` greedy output for one prompt.

Usage: ``.venv/bin/python scripts/gguf_to_hf.py OUT_DIR [--gguf PATH] [--prompt TEXT]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

_CHECK_TOKENS = 48


def convert(gguf_path: Path, out_dir: Path) -> None:
    """Write ``out_dir`` as a ``LlamaForCausalLM`` directory equal in weights to the GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    kwargs = {"gguf_file": gguf_path.name, "local_files_only": True}
    where = str(gguf_path.parent)
    source = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    config = source.config
    config.architectures = ["LlamaForCausalLM"]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    # A tied LM head may be absent from the source's state dict; anything else is a real gap.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"state dicts differ: missing {missing}, unexpected {unexpected}")
    model.generation_config = source.generation_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def check_greedy(out_dir: Path, prompt: str) -> tuple[list[int], list[int]]:
    """Greedy tokens of ``generate`` on the converted model and of tandem's runner."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tandem.engine.loader import load_model
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    hf_model = AutoModelForCausalLM.from_pretrained(str(out_dir), dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(str(out_dir))
    prompt_ids = hf_tok(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        generated = hf_model.generate(
            prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            max_new_tokens=_CHECK_TOKENS,
            do_sample=False,
            eos_token_id=None,  # compare a fixed length: tandem's runner ignores EOS below
            pad_token_id=0,
        )
    hf_tokens = generated[0, prompt_ids.shape[1] :].tolist()

    loaded = load_model("default")
    params = SamplingParams(temperature=0.0, max_new_tokens=_CHECK_TOKENS, ignore_eos=True)
    runner_ids = loaded.encode(prompt)
    if runner_ids != prompt_ids[0].tolist():
        raise SystemExit(f"tokenizers differ: {runner_ids} vs {prompt_ids[0].tolist()}")
    finished = ModelRunner(loaded).generate([runner_ids], params)[0]
    return hf_tokens, list(finished.output_token_ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--gguf", type=Path, default=None, help="default: the embedded model")
    parser.add_argument("--prompt", default="Once upon a time, there was a little girl")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.gguf is None:
        from tandem.engine.loader import default_model_path

        args.gguf = default_model_path()
    convert(args.gguf.resolve(), args.out_dir)
    print(f"wrote {args.out_dir}")
    hf_tokens, runner_tokens = check_greedy(args.out_dir, args.prompt)
    same = hf_tokens == runner_tokens
    print(f"greedy check ({_CHECK_TOKENS} tokens): {'equal' if same else 'DIFFERENT'}")
    if not same:
        print(f"  generate: {hf_tokens}\n  runner:   {runner_tokens}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
