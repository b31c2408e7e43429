"""The contiguous CPU path of the speech encoder's convolutional front end equals the stock Transformers one."""

import copy

import torch
from transformers import HubertConfig, HubertModel

from tcmp import TCMPForPreTraining
from tcmp.presets import tiny_config
from tcmp.speech_front_end import (
    ContiguousFrontEndMixin,
    MaskedGroupNormFrontEndMixin,
    adapt_front_end,
    use_stock_front_end,
    utterance_lengths,
)


def tiny_hubert(**overrides) -> HubertModel:
    """A 1-layer HuBERT with a 3-convolution front end (layer norm unless `overrides` say otherwise), seeded."""
    options = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                   conv_dim=(16, 16, 16), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2), num_feat_extract_layers=3,
                   feat_extract_norm="layer", do_stable_layer_norm=True, mask_time_prob=0.0)
    torch.manual_seed(0)
    return HubertModel(HubertConfig(**{**options, **overrides}))


def test_same_outputs_and_gradients_as_the_stock_front_end():
    stock = tiny_hubert().train()
    fast = adapt_front_end(copy.deepcopy(stock))
    assert isinstance(fast.feature_extractor, ContiguousFrontEndMixin)
    assert fast.state_dict().keys() == stock.state_dict().keys()
    audio = torch.randn(3, 4000)
    mask = torch.ones(3, 4000, dtype=torch.long)
    mask[1, 2500:] = 0
    torch.manual_seed(1)  # the same dropout masks in both
    expected = stock(audio, attention_mask=mask).last_hidden_state
    torch.manual_seed(1)
    got = fast(audio, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    expected.pow(2).sum().backward()
    got.pow(2).sum().backward()
    for (name, a), b in zip(stock.named_parameters(), fast.parameters()):
        # float tolerance (sums in another order); a key bias gets a zero gradient up to rounding
        assert (b.grad - a.grad).norm() <= 1e-4 * a.grad.norm() + 1e-5, name
    assert use_stock_front_end(fast).feature_extractor.__class__ is type(stock.feature_extractor)


def test_tcmp_uses_the_contiguous_path_for_layer_norm_front_ends_only():
    model = TCMPForPreTraining(tiny_config(vocab_size=20))
    front_end = model.tcmp.audio_model.feature_extractor
    assert model.config.audio_config.feat_extract_norm == "layer"
    assert isinstance(front_end, ContiguousFrontEndMixin)
    group = adapt_front_end(tiny_hubert(feat_extract_norm="group").train())
    assert not isinstance(group.feature_extractor, ContiguousFrontEndMixin)


def test_masked_group_norm_gives_each_utterance_its_own_features_in_one_padded_pass():
    stock = tiny_hubert(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False).eval()
    masked = adapt_front_end(copy.deepcopy(stock))
    assert isinstance(masked.feature_extractor, MaskedGroupNormFrontEndMixin)
    assert masked.state_dict().keys() == stock.state_dict().keys()
    masked.load_state_dict(stock.state_dict())  # the same weights load into it and out of it
    stock.load_state_dict(masked.state_dict())
    lengths = [16000, 400, 5000]  # 1 s, 25 ms, 0.3 s in one batch
    audio = torch.zeros(3, max(lengths))
    mask = torch.zeros(3, max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        audio[row, :length] = torch.randn(length)
        mask[row, :length] = 1
    with torch.no_grad(), utterance_lengths(masked, mask):
        batched = masked(audio, attention_mask=mask).last_hidden_state
    with torch.no_grad():
        stock_batched = stock(audio, attention_mask=mask).last_hidden_state
        for row, length in enumerate(lengths):
            alone = stock(audio[row : row + 1, :length]).last_hidden_state[0]
            torch.testing.assert_close(batched[row, : alone.shape[0]], alone, atol=1e-5, rtol=1e-5)
            if row > 0:  # the stock group norm mixes in the padding
                assert not torch.allclose(stock_batched[row, : alone.shape[0]], alone, atol=1e-3)
    assert masked.feature_extractor.sample_lengths is None  # set only inside `utterance_lengths`
    assert use_stock_front_end(masked).feature_extractor.__class__ is type(stock.feature_extractor)
