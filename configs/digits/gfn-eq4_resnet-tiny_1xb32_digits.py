# GFN fine-tuning of the digits classifier with the paper's neighbour table
# (Eq. 4): each class's 3 neighbours are the classes whose class-mean
# features (pre-logits, over the training images, test pipeline) of the
# baseline are most similar by cosine. gfn_resnet-tiny_1xb32_digits.py reads
# neighbours from the head's class weights instead; the two tables generally
# differ. Write the table once from the baseline checkpoint, then train:
#   .venv/bin/python tools/build_neighbors.py \
#       configs/digits/gfn-eq4_resnet-tiny_1xb32_digits.py \
#       work_dirs/demo/baseline/epoch_6.pth
#   .venv/bin/python tools/train.py \
#       configs/digits/gfn-eq4_resnet-tiny_1xb32_digits.py \
#       --cfg-options load_from=work_dirs/demo/baseline/epoch_6.pth
_base_ = ['./gfn_resnet-tiny_1xb32_digits.py']

neighbor_file = 'data/neighbors/digits_resnet-tiny_top3.json'
data_preprocessor = dict(neighbor_source='file', neighbor_file=neighbor_file)
