"""Drive the Streamlit app in-process with AppTest, and read what its pages show."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io
from streamlit.testing.v1 import AppTest

from fer import PROJECT_ROOT

APP = PROJECT_ROOT / "streamlit_app.py"
TIMEOUT = 60  # seconds per script run: the CPU may be busy with training


def open_page(page: str, query_params: dict[str, Any] | None = None) -> AppTest:
    """The app after navigating to ``app_pages/<page>.py`` (optionally with ``?key=value``)."""
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()  # st.navigation registers the pages; the first run shows the default page
    app.query_params.update(query_params or {})
    return app.switch_page(f"app_pages/{page}.py").run()


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def figures(app: AppTest) -> list[go.Figure]:
    """The plotly figures on the page."""
    return [plotly.io.from_json(chart.proto.spec) for chart in app.get("plotly_chart")]


def array(value: Any) -> np.ndarray:
    """A plotly data array, which plotly JSON may hold as base64 ``{"dtype", "bdata"}``."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return data.reshape([int(n) for n in str(shape).split(",")]) if shape else data
    return np.asarray(value)


def no_exception(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]


def page_links(app: AppTest) -> list[tuple[str, str]]:
    """(label, page) of every page link."""
    return [(link.value, link.proto.page) for link in app.get("page_link")]


def experiments(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if (p / "config.json").is_file()) if path.is_dir() else []
