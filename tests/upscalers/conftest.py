"""A per-session cache directory for the converted built-in weights."""

from __future__ import annotations

import pytest

from mrflow.upscalers.builtin import CACHE_ENV_VAR


@pytest.fixture(scope="session")
def builtin_cache(tmp_path_factory: pytest.TempPathFactory):
    """One cache directory for the whole session, so each built-in model is converted once."""
    root = tmp_path_factory.mktemp("mrflow-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(root))
        yield root
