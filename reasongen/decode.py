"""Token-by-token decode loops for the two generation steps, as generators of sampled tokens.

Step 1 (``decode_text``) samples text from the LM head until every row has emitted a stop token
or the cap is reached. Step 2 (``decode_image``) samples exactly ``num_image_tokens`` image tokens
from the generation head with classifier-free guidance: the batch holds the conditional rows, then
one unconditional row per conditional row (``layout.unconditional_rows``: BOS + pads +
``<begin_of_image>``, same length and mask). Both take the sample's ``SamplingSettings`` and the
model's ``SpecialIds``, so no setting can be passed in the wrong position.

Both loops run the language model through ``engine.StaticDecoder`` (a static KV cache over the
model's own weights), pass explicit position ids (rows may be left-padded) and sample on the
model's device with a seeded ``torch.Generator``. They yield after every token so callers can
stream; nothing here decodes text or images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .engine import activation, decoder_for
from .layout import cot_stop_ids, positions, unconditional_rows
from .sampling import draw, guided_logits, row_block, sampling_logprobs

if TYPE_CHECKING:
    from .loading import SpecialIds
    from .types import SamplingSettings

# One generator for the whole batch, or one per block of consecutive rows (one per prompt of a
# multi-prompt batch; see ``sampling.draw``).
Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass(frozen=True)
class TokenStep:
    """One decode step: the sampled tokens ``[B]``, their log-probs ``[B]``, and which rows were
    already finished before this step (their token is padding and must be ignored)."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    was_finished: torch.Tensor


def image_head(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """Janus's generation head (``proj_out`` → activation → ``vision_head``) as three kernels.

    The same weights and arithmetic as ``model.model.generation_head``, without its four module
    calls (hook dispatch, hub-kernel wrappers): on a CPU those cost more per token than the small
    matmuls. Forward hooks on the head's submodules do not fire here. ``[R, D]`` → ``[R, K]``.
    """
    head = model.model.generation_head
    act = activation(getattr(model.config.vq_config, "hidden_act", None), head.activation_fn)
    w1, b1, w2, b2 = head.proj_out.weight, head.proj_out.bias, head.vision_head.weight, head.vision_head.bias
    return lambda h: F.linear(act(F.linear(h, w1, b1)), w2, b2)


@torch.inference_mode()
def decode_text(
    model,
    ids: torch.Tensor,
    mask: torch.Tensor,
    settings: SamplingSettings,
    special: SpecialIds,
    generator: Generators,
) -> Iterator[TokenStep]:
    """Sample a CoT from the LM head. ``ids``/``mask``: ``[B, L]`` left-padded prompts.

    Uses ``settings.max_cot_tokens`` and the ``cot_*`` sampling settings; a row stops at a CoT stop
    token (``layout.cot_stop_ids``) and is padded with ``special.pad`` afterwards. With one
    generator per block of rows, a block whose rows have all stopped draws nothing more, so each
    stream advances exactly as it would if its block were decoded alone."""
    max_new_tokens, pad_id = settings.max_cot_tokens, special.pad
    temperature, top_k, top_p = settings.cot_temperature, settings.cot_top_k, settings.cot_top_p
    b, width = ids.shape
    dec = decoder_for(model)
    valid = dec.reset(b, width + max_new_tokens)  # [B, S]
    valid[:, :width] = mask.bool()
    valid[:, width : width + max_new_tokens] = True  # every row writes every step (attention is causal)
    pos = positions(mask)  # [B, L]
    embed = model.get_input_embeddings()
    hidden = dec.forward(embed(ids), pos, valid, 0)[:, -1]  # [B, D]
    next_pos = pos[:, -1:] + torch.arange(1, max_new_tokens + 1, device=ids.device)  # [B, max_new_tokens]
    stops = torch.tensor(cot_stop_ids(special), device=ids.device)
    finished = torch.zeros(b, dtype=torch.bool, device=ids.device)  # [B]
    streams = None if generator is None or isinstance(generator, torch.Generator) else list(generator)
    block = row_block(b, len(streams)) if streams else b
    active = None
    for step in range(max_new_tokens):
        logp = sampling_logprobs(model.lm_head(hidden), temperature, top_k, top_p)  # [B, V]
        if streams and step:
            active = (~finished.view(-1, block).all(dim=1)).tolist()  # [S] blocks still writing
        tok, lp = draw(logp, greedy=temperature == 0, generator=generator, active=active)  # [B], [B]
        tok = tok.masked_fill(finished, pad_id)
        yield TokenStep(tok, lp, finished.clone())
        finished |= (tok[:, None] == stops).any(dim=-1)
        if bool(finished.all()) or step == max_new_tokens - 1:
            return
        hidden = dec.decode(embed(tok[:, None]), next_pos[:, step : step + 1], width + step)[:, -1]  # [B, D]


@torch.inference_mode()
def decode_image(
    model,
    ids: torch.Tensor,
    mask: torch.Tensor,
    settings: SamplingSettings,
    special: SpecialIds,
    generator: Generators,
) -> Iterator[TokenStep]:
    """Sample ``settings.num_image_tokens`` image tokens. ``ids``/``mask``: ``[B, L]`` left-padded
    prefixes ending in ``<begin_of_image>``. Uses ``guidance``, ``temperature``, ``top_k`` and
    ``top_p`` of ``settings``; with ``guidance == 1`` the unconditional rows are skipped."""
    n_tokens = settings.num_image_tokens
    if n_tokens is None:
        raise ValueError("settings.num_image_tokens is unset: build the settings with loading.settings_for")
    guidance, temperature = settings.guidance, settings.temperature
    top_k, top_p = settings.top_k, settings.top_p
    b = ids.shape[0]
    cfg = guidance != 1.0
    if cfg:
        ids = torch.cat([ids, unconditional_rows(ids, mask, special.bos, special.pad)])  # [2B, L]
        mask = torch.cat([mask, mask])  # [2B, L]
    rows, width = ids.shape
    dec = decoder_for(model)
    valid = dec.reset(rows, width + n_tokens)  # [R, S]
    valid[:, :width] = mask.bool()
    valid[:, width : width + n_tokens] = True  # filled one per step; attention is causal
    pos = positions(mask)  # [R, L], R = 2B with CFG else B
    hidden = dec.forward(model.get_input_embeddings()(ids), pos, valid, 0)[:, -1]  # [R, D]
    next_pos = pos[:, -1:] + torch.arange(1, n_tokens + 1, device=ids.device)  # [R, n_tokens]
    not_finished = torch.zeros(b, dtype=torch.bool, device=ids.device)
    # The image-token embedding (lookup + aligner MLP) acts row by row, so it is computed once for
    # the whole codebook and looked up per step: one kernel instead of four.
    codebook = torch.arange(model.model.generation_embeddings.num_embeddings, device=ids.device)
    table = model.prepare_embeddings_for_image_generation(codebook[None])[0]  # [K, D]
    head = image_head(model)
    for i in range(n_tokens):
        logits = head(hidden)  # [R, K]
        if cfg:
            logits = guided_logits(logits[:b], logits[b:], guidance)  # [B, K]
        logp = sampling_logprobs(logits, temperature, top_k, top_p)  # [B, K]
        tok, lp = draw(logp, greedy=temperature == 0, generator=generator)  # [B], [B]
        yield TokenStep(tok, lp, not_finished)
        if i == n_tokens - 1:
            return
        nxt = torch.cat([tok, tok]) if cfg else tok  # [R]
        embeds = table[nxt][:, None]  # [R, 1, D]
        hidden = dec.decode(embeds, next_pos[:, i : i + 1], width + i)[:, -1]  # [R, D]
