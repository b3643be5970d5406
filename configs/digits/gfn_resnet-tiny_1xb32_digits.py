# GFN fine-tuning of the digits classifier: each training batch is moved one
# gradient-sign step toward a random neighbouring class (Eq. 5), and trained
# with the neighbour-weighted cross-entropy (Eq. 7-8). Same schedule as the
# plain fine-tuning it is compared with.
_base_ = ['./finetune_resnet-tiny_1xb32_digits.py']

# 10 classes: each has 3 neighbours (the paper keeps 20 of 1,000)
data_preprocessor = dict(
    type='mmgfn.NeighborAdversarialDataPreprocessor',
    eta=0.01,  # on the normalised input (the paper's unit)
    eta_unit='normalized',
    topk=3,
    mode='neighbor',
    # Neighbours from the head's class weights: the top-3 rows of the final
    # linear layer's weight by cosine similarity, built at the first
    # training step. This is not the paper's Eq. 4 table (class-mean
    # features of the training images), and the two generally differ;
    # gfn-eq4_resnet-tiny_1xb32_digits.py is this config with the Eq. 4
    # table that tools/build_neighbors.py writes.
    neighbor_source='head')

model = dict(
    head=dict(
        loss=dict(
            _delete_=True,
            type='mmgfn.NeighborWeightedCELoss',
            alpha=0.5,
            topk=3,
            scale=1.0)))
