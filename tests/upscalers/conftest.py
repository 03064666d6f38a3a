"""A per-session cache directory for the converted built-in weights."""

from __future__ import annotations

import pytest
import torch

from mrflow.upscalers.builtin import CACHE_ENV_VAR


@pytest.fixture(scope="session")
def builtin_cache(tmp_path_factory: pytest.TempPathFactory):
    """One cache directory for the whole session, so each built-in model is converted once."""
    root = tmp_path_factory.mktemp("mrflow-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(root))
        yield root


@pytest.fixture(autouse=True)
def single_thread():
    """The inputs here are tiny: one thread avoids spin-waiting thread pools on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
