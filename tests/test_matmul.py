"""The packed W_U product and the blocked log-sum-exp: same numbers as the plain torch expressions."""

import pytest
import torch

from visit.attribution.logprob import imp_of_scaled, shifted_logsumexp
from visit.matmul import rows_times


def test_rows_times_matches_matmul_and_follows_its_matrix():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(300, 48, generator=gen).T  # [48, 300], a transposed view like W_U
    x = torch.randn(7, 48, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(rows_times(x, W), x @ W, atol=1e-5, rtol=1e-5)
        # another matrix of the same shape (possibly at a reused address) gets its own packing
        W2 = torch.randn(300, 48, generator=gen).T
        torch.testing.assert_close(rows_times(x, W2), x @ W2, atol=1e-5, rtol=1e-5)
        # an in-place change of the matrix is seen
        W2.mul_(2)
        torch.testing.assert_close(rows_times(x, W2), x @ W2, atol=1e-5, rtol=1e-5)
    # outside no_grad too (the library's tensors never require grad)
    torch.testing.assert_close(rows_times(x, W), x @ W, atol=1e-5, rtol=1e-5)
    # when autograd has to see it, or for another dtype, it is the plain product
    W_grad = W.detach().clone().requires_grad_(True)
    out = rows_times(x, W_grad)
    assert out.requires_grad and torch.equal(out, x @ W_grad)
    assert torch.equal(rows_times(x.double(), W.double()), x.double() @ W.double())


@pytest.mark.parametrize("block", [1, 3, 32])
def test_shifted_logsumexp_matches_torch(block):
    gen = torch.Generator().manual_seed(1)
    V = 101
    u = torch.randn(9, V, generator=gen) * 3
    base = torch.randn(4, V, generator=gen).log_softmax(-1)
    m = torch.randn(12, generator=gen)
    # runs of one repeated row, consecutive rows and scattered rows, crossing block boundaries
    u_rows = torch.tensor([0, 1, 2, 3, 5, 5, 5, 8, 2, 6, 7, 8])
    base_rows = torch.tensor([0, 0, 0, 1, 1, 1, 2, 3, 3, 0, 2, 2])
    expected = (base[base_rows] + m[:, None] * u[u_rows]).logsumexp(-1)
    got = shifted_logsumexp(base, u, m, base_rows=base_rows, u_rows=u_rows, block=block)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # one shared base, every row of u in order, no scaling
    torch.testing.assert_close(shifted_logsumexp(base[0], u, block=block), (base[0] + u).logsumexp(-1),
                               atol=1e-5, rtol=0)
    imp = imp_of_scaled(base, u, m, 17, base_rows=base_rows, u_rows=u_rows, block=block)
    torch.testing.assert_close(imp, m * u[u_rows, 17] - expected, atol=1e-5, rtol=0)
