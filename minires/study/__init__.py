"""Experiments on networks, one module per experiment; the demos in ``demos/`` draw them.

    lesion      delete blocks at test time and measure the error (Veit et al. 2016, Sec. 4)
    paths       the gradient carried by the paths of each length (Veit et al. 2016, Sec. 5)
    shattered   the gradient of a net from R to R over its input, feed-forward against residual
                (Balduzzi et al. 2017)
    landscape   the loss along filter-normalised random directions (Li et al. 2018)
"""
