"""CLIP-ES (Lin et al., CVPR 2023): Softmax-GradCAM and class-aware attention-based affinity on a frozen CLIP."""
