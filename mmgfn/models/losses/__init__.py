from .neighbor_weighted_ce_loss import NeighborWeightedCELoss

__all__ = ['NeighborWeightedCELoss']
