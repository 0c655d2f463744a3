"""The desktop GUI (PyQt6 + pyqtgraph) on top of the streaming pipeline: ``python -m gui``."""
