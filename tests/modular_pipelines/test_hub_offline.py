"""A Hub id without a network: a repo that is not cached fails at once with one clear error; a cached one loads.

Each case runs in a fresh interpreter whose huggingface_hub reads ``HF_ENDPOINT`` (a closed local port, so
nothing leaves the machine) and ``HF_HOME`` (a folder of the test) when it is imported.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from diffblocks.presets import embedded_model_path

SCRIPT = r"""
import json, sys, time
from diffblocks import ModularPipeline, SequentialPipelineBlocks
from diffblocks.presets import stable_diffusion

def from_pretrained(repo):
    ModularPipeline.from_pretrained(repo)

def init_pipeline(repo):
    SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(repo)

def load(repo):
    pipe = ModularPipeline.from_pretrained(repo)
    pipe.load_components(names=["unet", "vae", "scheduler"])
    return [type(pipe.unet).__name__, type(pipe.vae).__name__, type(pipe.scheduler).__name__]

results = []
for call, repo in json.loads(sys.argv[1]):
    start = time.perf_counter()
    try:
        results.append({"value": globals()[call](repo)})
    except Exception as err:
        results.append({"error": type(err).__name__, "message": str(err)})
    results[-1]["seconds"] = time.perf_counter() - start
print(json.dumps(results))
"""

CACHED = "someone/cached-digits"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hf_home(tmp_path):
    """An HF_HOME whose cache holds one repo, laid out as huggingface_hub lays out a download."""
    folder = tmp_path / "hf" / "hub" / ("models--" + CACHED.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    shutil.copytree(embedded_model_path(), folder / "snapshots" / COMMIT)
    return tmp_path / "hf"


def run_calls(hf_home, calls, offline=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(calls)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_unreachable_hub_and_uncached_repo_fail_at_once_and_say_so(hf_home):
    results = run_calls(hf_home, [["from_pretrained", "someone/some-repo"], ["init_pipeline", "someone/some-repo"],
                                  ["load", CACHED]])
    for result in results[:2]:
        assert result["error"] == "HubUnreachableError"
        message = result["message"]
        assert "the Hub (http://127.0.0.1:" in message and "cannot be reached" in message
        assert "'someone/some-repo' is not in the local cache" in message
        assert "HF_HUB_OFFLINE=1" in message and "local folder" in message
        assert result["seconds"] < 5  # not huggingface_hub's retries (about 25 s per file)
    assert results[2] == {"value": ["UNet2DConditionModel", "AutoencoderKL", "DDIMScheduler"],
                          "seconds": results[2]["seconds"]}  # a cached repo still loads without the Hub
    assert results[2]["seconds"] < 30


def test_offline_mode_and_uncached_repo_names_the_setting(hf_home):
    results = run_calls(hf_home, [["from_pretrained", "someone/some-repo"], ["load", CACHED]], offline=True)
    assert results[0]["error"] == "HubUnreachableError"
    message = results[0]["message"]
    assert message.startswith("HF_HUB_OFFLINE is set and the repo 'someone/some-repo' is not in the local cache")
    assert "looked for someone/some-repo/modular_config.json" in message
    assert results[1]["value"] == ["UNet2DConditionModel", "AutoencoderKL", "DDIMScheduler"]
