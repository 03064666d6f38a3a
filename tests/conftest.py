from __future__ import annotations

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


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
