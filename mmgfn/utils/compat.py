"""Guards that let the pinned OpenMMLab stack run beside newer packages."""
import warnings
from importlib.metadata import PackageNotFoundError, version


def skip_mmpretrain_multimodal_with_transformers5() -> bool:
    """Stop mmpretrain 1.2.0 from importing its multimodal models beside
    transformers >= 5.

    mmpretrain 1.2.0 imports its BLIP/Flamingo/... models whenever
    ``transformers>=4.28`` is installed, and their code fails under
    transformers 5 (``TypeError: NoneType takes no arguments``), which breaks
    ``import mmpretrain.models`` as a whole. mmgfn uses none of those models,
    so when transformers >= 5 is found this switches mmpretrain's
    ``WITH_MULTIMODAL`` off (they are then registered as placeholders that
    raise a clear error if built) and warns once.

    Must run before ``mmpretrain.models`` is imported; importing :mod:`mmgfn`
    first does that.

    Returns:
        bool: True if the multimodal models were switched off.
    """
    try:
        major = int(version('transformers').split('.')[0])
    except (PackageNotFoundError, ValueError):
        return False
    if major < 5:
        return False
    import mmpretrain.utils.dependency as dependency
    dependency.WITH_MULTIMODAL = False
    warnings.warn(f'transformers {version("transformers")} is installed: '
                  "mmpretrain 1.2.0's multimodal models (BLIP, CLIP, ...) "
                  'do not work with it and are disabled; mmgfn does not use '
                  'them.')
    return True
