"""TensorBoard event files (``events.out.tfevents.*``), read with ``tensorboard``'s own loader.

Records come from ``tensorboard``'s ``RawEventFileLoader`` (its TFRecord reader, with CRC checks)
and are parsed by its ``Event`` protobuf; nothing here parses the format by hand. Scalars arrive in
two shapes: ``simple_value`` (PyTorch's ``SummaryWriter``, TF1) and a 0-d tensor tagged by the
``scalars`` plugin (TF2's ``tf.summary.scalar``; the plugin is named only on a tag's first event).

The loader stops quietly at a truncated or corrupted record. The bytes it consumed are counted
here, so a file that was not read to its end keeps the records before the damage and warns.
"""

from __future__ import annotations

import os
from pathlib import Path

from diag.errors import DiagInputError, Problem

from diag.adapters.importers.scalars import ScalarLog

_RECORD_FRAMING = 16  # length (8) + length CRC (4) + data CRC (4) around each record


def event_files(path: str | Path) -> list[Path]:
    """The event files of one run: the file itself, or those directly in the folder, oldest first."""
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted((f for f in p.iterdir() if f.is_file() and "tfevents" in f.name), key=lambda f: f.name)


def require_tensorboard():
    try:
        from tensorboard.backend.event_processing import event_file_loader
        from tensorboard.compat.proto import event_pb2
    except ImportError:
        raise DiagInputError(Problem("", "reading TensorBoard event files needs the tensorboard package"),
                             hint='pip install "diag[tensorboard]"') from None
    return event_file_loader, event_pb2


def read_event_files(path: str | Path, run: str) -> ScalarLog:
    """Every scalar of one run's event files, as named series.

    Raises:
      DiagInputError: tensorboard is missing, or no file holds a readable scalar (names the file).
    """
    loader_module, event_pb2 = require_tensorboard()
    files = event_files(path)
    if not files:
        raise DiagInputError(Problem(str(path), "no TensorBoard event files (events.out.tfevents.*) here"))
    log = ScalarLog(source="tensorboard", path=str(path), run=run)
    scalar_tags: dict[str, bool] = {}
    events = 0
    for file in files:
        events += _read_file(file, log, loader_module, event_pb2, scalar_tags)
    if not log.series:
        what = "no readable events (empty or truncated)" if events == 0 else f"{events} events and no scalar summaries"
        where = str(files[0]) if len(files) == 1 else str(path)
        raise DiagInputError(Problem(where, f"the TensorBoard log holds {what}"),
                             hint="diag reads scalars (add_scalar / tf.summary.scalar); histograms and images are skipped")
    return log


def _read_file(file: Path, log: ScalarLog, loader_module, event_pb2, scalar_tags: dict) -> int:
    try:
        size = os.path.getsize(file)
        loader = loader_module.RawEventFileLoader(str(file))
    except OSError as e:
        raise DiagInputError(Problem(str(file), f"cannot read: {e.strerror or e}")) from None
    parse = event_pb2.Event.FromString
    add = log.add
    consumed = 0
    events = 0
    undecodable = 0
    for raw in loader.Load():
        consumed += len(raw) + _RECORD_FRAMING
        events += 1
        try:
            event = parse(raw)
        except Exception:  # protobuf's DecodeError: a record whose CRC matched but whose bytes are not an Event
            undecodable += 1
            continue
        if not event.HasField("summary"):
            continue
        step = event.step
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                add(value.tag, step, float(value.simple_value))
            elif kind == "tensor":
                number = _scalar_tensor(value, scalar_tags)
                if number is not None:
                    add(value.tag, step, number)
    if consumed < size:
        log.problems.append(Problem(
            str(file), f"unreadable from byte {consumed} of {size} (a truncated or corrupted record); "
            f"the {events} events before it were kept", severity="warning"))
    if undecodable:
        log.problems.append(Problem(str(file), f"{undecodable} records were not Event protos; skipped",
                                    severity="warning"))
    return events


def _scalar_tensor(value, scalar_tags: dict) -> float | None:
    """A scalar-plugin tensor's value (the plugin is named on the tag's first event only)."""
    tag = value.tag
    if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
        scalar_tags[tag] = value.metadata.plugin_data.plugin_name == "scalars"
    if not scalar_tags.get(tag, False):
        return None
    tensor = value.tensor
    if tensor.tensor_shape.dim:
        return None
    if tensor.float_val:
        return float(tensor.float_val[0])
    if tensor.double_val:
        return float(tensor.double_val[0])
    if tensor.tensor_content:
        from tensorboard.util import tensor_util

        try:
            return float(tensor_util.make_ndarray(tensor))
        except (TypeError, ValueError):
            return None
    if tensor.int64_val:
        return float(tensor.int64_val[0])
    if tensor.int_val:
        return float(tensor.int_val[0])
    return None
