from .corruption import ImageCorruption
from .insertion import (has_resize, insert_corruption,
                        insert_corruption_in_dataset, transform_name)

__all__ = [
    'ImageCorruption', 'has_resize', 'insert_corruption',
    'insert_corruption_in_dataset', 'transform_name'
]
