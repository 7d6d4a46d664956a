"""The folder ``hivemind run`` puts first on the child's ``PYTHONPATH`` (see ``sitecustomize``)."""
