"""The desktop window in the fast lane: it opens offscreen, draws, and closes, loading no
model and leaving no thread (the end-to-end window tests are in test_gui.py, marked slow)."""

from PIL import Image

from gui.session import SessionOptions
from gui.window import MainWindow, running_threads
from tests.conftest import EXAMPLE


def test_window_opens_draws_and_closes_without_models(qtbot, tmp_path):
    window = MainWindow(SessionOptions(source=str(EXAMPLE)))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.start_button.isEnabled() and not window.session.running
    png = tmp_path / "window.png"
    assert window.grab().save(str(png))
    with Image.open(png) as image:
        assert image.width >= 800 and image.height >= 500
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20  # drawn, not blank
    window.close()
    assert window.session.engine is None, "no model loads before a run starts"
    assert not running_threads()
