"""POLE (Murugesan et al.): CLIMS with the per-image synonym that CLIP relates best (eq. 6) and adaptors (eq. 7–8)."""
