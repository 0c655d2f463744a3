"""The main window: controls, video, timelines, the two distillation graphs, transcript and
modality health, redrawn by one timer at about 30 frames per second."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

from PyQt6.QtCore import QCoreApplication, Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from gui.devices import list_cameras, list_microphones
from gui.session import Health, Session, SessionOptions
from gui.widgets import (
    AtomView,
    EdgeTimeline,
    EmotionBars,
    GraphView,
    HealthStrip,
    History,
    SentimentPlot,
    TranscriptView,
    VideoView,
)
from realtime.outputs import OutputError
from realtime.service import HOP_RANGE, WINDOW_RANGE
from realtime.sources.live import camera_index
from realtime.types import Estimate

logger = logging.getLogger(__name__)

REDRAW_MS = 33  # about 30 redraws per second at most
HEALTH_EVERY = 8  # redraw ticks between health updates
FILE_ITEM = "Open a file..."


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
"""Names whose suffix chooses the image format (``python -m realtime --plot`` likewise)."""


def image_format(path: str | Path) -> str | None:
    """None (Qt reads the format from the suffix) for IMAGE_SUFFIXES, else PNG: a .jpg was
    written as PNG data under its JPEG name."""
    return None if Path(path).suffix.lower() in IMAGE_SUFFIXES else "PNG"


class MainWindow(QMainWindow):
    """The live demo. ``base`` holds what the controls do not set (checkpoint, device, models)."""

    screenshot_saved = pyqtSignal(str)

    def __init__(self, base: SessionOptions, session: Session | None = None):
        super().__init__()
        self.setWindowTitle("DMD emotion - live multimodal emotion recognition")
        self.base = base
        self.session = session or Session(self)
        self.history = History()
        self.last: Estimate | None = None
        self.estimates_seen = 0
        self.recorder = None
        self._held: list[tuple[Estimate, str | None]] = []  # estimates that came while paused
        self.record_path: Path | None = None
        self._record_lock = None  # realtime.outputs.OutputLocks while recording
        self._dirty = False
        self._frame_serial = -1
        self._transcript_serial = -1
        self._ticks = 0
        self._screenshot: tuple[float, str] | None = None
        self.cameras = list_cameras()
        self.microphones = list_microphones()

        self._build()
        self.session.estimate.connect(self._on_estimate)
        self.session.message.connect(self._on_message)
        self.session.warned.connect(self._on_warned)
        self.session.failed.connect(self._on_failed)
        self.session.finished.connect(self._on_finished)
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self._redraw)
        self.timer.start()
        self._show_devices()
        self._set_running(False)

    # ---- layout ----------------------------------------------------------------------
    def _build(self) -> None:
        central = QWidget()
        root = QVBoxLayout(central)
        root.setContentsMargins(6, 6, 6, 4)
        root.addLayout(self._controls())

        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("QLabel { background: #fde2e1; color: #8a1c1c; border: 1px solid #e5a3a0;"
                                  " border-radius: 4px; padding: 4px 8px; }")
        self.banner.hide()
        root.addWidget(self.banner)
        self.notes = QLabel()  # the run's warnings, as they come
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("QLabel { background: #fff6d6; color: #6b4e00; border: 1px solid #e8d28a;"
                                 " border-radius: 4px; padding: 4px 8px; }")
        self.notes.hide()
        # three lines at most (the whole text as a tooltip): a run's warnings do not grow the window
        self.notes.setMaximumHeight(3 * self.notes.fontMetrics().lineSpacing() + 12)
        root.addWidget(self.notes)

        left = QSplitter(Qt.Orientation.Vertical)
        self.video = VideoView()
        self.transcript = TranscriptView()
        self.transcript.set_words([], [])
        self.emotions = EmotionBars()
        left.addWidget(self.video)
        left.addWidget(self.emotions)
        left.addWidget(self.transcript)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 2)
        left.setStretchFactor(2, 1)

        self.plots = QWidget()
        grid = QGridLayout(self.plots)
        grid.setContentsMargins(0, 0, 0, 0)
        self.sentiment = SentimentPlot()
        grid.addWidget(self.sentiment, 0, 0, 1, 2)
        self.graphs = {"homo": GraphView("homogeneous GD-Unit: teacher -> student"),
                       "hetero": GraphView("heterogeneous GD-Unit: teacher -> student")}
        self.edge_plots = {"homo": EdgeTimeline("homo", "homogeneous (shared space) edge weights"),
                           "hetero": EdgeTimeline("hetero", "heterogeneous (exclusive space) edge weights")}
        # a DHMD checkpoint's dictionary activations, under each graph (hidden for DMD)
        self.atom_views = {"homo": AtomView("irrelevant-space dictionary: activations"),
                           "hetero": AtomView("exclusive-space dictionary: activations")}
        for row, kind in enumerate(("homo", "hetero"), start=1):
            cell = QWidget()
            stack = QVBoxLayout(cell)
            stack.setContentsMargins(0, 0, 0, 0)
            stack.setSpacing(2)
            stack.addWidget(self.graphs[kind], 3)
            stack.addWidget(self.atom_views[kind], 2)
            self.atom_views[kind].hide()
            grid.addWidget(cell, row, 0)
            grid.addWidget(self.edge_plots[kind], row, 1)
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 3)
        for row in range(3):
            grid.setRowStretch(row, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.plots)
        split.setSizes([480, 920])
        left.setSizes([400, 220, 140])
        root.addWidget(split, 1)

        self.health = HealthStrip()
        root.addWidget(self.health)
        self.setCentralWidget(central)
        self.resize(1400, 860)

    def _controls(self) -> QVBoxLayout:
        """Two rows (the input and the run; the settings and the outputs), so that the window
        fits a 1280 px projector or a small laptop's screen (one row needed 1330 px)."""
        rows = QVBoxLayout()
        rows.setSpacing(2)
        self.source_box = QComboBox()
        self.source_box.setMinimumContentsLength(18)
        for index in self.cameras:
            self.source_box.addItem(f"Camera {index}", str(index))
        if not self.cameras:
            self.source_box.addItem("Camera 0 (none found)", "0")
        self.source_box.addItem(FILE_ITEM, None)
        self.source_box.activated.connect(self._on_source_chosen)
        if not self.base.live:
            self._add_file(self.base.source)
        elif self.base.source.isdigit():
            if self.source_box.findData(self.base.source) < 0:  # asked for, though not listed
                self.source_box.insertItem(0, f"Camera {self.base.source}", self.base.source)
            self.source_box.setCurrentIndex(self.source_box.findData(self.base.source))

        self.mic_box = QComboBox()
        self.mic_box.addItem("Default microphone" if self.microphones else "Default microphone (none found)", "")
        for name in self.microphones:
            self.mic_box.addItem(name, name)
        self.mic_box.addItem("No microphone", None)
        if self.base.microphone is None:
            self.mic_box.setCurrentIndex(self.mic_box.count() - 1)
        elif self.base.microphone:
            i = self.mic_box.findData(self.base.microphone)
            if i >= 0:
                self.mic_box.setCurrentIndex(i)

        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._on_pause)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)

        self.window_spin = QDoubleSpinBox()
        self.window_spin.setDecimals(3)  # the command line's values as given (2.125 s, not 2.13)
        self.window_spin.setRange(*WINDOW_RANGE)  # the command line's ranges
        self.window_spin.setSingleStep(0.5)
        self.window_spin.setSuffix(" s")
        self.window_spin.setValue(self.base.window or 4.0)
        self.window_spin.setToolTip("window length (the checkpoint was trained on its own; see the warning)")
        self.hop_spin = QDoubleSpinBox()
        self.hop_spin.setDecimals(3)
        self.hop_spin.setRange(*HOP_RANGE)
        self.hop_spin.setSingleStep(0.1)
        self.hop_spin.setSuffix(" s")
        self.hop_spin.setValue(self.base.hop)

        self.landmarks_box = QCheckBox("Landmarks")
        self.landmarks_box.setChecked(True)
        self.landmarks_box.toggled.connect(self._on_landmarks)
        self.record_button = QPushButton("Record JSONL...")
        self.record_button.setCheckable(True)
        self.record_button.toggled.connect(self._on_record)
        self.png_button = QPushButton("Save plots PNG...")
        self.png_button.clicked.connect(self._on_save_png)

        for widgets in ((QLabel("Source"), self.source_box, QLabel("Mic"), self.mic_box, self.start_button,
                         self.pause_button, self.stop_button),
                        (QLabel("Window"), self.window_spin, QLabel("Hop"), self.hop_spin, self.landmarks_box,
                         self.record_button, self.png_button)):
            row = QHBoxLayout()
            for widget in widgets:
                row.addWidget(widget)
            row.addStretch(1)
            rows.addLayout(row)
        return rows

    def _add_file(self, path: str) -> None:
        i = self.source_box.findData(path)
        if i < 0:
            self.source_box.insertItem(self.source_box.count() - 1, Path(path).name, path)
            i = self.source_box.findData(path)
        self.source_box.setCurrentIndex(i)

    def _show_devices(self) -> None:
        """The health strip before a run: what the chosen source can give."""
        source = self.source_box.currentData()
        if source is not None and camera_index(source) is None:  # a file: it says when it plays
            self.health.set_cell("face", "idle", "Face: idle (a file)")
            self.health.set_cell("audio", "idle", "Audio: idle (a file)")
        else:
            face = "Face: no camera found - play a file" if not self.cameras else "Face: idle"
            audio = "Audio: no microphone found" if not self.microphones else "Audio: idle"
            self.health.set_cell("face", "missing" if not self.cameras else "idle", face)
            self.health.set_cell("audio", "missing" if not self.microphones else "idle", audio)
        self.health.set_cell("text", "idle", "Text: idle")

    # ---- controls --------------------------------------------------------------------
    def options(self) -> SessionOptions:
        """What the controls say now."""
        return replace(self.base, source=self.source_box.currentData() or self.base.source,
                       microphone=self.mic_box.currentData(), window=self.window_spin.value(),
                       hop=self.hop_spin.value())

    def start(self) -> None:
        if self.session.running:
            return
        options = self.options()
        self._clear_panes()
        self.pause_button.setChecked(False)
        self.session.start(options)
        self._set_running(True)

    def _clear_panes(self) -> None:
        """Nothing of the last run stays on screen as the next starts."""
        self.banner.hide()
        self.notes.clear()
        self.notes.setToolTip("")
        self.notes.hide()
        self.history.clear()
        self.last = None
        self.estimates_seen = 0
        self.video.clear("starting...")
        self.transcript.set_words([], [])
        self._frame_serial = self._transcript_serial = -1
        self.emotions.clear()
        for kind in self.graphs:
            self.graphs[kind].set_weights({})
            self.atom_views[kind].hide()
        self.sentiment.redraw(self.history)
        for plot in self.edge_plots.values():
            plot.redraw(self.history)
        self._show_devices()

    def stop(self) -> None:
        """Ask the run to stop; the controls come back when it has (``_on_finished``). A run
        still loading its models ends once they are loaded: the window does not wait."""
        if not self.session.running:
            return
        self.session.stop(wait=False)
        for widget in (self.start_button, self.pause_button, self.stop_button):
            widget.setEnabled(False)
        self._on_message("stopping...")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        for widget in (self.source_box, self.mic_box, self.window_spin, self.hop_spin):
            widget.setEnabled(not running)

    def _on_source_chosen(self, index: int) -> None:
        if self.source_box.itemText(index) != FILE_ITEM:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open a media file", "",
                                              "Media (*.mp4 *.mkv *.webm *.mov *.avi *.wav *.flac *.m4a *.mp3);;"
                                              "All files (*)")
        if path:
            self._add_file(path)
        else:
            self.source_box.setCurrentIndex(0)

    def _on_pause(self, paused: bool) -> None:
        if paused:
            self.session.pause()
            self.pause_button.setText("Resume")
        else:
            self.session.resume()
            self.pause_button.setText("Pause")
            self._release_held()

    def _on_landmarks(self, shown: bool) -> None:
        self.video.show_landmarks = shown
        self.video.update()

    def _on_record(self, on: bool) -> None:
        if on and self.recorder is None:
            path, _ = QFileDialog.getSaveFileName(self, "Record records to", "session.jsonl", "JSON lines (*.jsonl)")
            if not path:
                self.record_button.setChecked(False)
                return
            self.record_to(path, mode="overwrite")  # the dialog has asked about replacing it
        elif not on:
            self.stop_recording()

    def record_to(self, path: str | Path, mode: str = "refuse", advice: str = "record to another file (the "
                  "window replaces one only when its dialog has asked)") -> None:
        """Write every estimate from now on to a JSONL (or CSV) file, flushed as it goes, locked
        as ``python -m realtime`` locks its outputs: a run appending to it meanwhile is refused
        (it had written lines this window then wrote over). ``mode``: ``refuse`` a file that
        holds records (``advice`` says what to do instead), ``overwrite`` it (the file dialog
        has asked, or the command line's --overwrite) or ``append`` to it (--append)."""
        from realtime.outputs import OutputLocks
        from realtime.sinks import OutputError, check_output, make_sink

        path = Path(path)
        lock = OutputLocks()
        try:
            check_output(path, mode, label="the records file", advice=advice)
            lock.acquire(path, "records file")  # released with nothing written, it leaves nothing behind
            self.recorder = make_sink(path, mode, label="the records file")
        except OutputError as exc:
            lock.release()
            self.show_error(str(exc))
            self.record_button.setChecked(False)
            return
        self._record_lock = lock
        self.record_path = path
        self.record_button.blockSignals(True)
        self.record_button.setChecked(True)
        self.record_button.blockSignals(False)
        self.record_button.setText("Recording")
        self.statusBar().showMessage(f"recording to {path}")

    def stop_recording(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
            self._record_lock.release()  # a file it made with nothing in it goes, with its folders
            path = self.record_path
            self._on_message(f"records saved to {path}" if path.exists() else f"nothing recorded; {path} not kept")
        self.record_button.setText("Record JSONL...")

    def _on_save_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the plots", "plots.png", "PNG (*.png)")
        if path:
            self.save_plots(path)

    def save_plots(self, path: str | Path) -> bool:
        """The plots as an image named ``path`` (``IMAGE_SUFFIXES``; a name without a suffix
        gets .png). Another suffix is refused: its data would be PNG under, say, an .svg name."""
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".png")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            self._on_message(f"plots are saved as {', '.join(IMAGE_SUFFIXES)} images; '{path.name}' names none")
            return False
        ok = self.plots.grab().save(str(path), image_format(path))
        self._on_message(f"plots saved to {path}" if ok else f"could not write {path}")
        return ok

    # ---- from the session (GUI thread, through signals) --------------------------------
    def _on_estimate(self, est: Estimate, source: str | None) -> None:
        """One estimate of the run, and the name of the input it came from (its record's ``source``).
        Paused, it is held until Resume: a file read as fast as it decodes has windows scored
        ahead of the screen, which kept coming after Pause."""
        if self.pause_button.isChecked():
            self._held.append((est, source))
            return
        self._show_estimate(est, source)

    def _release_held(self) -> None:
        """Show (and record) the estimates that came while paused, in their order."""
        held, self._held = self._held, []
        for est, source in held:
            self._show_estimate(est, source)

    def _show_estimate(self, est: Estimate, source: str | None) -> None:
        self.history.add(est)
        self.last = est
        self.estimates_seen += 1
        self._dirty = True
        if self.recorder is not None:
            self.recorder.source = source
            try:
                self.recorder.write(est)
                self._record_lock.keep(self.record_path)  # it holds records now: kept whatever follows
            except (OSError, OutputError) as exc:  # a full disk: the records so far are kept whole
                self.show_error(f"recording stopped: {exc}")
                self.record_button.setChecked(False)
        if self._screenshot is not None and est.t_end >= self._screenshot[0]:
            self.session.pause()
            self._take_screenshot_soon()

    def _on_message(self, text: str) -> None:
        self.statusBar().showMessage(text)
        self.statusBar().setToolTip(text)  # the whole of a line the window's width cuts

    def _on_warned(self, text: str) -> None:
        """A warning of the run: kept on screen (the status bar's next message would hide it)."""
        lines = self.notes.toolTip().splitlines()
        if text not in lines:
            lines.append(text)
            self.notes.setToolTip("\n".join(lines))
            self.notes.setText("\n".join(lines[-3:]))
            self.notes.show()

    def _on_failed(self, text: str) -> None:
        self.show_error(text)

    def _on_finished(self, summary) -> None:
        self._set_running(False)
        self.pause_button.setChecked(False)
        for warning in summary.unsaid:  # the run's end findings (decode errors, windows left unscored)
            self._on_warned(warning)
        self._redraw(force=True)
        if summary.windows:
            self._on_message(summary.line())
        elif not self.banner.isVisible():
            self._on_message("stopped")
        if self.video.placeholder == "starting..." and not self.video.showing_frame:
            self.video.clear("stopped" if not self.banner.isVisible() else "not started: see the message above")
        if self._screenshot is not None:
            self._take_screenshot_soon()

    def show_error(self, text: str) -> None:
        """A message in the window; the controls stay usable."""
        self.banner.setText(f"error: {text}")
        self.banner.show()
        self._on_message(text)

    # ---- drawing ---------------------------------------------------------------------
    def _redraw(self, force: bool = False) -> None:
        view = self.session.view
        with view.lock:
            frame_serial, transcript_serial = view.frame_serial, view.transcript_serial
            image, landmarks, frame_t, note, words_note = (view.image, view.landmarks, view.frame_t, view.note,
                                                           view.words_note)
            committed, tentative = list(view.committed), list(view.tentative)
        if frame_serial != self._frame_serial:
            self._frame_serial = frame_serial
            if image is not None:
                caption = f"{frame_t:6.1f} s" + ("" if landmarks is not None else "   no face")
                self.video.set_frame(image, landmarks, caption)
            elif note is not None:  # an input without video: the pane says so instead of "starting..."
                self.video.clear(note)
        if transcript_serial != self._transcript_serial or force:
            self._transcript_serial = transcript_serial
            self.transcript.set_words(committed, tentative, words_note)
        if self._dirty or force:
            self._dirty = False
            if self.last is not None:
                self.sentiment.set_classes(tuple(self.last.emotions or ()))
                self.emotions.set_estimate(self.last)
                for kind, graph in self.graphs.items():
                    graph.set_weights(self.last.edges.get(kind, {}))
                atoms = getattr(self.last, "atoms", None)
                for kind, view in self.atom_views.items():
                    view.setVisible(atoms is not None)
                    if atoms is not None:
                        view.set_activations(atoms.get(kind, {}))
            self.sentiment.redraw(self.history)
            for plot in self.edge_plots.values():
                plot.redraw(self.history)
        self._ticks += 1
        if self._ticks % HEALTH_EVERY == 0 or force:
            self._update_health(self.session.health())

    def _update_health(self, h: Health) -> None:
        if not h.running and self.last is None:
            return
        cover = self.last.modalities if self.last is not None else {}
        paused = " (paused)" if h.paused else ""

        def state(stream: str, modality: str) -> str:
            if stream in h.failed:
                return "missing"
            value = cover.get(modality)
            if value is None:
                return "idle"
            return "present" if value >= 0.99 else "partial" if value > 0 else "missing"

        def share(modality: str) -> str:
            value = cover.get(modality)
            return "-" if value is None else f"{100 * value:.0f}%"

        device = h.devices.get("camera", "")
        self.health.set_cell("face", state("face", "face"),
                             f"Face {share('face')} | {h.face_fps:.1f} fps | dropped {h.dropped.get('face', 0)}"
                             f" | {device}{paused}" + (" | failed" if "face" in h.failed else ""))
        mic = h.devices.get("microphone", "")
        self.health.set_cell("audio", state("audio", "audio"),
                             f"Audio {share('audio')} | dropped {h.dropped.get('audio', 0)} | {mic}"
                             + (" | failed" if "audio" in h.failed else ""))
        lag = "-" if h.speech_lag is None else f"{h.speech_lag:.1f} s"
        self.health.set_cell("text", state("text", "text"),
                             f"Text {'words' if cover.get('text') else 'no words'} in window | speech lag {lag}"
                             + (" | failed" if "text" in h.failed else ""))
        engine = self.session.engine
        latency = "-" if h.latency_ms is None else f"{h.latency_ms:.0f} ms"
        model = f"{engine.checkpoint.id} on {engine.device.type}" if engine is not None else "loading"
        self.health.set_cell("model", "present" if engine is not None else "idle",
                             f"Model {model} | window->record {latency} | {self.estimates_seen} windows")

    # ---- screenshot and close ----------------------------------------------------------
    def screenshot_when(self, after: float, path: str | Path) -> None:
        """Save the window to ``path`` once a window ending at ``after`` s is shown (or at the end)."""
        self._screenshot = (after, str(path))

    def _take_screenshot_soon(self) -> None:
        if getattr(self, "_screenshot_pending", False):
            return
        self._screenshot_pending = True
        QTimer.singleShot(400, self._take_screenshot)  # let the curves and the frame catch up

    def _take_screenshot(self) -> None:
        if self._screenshot is None:
            return
        _, path = self._screenshot
        self._screenshot = None
        self._redraw(force=True)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)  # as --record makes its folders
            ok = self.grab().save(path, image_format(path))
        except OSError:
            ok = False
        self.screenshot_saved.emit(path if ok else "")

    def closeEvent(self, event) -> None:
        """Stop every thread and release camera and microphone before the window goes."""
        self.timer.stop()
        self.session.stop()
        QCoreApplication.sendPostedEvents()  # the estimates still queued reach the recording first
        self._release_held()  # and those held by a pause
        self.stop_recording()
        super().closeEvent(event)


def running_threads() -> list[str]:
    """Names of the pipeline's and the session's threads still alive (for tests and logs)."""
    return [t.name for t in threading.enumerate() if t.name.startswith(("realtime-", "gui-", "replay-"))]
