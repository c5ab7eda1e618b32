"""Experiments on trained networks, one module per experiment; the demos in ``demos/`` draw them.

    lesion    delete blocks at test time and measure the error (Veit et al. 2016, Sec. 4)
    paths     the gradient carried by the paths of each length (Veit et al. 2016, Sec. 5)
"""
