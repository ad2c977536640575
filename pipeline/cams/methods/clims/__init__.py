"""CLIMS (Xie et al., CVPR 2022) as in the POLE paper (eq. 3–5): CAMs trained with a frozen CLIP as supervisor."""
