"""The pipeline's image processors rebuilt for the loaded VAE (blocks/processors.py), cached by class and config."""

from types import SimpleNamespace

from diffblocks.blocks.processors import image_processor_for
from diffblocks.components.image_processor import MaskImageProcessor, VaeImageProcessor

# a VAE with two levels downsamples by 2, so a default processor (factor 8) is rebuilt for it
SMALL_VAE = SimpleNamespace(config=SimpleNamespace(block_out_channels=[4, 8]))


def components(processor, vae=SMALL_VAE):
    return SimpleNamespace(image_processor=processor, vae=vae)


def test_a_processor_that_fits_the_vae_is_used_as_it_is():
    processor = VaeImageProcessor(vae_scale_factor=2)
    assert image_processor_for(components(processor)) is processor


def test_the_rebuilt_processor_keeps_the_config_and_takes_the_vae_factor():
    processor = VaeImageProcessor(resample="bicubic", do_normalize=False)
    rebuilt = image_processor_for(components(processor))
    assert type(rebuilt) is VaeImageProcessor and rebuilt is not processor
    assert rebuilt.config["vae_scale_factor"] == 2 and processor.config["vae_scale_factor"] == 8
    assert {k: v for k, v in rebuilt.config.items() if k != "vae_scale_factor"} == \
           {k: v for k, v in processor.config.items() if k != "vae_scale_factor"}


def test_equal_processors_share_one_rebuilt_copy():
    """Keyed by class and config: two equal processors alive at once get the same rebuilt processor."""
    first, second = VaeImageProcessor(do_normalize=False), VaeImageProcessor(do_normalize=False)
    assert image_processor_for(components(first)) is image_processor_for(components(second))


def test_other_classes_or_configs_get_their_own_copy():
    plain = image_processor_for(components(VaeImageProcessor()))
    mask = image_processor_for(components(MaskImageProcessor()))
    other = image_processor_for(components(VaeImageProcessor(do_normalize=False)))
    assert type(mask) is MaskImageProcessor and type(plain) is VaeImageProcessor
    assert plain.config["do_normalize"] and not other.config["do_normalize"]


def test_a_new_processor_never_gets_a_freed_one_s_copy():
    """A cache keyed by object id handed a freed processor's rebuilt copy to the next processor that
    reused its address (nearly always in CPython): each processor here has another config than the one before."""
    for trial in range(20):
        processor = VaeImageProcessor(do_normalize=bool(trial % 2), do_binarize=bool(trial % 3 == 0))
        rebuilt = image_processor_for(components(processor))
        assert (rebuilt.config["do_normalize"], rebuilt.config["do_binarize"]) == (bool(trial % 2), trial % 3 == 0), trial
        del processor, rebuilt


def test_the_cache_of_rebuilt_processors_is_bounded():
    from diffblocks.blocks import processors

    for channels in range(4, 4 + processors._CACHED_PROCESSORS + 8):  # as many configs, each rebuilt
        image_processor_for(components(VaeImageProcessor(vae_latent_channels=channels)))
    assert processors._rebuilt.cache_info().currsize <= processors._CACHED_PROCESSORS
