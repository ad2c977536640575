"""FMA-WSSS (Yang & Gong): learned classification and segmentation prompts on a frozen CLIP, then SAMS."""
