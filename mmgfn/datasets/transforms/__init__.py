from .corruption import ImageCorruption

__all__ = ['ImageCorruption']
