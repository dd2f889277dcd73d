"""The transformer: causal under every positional encoding, token or vector read-in, shapes.

Causality is what makes teacher-forced training of the chain honest: the logit at
position t must not see tokens after t, or ``cot`` training would read the answer.
"""

from __future__ import annotations

import pytest
import torch

from cotsweep.config import PosEncoding
from cotsweep.model import GPT, GPTConfig, KVCache

# one torch thread: the shared test machines thrash with more, and timings stay comparable
pytestmark = pytest.mark.usefixtures("one_thread")


ENCODINGS = [e.value for e in PosEncoding]


def make(pos: str, **kw) -> GPT:
    torch.manual_seed(0)
    c = GPTConfig(
        seq_len=kw.pop("seq_len", 12),
        depth=2,
        width=32,
        heads=4,
        pos_encoding=PosEncoding(pos),
        **kw,
    )
    return GPT(c).eval()


def test_every_encoding_is_tested() -> None:
    assert set(ENCODINGS) == {"learned", "sinusoidal", "rope", "none"}


@pytest.mark.parametrize("pos", ENCODINGS)
def test_changing_a_later_token_leaves_earlier_logits_unchanged(pos: str) -> None:
    model = make(pos, vocab_size=11)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 11, (4, 12), generator=gen)
    with torch.no_grad():
        before = model(x)
        for t in (0, 5, 11):
            changed = x.clone()
            changed[:, t:] = (
                changed[:, t:] + 1 + torch.randint(0, 10, changed[:, t:].shape, generator=gen)
            ) % 11
            after = model(changed)
            # exactly equal: a leak of any size is a bug, and the prefix computation is the same
            torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=1e-6)
            # and the changed positions do matter (so the check above is not vacuous)
            assert not torch.allclose(after[:, t:], before[:, t:])


@pytest.mark.parametrize("pos", ENCODINGS)
def test_a_prefix_gives_the_same_logits_as_the_full_sequence(pos: str) -> None:
    """What greedy chain generation relies on: running on a prefix is running on the whole, cut."""
    model = make(pos, vocab_size=11)
    x = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x)
        for t in (1, 4, 12):
            torch.testing.assert_close(model(x[:, :t]), full[:, :t], rtol=0, atol=1e-5)


def uncached_greedy(model: GPT, prefix: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding as evaluation did it before the KV cache: the whole prefix at every token."""
    x = prefix
    with torch.no_grad():
        for _ in range(steps):
            x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return x[:, prefix.shape[1] :]


@pytest.mark.parametrize("pos", ENCODINGS)
def test_cached_positions_give_the_logits_of_the_full_sequence(pos: str) -> None:
    """Reading a sequence in pieces against the KV cache (one token, or several) is reading it whole."""
    model = make(pos, vocab_size=11)
    x = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(x)
        cache = KVCache(len(model.blocks))
        pieces = [model(x[:, a:b], cache) for a, b in ((0, 5), (5, 6), (6, 9), (9, 10), (10, 12))]
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pos", ENCODINGS)
def test_cached_greedy_decoding_is_uncached_decoding_token_for_token(pos: str) -> None:
    model = make(pos, vocab_size=11, seq_len=16)
    with torch.no_grad():  # larger weights than the init: decisive, varied argmaxes
        for p in model.parameters():
            p.mul_(20.0)
    prefix = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(4))
    cached = model.greedy(prefix, 10)
    assert torch.equal(cached, uncached_greedy(model, prefix, 10))
    assert len(cached.unique()) > 3  # not one token repeated: the comparison means something


def test_a_decoded_chain_longer_than_the_context_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than the model's context"):
        make("learned", vocab_size=11, seq_len=8).greedy(torch.zeros(2, 6, dtype=torch.long), 4)


@pytest.mark.parametrize("pos", ENCODINGS)
def test_vector_read_in_is_causal_and_shaped(pos: str) -> None:
    """Function learning reads vectors and writes a scalar (or any out_dim)."""
    model = make(pos, in_dim=5, out_dim=1)
    x = torch.randn(2, 12, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 12, 1) and y.dtype == torch.float32
        changed = x.clone()
        changed[:, 7:] += 1.0
        torch.testing.assert_close(model(changed)[:, :7], y[:, :7], rtol=0, atol=1e-6)
    assert isinstance(model.read_in, torch.nn.Linear) and model.read_in.in_features == 5


def test_vector_read_in_trains() -> None:
    """Gradients reach the read-in and the read-out; a few steps fit a linear map."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(seq_len=8, depth=1, width=32, heads=2, in_dim=3, out_dim=1))
    w = torch.tensor([1.0, -2.0, 0.5])
    x = torch.randn(64, 8, 3, generator=torch.Generator().manual_seed(0))
    target = (x @ w)[..., None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(model(x), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.read_in.weight.grad is not None and model.read_out.weight.grad is not None
    assert loss.item() < 0.2 * first


@pytest.mark.parametrize("pos", ENCODINGS)
def test_shapes_and_token_read_in(pos: str) -> None:
    model = make(pos, vocab_size=9, seq_len=10)
    y = model(torch.zeros(3, 7, dtype=torch.long))
    assert y.shape == (3, 7, 9)
    assert isinstance(model.read_in, torch.nn.Embedding)
    # the read-out is tied to the token embedding when it predicts tokens
    assert model.read_out.weight is model.read_in.weight
    # an explicit output size other than the vocabulary gets its own read-out
    untied = make(pos, vocab_size=9, out_dim=4)
    assert untied(torch.zeros(1, 5, dtype=torch.long)).shape == (1, 5, 4)
    assert untied.read_out.weight is not untied.read_in.weight


def test_an_untied_read_out_with_a_bias_is_a_model_option() -> None:
    """The causal study's GPT-2 puts a read-out of its own, with a bias, on the backbone."""
    tied = make("none", vocab_size=9)
    own = make("none", vocab_size=9, tie_readout=False, readout_bias=True)
    assert tied.read_out.bias is None and tied.read_out.weight is tied.read_in.weight
    assert own.read_out.weight is not own.read_in.weight and own.read_out.bias is not None
    assert own.num_params() == tied.num_params() + 9 * 32 + 9
    x = torch.randint(0, 9, (2, 6))
    own.train()
    own(x)[:, -1].sum().backward()
    assert own.read_out.bias.grad is not None and own.read_in.weight.grad is not None
    # trained apart: a step on the read-out leaves the embedding's values where they were
    before = own.read_in.weight.detach().clone()
    with torch.no_grad():
        own.read_out.weight.add_(1.0)
    assert torch.equal(own.read_in.weight, before)


def test_a_sequence_longer_than_the_context_is_refused() -> None:
    model = make("learned", vocab_size=5, seq_len=6)
    with pytest.raises(ValueError, match="longer than the model's context"):
        model(torch.zeros(1, 7, dtype=torch.long))


def test_depth_width_and_heads_are_what_was_asked() -> None:
    c = GPTConfig(seq_len=8, depth=3, width=48, heads=6, mlp_ratio=2, vocab_size=7)
    model = GPT(c)
    assert len(model.blocks) == 3
    assert model.blocks[0].mlp[0].out_features == 96
    assert c.head_dim == 8
    # parameters grow with depth by exactly one block each
    deeper = GPT(GPTConfig(seq_len=8, depth=4, width=48, heads=6, mlp_ratio=2, vocab_size=7))
    block = sum(p.numel() for p in model.blocks[0].parameters())
    assert deeper.num_params() - model.num_params() == block
    assert model.flops_per_token(8) > 6 * block


def test_dropout_is_off_by_default_and_in_eval() -> None:
    model = make("rope", vocab_size=7, dropout=0.5)
    x = torch.randint(0, 7, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    assert GPTConfig(seq_len=1).dropout == 0.0
