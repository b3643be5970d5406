from .transforms import *  # noqa: F401,F403
from .class_balanced_subset import ClassBalancedSubset  # noqa: F401
from .imagenet_ar import ImageNetA, ImageNetR  # noqa: F401
from .imagenet_c import ImageNetC  # noqa: F401
from .imagenet_p import ImageNetP  # noqa: F401
from .wnid_folder import WnidFolderDataset  # noqa: F401
from .wnids import indices_in_1k, load_wnids  # noqa: F401
from .foggy_cityscapes import FoggyCityscapesDataset  # noqa: F401
