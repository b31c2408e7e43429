"""The contiguous CPU path of the speech encoder's convolutional front end equals the stock Transformers one."""

import copy

import torch
from transformers import HubertConfig, HubertModel

from tcmp import TCMPForPreTraining
from tcmp.presets import tiny_config
from tcmp.speech_front_end import ContiguousFrontEndMixin, use_contiguous_front_end, use_stock_front_end


def layer_norm_hubert(feat_extract_norm="layer"):
    config = HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                          conv_dim=(16, 16, 16), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2), num_feat_extract_layers=3,
                          feat_extract_norm=feat_extract_norm, do_stable_layer_norm=True, mask_time_prob=0.0)
    torch.manual_seed(0)
    return HubertModel(config).train()


def test_same_outputs_and_gradients_as_the_stock_front_end():
    stock = layer_norm_hubert()
    fast = use_contiguous_front_end(copy.deepcopy(stock))
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


def test_tcmp_uses_it_for_layer_norm_front_ends_only():
    model = TCMPForPreTraining(tiny_config(vocab_size=20))
    front_end = model.tcmp.audio_model.feature_extractor
    assert model.config.audio_config.feat_extract_norm == "layer"
    assert isinstance(front_end, ContiguousFrontEndMixin)
    group = use_contiguous_front_end(layer_norm_hubert("group"))
    assert not isinstance(group.feature_extractor, ContiguousFrontEndMixin)
