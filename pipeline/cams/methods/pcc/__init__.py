"""PCC (prompting category clusters): ViT patch classifier whose tokens carry the image's category clusters."""
