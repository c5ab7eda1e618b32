"""The test suite: a package, so that tests import their support as ``tests.support``."""
