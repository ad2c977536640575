"""Plain CAM (Zhou et al.; eq. 1–2 of the POLE paper): the baseline every CAM method is compared with."""
