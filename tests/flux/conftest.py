import pytest
from tiny_flux import make_flux_repo


# tiny standard FluxPipeline repos, built once per test session (diffusers is the test-only reference)
@pytest.fixture(scope="session")
def flux_dev_repo(tmp_path_factory):
    return make_flux_repo(tmp_path_factory.mktemp("flux_dev"), dev=True)


@pytest.fixture(scope="session")
def flux_schnell_repo(tmp_path_factory):
    return make_flux_repo(tmp_path_factory.mktemp("flux_schnell"), dev=False)
