"""Tiny real models built from configs with random weights (the way diffusers' and transformers' own tests
build theirs; no hub): a Stable Diffusion pipeline and a 2-layer Llama, each saved as a folder; and a SentencePiece
model trained on the spot, with a Llama-2-style model and a T5 tokenizer built on it."""

from __future__ import annotations

from pathlib import Path

UNET_LEVELS, UNET_LAYERS = 2, 1  # tiny UNet: 2 resolution levels, 1 resnet per down block
VAE_LEVELS, VAE_LAYERS = 2, 1


def build_tiny_pipeline(folder: Path) -> None:
    """A real StableDiffusionPipeline, randomly initialised at a few kB per component, saved as a folder."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=UNET_LAYERS,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        layers_per_block=VAE_LAYERS,
        down_block_types=["DownEncoderBlock2D"] * VAE_LEVELS,
        up_block_types=["UpDecoderBlock2D"] * VAE_LEVELS,
        latent_channels=4,
        norm_num_groups=2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-5,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=1000,
        )
    )
    # Byte-level BPE with no merges: every character is a token. Enough to turn prompts into ids locally.
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in bytes_to_unicode().values():
            vocab.setdefault(char + suffix, len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)


def build_tiny_llama(folder: Path, gguf: Path) -> None:
    """A random 2-layer Llama (~6M parameters) with the real tokenizer and chat template of the GGUF `gguf`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


SP_WORDS = (
    "river water stream bank bridge boat lock canal city town hill valley rain cloud wind sea shore sand stone".split()
)
# A Llama-2-style chat template ([INST] ... [/INST]; no system role: the backend folds it into the first turn).
LLAMA2_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] {{ m['content'] }} [/INST]"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }} {{ eos_token }}"
    "{% else %}{{ raise_exception('system messages are not supported') }}{% endif %}{% endfor %}"
)


def train_tiny_sentencepiece(prefix: Path, vocab_size: int = 400, model_type: str = "bpe") -> Path:
    """Train a SentencePiece model (byte fallback, Llama's special ids and normalisation) on a few hundred lines;
    returns the .model file."""
    import random

    import sentencepiece as spm

    rnd = random.Random(0)
    lines = [" ".join(rnd.choice(SP_WORDS) for _ in range(rnd.randint(4, 12))).capitalize() + "." for _ in range(400)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type=model_type,  # Llama's is BPE, T5's unigram
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        byte_fallback=True,
        character_coverage=1.0,
        # As Llama's: text kept as written (newlines become byte pieces), a leading space added to the first word.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def build_tiny_sentencepiece_llama(folder: Path, sp_model: Path) -> None:
    """A random 2-layer Llama whose tokenizer is only `tokenizer.model` (SentencePiece) plus its config, as
    Llama-2-era hub repos ship it: loading it needs sentencepiece (and protobuf) to build the tokenizer."""
    import json
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(sp_model, folder / "tokenizer.model")
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": False,  # the chat template writes it
        "chat_template": LLAMA2_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    llama = LlamaConfig(
        vocab_size=416,  # more output rows than tokens (400), as padded vocabularies have
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(llama).save_pretrained(folder)


def build_tiny_t5_tokenizer(folder: Path, sp_model: Path) -> None:
    """A T5-family tokenizer folder: `spiece.model` and its config, nothing else."""
    import json
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(sp_model, folder / "spiece.model")
    config = {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "eos_token": "</s>", "unk_token": "<unk>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
