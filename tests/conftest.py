from __future__ import annotations

import pytest
import torch

# One thread: the tiny test models gain nothing from more, and oversubscribed cores (parallel
# processes, a busy machine) slow multi-threaded tiny matmuls by an order of magnitude.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_flux_pipe():
    import tiny

    pipe = tiny.flux_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_sd3_pipe():
    import tiny

    pipe = tiny.sd3_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe
