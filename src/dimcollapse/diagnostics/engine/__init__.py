"""The diagnostics' compute engine: exact k-NN search (tiles, selection, workers, faiss backends), the
streamed float64 covariance (segments, lanes, the exact moments merge), a weight as a matrix and the
input checks every diagnostic shares.

Below the metric definitions (``dimcollapse.diagnostics``): the definitions import the engine, the engine
never imports a definition. The public names users need (``knn_distances``, ``KnnBackend``,
``CovarianceAccumulator``) are re-exported by ``dimcollapse.diagnostics``.
"""
