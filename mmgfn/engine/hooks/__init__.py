from .background_roi_perturbation_hook import BackgroundRoIPerturbationHook

__all__ = ['BackgroundRoIPerturbationHook']
