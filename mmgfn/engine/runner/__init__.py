from .robustness_test_loop import RobustnessTestLoop, weights_fingerprint

__all__ = ['RobustnessTestLoop', 'weights_fingerprint']
