"""The desktop GUI (PyQt6 + pyqtgraph): not built yet, see issue 4."""
