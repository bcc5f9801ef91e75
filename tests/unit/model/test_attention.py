"""Per-sample SDPA: bucketing of packed samples."""

from __future__ import annotations

from tunesmith.model.attention import LONG, MIN_BUCKET, buckets, segments


def test_segments_follow_restarting_positions() -> None:
    import torch

    pos = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])
    assert segments(pos) == [[(0, 3), (3, 5), (5, 6)], [(0, 6)]]


def test_buckets_cover_every_sample_once_with_bounded_padding() -> None:
    lengths = [500, 300, 20, 7, 150, 130, 100, 31, 64, 60, 1, 192]
    groups = buckets(lengths)
    members = sorted(i for _, m in groups for i in m)
    assert members == list(range(len(lengths)))
    for padded, m in groups:
        assert all(lengths[i] <= padded for i in m)
        if padded >= LONG:
            assert len(m) == 1 and lengths[m[0]] == padded  # long samples: alone, unpadded
        elif padded > MIN_BUCKET:
            assert all(lengths[i] * 1.25 >= padded for i in m)
    # 150 and 130 share a call; 100 does not (150 / 100 > 1.25); the tiny ones share one.
    by_len = {tuple(sorted(lengths[i] for i in m)): padded for padded, m in groups}
    assert by_len[(130, 150)] == 150
    assert by_len[(1, 7, 20, 31)] == MIN_BUCKET
