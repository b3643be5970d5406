# GFN ViT-B/16 (ImageNet-1k fine-tuned) on ImageNet-r:
#   tools/test.py configs/robustness/gfn_vit-b_in1k_imagenet-r.py CHECKPOINT
#   tools/dist_test.sh configs/robustness/gfn_vit-b_in1k_imagenet-r.py CHECKPOINT 4
# Results: <work_dir>/results.{json,csv,md} and plots; a rerun resumes.
_base_ = ['../gfn_vit-b_in1k.py', './_base_/imagenet-r.py']
test_cfg = _base_.robustness_test_cfg
