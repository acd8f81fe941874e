"""The model manager's fixtures (a local hub with its repos, per-test settings, an app page driven over HTTP) for the
attacks on it in test_models_attack.py."""

from tests.models.conftest import gguf_repo_dir, hub, manager_settings, pipe_repo_dir  # noqa: F401
from tests.models.test_models_ui import open_page  # noqa: F401
