"""Experiments on networks, one module per experiment; the demos in ``demos/`` draw them.

    shattered   the gradient of a net from R to R over its input, feed-forward against residual
                (Balduzzi et al. 2017)
    landscape   the loss along filter-normalised random directions (Li et al. 2018)
"""
