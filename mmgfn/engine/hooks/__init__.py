from .background_roi_perturbation_hook import BackgroundRoIPerturbationHook
from .keep_logits_hook import KeepLogitsHook

__all__ = ['BackgroundRoIPerturbationHook', 'KeepLogitsHook']
