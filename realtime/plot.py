"""A run drawn as one picture: emotions over time, valence, and which channels were there.

    python -m realtime --source clip.mp4 --out clip.jsonl --plot clip.png

Three bands share the time axis: the fused emotion probabilities stacked (each window's
column sums to 1, coloured by emotion, the leading one named where it changes), valence
on [-3, 3] with each present channel's own valence as a thin line, and the share of each
window that face, audio and text covered. Drawn with Qt's painter offscreen, so it needs
no display; the colours are the GUI's.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from models.errors import UserError
from realtime.outputs import OutputError, output_file_problem, write_atomic

EMOTION_COLOURS: dict[str, str] = {
    "neutral": "#9e9e9e", "happy": "#f2b701", "sad": "#3969ac", "angry": "#e73f74",
    "fearful": "#7f3c8d", "disgusted": "#11a579", "surprised": "#f97b22",
}
"""One colour per emotion, shared by the GUI and these pictures; other class names get grey tones."""
CHANNEL_COLOURS: dict[str, str] = {"face": "#4393c3", "audio": "#5aae61", "text": "#d6604d"}


class PlotError(UserError, ValueError):
    """A picture that cannot be written; one line naming it."""


def emotion_colour(name: str, index: int = 0) -> str:
    return EMOTION_COLOURS.get(name, ("#555555", "#777777", "#999999", "#bbbbbb")[index % 4])


def check_plot_path(path: str | Path) -> Path:
    """Fail before any model loads on a picture path that cannot be written."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise PlotError(f"--plot '{path}': use a .png or .jpg file name")
    if problem := output_file_problem("--plot", path, replace=True):
        raise PlotError(problem)
    return path


def _application():
    from PyQt6.QtGui import QGuiApplication

    app = QGuiApplication.instance()
    if app is None:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QGuiApplication(["realtime-plot"])
    return app


def draw_run(records: list[dict], path: str | Path, title: str = "", width: int = 1400) -> Path:
    """Draw the records of one run (as written to JSONL) into ``path``; returns it."""
    from PyQt6.QtCore import QPointF, QRectF, Qt
    from PyQt6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPolygonF

    path = check_plot_path(path)
    app = _application()  # kept alive until the picture is saved  # noqa: F841
    height = 620
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    try:
        font = QFont()
        font.setPointSize(9)
        painter.setFont(font)
        left, right = 90, width - 150
        bands = {"emotions": (40, 300), "valence": (320, 470), "channels": (490, 570)}
        if not records:
            painter.drawText(QRectF(0, 0, width, height), Qt.AlignmentFlag.AlignCenter, "no windows in this run")
            return _save(image, painter, path)
        # each window is one column, ending at the window's end: the axis starts where the first
        # column does (the first window needs a whole window of media, so nothing comes before)
        ends = [r["t_end"] for r in records]
        hop = min((b - a for a, b in zip(ends, ends[1:]) if b > a),
                  default=max(ends[0] - records[0]["t_start"], 1e-6))
        t0, t1 = min(ends) - hop, max(ends)
        span = max(t1 - t0, 1e-6)

        def x_of(t: float) -> float:
            return left + (t - t0) / span * (right - left)

        painter.setPen(QColor("#222"))
        title_font = QFont(font)
        title_font.setPointSize(11)
        painter.setFont(title_font)
        painter.drawText(QRectF(left, 8, right - left, 24), Qt.AlignmentFlag.AlignLeft, title or "run")
        painter.setFont(font)

        # 1. stacked emotion probabilities, one column per window (drawn at the window's end)
        top, bottom = bands["emotions"]
        names = next((list(r["emotions"]) for r in records if r.get("emotions")), [])
        if names:
            for r in records:
                probs = r.get("emotions") or {}
                xa, xb = x_of(r["t_end"] - hop), x_of(r["t_end"])
                y = bottom
                for i, name in enumerate(names):
                    h = (probs.get(name) or 0.0) * (bottom - top)
                    painter.fillRect(QRectF(xa, y - h, max(xb - xa, 1.0), h), QColor(emotion_colour(name, i)))
                    y -= h
            shown, free_from = None, -1e9
            for r in records:  # name the leading emotion where it changes (as soon as there is room)
                lead = r.get("emotion")
                x = x_of(r["t_end"] - hop) + 2
                if lead and lead != shown and x >= free_from:
                    painter.setPen(QColor("#111"))
                    painter.drawText(QPointF(x, top - 4), lead)
                    free_from = x + painter.fontMetrics().horizontalAdvance(lead) + 8
                    shown = lead
            for i, name in enumerate(names):  # legend
                y = top + 16 * i
                painter.fillRect(QRectF(right + 14, y, 12, 12), QColor(emotion_colour(name, i)))
                painter.setPen(QColor("#222"))
                painter.drawText(QPointF(right + 32, y + 10), name)
        else:
            painter.setPen(QColor("#777"))
            painter.drawText(QRectF(left, top, right - left, bottom - top), Qt.AlignmentFlag.AlignCenter,
                             "this checkpoint names no emotions (valence only)")
        painter.setPen(QColor("#333"))
        painter.drawText(QRectF(0, top, left - 8, bottom - top), Qt.AlignmentFlag.AlignRight |
                         Qt.AlignmentFlag.AlignVCenter, "emotions")

        # 2. valence: fused (thick) and each channel's own (thin)
        top, bottom = bands["valence"]
        painter.setPen(QPen(QColor("#bbb"), 1))
        painter.drawRect(QRectF(left, top, right - left, bottom - top))
        mid = (top + bottom) / 2
        painter.drawLine(QPointF(left, mid), QPointF(right, mid))

        def y_of(v: float) -> float:  # +-3 a little inside the frame, where a line there shows
            return mid - max(-3.0, min(3.0, v)) / 3.0 * 0.92 * (bottom - top) / 2

        for channel, colour in CHANNEL_COLOURS.items():
            points = [(r["t_end"], r["channels"][channel]["sentiment"]) for r in records
                      if (r.get("channels") or {}).get(channel, {}) and
                      r["channels"][channel].get("sentiment") is not None]
            _polyline(painter, [QPointF(x_of(t), y_of(v)) for t, v in points], QPen(QColor(colour), 1), QPolygonF)
        _polyline(painter, [QPointF(x_of(r["t_end"]), y_of(r["sentiment"])) for r in records],
                  QPen(QColor("#111"), 2.5), QPolygonF)
        painter.setPen(QColor("#333"))
        painter.drawText(QRectF(0, top, left - 8, bottom - top), Qt.AlignmentFlag.AlignRight |
                         Qt.AlignmentFlag.AlignVCenter, "valence\n+3 .. -3")
        for i, (channel, colour) in enumerate({"fused": "#111", **CHANNEL_COLOURS}.items()):
            y = top + 16 * i
            painter.fillRect(QRectF(right + 14, y + 4, 12, 3), QColor(colour))
            painter.drawText(QPointF(right + 32, y + 10), channel)

        # 3. channel coverage
        top, bottom = bands["channels"]
        row = (bottom - top) / 3
        for i, (channel, colour) in enumerate(CHANNEL_COLOURS.items()):
            y = top + i * row
            for r in records:
                share = (r.get("modalities") or {}).get(channel, 0.0)
                if share > 0:
                    c = QColor(colour)
                    c.setAlphaF(0.25 + 0.75 * share)
                    xa, xb = x_of(r["t_end"] - hop), x_of(r["t_end"])
                    painter.fillRect(QRectF(xa, y + 2, max(xb - xa, 1.0), row - 4), c)
            painter.setPen(QColor("#333"))
            painter.drawText(QRectF(0, y, left - 8, row), Qt.AlignmentFlag.AlignRight |
                             Qt.AlignmentFlag.AlignVCenter, channel)

        # time axis
        painter.setPen(QColor("#333"))
        step = tick_step(span)
        for k in range(math.ceil(t0 / step - 1e-9), math.floor(t1 / step + 1e-9) + 1):
            t = k * step
            x = x_of(t)
            painter.drawLine(QPointF(x, bottom + 2), QPointF(x, bottom + 6))
            painter.drawText(QRectF(x - 30, bottom + 8, 60, 16), Qt.AlignmentFlag.AlignCenter, f"{t:g}")
        painter.drawText(QRectF(left, bottom + 24, right - left, 16), Qt.AlignmentFlag.AlignCenter, "time (s)")
        return _save(image, painter, path)
    finally:
        if painter.isActive():
            painter.end()


def tick_step(span: float, most: int = 10) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most ``most`` intervals over ``span``."""
    for exponent in range(math.floor(math.log10(max(span, 1e-9) / most)), 12):
        for mantissa in (1, 2, 5):
            step = mantissa * 10.0 ** exponent
            if span / step <= most:
                return step
    return span


def _polyline(painter, points, pen, polygon_type) -> None:
    if len(points) >= 2:
        painter.setPen(pen)
        painter.drawPolyline(polygon_type(points))


def _save(image, painter, path: Path) -> Path:
    """The picture into ``path`` whole, as every output is written (realtime.outputs.write_atomic:
    a file renamed into place, a device or a pipe written into)."""
    from PyQt6.QtCore import QBuffer, QByteArray, QIODevice

    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, path.suffix.lstrip(".").upper()):
        raise PlotError(f"cannot write --plot '{path}'")
    buffer.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, bytes(data), label="--plot")
    except OutputError as exc:
        raise PlotError(str(exc)) from None
    return path
