"""The window's parts: video with landmarks, the two distillation graphs, timelines,
transcript and the modality health strip. Each is fed plain data by the window; none
knows about threads or the pipeline."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QTextBrowser, QWidget

from models.graph_distill import EDGE_NAMES
from realtime.plot import emotion_colour
from realtime.types import Word

MODALITY_COLOURS = {"L": QColor(214, 96, 77), "V": QColor(67, 147, 195), "A": QColor(90, 174, 97)}
MODALITY_NAMES = {"L": "language", "V": "vision", "A": "acoustic"}
EDGE_COLOURS = {name: MODALITY_COLOURS[name.split("->")[0]] for name in EDGE_NAMES}
EDGE_STYLES = {name: (Qt.PenStyle.SolidLine if i % 2 == 0 else Qt.PenStyle.DashLine)
               for i, name in enumerate(sorted(EDGE_NAMES, key=lambda n: (n.split("->")[0], n)))}


def _paint_title(painter: QPainter, widget: QWidget, title: str) -> QFont:
    """A white background and the widget's bold title centred along its top; the bold font."""
    painter.fillRect(widget.rect(), QColor(255, 255, 255))
    font = QFont(widget.font())
    font.setBold(True)
    painter.setFont(font)
    painter.setPen(QColor(30, 30, 30))
    painter.drawText(QRectF(0, 2, widget.width(), 18), Qt.AlignmentFlag.AlignHCenter, title)
    return font


class VideoView(QWidget):
    """The newest analysed frame, scaled to fit, with the face landmarks drawn over it."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.show_landmarks = True
        self.placeholder = "no video"
        self._pixmap: QPixmap | None = None
        self._landmarks: np.ndarray | None = None
        self.caption = ""

    def set_frame(self, image: np.ndarray | None, landmarks: np.ndarray | None, caption: str = "") -> None:
        if image is None:
            self._pixmap = None
        else:
            h, w = image.shape[:2]
            qimage = QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888)
            self._pixmap = QPixmap.fromImage(qimage.copy())  # copy: the array may go away
        self._landmarks = landmarks
        self.caption = caption
        self.update()

    def clear(self, placeholder: str = "no video") -> None:
        self.placeholder = placeholder
        self.set_frame(None, None)

    @property
    def showing_frame(self) -> bool:
        """Whether a frame is on screen (else the placeholder text)."""
        return self._pixmap is not None

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(24, 24, 28))
        if self._pixmap is None:
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        pw, ph = self._pixmap.width(), self._pixmap.height()
        scale = min(self.width() / pw, self.height() / ph)
        w, h = pw * scale, ph * scale
        target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(target, self._pixmap, QRectF(0, 0, pw, ph))
        if self.show_landmarks and self._landmarks is not None:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(120, 255, 140, 200))
            r = max(1.0, scale * max(pw, ph) / 400)
            for x, y in self._landmarks:
                painter.drawEllipse(QPointF(target.x() + x * w, target.y() + y * h), r, r)
        if self.caption:
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(target.adjusted(6, 4, -6, -4), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft,
                             self.caption)


class GraphView(QWidget):
    """One graph distillation unit as a directed graph: nodes L, V, A; each edge teacher ->
    student drawn with a width and a label showing its weight."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.weights: dict[str, float] = {}
        self.setMinimumSize(230, 200)

    def set_weights(self, weights: dict[str, float]) -> None:
        self.weights = dict(weights)
        self.update()

    def _nodes(self) -> dict[str, QPointF]:
        w, h = self.width(), self.height()
        # room below the bottom nodes for the V<->A edges, which bow outwards
        top, bottom = 46.0, h - max(34.0, 0.09 * w + 16.0)
        return {"L": QPointF(w / 2, top), "V": QPointF(w * 0.17, bottom), "A": QPointF(w * 0.83, bottom)}

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = _paint_title(painter, self, self.title)
        nodes = self._nodes()
        radius = 15.0
        label_font = QFont(self.font())
        label_font.setPointSizeF(max(7.0, label_font.pointSizeF() - 1))
        for name in EDGE_NAMES:
            teacher, student = name.split("->")
            weight = self.weights.get(name)
            self._edge(painter, nodes[teacher], nodes[student], radius, weight, EDGE_COLOURS[name], label_font)
        painter.setFont(font)
        for m, p in nodes.items():
            painter.setPen(QPen(QColor(40, 40, 40), 1.5))
            painter.setBrush(MODALITY_COLOURS[m])
            painter.drawEllipse(p, radius, radius)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(QRectF(p.x() - radius, p.y() - radius, 2 * radius, 2 * radius),
                             Qt.AlignmentFlag.AlignCenter, m)

    @staticmethod
    def _edge(painter: QPainter, a: QPointF, b: QPointF, radius: float, weight: float | None, colour: QColor,
              font: QFont) -> None:
        dx, dy = b.x() - a.x(), b.y() - a.y()
        length = math.hypot(dx, dy) or 1.0
        ux, uy = dx / length, dy / length
        nx, ny = -uy, ux  # to the left of the direction: the two directions bend apart
        bend = 0.16 * length
        mid = QPointF((a.x() + b.x()) / 2 + nx * bend, (a.y() + b.y()) / 2 + ny * bend)
        start = QPointF(a.x() + (ux + nx * 0.6) * radius, a.y() + (uy + ny * 0.6) * radius)
        end = QPointF(b.x() + (-ux + nx * 0.6) * radius * 1.15, b.y() + (-uy + ny * 0.6) * radius * 1.15)
        width = 1.0 if weight is None else 1.0 + 14.0 * weight
        pen_colour = QColor(colour)
        if weight is None:
            pen_colour.setAlpha(70)
        painter.setPen(QPen(pen_colour, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.FlatCap))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        path = QPainterPath(start)
        path.quadTo(mid, end)
        painter.drawPath(path)
        # the arrow head points along the curve's last tangent
        tx, ty = end.x() - mid.x(), end.y() - mid.y()
        tl = math.hypot(tx, ty) or 1.0
        tx, ty = tx / tl, ty / tl
        size = 7.0 + width * 0.6
        head = QPolygonF([end, QPointF(end.x() - tx * size - ty * size * 0.5, end.y() - ty * size + tx * size * 0.5),
                          QPointF(end.x() - tx * size + ty * size * 0.5, end.y() - ty * size - tx * size * 0.5)])
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(pen_colour))
        painter.drawPolygon(head)
        if weight is not None:
            # the label sits at the curve's apex (a quadratic's midpoint is halfway to its control point)
            apex = QPointF((start.x() + end.x()) / 4 + mid.x() / 2, (start.y() + end.y()) / 4 + mid.y() / 2)
            painter.setFont(font)
            text = f"{weight:.2f}"
            box = QRectF(apex.x() - 17, apex.y() - 8, 34, 16)
            painter.setBrush(QColor(255, 255, 255, 225))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawRoundedRect(box, 3, 3)
            painter.setPen(colour.darker(140))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


class History:
    """The last estimates as arrays for the timelines (newest last)."""

    def __init__(self, maxlen: int = 4000):
        self.t: deque = deque(maxlen=maxlen)
        self.sentiment: deque = deque(maxlen=maxlen)
        self.edges: dict[str, dict[str, deque]] = {}
        self.emotions: dict[str, deque] = {}
        self.leading: deque = deque(maxlen=maxlen)
        """Index of the leading emotion per window (in the checkpoint's class order), or -1."""
        self.maxlen = maxlen

    def add(self, est) -> None:
        self.t.append(est.t_end)
        self.sentiment.append(est.sentiment)
        for kind, weights in est.edges.items():
            series = self.edges.setdefault(kind, {})
            # an edge touching an absent modality is not in the record: a gap (NaN) in its
            # timeline keeps every series one value per window
            for name in EDGE_NAMES:
                series.setdefault(name, deque(maxlen=self.maxlen)).append(weights.get(name, math.nan))
        names = list(est.emotions or {})
        for name, value in (est.emotions or {}).items():
            self.emotions.setdefault(name, deque(maxlen=self.maxlen)).append(value)
        self.leading.append(names.index(est.emotion) if est.emotion is not None else -1)

    def clear(self) -> None:
        self.__init__(self.maxlen)

    def __len__(self) -> int:
        return len(self.t)


def _plot(title: str, y_label: str, y_range: tuple[float, float]) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    plot.setTitle(title, color="#222", size="10pt")
    plot.setLabel("left", y_label, color="#333")
    plot.setLabel("bottom", "time (s)", color="#333")
    plot.setYRange(*y_range, padding=0.02)
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.getAxis("left").setSIPrefixEnableRanges(())  # weights read as 0.25, not 250 x0.001
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.setMinimumHeight(150)
    return plot


class SentimentPlot(QWidget):
    """Valence over the last ``span`` seconds and, when the checkpoint names emotions, a
    timeline of the leading emotion (one dot per window, its size the probability)."""

    def __init__(self, span: float = 60.0, parent: QWidget | None = None):
        super().__init__(parent)
        self.span = span
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot = _plot(f"valence, last {span:.0f} s  (-3 negative ... +3 positive)", "valence", (-3.3, 3.3))
        self.plot.getAxis("left").setTicks([[(v, f"{v:+d}" if v else "0") for v in range(-3, 4)]])
        self.plot.addLine(y=0, pen=pg.mkPen("#999", width=1))
        self.curve = self.plot.plot(pen=pg.mkPen("#333", width=2))
        layout.addWidget(self.plot, 3)
        self.class_plot: pg.PlotWidget | None = None
        self.class_names: tuple[str, ...] = ()
        self.leading: pg.ScatterPlotItem | None = None

    def set_classes(self, names: tuple[str, ...]) -> None:
        if not names or self.class_plot is not None:
            return
        self.class_names = tuple(names)
        self.class_plot = _plot("leading emotion", "", (-0.5, len(names) - 0.5))
        self.class_plot.getAxis("left").setTicks([[(i, name) for i, name in enumerate(names)]])
        self.class_plot.showGrid(x=True, y=False)
        self.leading = pg.ScatterPlotItem(pen=None)
        self.class_plot.addItem(self.leading)
        self.layout().addWidget(self.class_plot, 2)

    def redraw(self, history: History) -> None:
        if not len(history):  # a new run: nothing of the last one stays
            self.curve.setData([], [])
            if self.leading is not None:
                self.leading.setData([], [])
            return
        t = np.fromiter(history.t, float)
        y = np.fromiter(history.sentiment, float)
        self.curve.setSymbol("o" if len(t) == 1 and np.isfinite(y[0]) else None)  # a line of one point is not drawn
        self.curve.setData(t, y)
        right = max(t[-1], self.span)
        self.plot.setXRange(right - self.span, right, padding=0)
        if self.leading is not None:
            lead = np.fromiter(history.leading, int)
            shown = (lead >= 0) & (t > right - self.span)
            idx = lead[shown]
            p = np.array([history.emotions[self.class_names[i]][k] if self.class_names[i] in history.emotions else 1.0
                          for k, i in zip(np.flatnonzero(shown), idx)])
            brushes = [pg.mkBrush(emotion_colour(self.class_names[i], i)) for i in idx]
            self.leading.setData(t[shown], idx, size=4 + 10 * p if len(p) else 4, brush=brushes)
            self.class_plot.setXRange(right - self.span, right, padding=0)


class EmotionBars(QWidget):
    """The newest window's emotions as bars: the fused reading, then each channel's own
    (a channel absent from the window is greyed out), and each one's valence below."""

    COLUMNS = (("all", None), ("face", "face"), ("voice", "audio"), ("words", "text"))

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.names: tuple[str, ...] = ()
        self.readings: dict[str, tuple[float, dict[str, float] | None] | None] = {}

    def clear(self) -> None:
        """No reading (a new run, before its first window)."""
        self.names, self.readings = (), {}
        self.update()

    def set_estimate(self, est) -> None:
        self.names = tuple(est.emotions or {})
        self.readings = {"all": (est.sentiment, est.emotions)}
        for label, channel in self.COLUMNS[1:]:
            reading = est.channels.get(channel)
            self.readings[label] = None if reading is None else (reading.sentiment, reading.emotions)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("white"))
        font = QFont()
        font.setPointSize(9)
        painter.setFont(font)
        if not self.readings:
            painter.setPen(QColor("#888"))
            painter.drawText(QRectF(self.rect()), Qt.AlignmentFlag.AlignCenter, "emotions appear with the first window")
            painter.end()
            return
        if not self.names:
            painter.setPen(QColor("#666"))
            painter.drawText(QRectF(self.rect()), Qt.AlignmentFlag.AlignCenter,
                             "this checkpoint names no emotions: valence only")
            painter.end()
            return
        label_w, top, row_h = 70.0, 18.0, max(12.0, (self.height() - 40.0) / (len(self.names) + 1))
        col_w = (self.width() - label_w - 8) / len(self.COLUMNS)
        for c, (label, _) in enumerate(self.COLUMNS):
            x = label_w + c * col_w
            reading = self.readings.get(label)
            painter.setPen(QColor("#222" if reading is not None else "#aaa"))
            painter.drawText(QRectF(x, 0, col_w, top), Qt.AlignmentFlag.AlignCenter,
                             label if reading is not None else f"{label} (absent)")
            if reading is None:
                continue
            valence, probs = reading
            for r, name in enumerate(self.names):
                y = top + r * row_h
                p = (probs or {}).get(name, 0.0)
                painter.fillRect(QRectF(x + 4, y + 2, (col_w - 8) * p, row_h - 4),
                                 QColor(emotion_colour(name, r)))
                painter.setPen(QColor("#333"))
                painter.drawText(QRectF(x + 6, y, col_w - 10, row_h), Qt.AlignmentFlag.AlignVCenter |
                                 Qt.AlignmentFlag.AlignRight, f"{p:.2f}")
            y = top + len(self.names) * row_h
            painter.setPen(QColor("#222"))
            painter.drawText(QRectF(x, y, col_w, row_h), Qt.AlignmentFlag.AlignCenter, f"valence {valence:+.2f}")
        painter.setPen(QColor("#222"))
        for r, name in enumerate(self.names):
            painter.drawText(QRectF(2, top + r * row_h, label_w - 6, row_h), Qt.AlignmentFlag.AlignVCenter |
                             Qt.AlignmentFlag.AlignRight, name)
        painter.end()


class EdgeTimeline(QWidget):
    """The six edge weights of one graph distillation unit over time."""

    def __init__(self, kind: str, title: str, span: float = 60.0, parent: QWidget | None = None):
        super().__init__(parent)
        self.kind = kind
        self.span = span
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot = _plot(title, "edge weight", (0, 0.6))
        self.plot.getPlotItem().enableAutoRange(axis="y", enable=False)
        self.plot.addLegend(offset=(5, 2), labelTextColor="#222", colCount=6, horSpacing=6, verSpacing=-6)
        self.curves = {name: self.plot.plot(pen=pg.mkPen(EDGE_COLOURS[name], width=2, style=EDGE_STYLES[name]),
                                            name=name) for name in EDGE_NAMES}
        layout.addWidget(self.plot)

    def redraw(self, history: History) -> None:
        series = history.edges.get(self.kind)
        if not series:  # a new run (or one without the edges): nothing of the last one stays
            for curve in self.curves.values():
                curve.setSymbol(None)
                curve.setData([], [])
            return
        t = np.fromiter(history.t, float)
        top = 0.1
        for name, curve in self.curves.items():
            values = series.get(name)
            if values:
                y = np.fromiter(values, float)
                # a line of one point is not drawn (and a point that is not a number has no
                # symbol: its bounds would be NaN), so the symbol is chosen before the data
                curve.setSymbol("o" if len(y) == 1 and np.isfinite(y[0]) else None)
                curve.setData(t[-len(y):], y, connect="finite")
                if np.isfinite(y).any():
                    top = max(top, float(np.nanmax(y)))
        right = max(t[-1], self.span)
        self.plot.setXRange(right - self.span, right, padding=0)
        self.plot.setYRange(0, top * 1.35, padding=0)  # headroom for the legend, a weight of 1 included


class AtomView(QWidget):
    """DHMD's dictionary activations in one space: a row per modality (L, V, A), a cell per
    atom, darker where the modality's features in the window lean on that atom; an absent
    modality's row is empty. Beside each GD-Unit's graph when the checkpoint has dictionaries."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.activations: dict[str, list[float]] = {}
        self.setMinimumSize(180, 110)

    def set_activations(self, activations: dict[str, list[float]]) -> None:
        self.activations = {m: list(v) for m, v in activations.items() if v is not None}
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        _paint_title(painter, self, self.title)
        atoms = max((len(v) for v in self.activations.values()), default=0)
        left, top, row_h = 24.0, 26.0, max(12.0, (self.height() - 34.0) / 3)
        cell_w = (self.width() - left - 6) / max(atoms, 1)
        for r, m in enumerate(("L", "V", "A")):
            y = top + r * row_h
            painter.setPen(MODALITY_COLOURS[m].darker(120))
            painter.drawText(QRectF(2, y, left - 4, row_h), Qt.AlignmentFlag.AlignCenter, m)
            values = self.activations.get(m)
            if not values:
                painter.setPen(QColor(170, 170, 170))
                painter.drawText(QRectF(left, y, self.width() - left, row_h), Qt.AlignmentFlag.AlignVCenter,
                                 "absent")
                continue
            peak = max(values) or 1.0
            for k, value in enumerate(values):
                colour = QColor(MODALITY_COLOURS[m])
                colour.setAlpha(int(25 + 230 * max(0.0, value) / peak))
                painter.fillRect(QRectF(left + k * cell_w, y + 1, cell_w - 1, row_h - 2), colour)
        painter.end()


class TranscriptView(QTextBrowser):
    """Committed words in black; words not yet committed in grey italics after them."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumHeight(90)
        self.committed_text = ""
        self.tentative_text = ""

    def set_words(self, committed: list[Word], tentative: list[Word], empty: str | None = None) -> None:
        """``empty``: what to say while there are no words (default: 'no words yet')."""
        from html import escape

        self.committed_text = " ".join(w.text for w in committed)
        self.tentative_text = " ".join(w.text for w in tentative)
        html = f'<span style="color:#111">{escape(self.committed_text)}</span>'
        if self.tentative_text:
            html += f' <span style="color:#888"><i>{escape(self.tentative_text)}</i></span>'
        if not committed and not tentative:
            html = f'<span style="color:#888"><i>{escape(empty or "no words yet")}</i></span>'
        self.setHtml(f'<div style="font-size:11pt">{html}</div>')
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())


class HealthStrip(QWidget):
    """One cell per modality (present or missing, rate, drops, lag) and one for the model."""

    CELLS = ("face", "audio", "text", "model")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        self.labels: dict[str, QLabel] = {}
        for cell in self.CELLS:
            label = QLabel()
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setStyleSheet("QLabel { background: #f3f3f3; border: 1px solid #ccc; border-radius: 4px;"
                                " padding: 3px 6px; }")
            # a long text is cut at the cell's edge (its tooltip holds it whole), rather than
            # widening the window as a run goes (the strip had grown it past 1,490 px)
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setMinimumWidth(60)
            layout.addWidget(label, 1)
            self.labels[cell] = label
        self.states: dict[str, str] = {}
        self.set_cell("face", "idle", "Face: idle")
        self.set_cell("audio", "idle", "Audio: idle")
        self.set_cell("text", "idle", "Text: idle")
        self.set_cell("model", "idle", "Model: not loaded")

    def set_cell(self, cell: str, state: str, text: str) -> None:
        """``state``: 'present', 'partial', 'missing' or 'idle' (the dot's colour)."""
        from html import escape

        colour = {"present": "#2e9d3a", "partial": "#e0a100", "missing": "#d03030"}.get(state, "#999999")
        self.states[cell] = state
        self.labels[cell].setText(f'<span style="color:{colour}; font-size:13pt">&#9679;</span> {escape(text)}')
        self.labels[cell].setToolTip(text)

    def text(self, cell: str) -> str:
        return self.labels[cell].text()
