"""Tiny random-weight FLUX and SD3 pipelines built in code: no hub, no files, CPU-fast."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from mrflow.random_weights import clip_tokenizer as in_memory_clip_tokenizer
from mrflow.random_weights import t5_tokenizer as in_memory_t5_tokenizer

WORDS = "a an the red green blue yellow cat dog circle square to left right of on big small photo".split()


def _eval(pipe):
    """Freshly built modules are in training mode (dropout on); loaded ones are not."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def clip_tokenizer() -> CLIPTokenizer:
    """The in-memory CLIP tokenizer, at the tiny text encoders' 16 positions."""
    return in_memory_clip_tokenizer(max_length=16)


def t5_tokenizer() -> T5Tokenizer:
    return in_memory_t5_tokenizer()


def clip_config(vocab_size: int, projection: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=16,
        projection_dim=projection,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def t5_encoder(vocab_size: int) -> T5EncoderModel:
    config = T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    return T5EncoderModel(config)


def vae(latent_channels: int, shift: float, scale: float) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        shift_factor=shift,
        scaling_factor=scale,
    )


def flux_pipeline(seed: int = 0, guidance_embeds: bool = True) -> FluxPipeline:
    """FLUX.1-shaped: 4 latent channels (packed to 16), VAE factor 2, so sides are multiples of 4."""
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return _eval(
        FluxPipeline(
            scheduler=scheduler,
            vae=vae(4, 0.1159, 0.3611),
            text_encoder=CLIPTextModel(clip_config(len(tokenizer), 32)),
            tokenizer=tokenizer,
            text_encoder_2=t5_encoder(len(tokenizer_2)),
            tokenizer_2=tokenizer_2,
            transformer=transformer,
        )
    )


def sd3_pipeline(seed: int = 0) -> StableDiffusion3Pipeline:
    """SD3-shaped: 4 latent channels, VAE factor 2, patch 2, so sides are multiples of 4."""
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=32,
        caption_projection_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
        pos_embed_max_size=64,
    )
    tokenizer_3 = t5_tokenizer()
    return _eval(
        StableDiffusion3Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=vae(4, 0.0609, 1.5305),
            text_encoder=CLIPTextModelWithProjection(clip_config(len(tokenizer), 32)),
            tokenizer=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(clip_config(len(tokenizer), 32)),
            tokenizer_2=clip_tokenizer(),
            text_encoder_3=t5_encoder(len(tokenizer_3)),
            tokenizer_3=tokenizer_3,
            transformer=transformer,
        )
    )
