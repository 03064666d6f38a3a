"""Tiny random-weight Qwen-Image, Z-Image and FLUX.2 Klein pipelines built in code (no hub, no files).

All three use a byte-level BPE tokenizer built in memory with a small chat template, and VAEs with a
spatial factor of 2, so image sides are multiples of 4 and 32-64 px images run in well under a second.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from tiny import WORDS, _eval
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
)

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# The user turn of a Qwen chat; ``enable_thinking=False`` adds an empty thinking block (Qwen3 style).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def _byte_symbols() -> list[str]:
    """The 256 printable symbols a byte-level BPE uses for the bytes 0..255 (in byte order)."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    symbols, extra = {}, 0
    for b in range(256):
        if b in keep:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def qwen_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE over all bytes plus merges for a few whole words (with their leading space)."""
    vocab = {token: i for i, token in enumerate(SPECIAL)}
    for symbol in _byte_symbols():
        vocab.setdefault(symbol, len(vocab))
    space = _byte_symbols()[ord(" ")]
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        current = space
        for ch in word:
            merges.append((current, ch))
            current += ch
            vocab.setdefault(current, len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, additional_special_tokens=SPECIAL[1:])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def qwen3_config(vocab_size: int, hidden: int = 32, layers: int = 2) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=1024,
    )


def scheduler(**config: object) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, **config)


def qwenimage_pipeline(seed: int = 0) -> QwenImagePipeline:
    """Qwen-Image-shaped: 4 latent channels in a one-frame 3D VAE with factor 2, packed 2×2 (sides % 4)."""
    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
    }
    vision_config = {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_heads": 2,
        "out_hidden_size": 32,
        "fullatt_block_indexes": [0],
    }
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config)
    )
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2],
        num_res_blocks=1,
        temperal_downsample=[False],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.8, 2.0, 1.1],
    )
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 6, 6),
    )
    sched = scheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=0.9,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        shift_terminal=0.02,
        time_shift_type="exponential",
    )
    return _eval(
        QwenImagePipeline(
            scheduler=sched, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer
        )
    )


def zimage_pipeline(seed: int = 0, turbo: bool = True) -> ZImagePipeline:
    """Z-Image-shaped: 4 latent channels, AutoencoderKL factor 2, patch 2 (sides % 4), Qwen3 encoder."""
    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    text_encoder = Qwen3Model(qwen3_config(len(tokenizer)))
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=4,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=32,
        axes_dims=[8, 4, 4],
        axes_lens=[1024, 64, 64],
    )
    sched = scheduler(shift=3.0 if turbo else 6.0, use_dynamic_shifting=False)
    return _eval(
        ZImagePipeline(
            scheduler=sched, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer
        )
    )


def flux2_klein_pipeline(seed: int = 0, distilled: bool = False) -> Flux2KleinPipeline:
    """FLUX.2-Klein-shaped: 4 VAE channels patchified 2×2 to 16 (factor 4 overall, sides % 4).

    The text encoder has 3 layers; pass ``text_encoder_out_layers=TINY_KLEIN_LAYERS`` to both the
    stock pipeline and the adapter. The VAE's batch-norm statistics are set to non-trivial values.
    """
    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    text_encoder = Qwen3ForCausalLM(qwen3_config(len(tokenizer), hidden=16, layers=3))
    vae = AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    vae.bn.running_mean.copy_(torch.linspace(-0.5, 0.5, 16))
    vae.bn.running_var.copy_(torch.linspace(0.5, 2.0, 16))
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    sched = scheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, time_shift_type="exponential"
    )
    return _eval(
        Flux2KleinPipeline(
            scheduler=sched,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            is_distilled=distilled,
        )
    )


TINY_KLEIN_LAYERS = (1, 2, 3)
