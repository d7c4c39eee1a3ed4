"""The implementation of ``nnfast.sklearn`` (see that module)."""
