"""Datasets: the embedded synthetic benchmark, VOC/COCO readers and the manifest."""
