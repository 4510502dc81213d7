"""``diffblocks serve``: flags checked before anything starts, the address printed once it answers."""

import contextlib
import http.client
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from diffblocks.cli import main


@pytest.mark.parametrize("argv, words", [
    (["--queue", "postgres://db"], "--queue must be sqlite"),
    (["--device", "cpu,cpu"], "--device cpu,cpu: names a device twice"),
    (["--device", " , "], "--device must be auto, cpu, or a list"),
    (["--port", "0"], "--port must be a port number"),
    (["--model", "/no/such/folder"], "--model /no/such/folder: no such folder"),
    (["--models-dir", "/no/such/models"], "--models-dir /no/such/models: does not exist"),
    (["--preview-interval", "-1"], "--preview-interval must be a number of seconds, 0 or more"),
    (["--engine-process", "--queue", "redis://127.0.0.1:1/0"], "--engine-process needs the SQLite queue"),
])
def test_bad_flags_are_one_line_errors(capsys, argv, words):
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffblocks: error: ") and words in err and len(err.strip().splitlines()) == 1


def test_flags_become_settings(tmp_path):
    from diffblocks.cli import build_parser
    from diffblocks.cli.serve import settings_from

    args = build_parser().parse_args(["serve", "--device", "cpu", "--data-dir", str(tmp_path), "--model", "embedded",
                                      "--queue", "sqlite", "--cors-origin", "http://a.example", "--allow-remote-code",
                                      "--preview-interval", "0", "--engine-process"])
    settings = settings_from(args)
    assert settings.engine_process is True
    assert settings.devices == ["cpu"] and settings.data_dir == tmp_path and settings.model == "embedded"
    assert settings.cors_origins == ["http://a.example"] and settings.allow_remote_code is True
    assert settings.preview_interval == 0
    defaults = settings_from(build_parser().parse_args(["serve"]))
    assert defaults.devices == ["auto"]  # decided when the workers start
    assert defaults.allow_remote_code is False and defaults.cors_origins == [] and defaults.model is None
    assert defaults.preview_interval == 0.1 and defaults.engine_process is False


def test_models_dirs_and_a_model_named_in_them(tmp_path, capsys):
    from diffblocks.cli import build_parser
    from diffblocks.cli.serve import settings_from
    from diffblocks.nodes.model_files import ModelFolders

    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "drive").mkdir()
    (tmp_path / "drive" / "v1-5.safetensors").write_bytes(b"x")  # linked in, as shared drives are
    (comfy / "models" / "checkpoints" / "v1-5.safetensors").symlink_to(tmp_path / "drive" / "v1-5.safetensors")
    (tmp_path / "more" / "diffusers").mkdir(parents=True)
    args = ["serve", "--models-dir", str(comfy / "models"), "--models-dir", str(tmp_path / "more")]
    settings = settings_from(build_parser().parse_args([*args, "--model", "v1-5.safetensors"]))
    assert settings.model_dirs == [comfy / "models", tmp_path / "more"]
    assert settings.model == str(comfy / "models" / "checkpoints" / "v1-5.safetensors")  # loaded at start by name
    # the very path a job naming it resolves to, so that the job shares the components loaded at start
    assert settings.model == str(ModelFolders(settings.model_dirs).resolve("checkpoints", "v1-5.safetensors"))
    assert settings_from(build_parser().parse_args(["serve"])).model_dirs == []
    # ComfyUI's own folder instead of its models/: said so, with the folder to give
    assert main(["serve", "--models-dir", str(comfy)]) == 2
    err = capsys.readouterr().err
    assert f"--models-dir {comfy}: has no checkpoints/" in err and f"give the folder that holds them: {comfy / 'models'}" in err


def test_auto_devices_are_every_cuda_device_else_the_cpu():
    import torch

    from diffblocks.server.settings import resolve_devices

    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    assert resolve_devices(["auto"]) == (cuda or ["cpu"])
    assert resolve_devices(["cpu", *cuda]) == ["cpu", *cuda]


@pytest.mark.parametrize("devices, cuda_count, words, fits", [
    (["tpu:0"], 0, "--device tpu:0: Expected one of", ["cpu"]),
    (["cpu", "cuda:0"], 0, "--device cuda:0: CUDA is not available on this machine", ["cpu"]),
    (["cuda"], 0, "--device cuda: CUDA is not available on this machine", ["cpu"]),
    (["xpu:0"], 0, "--device xpu:0: XPU is not available on this machine", ["cpu"]),
    (["cuda:0", "cuda:1"], 1, "--device cuda:1: this machine has 1 CUDA device (cuda:0)", ["cuda", "cuda:0"]),
    (["cuda:4"], 2, "--device cuda:4: this machine has 2 CUDA devices (cuda:0 to cuda:1)", ["cpu", "cuda:1"]),
])
def test_devices_the_machine_lacks_are_named(monkeypatch, devices, cuda_count, words, fits):
    import torch

    from diffblocks.components.errors import ServerSetupError
    from diffblocks.server.settings import resolve_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_count > 0)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count)
    with pytest.raises(ServerSetupError) as refused:
        resolve_devices(devices)
    assert str(refused.value).startswith(words)
    assert resolve_devices(fits) == fits  # the devices it has pass


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda:0"])
def test_the_server_answers_before_torch_is_imported(device, tmp_path):
    """Importing torch takes about a second: the flags, the app and the stored catalog need none of it (the
    workers import it in a thread once the server answers)."""
    code = (f"import sys; from diffblocks.cli import build_parser; from diffblocks.cli.serve import settings_from; "
            f"from diffblocks.server import create_app; "
            f"create_app(settings_from(build_parser().parse_args(['serve', '--device', {device!r}, "
            f"'--data-dir', {str(tmp_path)!r}]))); print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_process(data_dir, *flags):
    """``diffblocks serve`` on a free port with ``flags``, its output piped; returns the process and the port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "diffblocks.cli", "serve", "--port", str(port), "--data-dir",
                             str(data_dir), *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, port


@contextlib.contextmanager
def serving(data_dir, *flags):
    """``serve_process`` stopped with Ctrl-C at the end, which it must take as a normal end."""
    proc, port = serve_process(data_dir, *flags)
    try:
        yield proc, port
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err


@pytest.mark.slow
def test_serve_prints_its_address_once_it_answers(tmp_path):
    with serving(tmp_path, "--device", "cpu") as (proc, port):
        line = proc.stdout.readline()
        assert line.startswith(f"diffblocks serve: http://127.0.0.1:{port} (devices cpu; jobs and images in {tmp_path})")
        nodes = httpx.get(f"http://127.0.0.1:{port}/api/nodes", timeout=60).json()
        assert "LoadComponents" in nodes
        assert (tmp_path / "jobs.sqlite").is_file()
        # an idle connection outlives a client's keep-alive (httpx keeps one 5 s): one sent on after 5.5 s is served
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for pause in (0, 5.5):
            time.sleep(pause)
            connection.request("GET", "/api/system")
            assert connection.getresponse().read().startswith(b"{")
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--engine-process"]])
def test_serve_with_auto_devices_says_which_it_chose_once_the_workers_run(tmp_path, flags):
    from diffblocks.server.settings import resolve_devices

    with serving(tmp_path, *flags) as (proc, _):
        banner = proc.stdout.readline()
        assert "(devices auto: every CUDA device, else the CPU;" in banner
        assert banner.endswith("; the workers in a process of their own)\n") == bool(flags)
        assert proc.stdout.readline() == f"diffblocks serve: workers on {', '.join(resolve_devices(['auto']))}\n"


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--engine-process"]])
def test_serve_on_a_device_the_machine_lacks_answers_then_stops_with_one_error(tmp_path, flags):
    """The devices are checked once the server answers (torch and CUDA take seconds to start); one that is not
    there stops it: a one-line error and exit code 2, as for any bad flag (found in the engine's process too)."""
    proc, port = serve_process(tmp_path, "--device", "tpu:0", *flags)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert out.startswith(f"diffblocks serve: http://127.0.0.1:{port} (devices tpu:0;")
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("diffblocks: error: --device tpu:0: Expected one of")


def test_a_checkpoint_file_as_the_start_model_is_loaded_by_load_checkpoint(tmp_path):
    import torch
    from safetensors.torch import save_file

    from diffblocks.cli import build_parser
    from diffblocks.cli.serve import settings_from
    from diffblocks.server.state import worker_pool

    save_file({"cond_stage_model.transformer.x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    torch.save({"state_dict": {"cond_stage_model.transformer.x": torch.zeros(1)}}, str(tmp_path / "model.ckpt"))
    for file in (tmp_path / "model.safetensors", tmp_path / "model.ckpt"):
        settings = settings_from(build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--model", str(file)]))
        assert settings.model == str(file.resolve())
        pool = worker_pool(settings, engine=None, artifacts=None, queue=None, bus=None)
        assert pool.warmup == {"nodes": {"load": {"type": "LoadCheckpoint", "inputs": {"file": str(file.resolve())}}}}
    folder = settings_from(build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--model", "embedded"]))
    assert worker_pool(folder, engine=None, artifacts=None, queue=None, bus=None).warmup["nodes"]["load"]["type"] == \
        "LoadComponents"


def test_no_metadata_keeps_workflows_out_of_output_pngs(tmp_path, monkeypatch):
    from diffblocks.cli import build_parser
    from diffblocks.cli import worker as worker_command
    from diffblocks.cli.serve import settings_from
    from diffblocks.server.state import worker_pool

    monkeypatch.setattr(worker_command, "check_queue", lambda url: url)  # no Redis needed to read the flags
    parse = build_parser().parse_args
    assert settings_from(parse(["serve", "--data-dir", str(tmp_path)])).metadata is True
    settings = settings_from(parse(["serve", "--data-dir", str(tmp_path), "--no-metadata"]))
    assert settings.metadata is False
    assert worker_pool(settings, engine=None, artifacts=None, queue=None, bus=None).metadata is False
    worker = worker_command.settings_from(parse(["worker", "--queue", "redis://127.0.0.1:6379/0", "--data-dir", str(tmp_path),
                                    "--no-metadata"]))
    assert worker.metadata is False
