"""Adapters that expose ragehr to other frameworks, one module per framework.

Each adapter imports the core and its framework; the core never imports an adapter, so
``import ragehr`` never pulls in a framework. Import the module you need directly, e.g.
``from ragehr.adapters.llamaindex import RagehrRetriever`` (needs the ``llamaindex`` extra).
"""
