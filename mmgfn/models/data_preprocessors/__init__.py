from .neighbor_adversarial_data_preprocessor import \
    NeighborAdversarialDataPreprocessor

__all__ = ['NeighborAdversarialDataPreprocessor']
