import os

import pytest
import torch
from tiny_models import make_sd_repo, make_sdxl_repo


@pytest.fixture(scope="session", autouse=True)
def hashes_in_a_temporary_cache(tmp_path_factory):
    """The model-file hashes ``run`` remembers go to this session's folder (subprocesses too), not ~/.cache."""
    os.environ["DIFFBLOCKS_HASHES"] = str(tmp_path_factory.mktemp("cache") / "hashes.json")
    yield
    os.environ.pop("DIFFBLOCKS_HASHES", None)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy machine their spin-waits dominate the run
    (use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# tiny standard-format repos, built once per test session (diffusers is the test-only reference)
@pytest.fixture(scope="session")
def sd_repo(tmp_path_factory):
    return make_sd_repo(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="session")
def sd_inpaint_repo(tmp_path_factory):
    return make_sd_repo(tmp_path_factory.mktemp("sd9"), in_channels=9)


@pytest.fixture(scope="session")
def sdxl_repo(tmp_path_factory):
    return make_sdxl_repo(tmp_path_factory.mktemp("sdxl"))


@pytest.fixture(scope="session")
def sd_file(sd_repo, tmp_path_factory):
    """The tiny SD 1.x repo's models, each moved a little, and the original checkpoint file holding them."""
    import diffusers
    from tiny_checkpoints import fine_tune, write_checkpoint

    pipe = fine_tune(diffusers.StableDiffusionPipeline.from_pretrained(sd_repo, safety_checker=None), 1)
    return pipe, write_checkpoint(pipe, tmp_path_factory.mktemp("ckpt") / "tiny-sd15.safetensors")


@pytest.fixture(scope="session")
def sdxl_file(sdxl_repo, tmp_path_factory):
    """The same for the tiny SDXL repo."""
    import diffusers
    from tiny_checkpoints import fine_tune, write_checkpoint

    pipe = fine_tune(diffusers.StableDiffusionXLPipeline.from_pretrained(sdxl_repo), 2)
    return pipe, write_checkpoint(pipe, tmp_path_factory.mktemp("ckpt") / "tiny-sdxl.safetensors")
