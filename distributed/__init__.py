"""Work spread over processes with torch.distributed: batch rendering and guidance-parallel denoising.

- :mod:`.batch` / :mod:`.manifest`: ``diffblocks batch``'s engine; items, seeds, the split among ranks, the
  manifest and resuming. Importable (and usable on one process) without any launcher.
- :mod:`.guidance`: a guider's branches on different ranks (``pipe.enable_guidance_parallel(group)``).

Nothing here initialises torch.distributed on import.
"""
